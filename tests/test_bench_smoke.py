"""`tessera bench --smoke`: every scenario, seconds long, on a fresh database each.

These check the suite and the outcomes it verifies (no errors, invariants hold, exact flash
sale counts, FIFO promotions), never timings: the machine running the tests may be busy.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tessera_client.bench import (
    FORMAT,
    BenchSettings,
    render_markdown,
    run_bench,
    save_results,
)
from tessera_client.bench.report import MARKER
from tessera_client.cli.bench import app

from .support import TestDatabase
from .tools import pgbouncer_binary

SMOKE = BenchSettings.for_smoke()
LATENCY_KEYS = {"p50", "p95", "p99", "max", "mean"}


async def smoke(db: TestDatabase, scenario: str, settings: BenchSettings = SMOKE) -> Any:
    document = await run_bench([scenario], settings, db_url=db.url(), raise_errors=True)
    assert document["format"] == FORMAT
    assert document["smoke"] is True
    assert document["database"]["realtime_trigger"] == "enabled"
    assert document["database"]["settings"]["synchronous_commit"] == "on"
    assert {"cores", "ram_gb", "cpu_model", "python"} <= document["machine"].keys()
    result = document["scenarios"][scenario]
    assert "failed" not in result, result.get("failed")
    return result


def assert_phase(phase: dict[str, Any], clients: int | None = None) -> None:
    assert phase["error_count"] == 0, phase["error_samples"]
    assert phase["errors"] == {}
    assert phase["ops"] > 0
    assert set(phase["latency_ms"]) == LATENCY_KEYS
    assert 0 < phase["latency_ms"]["p50"] <= phase["latency_ms"]["p99"]
    if clients is not None:
        assert phase["clients"] == clients


async def test_hot_event_against_the_baseline(db: TestDatabase) -> None:
    result = await smoke(db, "hot")
    assert [row["clients"] for row in result["rows"]] == list(SMOKE.clients)
    for row in result["rows"]:
        for name in ("tessera", "baseline", "ceiling"):
            assert_phase(row[name], row["clients"])
        assert set(row["ratio"]) == {"throughput", "p50", "p95", "p99"}
        assert row["ratio"]["throughput"] > 0
    assert result["bookings_accounted"] is True
    assert result["invariants"] == []
    assert result["ok"] is True
    # The baseline's scratch schema does not outlive the run.
    assert db.sql("select 1 from pg_namespace where nspname = 'tessera_bench_baseline'") == []


async def test_spread_over_many_events(db: TestDatabase) -> None:
    result = await smoke(db, "spread")
    assert result["events"] == SMOKE.spread_events
    for row in result["rows"]:
        assert_phase(row["spread"], row["clients"])
    assert result["bookings_accounted"] is True
    assert result["invariants"] == []
    assert result["ok"] is True


async def test_flash_sale_is_exact_and_promotes_in_fifo_order(db: TestDatabase) -> None:
    result = await smoke(db, "flash")
    waiting = SMOKE.flash_users - SMOKE.flash_seats
    assert result["sale"] == {
        "confirmed": SMOKE.flash_seats,
        "waitlisted": waiting,
        "seats_confirmed": SMOKE.flash_seats,
        "waitlist_count": waiting,
        "positions_returned_ok": True,
        "positions_ok": True,
    }
    assert result["after_cancellations"] == {
        "promotions": SMOKE.flash_cancellations,
        "promotions_fifo": True,
        "seats_confirmed": SMOKE.flash_seats,
        "waitlist_count": waiting - SMOKE.flash_cancellations,
        "positions_ok": True,
    }
    assert_phase(result["booking"])
    assert result["booking"]["ops"] == SMOKE.flash_users
    assert result["cancellations"]["ops"] == SMOKE.flash_cancellations
    assert 0 < result["sold_out_seconds"] <= result["all_answered_seconds"]
    assert result["invariants"] == []
    assert result["error_count"] == 0
    assert result["ok"] is True


async def test_big_waitlist(db: TestDatabase) -> None:
    result = await smoke(db, "waitlist")
    assert result["waiting"] == SMOKE.waitlist_size
    for key in ("waitlist_position", "join", "cancel_promotion"):
        assert_phase(result[key], 1)
        assert result[key]["ops"] == SMOKE.waitlist_samples
    assert result["checks"] == {
        "filled_confirmed": SMOKE.waitlist_samples,
        "filled_waiting": SMOKE.waitlist_size,
        "positions_match": True,
        "joins_match": True,
        "promotions": SMOKE.waitlist_samples,
        "promotions_fifo": True,
        "waiting_after": SMOKE.waitlist_size,
    }
    assert result["invariants"] == []
    assert result["ok"] is True


async def test_connections_through_pgbouncer(db: TestDatabase) -> None:
    pgbouncer_binary()  # fails, never skips, when PgBouncer is missing
    result = await smoke(db, "connections")
    assert result["connected"] == SMOKE.connections
    assert result["clients_held_open"] == SMOKE.connections
    assert 0 < result["peak_server_connections"] <= SMOKE.pgbouncer_pool
    assert_phase(result["booking"])
    assert result["booking"]["ops"] == SMOKE.connections * SMOKE.bookings_per_connection
    assert result["bookings_accounted"] is True
    assert result["invariants"] == []
    assert result["ok"] is True


async def test_realtime(db: TestDatabase) -> None:
    result = await smoke(db, "realtime")
    if importlib.util.find_spec("tessera_client.bench.realtime") is None:
        assert result["ok"] is None
        assert "not available" in result["skipped"]
    else:
        assert result["invariants"] == []
        assert result["ok"] is True


async def test_results_are_saved_as_json_chart_and_markdown(
    db: TestDatabase, tmp_path: Path
) -> None:
    tiny = SMOKE.replace(clients=(2,), seconds=0.3, ceiling=False, spread_events=5)
    document = await run_bench(["hot", "spread"], tiny, db_url=db.url(), command="test")
    assert document["ok"] is True
    [spread_row] = document["scenarios"]["spread"]["rows"]
    assert spread_row["hot_over_spread"] > 0
    names = [target["name"] for target in document["targets"]]
    assert "hot event vs seed design, pgbench, 32 clients" in names

    markdown = tmp_path / "benchmarks.md"
    markdown.write_text(f"# Benchmarks\n\nHand-written part.\n\n{MARKER}\n")
    saved = save_results(document, tmp_path / "benchmarks", markdown)
    assert json.loads(saved.json.read_text()) == json.loads(saved.latest.read_text())
    assert saved.chart is not None
    assert saved.chart.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "benchmarks" / "latest.png").exists()
    text = markdown.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written part.")
    assert text.index(MARKER) < text.index("## Run of")
    assert f"]({saved.chart.relative_to(tmp_path)})" in text
    assert "### Hot event vs baseline" in text and "### Spread over 5 events" in text

    save_results(document | {"started_at": "2030-01-01T00:00:00+00:00"}, tmp_path, markdown)
    assert markdown.read_text().count("## Run of") == 2
    assert "Command: `test`" in render_markdown(document)


def test_cli_prints_json_and_saves_nothing_with_smoke(
    db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["flash", "--smoke", "--json", "--users", "60", "--seats", "20"]
    args += ["--cancellations", "5", "--db-url", db.url(), "--out-dir", str(tmp_path)]
    # The recorded command line never carries a password.
    monkeypatch.setattr(sys, "argv", ["tessera", "bench", *args])
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.stdout)
    flash = document["scenarios"]["flash"]
    assert flash["ok"] is True
    assert flash["sale"]["confirmed"] == 20
    assert flash["after_cancellations"]["promotions"] == 5
    assert document["command"].startswith("tessera bench flash --smoke")
    assert "password=***" in document["command"]
    assert "password=postgres" not in document["command"]
    assert list(tmp_path.iterdir()) == []


async def test_pgbench_hot_event_against_the_seed_design(db: TestDatabase) -> None:
    result = await smoke(db, "pgbench")
    assert [row["clients"] for row in result["rows"]] == list(SMOKE.clients)
    for row in result["rows"]:
        assert_phase(row["tessera"], row["clients"])
        assert_phase(row["baseline"], row["clients"])
        assert row["ratio"]["throughput"] > 0
    assert result["accounted"] is True
    assert result["invariants"] == []
    assert result["ok"] is True


async def test_open_loop_serves_a_fixed_arrival_rate(db: TestDatabase) -> None:
    result = await smoke(db, "openloop")
    assert result["rate"] == pytest.approx(SMOKE.open_loop_factor * result[
        "baseline_best_closed_loop"], rel=0.01)  # fmt: skip
    for name in ("tessera", "baseline"):
        assert_phase(result[name], SMOKE.open_loop_clients)
        assert 0 < result[name]["served_fraction"] <= 1
    assert result["invariants"] == []
    assert result["ok"] is True


async def test_abuse_refused_claims_against_a_hot_event(db: TestDatabase) -> None:
    result = await smoke(db, "abuse")
    assert (result["bookers"], result["attackers"]) == (SMOKE.abuse_clients, SMOKE.abuse_attackers)
    for phase in result["quiet"] + result["attacked"]:
        assert_phase(phase, SMOKE.abuse_clients)
    for attack in result["attacks"]:
        # Each attack call was refused: one that got through (or failed otherwise) raises in
        # the attack's wrapper and ends its pgbench client, which counts as an error.
        assert attack["ops"] > 0 and attack["error_count"] == 0, attack
        assert attack["clients"] == SMOKE.abuse_attackers
    assert result["attack_refusals_per_second"] > 0
    assert result["ratio"] > 0
    assert result["ok"] is True
