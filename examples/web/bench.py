"""How fast do live updates reach the browsers? N SSE clients watch one event while people book.

The app runs in its own process (as ``scripts/web`` runs it). ``--clients`` streams follow
``/api/events/<id>/availability`` over loopback; then ``--bookings`` people book one seat
each through the app's API, one after the other (``--interval`` apart), so every update can
be matched to the booking that caused it by its seat count. For each booking and each
client the benchmark records how long the update took to arrive, counted from when the
booking request was sent and from when its answer came back, and prints p50 / p95 / p99.
A first phase with a single client, in the same run, is the baseline.

Run it with ``scripts/web bench`` (a scratch database on the local stack, started when
needed and dropped afterwards) or with ``DATABASE_URL``, ``SUPABASE_JWT_SECRET`` and
``DEV_ADMIN_URL`` set. Counts and time are bounded; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from tessera_client import AsyncTessera
from tessera_client._local.stack import LocalStack  # a scratch database on the local stack
from tessera_client.local import create_local_user, local_user_token

RUN = Path(__file__).with_name("run.py")
SEATS = re.compile(rb'data-seats="(\d+)"')
MAX_CLIENTS, MAX_BOOKINGS, TIME_LIMIT = 1000, 500, 300.0


@dataclass
class Stats:
    """Arrival times of each seat count at each client, and when each booking ran."""

    arrivals: dict[int, list[float]] = field(default_factory=dict)  # seats left -> times
    sent: dict[int, float] = field(default_factory=dict)  # seats left after it -> send time
    answered: dict[int, float] = field(default_factory=dict)
    connected: int = 0
    app_cpu: float = 0.0

    def delivered(self) -> int:
        return sum(map(len, self.arrivals.values()))

    def from_sent(self) -> list[float]:
        return [(t - self.sent[n]) * 1000 for n, ts in self.arrivals.items() for t in ts]

    def from_answer(self) -> list[float]:
        return [(t - self.answered[n]) * 1000 for n, ts in self.arrivals.items() for t in ts]

    def spread(self) -> list[float]:
        return [(max(ts) - min(ts)) * 1000 for ts in self.arrivals.values()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BENCH_DB = "tessera_web_bench"


@contextlib.contextmanager
def database() -> Iterator[tuple[str, str, str]]:
    """(database_url, jwt_secret, admin_url): from the environment, else a scratch database
    on the local stack (started when needed), dropped afterwards."""
    if os.environ.get("DATABASE_URL") and os.environ.get("SUPABASE_JWT_SECRET"):
        yield (
            os.environ["DATABASE_URL"],
            os.environ["SUPABASE_JWT_SECRET"],
            os.environ["DEV_ADMIN_URL"],
        )
        return
    stack = LocalStack()
    stack.up()
    admin = stack.url("supabase_admin", "template1")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"drop database if exists {BENCH_DB} with (force)")
        conn.execute(f"create database {BENCH_DB}")
    try:
        stack.bootstrap(BENCH_DB)
        stack.migrate(BENCH_DB)
        yield (
            stack.url("authenticator", BENCH_DB),
            stack.jwt_secret(),
            stack.url("postgres", BENCH_DB),
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"drop database if exists {BENCH_DB} with (force)")


async def watch(port: int, path: str, stats: Stats, ready: asyncio.Event, total: int) -> None:
    """One browser: follow the availability stream, noting when each seat count arrives.

    A raw HTTP/1.1 reader rather than an HTTP client library: it costs the benchmark's own
    process little, so the numbers are the app's, not the clients' parsing.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    first, buffer = True, b""
    try:
        while chunk := await reader.read(65536):
            now = time.monotonic()
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                found = SEATS.search(event)
                if not found:
                    continue
                if first:  # the snapshot sent on connect
                    first = False
                    stats.connected += 1
                    if stats.connected == total:
                        ready.set()
                    continue
                stats.arrivals.setdefault(int(found.group(1)), []).append(now)
    finally:
        writer.close()


