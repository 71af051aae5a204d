"""How fast do live updates reach the browsers? N SSE clients watch one event while people book.

The app runs in its own process (as ``scripts/web`` runs it). ``--clients`` streams follow
``/api/events/<id>/availability`` over loopback; then ``--bookings`` people book one seat
each through the app's API, one after the other (``--interval`` apart), so every update can
be matched to the booking that caused it by its seat count. For each booking and each
client the benchmark records how long the update took to arrive, counted from when the
booking request was sent and from when its answer came back, and prints p50 / p95 / p99.

Run it with ``scripts/web bench`` (the local stack, started when needed) or with
``DATABASE_URL``, ``SUPABASE_JWT_SECRET`` and ``DEV_ADMIN_URL`` set. Counts and time are
bounded; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

import tessera_client
from tessera_client import create_local_user, local_user_token
from tessera_client._local.stack import LocalStack

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_from_env_or_stack() -> tuple[str, str, str]:
    """(database_url, jwt_secret, admin_url) from the environment, else the local stack."""
    if os.environ.get("DATABASE_URL") and os.environ.get("SUPABASE_JWT_SECRET"):
        return (
            os.environ["DATABASE_URL"],
            os.environ["SUPABASE_JWT_SECRET"],
            os.environ["DEV_ADMIN_URL"],
        )
    stack = LocalStack()
    stack.up()
    return stack.url("authenticator"), stack.jwt_secret(), stack.db_url


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


async def run(args: argparse.Namespace) -> None:
    database_url, secret, admin_url = settings_from_env_or_stack()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SUPABASE_JWT_SECRET": secret,
        "DEV_ADMIN_URL": admin_url,
    }
    app = subprocess.Popen([sys.executable, str(RUN), "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(300):
                try:
                    await http.get("/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            async with tessera_client.connect(database_url) as tessera:
                organizer = tessera.as_user(create_local_user(admin_url).id)
                event = await organizer.create_event(
                    "SSE benchmark",
                    capacity=args.bookings,
                    starts_at=datetime.now(UTC) + timedelta(days=1),
                )
            tokens = [
                local_user_token(secret, create_local_user(admin_url).id)
                for _ in range(args.bookings)
            ]
            stats, ready = Stats(), asyncio.Event()
            path = f"/api/events/{event.id}/availability"
            watchers = [
                asyncio.create_task(watch(port, path, stats, ready, args.clients))
                for _ in range(args.clients)
            ]
            await asyncio.wait_for(ready.wait(), 60)
            print(f"{args.clients} clients connected; {args.bookings} bookings …", flush=True)
            for number, token in enumerate(tokens, start=1):
                left = args.bookings - number
                stats.sent[left] = time.monotonic()
                answer = await http.post(
                    f"/api/events/{event.id}/bookings",
                    headers={"Authorization": f"Bearer {token}"},
                )
                answer.raise_for_status()
                stats.answered[left] = time.monotonic()
                await asyncio.sleep(args.interval)
            deadline = time.monotonic() + 10
            expected = args.clients * args.bookings
            while sum(map(len, stats.arrivals.values())) < expected:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        report(args, stats, process_cpu_seconds(app.pid))
    finally:
        app.terminate()
        app.wait(10)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return " / ".join(f"{ms:.1f}" for ms in (cuts[49], cuts[94], cuts[98], max(values)))


def report(args: argparse.Namespace, stats: Stats, cpu_seconds: float) -> None:
    from_sent = [(t - stats.sent[left]) * 1000 for left, ts in stats.arrivals.items() for t in ts]
    from_answer = [
        (t - stats.answered[left]) * 1000 for left, ts in stats.arrivals.items() for t in ts
    ]
    delivered = len(from_sent)
    expected = args.clients * args.bookings
    print(f"updates delivered: {delivered} of {expected}")
    print("latency ms (p50 / p95 / p99 / max)")
    print(f"  from booking request sent:      {percentiles(from_sent)}")
    print(f"  from booking answer received:   {percentiles(from_answer)}")
    spread = [(max(ts) - min(ts)) * 1000 for ts in stats.arrivals.values()]
    print(f"  first to last client, per update: {percentiles(spread)}")
    print(f"CPU seconds: app {cpu_seconds:.1f}, benchmark clients {time.process_time():.1f}")
    if delivered != expected:
        raise SystemExit("some updates never arrived")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--bookings", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between bookings")
    args = parser.parse_args()
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.bookings <= MAX_BOOKINGS):
        parser.error(f"1..{MAX_CLIENTS} clients and 1..{MAX_BOOKINGS} bookings")
    asyncio.run(asyncio.wait_for(run(args), TIME_LIMIT))


if __name__ == "__main__":
    main()
