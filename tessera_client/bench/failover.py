"""Chaos benchmark: a flash sale across an unplanned failover and a planned switchover.

``tessera bench failover`` builds a throwaway HA formation (``tessera dev up --ha``: monitor,
primary, synchronous standby), then:

1. users arrive at a steady rate and book one seat each through the SDK, every booking with
   an idempotency key of its own, retrying transient failures (the SDK's :class:`RetryPolicy`);
2. a few seconds in, the primary's machine is "lost": its pg_autoctl keeper, postmaster and
   backends are SIGKILLed at once; the standby is promoted by the monitor;
3. the lost node is started again and rejoins as the standby;
4. a planned switchover hands the primary role back, still under load.

It then reads the new primary and reports bookings acknowledged, lost (acknowledged but not
in the database), doubled (a user with two bookings), oversold, the time from the kill to the
first acknowledged booking, failed bookings, and ``public.check_invariants``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from tessera_client import AsyncTessera, RetryPolicy, SoldOut, TesseraError
from tessera_client._local.ha import HaFormation
from tessera_client.bench._stats import latency_summary
from tessera_client.local import create_local_users

__all__ = [
    "FailoverSettings",
    "chaos_sale",
    "free_port_block",
    "render_markdown",
    "run_failover_bench",
]

# Retries outlast a failover: at least 20 s of exponential back-off capped at half a second.
FAILOVER_RETRY = RetryPolicy.spanning(20)


@dataclass(frozen=True, slots=True)
class FailoverSettings:
    """Size of the chaos sale.

    Attributes:
        rate: Users arriving per second, each booking one seat.
        seats: Capacity of the event (later bookings join its waitlist: still writes).
        clients: Connections the users share.
        kill_after: Seconds of load before the primary is killed.
        settle: Seconds of load after the switchover, before arrivals stop.
    """

    rate: float = 150.0
    seats: int = 2000
    clients: int = 48
    kill_after: float = 5.0
    settle: float = 3.0

    @classmethod
    def for_smoke(cls) -> FailoverSettings:
        """A CI-sized run: the same chaos, fewer users."""
        return cls(rate=40.0, seats=300, clients=16, kill_after=2.0, settle=1.0)

    def replace(self, **changes: Any) -> FailoverSettings:
        return dataclasses.replace(self, **changes)


@dataclass
class _Attempt:
    user: uuid.UUID
    key: str
    started: float
    finished: float = 0.0
    booking_id: uuid.UUID | None = None
    status: str | None = None
    error: str | None = None


@dataclass
class _Chaos:
    killed: str = ""
    kill_at: float = 0.0
    kill_wall: float = 0.0  # the same instant on the wall clock, to compare with the server's
    writable_at: float = 0.0
    rejoined_at: float = 0.0
    switch_started: float = 0.0
    switch_finished: float = 0.0
    new_primary: str = ""
    final_primary: str = ""
    timeline: list[str] = field(default_factory=list)


async def chaos_sale(
    formation: HaFormation,
    settings: FailoverSettings,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run the sale against a running ``formation`` and return the verdict (see module doc)."""
    db_url = formation.status().db_url
    organizer, *_ = await asyncio.to_thread(create_local_users, db_url, 1, prefix="organizer")
    # Enough users for arrivals until the chaos is over, at most two minutes of them.
    crowd = await asyncio.to_thread(
        create_local_users, db_url, int(settings.rate * 120), prefix="failover"
    )
    async with AsyncTessera.connect(
        db_url, min_size=settings.clients, max_size=settings.clients, retry=FAILOVER_RETRY
    ) as tessera:
        event = await tessera.as_user(organizer).create_event(
            "Failover flash sale",
            capacity=settings.seats,
            starts_at=datetime.now(UTC) + timedelta(days=30),
            max_seats_per_booking=1,
        )
        attempts: list[_Attempt] = []
        gate = asyncio.Semaphore(settings.clients)
        done = asyncio.Event()

        async def book(user: uuid.UUID) -> None:
            attempt = _Attempt(user, f"failover-{user}", time.monotonic())
            attempts.append(attempt)
            async with gate:
                try:
                    booking = await tessera.as_user(user).book(
                        event.id, 1, idempotency_key=attempt.key
                    )
                    attempt.booking_id, attempt.status = booking.id, str(booking.status)
                except SoldOut:
                    attempt.status = "sold_out"
                except TesseraError as exc:
                    attempt.error = exc.code or type(exc).__name__
            attempt.finished = time.monotonic()

        async def arrivals() -> None:
            tasks = []
            start = time.monotonic()
            for index, user in enumerate(crowd):
                if done.is_set():
                    break
                await asyncio.sleep(max(0.0, start + index / settings.rate - time.monotonic()))
                tasks.append(asyncio.create_task(book(user)))
            await asyncio.gather(*tasks)

        # Realtime followers of the event, from its first entry: each must see every ledger
        # entry once and in order, whichever node it reads from. The service role gets rows
        # from the poller; the organizer gets wake-ups and reads event_changes as themself.
        received: dict[str, list[int]] = {"service": [], "organizer": []}
        watchers = {"service": tessera.as_service(), "organizer": tessera.as_user(organizer)}

        async def follow(name: str) -> None:
            async with watchers[name].watch_event(event.id, after_seq=0) as changes:
                async for change in changes:
                    received[name].append(change.seq)

        followers = [asyncio.create_task(follow(name)) for name in received]
        chaos = _Chaos()
        load = asyncio.create_task(arrivals())
        lag = asyncio.create_task(_sample_replica_lag(formation, settings.kill_after - 0.5))
        try:
            await _run_chaos(formation, settings, chaos, progress)
            await asyncio.sleep(settings.settle)
        finally:
            done.set()
            if not lag.done():
                lag.cancel()
            progress("waiting for the last bookings")
            await load
            progress("waiting for the realtime followers to catch up")
            for seqs in received.values():
                await _caught_up(formation, event.id, seqs)
            for follower in followers:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
    result = await asyncio.to_thread(
        _verdict, formation, event.id, settings, attempts, chaos, received
    )
    result["replica_lag_before_kill"] = lag.result() if not lag.cancelled() else None
    return result


