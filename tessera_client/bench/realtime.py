"""Realtime latency: how long a booking takes to reach every subscriber of its event.

Bookings are made through the SDK at a steady rate, by a client on a thread and an event
loop of their own, while ``subscribers`` streams of one client (so one ledger poller) watch
the event. Latency is the time a subscriber receives the ``booked`` entry minus the moment
the booking call returned (the commit, seen from the client), matched by booking id.

Example:
    >>> result = await run_realtime_latency(db_url, subscribers=20, rate=50, seconds=5)
    >>> result["latency_ms"]["p99"]
    9.8
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tessera_client._client import AsyncTessera, RetryPolicy
from tessera_client._errors import TesseraError
from tessera_client._models import ChangeKind
from tessera_client._streams import ChangeStream
from tessera_client._transports._poller import LedgerPoller
from tessera_client.local import create_local_users

__all__ = ["Progress", "run_realtime_latency"]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)`` while the benchmark runs."""

_DRAIN_SECONDS = 5.0
"""How long to wait after the last booking for the last deliveries."""


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return round(ordered[index], 2)

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 2),
        "min": round(ordered[0], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


class _Producer:
    """Books at a steady rate on its own thread and loop; records when each call returned."""

    def __init__(
        self, db_url: str, event_id: uuid.UUID, users: list[uuid.UUID], rate: float
    ) -> None:
        self.committed: dict[uuid.UUID, float] = {}
        self.call_ms: list[float] = []
        self.errors: dict[str, int] = {}
        self.started = 0.0
        self.finished = 0.0
        self._args = (db_url, event_id, users, rate)
        self._thread = threading.Thread(target=self._main, name="tessera-bench-booker")

    def start(self) -> None:
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join()

    def _main(self) -> None:
        asyncio.run(self._book_all())

    async def _book_all(self) -> None:
        db_url, event_id, users, rate = self._args
        async with AsyncTessera.connect(
            db_url, max_size=20, retry=RetryPolicy(attempts=3)
        ) as client:
            await client.open()

            async def book(user_id: uuid.UUID) -> None:
                began = time.perf_counter()
                try:
                    booking = await client.as_user(user_id).book(event_id)
                except TesseraError as exc:
                    name = type(exc).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    return
                done = time.perf_counter()
                self.committed[booking.id] = done
                self.call_ms.append((done - began) * 1000)

            self.started = time.perf_counter()
            tasks = []
            for index, user_id in enumerate(users):
                delay = self.started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(book(user_id)))
            await asyncio.gather(*tasks)
            self.finished = time.perf_counter()


