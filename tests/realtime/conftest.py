"""Fixtures for the realtime tests: a client per transport, and the Realtime stand-in.

``transport`` runs a test twice: over the direct PostgreSQL transport (the ledger poller)
and over the Supabase transport, whose Realtime socket is the stand-in of
``tests/standins/realtime.py`` (next to the PostgREST stand-in, which redirects
``/realtime/v1`` to it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from tessera_client import AsyncTessera, Change, ChangeStream, Event

from ..sdk.conftest import FAST_RETRY, JWT_SECRET, TOMORROW, standin
from ..standins import RealtimeStandIn, SupabaseStandIn
from ..support import TestDatabase

__all__ = ["standin"]  # the PostgREST stand-in fixture, shared with the SDK tests

WAIT = 20.0
"""Seconds a test waits for changes before it fails."""


@pytest.fixture
def realtime_standin(db: TestDatabase) -> Iterator[RealtimeStandIn]:
    """The Supabase Realtime stand-in on the test database."""
    with RealtimeStandIn(db.url(), JWT_SECRET) as running:
        yield running


@dataclass
class Setup:
    """A root client of one transport, and helpers to make users and events."""

    name: str
    client: AsyncTessera
    db: TestDatabase
    booker: AsyncTessera
    """A direct client, for making many changes quickly whatever the transport under test."""
    realtime: RealtimeStandIn | None = None

    def user(self) -> AsyncTessera:
        return self.client.as_user(self.db.create_user())

    def users(self, count: int) -> list[AsyncTessera]:
        return [self.client.as_user(user_id) for user_id in self.db.create_users(count)]

    def service(self) -> AsyncTessera:
        return self.client.as_service()

    async def event(self, organizer: AsyncTessera, capacity: int = 10, **options: object) -> Event:
        return await organizer.create_event(
            "Live",
            capacity=capacity,
            starts_at=TOMORROW,
            **options,  # type: ignore[arg-type]
        )

    async def everything_after(self, event_id: uuid.UUID, after_seq: int) -> list[Change]:
        """Every entry of the event after a position, as the service role reads it."""
        found: list[Change] = []
        while True:
            page = await self.service().changes(event_id, after_seq=after_seq, limit=1000)
            found += page
            if len(page) < 1000:
                return found
            after_seq = page[-1].seq


@pytest.fixture
async def direct_setup(db: TestDatabase) -> AsyncIterator[Setup]:
    async with AsyncTessera.connect(
        db.url("authenticator"), jwt_secret=JWT_SECRET, retry=FAST_RETRY, max_size=8
    ) as client:
        yield Setup("postgres", client, db, client)


@pytest.fixture
async def supabase_setup(
    db: TestDatabase, standin: SupabaseStandIn, realtime_standin: RealtimeStandIn
) -> AsyncIterator[Setup]:
    standin.realtime_url = realtime_standin.url
    async with (
        AsyncTessera.from_supabase(
            standin.url,
            standin.anon_key,
            service_key=standin.service_key,
            jwt_secret=JWT_SECRET,
            retry=FAST_RETRY,
        ) as client,
        AsyncTessera.connect(db.url("authenticator"), jwt_secret=JWT_SECRET, max_size=8) as booker,
    ):
        yield Setup("supabase", client, db, booker, realtime_standin)


@pytest.fixture(params=["postgres", "supabase"])
def transport(request: pytest.FixtureRequest) -> Setup:
    """The same test over each transport."""
    name = "direct_setup" if request.param == "postgres" else "supabase_setup"
    setup: Setup = request.getfixturevalue(name)
    return setup


async def take(stream: ChangeStream, count: int, timeout: float = WAIT) -> list[Change]:
    """The next ``count`` changes of ``stream`` (fails after ``timeout`` seconds)."""
    taken: list[Change] = []

    async def collect() -> None:
        async for change in stream:
            taken.append(change)
            if len(taken) == count:
                return

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        pytest.fail(f"got {len(taken)} of {count} changes within {timeout}s: {taken[-3:]}")
    return taken


async def take_until_end(stream: ChangeStream, timeout: float = WAIT) -> list[Change]:
    """Every change until the stream ends by itself."""
    taken: list[Change] = []

    async def collect() -> None:
        async for change in stream:
            taken.append(change)

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        pytest.fail(f"the stream did not end within {timeout}s; last: {taken[-3:]}")
    return taken


async def nothing_more(stream: ChangeStream, wait: float = 0.5) -> None:
    """Fail if ``stream`` delivers anything within ``wait`` seconds."""
    try:
        change = await asyncio.wait_for(anext(stream), wait)
    except TimeoutError:
        return
    pytest.fail(f"unexpected change: {change}")
