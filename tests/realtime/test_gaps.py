"""Signs of a missed message: a slow consumer's overflowing buffer, an outage of the
database, a poller that went idle. Each must end in a backfill, never in a gap."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tessera_client import Change, _streams
from tessera_client._transports._notifier import SharedReads
from tessera_client._transports._poller import LedgerPoller

from .conftest import Setup, nothing_more, take


async def test_an_overflowing_buffer_is_replaced_by_a_backfill(
    direct_setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_streams, "QUEUE_SIZE", 2)
    monkeypatch.setattr(_streams, "SINK_CAPACITY", 3)
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer, capacity=50)
    start = (await organizer.availability(event.id)).last_seq
    poller = direct_setup.client.transport.realtime()
    assert isinstance(poller, LedgerPoller)
    async with direct_setup.service().watch_event(event.id) as changes:
        reads_before = poller.reads.calls
        for person in direct_setup.users(20):  # nobody consumes meanwhile
            await person.book(event.id)
        expected = [c.seq for c in await direct_setup.everything_after(event.id, start)]
        while poller.position is None or poller.position < expected[-1]:
            await asyncio.sleep(0.01)
        got = await take(changes, 20)
        assert poller.reads.calls > reads_before  # the dropped rows were read again
        await nothing_more(changes, 0.3)
    assert [c.seq for c in got] == expected


async def test_reads_are_shared_by_subscribers_of_one_identity(direct_setup: Setup) -> None:
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer)
    poller = direct_setup.client.transport.realtime()
    assert isinstance(poller, LedgerPoller)
    streams = [await organizer.watch_event(event.id).start() for _ in range(10)]
    try:
        calls = poller.reads.calls
        booking = await direct_setup.user().book(event.id)
        for stream in streams:
            [change] = await take(stream, 1)
            assert change.booking_id == booking.id
        assert poller.reads.calls - calls < 10
        assert poller.reads.shared > 0
    finally:
        for stream in streams:
            await stream.aclose()


async def test_a_shared_read_is_not_reused_by_a_later_wake_up() -> None:
    reads = SharedReads()
    release = asyncio.Event()
    calls = 0

    async def fetch() -> list[Change]:
        nonlocal calls
        calls += 1
        await release.wait()
        return []

    loop = asyncio.get_running_loop()
    first = asyncio.create_task(reads.read("k", loop.time(), fetch))
    await asyncio.sleep(0)
    joined = asyncio.create_task(reads.read("k", loop.time() - 1, fetch))  # woken earlier
    await asyncio.sleep(0.01)
    later = asyncio.create_task(reads.read("k", loop.time(), fetch))  # woken afterwards
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, joined, later)
    assert (calls, reads.calls, reads.shared) == (2, 2, 1)


async def test_streams_outlive_a_database_outage(direct_setup: Setup) -> None:
    """Every connection of the database is cut (pool and poller); the streams carry on."""
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer, capacity=20)
    start = (await organizer.availability(event.id)).last_seq
    people = direct_setup.users(6)
    async with (
        direct_setup.service().watch_event(event.id) as service_view,
        organizer.watch_event(event.id) as organizer_view,
    ):
        for person in people[:3]:
            await person.book(event.id)
        await take(service_view, 3)
        await take(organizer_view, 3)
        direct_setup.db.sql(
            """select pg_terminate_backend(pid) from pg_stat_activity
               where datname = current_database() and pid <> pg_backend_pid()"""
        )
        for person in people[3:]:
            await person.book(event.id)
        rest = await take(service_view, 3)
        organizers_rest = await take(organizer_view, 3)
    expected = [c.seq for c in await direct_setup.everything_after(event.id, start)]
    assert [c.seq for c in rest] == expected[3:]
    assert [c.seq for c in organizers_rest] == expected[3:]


async def test_an_idle_poller_closes_and_comes_back(direct_setup: Setup) -> None:
    poller = direct_setup.client.transport.realtime()
    assert isinstance(poller, LedgerPoller)
    poller._idle_timeout = 0.2
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer)
    async with organizer.watch_event(event.id) as changes:
        await nothing_more(changes, 0.1)
        assert poller.backend_pid is not None
    await asyncio.sleep(0.6)
    assert poller.backend_pid is None
    async with organizer.watch_event(event.id) as changes:
        booking = await direct_setup.user().book(event.id)
        [change] = await take(changes, 1)
    assert change.booking_id == booking.id


async def test_a_stream_left_by_break_unsubscribes(direct_setup: Setup) -> None:
    poller = direct_setup.client.transport.realtime()
    assert isinstance(poller, LedgerPoller)
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer)
    await direct_setup.user().book(event.id)

    async def first_change() -> int:
        async for change in organizer.watch_event(event.id, after_seq=0):
            return change.seq  # leaves the loop without closing the stream
        raise AssertionError("no change")

    assert await first_change() > 0
    for _ in range(100):
        gc.collect()
        await asyncio.sleep(0.01)
        if not poller._topics:
            break
    assert poller._topics == {}
