"""The HA formation (`tessera dev up --ha`): losing the primary under load loses nothing.

One formation per module (monitor, primary, synchronous standby on localhost, driven by
pg_auto_failover), built in a temporary directory on free ports. The chaos sale is
tessera_client.bench.failover at CI size: users book with idempotency keys while the primary
node is SIGKILLed, the lost node rejoins, and a planned switchover follows.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tessera_client._local.ha import HaFormation
from tessera_client.bench.failover import FailoverSettings, chaos_sale, free_port_block
from tessera_client.cli import app

from ..tools import require_tool

PACKAGES = "pg-auto-failover-cli postgresql-15-auto-failover"


@pytest.fixture(scope="module")
def formation() -> Iterator[HaFormation]:
    require_tool("pg_autoctl", PACKAGES, "/usr/bin/pg_autoctl")
    if not Path("/usr/share/postgresql/15/extension/pgautofailover.control").exists():
        pytest.fail(f"the pgautofailover extension is missing; apt-get install {PACKAGES}")
    workdir = Path(tempfile.mkdtemp(prefix="tessera-ha-test-"))
    workdir.chmod(0o755)  # the unprivileged server user must enter it when tests run as root
    ha = HaFormation(workdir / "ha", port=free_port_block(3))
    try:
        ha.up()
        yield ha
    finally:
        ha.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


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
    # The realtime follower moved to the promoted node and missed nothing.
    realtime = result["realtime"]
    assert realtime["missed"] == realtime["phantom"] == realtime["duplicates"] == 0, summary
    assert realtime["in_order"] and realtime["received"] == realtime["entries"] > 0, summary
    # Bookings resumed on the promoted node (the measured time is the benchmark's business).
    assert result["kill_to_first_booking_seconds"] is not None, summary


def test_down_stops_every_process(formation: HaFormation) -> None:
    pids = [
        pid
        for node in formation.status().nodes
        for pid in (node.pid, node.keeper_pid)
        if pid is not None
    ] + [formation.keeper_pid("monitor")]
    assert formation.down()
    assert formation.status().running is False
    assert not [pid for pid in pids if pid is None or _running(pid)]


def _running(pid: int) -> bool:
    """Alive and not a zombie (keepers started by this process linger as zombies until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
