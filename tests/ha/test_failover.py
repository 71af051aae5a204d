"""The HA formation (`tessera dev up --ha`): losing the primary under load loses nothing.

The chaos sale is
tessera_client.bench.failover at CI size: users book with idempotency keys while the primary
node is SIGKILLed, the lost node rejoins, and a planned switchover follows.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from tessera_client._local.ha import HaFormation
from tessera_client.bench.failover import FailoverSettings, chaos_sale
from tessera_client.cli import app


def test_status_lists_a_primary_and_a_synchronous_standby(formation: HaFormation) -> None:
    result = CliRunner().invoke(
        app, ["dev", "status", "--json"], env={"TESSERA_DATA_DIR": str(formation.data_dir)}
    )
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    nodes = {node["name"]: node for node in status["nodes"]}
    assert sorted(node["role"] for node in nodes.values()) == ["primary", "secondary"]
    for node in nodes.values():
        assert node["pid"] and node["port"] and Path(node["data_dir"], "PG_VERSION").exists()
    ports = ",".join(f"127.0.0.1:{node['port']}" for node in status["nodes"])
    assert f"@{ports}/postgres?target_session_attrs=read-write" in status["db_url"]

    with psycopg.connect(formation.status().admin_url) as conn:
        settings = dict(
            conn.execute(
                "select name, setting from pg_settings"
                " where name in ('synchronous_commit', 'synchronous_standby_names')"
            ).fetchall()
        )
        streaming = conn.execute(
            "select sync_state from pg_stat_replication where state = 'streaming'"
        ).fetchall()
    # An acknowledged commit has been flushed by the standby too.
    assert settings["synchronous_commit"] == "on"
    assert settings["synchronous_standby_names"].startswith("ANY 1")
    assert streaming == [("quorum",)]


def test_losing_the_primary_under_load_loses_and_doubles_no_booking(
    formation: HaFormation,
) -> None:
    result = asyncio.run(chaos_sale(formation, FailoverSettings.for_smoke()))
    summary = json.dumps(result, indent=1, default=str)
    assert result["acknowledged"] > 0 and result["killed"] != result["promoted"], summary
    assert result["lost"] == 0, summary
    assert result["doubled"] == 0, summary
    assert result["oversold"] == 0, summary
    assert result["invariants"] == [], summary
    assert result["failed"] == {}, summary  # retries (idempotency keys) absorbed both switches
    assert result["failed_during_switchover"] == 0, summary
    assert result["standby_has_every_acknowledged_booking"], summary
    # Both realtime followers (rows from the poller; wake-ups + event_changes) moved to the
    # promoted node and missed nothing.
    for followed in result["realtime"].values():
        assert followed["missed"] == followed["phantom"] == followed["duplicates"] == 0, summary
        assert followed["in_order"] and followed["received"] == followed["entries"] > 0, summary
    # Bookings resumed on the promoted node (the measured time is the benchmark's business).
    assert result["kill_to_first_commit_seconds"] is not None, summary
    assert result["kill_to_first_booking_seconds"] is not None, summary