async def phase(
    http: httpx.AsyncClient,
    clients: int,
    args: argparse.Namespace,
    db: tuple[str, str, str],
    app_pid: int,
) -> Stats:
    """``clients`` streams follow a new event while ``args.bookings`` people book it."""
    database_url, secret, admin_url = db
    async with AsyncTessera.connect(database_url) as tessera:
        organizer = tessera.as_user(create_local_user(admin_url).id)
        event = await organizer.create_event(
            "SSE benchmark", capacity=args.bookings, starts_at=datetime.now(UTC) + timedelta(days=1)
        )
    tokens = [
        local_user_token(secret, create_local_user(admin_url).id) for _ in range(args.bookings)
    ]
    stats, ready = Stats(), asyncio.Event()
    path = f"/api/events/{event.id}/availability"
    port = http.base_url.port or 80
    watchers = [
        asyncio.create_task(watch(port, path, stats, ready, clients)) for _ in range(clients)
    ]
    cpu_before = process_cpu_seconds(app_pid)
    try:
        await asyncio.wait_for(ready.wait(), 60)
        print(f"{clients} client(s) connected; {args.bookings} bookings …", flush=True)
        for number, token in enumerate(tokens, start=1):
            left = args.bookings - number
            stats.sent[left] = time.monotonic()
            answer = await http.post(
                f"/api/events/{event.id}/bookings", headers={"Authorization": f"Bearer {token}"}
            )
            answer.raise_for_status()
            stats.answered[left] = time.monotonic()
            await asyncio.sleep(args.interval)
        deadline = time.monotonic() + 10
        while stats.delivered() < clients * args.bookings and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    stats.app_cpu = process_cpu_seconds(app_pid) - cpu_before
    return stats


async def run(args: argparse.Namespace, db: tuple[str, str, str]) -> None:
    database_url, secret, admin_url = db
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SUPABASE_JWT_SECRET": secret,
        "DEV_ADMIN_URL": admin_url,
    }
    app = subprocess.Popen([sys.executable, str(RUN), "--port", str(port)], env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(300):
                try:
                    await http.get("/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            baseline = await phase(http, 1, args, db, app.pid)
            loaded = await phase(http, args.clients, args, db, app.pid)
        report(args, baseline, loaded)
    finally:
        app.terminate()
        app.wait(10)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(values: list[float]) -> tuple[float, float, float, float]:
    """p50, p95, p99 and max."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98], max(values)


def report(args: argparse.Namespace, baseline: Stats, loaded: Stats) -> None:
    """A Markdown table of both phases, ready for docs/benchmarks.md."""
    print(f"\nlatency in ms, p50 / p95 / p99 / max; {args.bookings} bookings per phase\n")
    print(f"| | 1 client (baseline) | {args.clients} clients |")
    print("|---|---|---|")
    rows = [
        ("booking request sent → update", Stats.from_sent),
        ("booking answer received → update", Stats.from_answer),
        ("first → last client, per update", Stats.spread),
    ]
    for label, measure in rows:
        cells = [
            " / ".join(f"{ms:.1f}" for ms in quantiles(measure(s) or [0.0]))
            for s in (baseline, loaded)
        ]
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    ratio = quantiles(loaded.from_answer())[0] / max(quantiles(baseline.from_answer())[0], 0.1)
    per_update = loaded.app_cpu / max(loaded.delivered(), 1) * 1e6
    print(f"\np50 answer → update, {args.clients} clients / 1 client: {ratio:.1f}x")
    print(f"app CPU, {args.clients} clients: {loaded.app_cpu:.1f} s ({per_update:.0f} µs/update)")
    for stats, clients in ((baseline, 1), (loaded, args.clients)):
        expected = clients * args.bookings
        print(f"{clients} client(s): {stats.delivered()} of {expected} updates delivered")
        if stats.delivered() != expected:
            raise SystemExit("some updates never arrived")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--bookings", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between bookings")
    args = parser.parse_args()
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.bookings <= MAX_BOOKINGS):
        parser.error(f"1..{MAX_CLIENTS} clients and 1..{MAX_BOOKINGS} bookings")
    with database() as db:
        asyncio.run(asyncio.wait_for(run(args, db), TIME_LIMIT))


if __name__ == "__main__":
    main()
