"""Run scenarios against a database (by default a throwaway local stack) and collect results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

from tessera_client._local.stack import LocalStack
from tessera_client.bench._driver import Admin
from tessera_client.bench._machine import describe_database, describe_machine
from tessera_client.bench._settings import SCENARIOS, BenchSettings
from tessera_client.bench.abuse import run_abuse
from tessera_client.bench.pgbench import run_open_loop, run_pgbench
from tessera_client.bench.scenarios import (
    BenchContext,
    run_connections,
    run_flash,
    run_hot,
    run_realtime,
    run_spread,
    run_waitlist,
)

__all__ = ["FORMAT", "BenchError", "evaluate_targets", "run_bench", "run_scenario"]

FORMAT = "tessera-bench/1"

Runner = Callable[[BenchContext], Awaitable[dict[str, Any]]]
RUNNERS: dict[str, Runner] = {
    "hot": run_hot,
    "pgbench": run_pgbench,
    "openloop": run_open_loop,
    "spread": run_spread,
    "flash": run_flash,
    "waitlist": run_waitlist,
    "connections": run_connections,
    "realtime": run_realtime,
    "abuse": run_abuse,
}


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (for example realtime publishing is off)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_scenario(
    name: str, ctx: BenchContext, *, raise_errors: bool = False
) -> dict[str, Any]:
    """One scenario; an exception becomes a failed result unless ``raise_errors``."""
    started = time.perf_counter()
    try:
        result = await RUNNERS[name](ctx)
    except Exception as exc:
        if raise_errors:
            raise
        result = {"failed": f"{type(exc).__name__}: {exc}", "ok": False}
    result["duration_seconds"] = round(time.perf_counter() - started, 1)
    return result


async def run_bench(
    scenarios: Sequence[str],
    settings: BenchSettings,
    *,
    db_url: str | None = None,
    progress: Progress | None = None,
    command: str = "tessera bench",
    raise_errors: bool = False,
) -> dict[str, Any]:
    """Run ``scenarios`` in order and return the results document (see docs/benchmarks.md).

    Args:
        scenarios: Names from :data:`SCENARIOS`.
        settings: Sizes and durations.
        db_url: A ``postgres`` login of a migrated Tessera database. Without one, a
            throwaway local stack is started in a temporary directory and deleted after.
        progress: Progress bars (none when omitted).
        command: The command line to record (without secrets).
        raise_errors: Let a scenario's exception propagate instead of recording it.

    Raises:
        BenchError: An unknown scenario, or realtime publishing is not enabled.
    """
    unknown = [name for name in scenarios if name not in RUNNERS]
    if unknown:
        raise BenchError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    progress = progress or Progress(disable=True)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    machine = describe_machine()
    workdir: Path | None = None
    stack: LocalStack | None = None
    if db_url is None:
        workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
        workdir.chmod(0o755)  # the unprivileged server user must enter it when run as root
        stack = LocalStack(data_dir=workdir / "stack", port=_free_port())
        task = progress.add_task("starting a throwaway local stack", total=None)
        try:
            await asyncio.to_thread(stack.up)
        except BaseException:
            await asyncio.to_thread(_remove_stack, stack, workdir)
            raise
        progress.update(task, visible=False)
        db_url = stack.db_url
    results: dict[str, Any] = {}
    try:
        async with Admin.connect(db_url) as admin:
            database = await describe_database(admin)
            database["throwaway_stack"] = stack is not None
            if database["realtime_trigger"] != "enabled":
                raise BenchError(
                    f"the realtime publishing trigger is {database['realtime_trigger']}; "
                    "benchmarks run with it on"
                )
            label = started.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
            ctx = BenchContext(db_url, admin, settings, progress, label)
            for name in scenarios:
                results[name] = await run_scenario(name, ctx, raise_errors=raise_errors)
    finally:
        if stack is not None and workdir is not None:
            await asyncio.to_thread(_remove_stack, stack, workdir)
    with contextlib.suppress(OSError):
        machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    _cross_reference(results)
    outcomes = [result.get("ok") for result in results.values()]
    return {
        "format": FORMAT,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_seconds": round(time.perf_counter() - clock, 1),
        "command": command,
        "smoke": settings.smoke,
        "settings": settings.as_dict(),
        "machine": machine,
        "database": database,
        "scenarios": results,
        "targets": evaluate_targets(results),
        "ok": all(outcome is not False for outcome in outcomes),
    }


def _remove_stack(stack: LocalStack, workdir: Path) -> None:
    stack.destroy()
    shutil.rmtree(workdir, ignore_errors=True)


def _row(result: dict[str, Any] | None, clients: int) -> dict[str, Any] | None:
    for row in (result or {}).get("rows", []):
        if row["clients"] == clients:
            found: dict[str, Any] = row
            return found
    return None


def _cross_reference(results: dict[str, Any]) -> None:
    """Hot throughput as a share of spread and of pgbench's, when those ran."""
    hot, pgbench = results.get("hot"), results.get("pgbench")
    for row in (pgbench or {}).get("rows", []):
        sdk_row = _row(hot, row["clients"])
        if sdk_row and "tessera" in sdk_row and row["tessera"]["throughput"] > 0:
            row["sdk_over_pgbench"] = round(
                sdk_row["tessera"]["throughput"] / row["tessera"]["throughput"], 3
            )
    spread = results.get("spread")
    if not hot or not spread:
        return
    for row in spread.get("rows", []):
        hot_row = _row(hot, row["clients"])
        if hot_row and row["spread"]["throughput"] > 0:
            row["hot_over_spread"] = round(
                hot_row["tessera"]["throughput"] / row["spread"]["throughput"], 3
            )


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's performance targets against what was measured (``met`` None: not run)."""
    targets: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: Any, met: bool | None) -> None:
        targets.append({"name": name, "target": target, "measured": measured, "met": met})

    pgbench = results.get("pgbench")
    for clients, factor in ((1, 0.8), (32, 3.0), (128, 4.0)):
        row = _row(pgbench, clients)
        ratio = row["ratio"]["throughput"] if row else None
        add(
            f"hot event vs seed design, pgbench, {clients} clients",
            f">= {factor:g}x",
            f"{ratio:.3g}x" if ratio is not None else None,
            None if ratio is None else ratio >= factor,
        )
    open_loop = results.get("openloop")
    if open_loop and "tessera" in open_loop:
        served = open_loop["tessera"]["served_fraction"]
        p99_open = open_loop["tessera"]["latency_ms"]["p99"]
        add(
            f"open loop at {open_loop['factor']:g}x the seed design's best rate "
            f"({open_loop['rate']:,.0f}/s), {open_loop['clients']} connections",
            ">= 95 % served, p99 <= 25 ms",
            f"{served:.1%} served, p99 {p99_open:.3g} ms",
            served >= 0.95 and p99_open <= 25,
        )
    else:
        add("open loop at 1.5x the seed design's best rate", ">= 95 % served, p99 <= 25 ms",
            None, None)  # fmt: skip
    row = _row(pgbench, 32)
    sdk_share = row.get("sdk_over_pgbench") if row else None
    add(
        "SDK-driven / pgbench-driven, book_event, 32 clients",
        ">= 0.8",
        f"{sdk_share:.3g}" if sdk_share is not None else None,
        None if sdk_share is None else sdk_share >= 0.8,
    )
    spread_row = _row(results.get("spread"), 32)
    share = spread_row.get("hot_over_spread") if spread_row else None
    add(
        "contention cost at 32 clients (hot / spread)",
        ">= 0.7",
        f"{share:.3g}" if share is not None else None,
        None if share is None else share >= 0.7,
    )
    flash = results.get("flash")
    if flash and "sold_out_seconds" in flash:
        add(
            "flash sale: no oversell, invariants hold",
            "exact counts, FIFO, no problems",
            "ok" if flash["ok"] else "FAILED",
            bool(flash["ok"]),
        )
        add(
            "flash sale: sold out",
            "< 5 s",
            f"{flash['sold_out_seconds']:.3g} s",
            flash["sold_out_seconds"] < 5,
        )
    else:
        add("flash sale: sold out", "< 5 s", None, None)
    waitlist = results.get("waitlist")
    for key, label in (
        ("cancel_promotion", "cancel → promotion"),
        ("waitlist_position", "waitlist_position"),
    ):
        if waitlist and key in waitlist:
            value = waitlist[key]["latency_ms"]["p99"]
            add(
                f"{label} p99 at {waitlist['waiting']:,} waiting",
                "<= 5 ms",
                f"{value:.3g} ms",
                value <= 5,
            )
        else:
            add(f"{label} p99 at 100,000 waiting", "<= 5 ms", None, None)
    small = (waitlist or {}).get("waitlist_position_small")
    if waitlist and small and "waitlist_position" in waitlist:
        big_p99 = waitlist["waitlist_position"]["latency_ms"]["p99"]
        small_p99 = small["latency_ms"]["p99"]
        add(
            f"waitlist_position p99 at {waitlist['waiting']:,} vs {small['waiting']:,} waiting",
            "<= 2x the small queue's + 1 ms",
            f"{big_p99:.3g} ms vs {small_p99:.3g} ms",
            big_p99 <= 2 * small_p99 + 1,
        )
    else:
        add("waitlist_position p99 at 100,000 vs 1,000 waiting", "<= 2x + 1 ms", None, None)
    connections = results.get("connections")
    if connections and "clients" in connections:
        add(
            f"{connections['clients']:,} clients through PgBouncer",
            "zero errors",
            f"{connections['error_count']} errors",
            connections["error_count"] == 0 and bool(connections["ok"]),
        )
    else:
        add("2,000 clients through PgBouncer", "zero errors", None, None)
    realtime = results.get("realtime") or {}
    latency = realtime.get("latency_ms") if isinstance(realtime.get("latency_ms"), dict) else None
    p99_rt = latency.get("p99") if latency else None
    add(
        "realtime commit-to-receipt p99",
        "<= 50 ms",
        f"{p99_rt:.3g} ms" if isinstance(p99_rt, int | float) else None,
        None if not isinstance(p99_rt, int | float) else p99_rt <= 50,
    )
    abuse = results.get("abuse") or {}
    ratio = abuse.get("ratio")
    add(
        f"hot event under {abuse.get('attackers', 16)} loops of refused claim_offer",
        ">= 0.9x its bookings/s alone",
        f"{ratio:.3g}x" if isinstance(ratio, int | float) else None,
        None if not isinstance(ratio, int | float) else ratio >= 0.9,
    )
    return targets
