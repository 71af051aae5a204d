"""update_event, naive datetimes refused, and keyset pages of every list method."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tessera_client import (
    AsyncTessera,
    Booking,
    BookingStatus,
    InvalidParameter,
    InvalidTransition,
    PermissionDenied,
)

from .conftest import Backend

SOON = datetime(2099, 1, 1, 18, tzinfo=UTC)


async def _event(organizer: AsyncTessera, capacity: int = 1, **options: object) -> uuid.UUID:
    event = await organizer.create_event("Jazz night", capacity, SOON, **options)  # type: ignore[arg-type]
    return event.id


async def test_update_event_changes_only_what_is_given_and_records_it(backend: Backend) -> None:
    organizer = await backend.user()
    event_id = await _event(organizer, venue="Old hall", offer_ttl=timedelta(hours=2))
    before = await organizer.availability(event_id)
    updated = await organizer.update_event(
        event_id, venue="Blue Hall", starts_at=SOON + timedelta(hours=1), max_seats_per_booking=2
    )
    assert (updated.venue, updated.starts_at, updated.max_seats_per_booking) == (
        "Blue Hall", SOON + timedelta(hours=1), 2,
    )  # fmt: skip
    assert (updated.title, updated.capacity, updated.offer_ttl) == (
        "Jazz night", 1, timedelta(hours=2),
    )  # fmt: skip
    entries = await organizer.changes(event_id, after_seq=before.last_seq)
    assert [c.kind for c in entries] == ["event_updated"]
    changed = entries[0].detail["changes"]
    assert set(changed) == {"venue", "starts_at", "max_seats_per_booking"}
    assert changed["venue"] == {"old": "Old hall", "new": "Blue Hall"}
    # Nothing new: no entry.
    await organizer.update_event(event_id, venue="Blue Hall")
    assert len(await organizer.changes(event_id, after_seq=before.last_seq)) == 1


async def test_update_event_is_checked_like_create_event(backend: Backend) -> None:
    organizer = await backend.user()
    event_id = await _event(organizer)
    bad: list[dict[str, object]] = [
        {"title": "x" * 201},
        {"title": ""},
        {"max_seats_per_booking": 0},
        {"ends_at": SOON - timedelta(hours=1)},
        {"waitlist_limit": -1},
        {"offer_ttl": timedelta(seconds=5)},
        {"sales_open_at": SOON + timedelta(days=1)},
    ]
    for change in bad:
        with pytest.raises(InvalidParameter):
            await organizer.update_event(event_id, **change)  # type: ignore[arg-type]
    assert (await organizer.get_event(event_id)).title == "Jazz night"
    stranger = await backend.user()
    with pytest.raises(PermissionDenied):
        await stranger.update_event(event_id, title="Mine now")
    await backend.service().update_event(event_id, title="Renamed by an operator")
    await organizer.cancel_event(event_id)
    with pytest.raises(InvalidTransition):
        await organizer.update_event(event_id, title="Too late")


async def test_naive_datetimes_are_refused_before_anything_happens(backend: Backend) -> None:
    organizer = await backend.user()
    with pytest.raises(InvalidParameter, match="timezone-aware"):
        await organizer.create_event("Naive", 5, datetime(2099, 1, 1, 18))
    assert [e for e in await organizer.list_events() if e.title == "Naive"] == []
    with pytest.raises(InvalidParameter, match="starts_after"):
        await organizer.list_events(starts_after=datetime(2099, 1, 1))


async def test_every_list_method_pages_with_limit_and_after(backend: Backend) -> None:
    organizer = await backend.user()
    events = [await _event(organizer, capacity=2) for _ in range(5)]
    listed = [e.id for e in await organizer.list_events(organizer_id=organizer.identity.user_id)]
    paged: list[uuid.UUID] = []
    after = None
    while page := await organizer.list_events(
        organizer_id=organizer.identity.user_id, limit=2, after=after
    ):
        paged += [e.id for e in page]
        after = page[-1].id
    assert paged == listed and sorted(paged) == sorted(events)

    people = [await backend.user() for _ in range(5)]
    bookings: list[Booking] = [await p.book(events[0]) for p in people]
    await people[0].cancel(bookings[0].id)  # promotes people[2]
    everything = await organizer.list_bookings(event_id=events[0])
    assert [b.id for b in everything] == [b.id for b in bookings]
    assert {b.status for b in everything} == {"cancelled", "confirmed", "waitlisted"}
    waiting = await organizer.list_bookings(event_id=events[0], status="waitlisted")
    assert [b.id for b in waiting] == [b.id for b in bookings[3:]]
    either = await organizer.list_bookings(
        event_id=events[0], status=[BookingStatus.CANCELLED, "waitlisted"], limit=2
    )
    assert [b.id for b in either] == [bookings[0].id, bookings[3].id]
    second = await organizer.list_bookings(event_id=events[0], limit=3, after=everything[1].id)
    assert [b.id for b in second] == [b.id for b in everything[2:5]]
    assert (await organizer.get_booking(bookings[0].id)).status == "cancelled"

    queue = await organizer.waitlist(events[0])
    assert [w.booking_id for w in await organizer.waitlist(events[0], limit=1)] == [
        queue[0].booking_id
    ]
    assert await organizer.waitlist(events[0], after=queue[0].booking_id) == queue[1:]
    present = await organizer.attendees(events[0])
    assert (
        await organizer.attendees(events[0], after=present[0].booking_id, limit=5) == (present[1:])
    )
    mine = await people[0].my_bookings(limit=1)
    assert [b.id for b in mine] == [bookings[0].id]
    assert await people[0].my_bookings(after=bookings[0].id) == []