async def run_realtime_latency(
    db_url: str,
    subscribers: int = 100,
    rate: float = 100.0,
    seconds: float = 10.0,
    progress: Progress | None = None,
    *,
    watcher: Literal["service", "organizer"] = "service",
) -> dict[str, Any]:
    """Commit-to-receipt latency of realtime updates while bookings flow.

    Creates users and one event, opens ``subscribers`` streams on the event from one client
    (one shared ledger poller), books ``rate`` times a second for ``seconds`` through the
    SDK from another client, and matches every ``booked`` entry each stream receives with
    the moment its booking call returned. The event is cancelled at the end; the users stay.

    Args:
        db_url: A ``postgres`` login of a migrated Tessera database (direct connection).
        subscribers: Streams watching the event.
        rate: Bookings per second.
        seconds: How long bookings flow.
        progress: Called as ``progress(phase, done, total)``.
        watcher: Who the streams act as: the service role (entries delivered as the poller
            reads them) or the event's organizer (each poll wakes every stream, which reads
            its entries through ``event_changes``).

    Returns:
        ``latency_ms`` (p50, p95, p99, max, min, mean), the same as ``p50_ms``, ``p95_ms``,
        ``p99_ms``; counts (``bookings``, ``expected``, ``received``, ``lost``,
        ``duplicated``, ``out_of_order``); ``booking_call_ms``, ``achieved_rate``,
        ``errors``, the poller's ``polls`` / ``entries`` / ``reconnects``, and ``ok``
        (nothing lost, repeated or out of order, no booking error).
    """
    report = progress or (lambda phase, done, total: None)
    total = max(1, round(rate * seconds))
    report("setup", 0, 2)
    organizer_id, *users = await asyncio.to_thread(
        create_local_users, db_url, total + 1, prefix="bench-rt"
    )
    async with AsyncTessera.connect(db_url, max_size=10) as client:
        organizer = client.as_user(organizer_id)
        event = await organizer.create_event(
            "tessera bench realtime",
            capacity=total + 10,
            starts_at=datetime.now(UTC) + timedelta(days=1),
            max_seats_per_booking=1,
        )
        viewer: AsyncTessera = client.as_service() if watcher == "service" else organizer
        streams: list[ChangeStream] = [
            await viewer.watch_event(event.id).start() for _ in range(subscribers)
        ]
        report("setup", 1, 2)
        received: list[list[tuple[uuid.UUID, int, float]]] = [[] for _ in streams]

        async def consume(stream: ChangeStream, into: list[tuple[uuid.UUID, int, float]]) -> None:
            async for change in stream:
                if change.kind is ChangeKind.BOOKED and change.booking_id is not None:
                    into.append((change.booking_id, change.seq, time.perf_counter()))

        consumers = [
            asyncio.create_task(consume(stream, into))
            for stream, into in zip(streams, received, strict=True)
        ]
        poller = client.transport.realtime()
        polls_before = poller.polls if isinstance(poller, LedgerPoller) else 0
        report("setup", 2, 2)

        producer = _Producer(db_url, event.id, users, rate)
        producer.start()
        while producer.running():
            report("bookings", len(producer.committed), total)
            await asyncio.sleep(0.2)
        producer.join()
        report("bookings", len(producer.committed), total)

        expected_pairs = len(producer.committed) * subscribers
        deadline = time.perf_counter() + _DRAIN_SECONDS
        while time.perf_counter() < deadline:
            if sum(len(into) for into in received) >= expected_pairs:
                break
            await asyncio.sleep(0.05)
        for stream in streams:
            await stream.aclose()
        for task in consumers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        polls = (poller.polls - polls_before) if isinstance(poller, LedgerPoller) else 0
        entries = poller.entries if isinstance(poller, LedgerPoller) else 0
        reconnects = poller.reconnects if isinstance(poller, LedgerPoller) else 0
        with contextlib.suppress(TesseraError):
            await organizer.cancel_event(event.id)

    latencies: list[float] = []
    delivered = duplicated = out_of_order = 0
    for into in received:
        seen: set[uuid.UUID] = set()
        previous = -1
        for booking_id, seq, at in into:
            if booking_id in seen:
                duplicated += 1
                continue
            seen.add(booking_id)
            if seq <= previous:
                out_of_order += 1
            previous = seq
            committed = producer.committed.get(booking_id)
            if committed is not None:
                delivered += 1
                latencies.append((at - committed) * 1000)
    latency = _percentiles(latencies)
    errors = sum(producer.errors.values())
    lost = expected_pairs - delivered
    elapsed = max(producer.finished - producer.started, 1e-9)
    return {
        "subscribers": subscribers,
        "watcher": watcher,
        "rate": rate,
        "seconds": seconds,
        "bookings": len(producer.committed),
        "achieved_rate": round(len(producer.committed) / elapsed, 1),
        "expected": expected_pairs,
        "received": delivered,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "latency_ms": latency,
        "p50_ms": latency.get("p50"),
        "p95_ms": latency.get("p95"),
        "p99_ms": latency.get("p99"),
        "booking_call_ms": _percentiles(producer.call_ms),
        "errors": dict(producer.errors),
        "polls": polls,
        "polls_per_second": round(polls / elapsed, 1),
        "entries": entries,
        "reconnects": reconnects,
        "ok": lost == 0 and duplicated == 0 and out_of_order == 0 and errors == 0,
    }
