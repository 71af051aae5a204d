"""The sync twin, over both transports."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from tessera_client import BookingStatus, SoldOut, Tessera
from tessera_client.local import create_local_user

from ..standins import SupabaseStandIn
from ..support import TestDatabase
from .conftest import FAST_RETRY, JWT_SECRET, TOMORROW


def loop_threads() -> int:
    return sum(t.name == "tessera-sync-loop" for t in threading.enumerate())


def exercise(tessera: Tessera, db: TestDatabase, *, by_password: bool) -> None:
    people = []
    for _ in range(3):
        password = "pw-sync-test"
        user = create_local_user(db.url(), password=password if by_password else None)
        people.append(
            tessera.sign_in(user.email, password) if by_password else tessera.as_user(user.id)
        )
    alice, bob, carol = people
    event = alice.create_event("Sync", capacity=1, starts_at=TOMORROW, waitlist_enabled=False)
    booking = bob.book(event.id)
    assert booking.status is BookingStatus.CONFIRMED
    with pytest.raises(SoldOut):
        carol.book(event.id)
    assert tessera.availability(event.id).seats_available == 0
    assert [b.id for b in bob.my_bookings()] == [booking.id]
    assert [a.booking_id for a in alice.attendees(event.id)] == [booking.id]
    assert tessera.get_event(event.id).title == "Sync"
    assert bob.cancel(booking.id).status is BookingStatus.CANCELLED
    assert tessera.as_service().expire_offers() == 0


def test_sync_direct(db: TestDatabase) -> None:
    before = loop_threads()
    dsn = db.url("authenticator")
    with Tessera.connect(dsn, jwt_secret=JWT_SECRET, retry=FAST_RETRY) as tessera:
        assert loop_threads() == before + 1
        exercise(tessera, db, by_password=False)
    assert loop_threads() == before


def test_sync_supabase(db: TestDatabase, standin: SupabaseStandIn) -> None:
    before = loop_threads()
    tessera = Tessera.from_supabase(
        standin.url, standin.anon_key, service_key=standin.service_key, retry=FAST_RETRY
    )
    try:
        exercise(tessera, db, by_password=True)
    finally:
        tessera.close()
    assert loop_threads() == before


def test_sync_client_works_inside_a_running_event_loop(db: TestDatabase) -> None:
    organizer = create_local_user(db.url())

    async def inside() -> tuple[uuid.UUID, list[uuid.UUID]]:
        with Tessera.connect(db.url("authenticator"), retry=FAST_RETRY) as tessera:
            event = tessera.as_user(organizer.id).create_event("In a loop", 3, TOMORROW)
            return event.id, [listed.id for listed in tessera.list_events()]

    created, listed = asyncio.run(inside())
    assert created in listed
