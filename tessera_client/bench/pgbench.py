"""Scenarios driven by pgbench: what the database sustains, without the Python client.

Every transaction is what PostgREST sends for an RPC: logged in as ``authenticator``, with
prepared statements, ``BEGIN``; one ``select set_config('role', …, true),
set_config('request.jwt.claims', …, true), set_config('request.method', 'POST', true)``; the
function; ``COMMIT``. Tessera's ``book_event`` and the baseline's classic ``FOR UPDATE``
function run through the very same script, in the same run, one phase after the other.

- ``pgbench`` (closed loop): at each client count, the baseline on its own hot event, then
  ``book_event`` on a fresh hot event of capacity 1,000,000, a fresh user per booking.
- ``openloop``: bookings arrive at a fixed rate (``pgbench --rate``) of 1.5x the baseline's
  best closed-loop throughput over 32 connections; latency is counted from each booking's
  scheduled start (no coordinated omission) and the served fraction is what completed of
  what was offered.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from tessera_client.bench._baseline import (
    SCHEMA,
    create_baseline_event,
    drop_baseline,
    install_baseline,
)
from tessera_client.bench._driver import Admin, bench_client
from tessera_client.bench._stats import latency_summary

__all__ = [
    "PgbenchError",
    "create_pgbench_users",
    "pgbench_binary",
    "pgbench_phase",
    "run_open_loop",
    "run_pgbench",
    "users_for",
]

HOT_CAPACITY = 1_000_000
LOCAL_PASSWORD = "postgres"  # the local stack's password for every login role
TESSERA_FUNCTION = "public.book_event"
BASELINE_FUNCTION = f"{SCHEMA}.book_event"

# One call, as PostgREST makes it. A booking: client c's n-th booking is user c + (n - 1) *
# clients of this phase's range, so every booking has a user of its own.
_SCRIPT = """\\set n :n + 1
\\set u :first + :client_id + ((:n - 1) * :nclients)
BEGIN;
select set_config('role', 'authenticated', true), set_config('request.jwt.claims', \
'{{"role": "authenticated", "sub": "' || {user} || '"}}', true), \
set_config('request.method', 'POST', true);
select * from {call};
COMMIT;
"""
_BOOKER = "md5(:prefix::text || :u::text)::uuid"


class PgbenchError(RuntimeError):
    """pgbench is missing or could not run."""


def pgbench_binary() -> str:
    """The pgbench of the server's major version when it can be found, else the first one."""
    found = shutil.which("pgbench")
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    if candidates:
        return str(candidates[0])
    if found:
        return found
    raise PgbenchError("pgbench not found; install it with: apt-get install postgresql-client-15")


async def create_pgbench_users(admin: Admin, prefix: str, first: int, count: int) -> None:
    await admin.rows(
        "insert into auth.users (id, email) "
        "select md5(%(prefix)s || i::text)::uuid, 'pgbench-' || %(prefix)s || i || '@example.test' "
        "from generate_series(%(first)s::bigint, %(last)s::bigint) as i on conflict do nothing",
        {"prefix": prefix, "first": first, "last": first + count - 1},
    )


def _conninfo(db_url: str) -> dict[str, str]:
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    return {key: str(value) for key, value in info.items() if value is not None}