async def _sample_replica_lag(formation: HaFormation, seconds: float) -> dict[str, Any]:
    """The standby's replay lag under the sale's load, sampled every 50 ms on the primary."""
    byte_lags: list[float] = []
    time_lags: list[float] = []
    async with await psycopg.AsyncConnection.connect(
        formation.status().admin_url, autocommit=True
    ) as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            cur = await conn.execute(
                "select pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,"
                " extract(epoch from replay_lag)::float8 from pg_stat_replication"
            )
            for byte_lag, time_lag in await cur.fetchall():
                if byte_lag is not None:
                    byte_lags.append(byte_lag)
                time_lags.append(time_lag or 0.0)  # null: nothing left to replay
            await asyncio.sleep(0.05)
    ordered = sorted(byte_lags)
    return {
        "samples": len(time_lags),
        "replay_lag_ms": latency_summary(time_lags),
        "bytes_p50": ordered[len(ordered) // 2] if ordered else None,
        "bytes_max": ordered[-1] if ordered else None,
    }


async def _caught_up(
    formation: HaFormation, event_id: uuid.UUID, received: list[int], timeout: float = 30.0
) -> None:
    """Wait until the follower has received the event's last ledger entry (or time is up)."""
    async with await psycopg.AsyncConnection.connect(
        formation.status().admin_url, autocommit=True
    ) as conn:
        cur = await conn.execute(
            "select max(seq) from public.ledger where event_id = %s", (event_id,)
        )
        row = await cur.fetchone()
    last = row[0] if row else None
    deadline = time.monotonic() + timeout
    while last is not None and (not received or received[-1] < last):
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def _run_chaos(
    formation: HaFormation,
    settings: FailoverSettings,
    chaos: _Chaos,
    progress: Callable[[str], None],
) -> None:
    await asyncio.sleep(settings.kill_after)
    primary = formation.status().primary
    if primary is None:
        raise RuntimeError("no primary to kill")
    progress(f"killing {primary.name} (SIGKILL: keeper, postmaster, backends)")
    chaos.killed = primary.name
    chaos.kill_at, chaos.kill_wall = time.monotonic(), time.time()
    formation.kill_node(primary.name)
    chaos.new_primary = await asyncio.to_thread(formation.wait_until_writable, 60.0)
    chaos.writable_at = time.monotonic()
    chaos.timeline.append(f"{chaos.new_primary} accepts writes")
    progress(f"{chaos.new_primary} promoted; restarting {primary.name}")
    formation.start_node(primary.name)
    await asyncio.to_thread(formation.wait_until_replicated, 120.0)
    chaos.rejoined_at = time.monotonic()
    chaos.timeline.append(f"{primary.name} rejoined as synchronous standby")
    progress("planned switchover")
    chaos.switch_started = time.monotonic()
    chaos.final_primary = await asyncio.to_thread(formation.switchover, 60.0)
    chaos.switch_finished = time.monotonic()
    chaos.timeline.append(f"switched over to {chaos.final_primary}")


def _verdict(
    formation: HaFormation,
    event_id: uuid.UUID,
    settings: FailoverSettings,
    attempts: list[_Attempt],
    chaos: _Chaos,
    received: dict[str, list[int]],
) -> dict[str, Any]:
    acknowledged = {a.booking_id: a for a in attempts if a.booking_id is not None}
    with psycopg.connect(formation.status().admin_url, autocommit=True) as conn:
        ledger = [
            int(row[0])
            for row in conn.execute(
                "select seq from public.ledger where event_id = %s order by seq", (event_id,)
            ).fetchall()
        ]
        rows = conn.execute(
            "select id, user_id, status, seats from public.bookings where event_id = %s",
            (event_id,),
        ).fetchall()
        invariants = [
            f"{row[0]}: {row[1]}"
            for row in conn.execute(
                "select check_name, problem from public.check_invariants(%s)", (event_id,)
            ).fetchall()
        ]
        primary_lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()
        # Server side: the first booking the promoted node committed (bookings made before
        # the kill started before it; the killed node committed nothing after it).
        first_commit = conn.execute(
            "select extract(epoch from min(created_at))::float8 - %s from public.bookings"
            " where event_id = %s and created_at > to_timestamp(%s)",
            (chaos.kill_wall, event_id, chaos.kill_wall),
        ).fetchone()
    stored = {row[0]: row for row in rows}
    per_user = Counter(row[1] for row in rows)
    confirmed_seats = sum(row[3] for row in rows if row[2] == "confirmed")
    lost = [str(b) for b in acknowledged if b not in stored]
    acknowledged_users = {a.user for a in acknowledged.values()}
    unacknowledged = [row for row in rows if row[1] not in acknowledged_users]
    failed = Counter(a.error for a in attempts if a.error)
    # Bookings begun after the kill can only have been made by the promoted node.
    after_kill = [a.finished for a in attempts if a.booking_id and a.started > chaos.kill_at]
    first_after_kill = min(after_kill) - chaos.kill_at if after_kill else None
    before_kill = [a.finished - a.started for a in attempts if a.finished < chaos.kill_at]
    realtime = {name: _followed(ledger, seqs) for name, seqs in received.items()}
    during_switch = [
        a
        for a in attempts
        if a.started <= chaos.switch_finished and a.finished >= chaos.switch_started
    ]
    standby_has_all = _standby_has(formation, [str(b) for b in acknowledged], primary_lsn)
    latencies = [a.finished - a.started for a in attempts if a.booking_id]
    result: dict[str, Any] = {
        "settings": asdict(settings),
        "attempts": len(attempts),
        "acknowledged": len(acknowledged),
        "confirmed": sum(1 for a in acknowledged.values() if a.status == "confirmed"),
        "waitlisted": sum(1 for a in acknowledged.values() if a.status == "waitlisted"),
        "sold_out": sum(1 for a in attempts if a.status == "sold_out"),
        "failed": dict(failed),
        "lost": len(lost),
        "lost_ids": lost[:10],
        "doubled": sum(1 for count in per_user.values() if count > 1),
        "oversold": max(0, confirmed_seats - settings.seats),
        "committed_unacknowledged": len(unacknowledged),
        "invariants": invariants,
        "standby_has_every_acknowledged_booking": standby_has_all,
        "killed": chaos.killed,
        "promoted": chaos.new_primary,
        "kill_to_writable_seconds": round(chaos.writable_at - chaos.kill_at, 2),
        "kill_to_first_commit_seconds": (
            round(first_commit[0], 2) if first_commit and first_commit[0] is not None else None
        ),
        "kill_to_first_booking_seconds": (
            round(first_after_kill, 2) if first_after_kill is not None else None
        ),
        "rejoin_seconds": round(chaos.rejoined_at - chaos.writable_at, 2),
        "switchover_seconds": round(chaos.switch_finished - chaos.switch_started, 2),
        "bookings_during_switchover": len(during_switch),
        "failed_during_switchover": sum(1 for a in during_switch if a.error),
        "final_primary": chaos.final_primary,
        "latency_ms": latency_summary(latencies),
        "latency_before_kill_ms": latency_summary(before_kill),
        "realtime": realtime,
        "timeline": chaos.timeline,
    }
    result["ok"] = (
        not lost
        and result["doubled"] == 0
        and result["oversold"] == 0
        and not invariants
        and not failed
        and standby_has_all
        and all(
            rt["missed"] == rt["phantom"] == rt["duplicates"] == 0 and rt["in_order"]
            for rt in realtime.values()
        )
        and result["kill_to_first_commit_seconds"] is not None
        and result["kill_to_first_commit_seconds"] <= 10.0
    )
    return result


def _followed(ledger: list[int], seqs: list[int]) -> dict[str, Any]:
    """How a follower's received entries compare with the event's ledger."""
    return {
        "entries": len(ledger),
        "received": len(seqs),
        "missed": len(set(ledger) - set(seqs)),
        "phantom": len(set(seqs) - set(ledger)),
        "duplicates": len(seqs) - len(set(seqs)),
        "in_order": seqs == sorted(seqs),
    }


def _standby_has(formation: HaFormation, booking_ids: list[str], primary_lsn: Any) -> bool:
    """Whether the standby, once it has replayed the primary's WAL, has every booking."""
    status = formation.status()
    standby = next((n for n in status.nodes if n.role == "secondary" and n.pid), None)
    if standby is None or primary_lsn is None:
        return False
    with psycopg.connect(formation.node_url(standby.name, "supabase_admin")) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            caught_up = conn.execute(
                "select pg_last_wal_replay_lsn() >= %s::pg_lsn", (primary_lsn[0],)
            ).fetchone()
            conn.rollback()
            if caught_up and caught_up[0]:
                break
            time.sleep(0.1)
        row = conn.execute(
            "select count(*) from public.bookings where id = any(%s::uuid[])", (booking_ids,)
        ).fetchone()
    return bool(row and row[0] == len(booking_ids))


def free_port_block(size: int) -> int:
    """A port such that it and the ``size - 1`` after it are free.

    Chosen below Linux's ephemeral range (32768 and up): a formation starts its nodes seconds
    apart, and a port from that range can meanwhile become the local end of some outgoing
    connection (the keepers' own, say), so the later node would find it taken.
    """
    for _ in range(200):
        base = random.randrange(20000, 32768 - size)
        try:
            for port in range(base, base + size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports found")


async def run_failover_bench(
    settings: FailoverSettings, progress: Callable[[str], None] = lambda _msg: None
) -> dict[str, Any]:
    """Build a throwaway formation in a temporary directory, run :func:`chaos_sale`, remove it."""
    workdir = Path(tempfile.mkdtemp(prefix="tessera-failover-"))
    workdir.chmod(0o755)  # the unprivileged server user must enter it when run as root
    formation = HaFormation(workdir / "ha", port=free_port_block(3))
    try:
        started = time.monotonic()
        progress("starting the HA formation")
        await asyncio.to_thread(formation.up, progress)
        setup_seconds = time.monotonic() - started
        result = await chaos_sale(formation, settings, progress)
        result["formation_up_seconds"] = round(setup_seconds, 1)
        return result
    finally:
        await asyncio.to_thread(formation.destroy)
        shutil.rmtree(workdir, ignore_errors=True)


def render_markdown(result: dict[str, Any], command: str) -> str:
    """A docs/benchmarks.md section for one run."""
    failed = result["failed"] or {}
    before, whole = result["latency_before_kill_ms"], result["latency_ms"]
    lag = (result.get("replica_lag_before_kill") or {}).get("replay_lag_ms") or {
        "p50": float("nan"),
        "p99": float("nan"),
        "max": float("nan"),
    }
    rows = [
        ("bookings attempted", result["attempts"]),
        ("acknowledged (confirmed + waitlisted)", result["acknowledged"]),
        ("lost (acknowledged, absent on the new primary)", result["lost"]),
        ("doubled (a user with two bookings)", result["doubled"]),
        ("oversold seats", result["oversold"]),
        ("failed after retries", sum(failed.values()) if failed else 0),
        ("committed but not acknowledged", result["committed_unacknowledged"]),
        ("check_invariants() problems", len(result["invariants"])),
        (
            "standby holds every acknowledged booking",
            result["standby_has_every_acknowledged_booking"],
        ),
        ("kill -> promoted node accepts writes (s)", result["kill_to_writable_seconds"]),
        (
            "kill -> first booking committed by the promoted node (s, server clock)",
            result["kill_to_first_commit_seconds"],
        ),
        (
            "kill -> first acknowledged booking begun after the kill (s, client queue included)",
            result["kill_to_first_booking_seconds"],
        ),
        ("killed node rejoins as synchronous standby (s)", result["rejoin_seconds"]),
        ("planned switchover (s)", result["switchover_seconds"]),
        (
            "bookings in flight during the switchover / failed",
            f"{result['bookings_during_switchover']} / {result['failed_during_switchover']}",
        ),
        *(
            (
                f"realtime follower ({name}): entries / received / missed / duplicated",
                f"{rt['entries']} / {rt['received']} / {rt['missed']} / {rt['duplicates']}"
                + ("" if rt["in_order"] else " (out of order)"),
            )
            for name, rt in result["realtime"].items()
        ),
        (
            "standby replay lag before the kill p50 / p99 / max (ms)",
            f"{lag['p50']:.1f} / {lag['p99']:.1f} / {lag['max']:.1f}",
        ),
        (
            "booking latency before the kill p50 / p99 (ms)",
            f"{before['p50']:.0f} / {before['p99']:.0f}",
        ),
        (
            "booking latency, whole run, p50 / p99 / max (ms)",
            f"{whole['p50']:.0f} / {whole['p99']:.0f} / {whole['max']:.0f}",
        ),
    ]
    settings = result["settings"]
    lines = [
        f"Command: `{command}`",
        "",
        f"{settings['rate']:g} users/s, one seat each, {settings['clients']} connections, "
        f"capacity {settings['seats']} (then the waitlist); {result['killed']} killed after "
        f"{settings['kill_after']:g} s, {result['promoted']} promoted, then switched back to "
        f"{result['final_primary']}. Verdict: "
        + ("all checks passed." if result["ok"] else "**some checks failed**."),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines) + "\n"