def _parse_log(directory: Path) -> tuple[list[float], int]:
    """Latencies (seconds) of the transactions pgbench logged, and how many it skipped."""
    latencies: list[float] = []
    skipped = 0
    for path in directory.glob("log*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            if fields[2] == "skipped":
                skipped += 1
            elif fields[2].isdigit():
                latencies.append(int(fields[2]) / 1_000_000)
    return latencies, skipped


_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")
_ABORTED = re.compile(r"client \d+ script \d+ aborted in command \d+ query \d+: (.*)")


async def pgbench_phase(
    db_url: str,
    *,
    function: str,
    event_id: uuid.UUID,
    clients: int,
    seconds: float,
    prefix: str,
    first_user: int,
    rate: float | None = None,
    progress: Any = None,
    description: str = "pgbench",
    attack: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> dict[str, Any]:
    """One pgbench run of ``function`` on ``event_id``; the result is JSON-ready.

    Args:
        db_url: Any login of the database; pgbench logs in as ``authenticator`` on the same
            server (the local stack's password).
        function: ``public.book_event`` or the baseline's function.
        event_id: The event every booking goes to.
        clients: Connections, each a closed-loop client (or, with ``rate``, a server of the
            arrival schedule).
        seconds: Length of the run.
        prefix: Users are ``md5(prefix || n)``.
        first_user: The first ``n`` of this run's user range.
        rate: Bookings per second offered (open loop); ``None`` for a closed loop.
        progress: Rich progress bars.
        description: The progress bar's text.
        attack: ``(attacker, booking)``: instead of booking, every transaction is the
            attacker's refused ``claim_offer`` of ``booking`` (through the scratch schema's
            ``refused_claim``, so that a refusal does not end the pgbench client).
    """
    info = _conninfo(db_url)
    seconds_whole = max(1, round(seconds))
    work = Path(tempfile.mkdtemp(prefix="tessera-pgbench-"))
    try:
        script = work / "booking.sql"
        if attack is None:
            call, user = f"{function}(event_id => :event::uuid)", _BOOKER
        else:
            attacker, booking = attack
            call = f"{SCHEMA}.refused_claim(booking_id => '{booking}'::uuid)"
            user = f"'{attacker}'"
        script.write_text(_SCRIPT.format(call=call, user=user))
        args = [
            pgbench_binary(), "-n", "-M", "prepared", "-r",
            "-h", info.get("host", "localhost"), "-p", info.get("port", "5432"),
            "-U", "authenticator", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
            "-T", str(seconds_whole), "-D", "n=0", "-D", f"first={first_user}",
            "-D", f"nclients={clients}", "-D", f"prefix={prefix}", "-D", f"event={event_id}",
            "-l", f"--log-prefix={work / 'log'}", "-f", str(script),
        ]  # fmt: skip
        if rate is not None:
            args[1:1] = ["--rate", f"{rate:.1f}"]
        args.append(info.get("dbname", "postgres"))
        env = dict(os.environ, PGPASSWORD=LOCAL_PASSWORD, PGSSLMODE="disable")
        task = progress.add_task(description, total=seconds_whole) if progress else None
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=work,
            env=env,
        )
        communicate = asyncio.ensure_future(process.communicate())
        while not communicate.done():
            await asyncio.wait({communicate}, timeout=0.5)
            if task is not None:
                progress.update(task, completed=min(time.perf_counter() - started, seconds_whole))
        stdout_bytes, stderr_bytes = communicate.result()
        if task is not None:
            progress.update(task, visible=False)
        stdout, stderr = stdout_bytes.decode(), stderr_bytes.decode()
        latencies, skipped = _parse_log(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    processed = _PROCESSED.search(stdout)
    if processed is None:
        raise PgbenchError(f"pgbench did not run: {(stderr or stdout).strip()[-800:]}")
    aborted = _ABORTED.findall(stderr)
    failed_match = _FAILED.search(stdout)
    failed = int(failed_match.group(1)) if failed_match else 0
    transactions = int(processed.group(1))
    result: dict[str, Any] = {
        "clients": clients,
        "ops": transactions,
        "seconds": seconds_whole,
        "throughput": round(transactions / seconds_whole, 1),
        "latency_ms": latency_summary(latencies),
        "errors": {"aborted clients": len(aborted), "failed": failed} if aborted or failed else {},
        "error_count": len(aborted) + failed,
        "error_samples": {"aborted": aborted[0]} if aborted else {},
        "statement_latency_ms": _statement_latencies(stdout),
    }
    if rate is not None:
        offered = rate * seconds_whole
        result["offered_rate"] = round(rate, 1)
        result["served_fraction"] = round(min(1.0, transactions / offered), 4) if offered else 0.0
        result["skipped"] = skipped
    return result


def _statement_latencies(stdout: str) -> dict[str, float]:
    """pgbench -r: average latency of each statement of the script, in ms."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) == 3 and re.fullmatch(r"\d+\.\d+", parts[0]) and parts[1].isdigit():
            statement = parts[2].strip()
            if statement.lower().startswith(("select", "begin", "commit")):
                found[statement[:60]] = float(parts[0])
    return found


async def _hot_event(
    db_url: str, admin: Admin, label: str, title: str, starts_at: Any
) -> uuid.UUID:
    [organizer] = await admin.create_users(1, f"{label}-pgbench-organizer")
    async with bench_client(db_url, 1) as client:
        event = await client.as_user(organizer).create_event(
            title, capacity=HOT_CAPACITY, starts_at=starts_at
        )
    return event.id


def users_for(throughput: float, seconds: float, clients: int) -> int:
    """Users one phase may reach: uneven clients can run ahead of the average, so 3x."""
    return int(max(throughput, 300.0) * max(1, round(seconds)) * 3) + clients * 4


def _compare(tessera: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    base = float(baseline["throughput"])
    return {"throughput": round(float(tessera["throughput"]) / base, 3) if base else None}


async def run_pgbench(ctx: Any) -> dict[str, Any]:
    """Closed loop at each client count: the baseline, then ``book_event``, via pgbench."""
    settings = ctx.settings
    prefix = f"{ctx.label}-pgb-"
    rows: list[dict[str, Any]] = []
    events: list[uuid.UUID] = []
    accounted = True
    best = 0.0
    next_user = 0
    await install_baseline(ctx.admin)
    try:
        for count in sorted(set(settings.clients)):
            baseline_event = await create_baseline_event(ctx.admin, HOT_CAPACITY)
            baseline = await pgbench_phase(
                ctx.db_url, function=BASELINE_FUNCTION, event_id=baseline_event, clients=count,
                seconds=settings.seconds, prefix=prefix, first_user=next_user,
                progress=ctx.progress, description=f"pgbench baseline, {count} clients",
            )  # fmt: skip
            booked = await ctx.admin.value(
                f"select booked from {SCHEMA}.events where id = %s", (baseline_event,)
            )
            accounted &= booked == baseline["ops"]
            best = max(best, float(baseline["throughput"]))

            needed = users_for(best, settings.seconds, count)
            await create_pgbench_users(ctx.admin, prefix, next_user, needed)
            event_id = await _hot_event(
                ctx.db_url, ctx.admin, ctx.label, f"pgbench hot event, {count} clients",
                ctx.starts_at(),
            )  # fmt: skip
            events.append(event_id)
            tessera = await pgbench_phase(
                ctx.db_url, function=TESSERA_FUNCTION, event_id=event_id, clients=count,
                seconds=settings.seconds, prefix=prefix, first_user=next_user,
                progress=ctx.progress, description=f"pgbench book_event, {count} clients",
            )  # fmt: skip
            next_user += needed
            confirmed = await ctx.admin.value(
                "select count(*) from public.bookings where event_id = %s and status = 'confirmed'",
                (event_id,),
            )
            accounted &= confirmed == tessera["ops"]
            best = max(best, float(tessera["throughput"]))
            rows.append(
                {
                    "clients": count,
                    "baseline": baseline,
                    "tessera": tessera,
                    "ratio": _compare(tessera, baseline),
                }
            )
    finally:
        await drop_baseline(ctx.admin)
    problems = await ctx.invariants(events)
    errors = sum(row[side]["error_count"] for row in rows for side in ("baseline", "tessera"))
    ctx.memo["baseline_best"] = max(float(row["baseline"]["throughput"]) for row in rows)
    return {
        "driver": "pgbench, PostgREST-style transactions as authenticator",
        "function": TESSERA_FUNCTION,
        "rows": rows,
        "accounted": accounted,
        "invariants": problems,
        "ok": accounted and not problems and errors == 0,
    }


async def run_open_loop(ctx: Any) -> dict[str, Any]:
    """Fixed arrival rate: 1.5x the baseline's best closed-loop rate over 32 connections."""
    settings = ctx.settings
    prefix = f"{ctx.label}-open-"
    clients = settings.open_loop_clients
    await install_baseline(ctx.admin)
    try:
        best = ctx.memo.get("baseline_best")
        measured_here = best is None
        if best is None:  # pgbench did not run first: measure the baseline's best here
            best = 0.0
            for count in sorted(set(settings.clients)):
                baseline_event = await create_baseline_event(ctx.admin, HOT_CAPACITY)
                phase = await pgbench_phase(
                    ctx.db_url, function=BASELINE_FUNCTION, event_id=baseline_event,
                    clients=count, seconds=settings.seconds, prefix=prefix, first_user=0,
                    progress=ctx.progress, description=f"baseline best rate, {count} clients",
                )  # fmt: skip
                best = max(best, float(phase["throughput"]))
        rate = settings.open_loop_factor * best
        needed = users_for(rate, settings.seconds, clients)
        await create_pgbench_users(ctx.admin, prefix, 0, needed)
        event_id = await _hot_event(
            ctx.db_url, ctx.admin, ctx.label, "open-loop hot event", ctx.starts_at()
        )
        tessera = await pgbench_phase(
            ctx.db_url, function=TESSERA_FUNCTION, event_id=event_id, clients=clients,
            seconds=settings.seconds, prefix=prefix, first_user=0, rate=rate,
            progress=ctx.progress, description=f"open loop book_event, {rate:,.0f}/s",
        )  # fmt: skip
        baseline_event = await create_baseline_event(ctx.admin, HOT_CAPACITY)
        baseline = await pgbench_phase(
            ctx.db_url, function=BASELINE_FUNCTION, event_id=baseline_event, clients=clients,
            seconds=settings.seconds, prefix=prefix, first_user=0, rate=rate,
            progress=ctx.progress, description=f"open loop baseline, {rate:,.0f}/s",
        )  # fmt: skip
    finally:
        await drop_baseline(ctx.admin)
    problems = await ctx.invariants([event_id])
    return {
        "driver": "pgbench --rate, latency from each booking's scheduled start",
        "baseline_best_closed_loop": round(best, 1),
        "baseline_best_measured_here": measured_here,
        "factor": settings.open_loop_factor,
        "rate": round(rate, 1),
        "clients": clients,
        "tessera": tessera,
        "baseline": baseline,
        "invariants": problems,
        "ok": not problems and tessera["error_count"] == 0,
    }
