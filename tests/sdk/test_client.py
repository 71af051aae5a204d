"""Every client method, over both transports, against the real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tessera_client import (
    Availability,
    Booking,
    BookingStatus,
    ChangeKind,
    Event,
    EventNotFound,
    EventStatus,
    PromotionMode,
    WaitlistPolicy,
)

from .conftest import TOMORROW, Backend


async def test_create_event_returns_the_event_with_its_options(backend: Backend) -> None:
    alice = await backend.user()
    event = await alice.create_event(
        "Jazz night",
        capacity=80,
        starts_at=TOMORROW,
        ends_at=TOMORROW + timedelta(hours=3),
        venue="Blue Hall",
        description="Bring a friend",
        max_seats_per_booking=4,
        waitlist_limit=50,
        waitlist_policy=WaitlistPolicy.FIRST_FIT,
        promotion_mode=PromotionMode.OFFER,
        offer_ttl=timedelta(hours=2),
    )
    assert isinstance(event, Event)
    assert event.organizer_id == alice.identity.user_id
    assert (event.title, event.capacity, event.venue) == ("Jazz night", 80, "Blue Hall")
    assert event.status is EventStatus.PUBLISHED
    assert event.waitlist_policy is WaitlistPolicy.FIRST_FIT
    assert event.promotion_mode is PromotionMode.OFFER
    assert event.offer_ttl == timedelta(hours=2)
    assert event.max_seats_per_booking == 4
    assert event.waitlist_limit == 50
    assert event.starts_at == TOMORROW
    assert event.sales_close_at == TOMORROW  # the database's default: until the start


async def test_database_defaults_apply_to_options_left_out(backend: Backend) -> None:
    alice = await backend.user()
    event = await alice.create_event("Defaults", capacity=5, starts_at=TOMORROW)
    assert event.max_seats_per_booking == 10
    assert event.offer_ttl == timedelta(hours=24)
    assert event.waitlist_policy is WaitlistPolicy.STRICT
    assert event.promotion_mode is PromotionMode.AUTO
    assert event.waitlist_enabled is True
    assert event.waitlist_limit is None


async def test_get_and_list_events_follow_row_level_security(backend: Backend) -> None:
    alice = await backend.user()
    published = await alice.create_event("Open", capacity=5, starts_at=TOMORROW)
    draft = await alice.create_event(
        "Secret", capacity=5, starts_at=TOMORROW + timedelta(hours=1), publish=False
    )
    assert await alice.get_event(draft.id) == draft
    assert await alice.get_event(published.id) == published

    anon = backend.client
    seen = await anon.get_event(published.id)
    assert seen.organizer_id is None  # anon may not read who organizes an event
    assert seen.title == "Open"
    with pytest.raises(EventNotFound) as raised:
        await anon.get_event(draft.id)
    assert raised.value.code == "TS001"

    mine = await alice.list_events(organizer_id=alice.identity.user_id)
    assert [e.id for e in mine] == [published.id, draft.id]  # soonest first
    drafts = await alice.list_events(organizer_id=alice.identity.user_id, status="draft")
    assert [e.id for e in drafts] == [draft.id]
    public_ids = {e.id for e in await anon.list_events(starts_after=TOMORROW - timedelta(1))}
    assert published.id in public_ids and draft.id not in public_ids
    later = await alice.list_events(
        organizer_id=alice.identity.user_id, starts_after=TOMORROW + timedelta(minutes=30)
    )
    assert [e.id for e in later] == [draft.id]
    assert len(await alice.list_events(organizer_id=alice.identity.user_id, limit=1)) == 1


async def test_booking_lifecycle_with_waitlist_and_promotion(backend: Backend) -> None:
    alice, bob, carol = [await backend.user() for _ in range(3)]
    event = await alice.create_event("Small room", capacity=2, starts_at=TOMORROW)

    first = await bob.book(event.id, seats=2)
    assert isinstance(first, Booking)
    assert first.status is BookingStatus.CONFIRMED
    assert (first.user_id, first.event_id, first.seats) == (
        bob.identity.user_id,
        event.id,
        2,
    )
    assert first.waitlist_position is None

    waiting = await carol.book(event.id)
    assert waiting.status is BookingStatus.WAITLISTED
    assert waiting.waitlist_position == 1
    assert await carol.waitlist_position(waiting.id) == 1

    availability = await backend.client.availability(event.id)
    assert isinstance(availability, Availability)
    assert (availability.capacity, availability.seats_confirmed) == (2, 2)
    assert (availability.seats_available, availability.waitlist_count) == (0, 1)
    assert availability.status is EventStatus.PUBLISHED
    assert availability.last_seq > 0

    cancelled = await bob.cancel(first.id)
    assert cancelled.status is BookingStatus.CANCELLED
    assert await carol.waitlist_position(waiting.id) is None

    [mine] = await carol.my_bookings()
    assert (mine.id, mine.status) == (waiting.id, BookingStatus.CONFIRMED)
    assert mine.confirmed_at is not None and mine.waitlisted_at is not None
    assert mine.idempotency_key  # book always sends one

    bobs = await bob.my_bookings()
    assert [(b.id, b.status) for b in bobs] == [(first.id, BookingStatus.CANCELLED)]


async def test_changes_follow_the_ledger_from_a_position(backend: Backend) -> None:
    alice, bob, carol = [await backend.user() for _ in range(3)]
    event = await alice.create_event("Feed", capacity=1, starts_at=TOMORROW)
    start = (await backend.client.availability(event.id)).last_seq
    booking = await bob.book(event.id)
    await carol.book(event.id)
    await bob.cancel(booking.id)

    changes = await alice.changes(event.id, after_seq=start)
    assert [c.kind for c in changes] == [
        ChangeKind.BOOKED,
        ChangeKind.WAITLISTED,
        ChangeKind.CANCELLED,
        ChangeKind.PROMOTED,
    ]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert changes[0].booking_id == booking.id  # the organizer sees who
    assert changes[2].detail == {"previous_status": "confirmed"}
    assert [c.seats_available for c in changes] == [0, 0, 1, 0]

    public = await backend.client.changes(event.id, after_seq=start)
    assert [c.kind for c in public] == [c.kind for c in changes]
    assert all(c.booking_id is None and c.user_id is None for c in public)

    first_two = await alice.changes(event.id, after_seq=start, limit=2)
    rest = await alice.changes(event.id, after_seq=first_two[-1].seq)
    assert [c.seq for c in first_two + rest] == [c.seq for c in changes]


async def test_offers_are_claimed_or_expire(backend: Backend) -> None:
    alice, bob, carol, dave = [await backend.user() for _ in range(4)]
    event = await alice.create_event(
        "Offers",
        capacity=1,
        starts_at=TOMORROW,
        promotion_mode=PromotionMode.OFFER,
        offer_ttl=timedelta(minutes=5),
    )
    held = await bob.book(event.id)
    carols = await carol.book(event.id)
    daves = await dave.book(event.id)
    await bob.cancel(held.id)

    [offered] = [b for b in await carol.my_bookings() if b.id == carols.id]
    assert offered.status is BookingStatus.OFFERED
    assert offered.offer_expires_at is not None
    claimed = await carol.claim_offer(carols.id)
    assert claimed.status is BookingStatus.CONFIRMED

    await carol.cancel(carols.id)  # the seat is offered to dave next
    assert await backend.service().expire_offers() == 0
    backend.db.sql(
        "update public.bookings set offer_expires_at = now() - interval '1 second' where id = %s",
        (daves.id,),
    )
    assert await backend.service().expire_offers() == 1
    [expired] = await dave.my_bookings()
    assert expired.status is BookingStatus.EXPIRED


async def test_organizer_sees_attendees_and_waitlist(backend: Backend) -> None:
    alice = await backend.user()
    bob = await backend.user("bob-" + uuid.uuid4().hex[:6] + "@example.test")
    carol = await backend.user("carol-" + uuid.uuid4().hex[:6] + "@example.test")
    dave = await backend.user()
    event = await alice.create_event("Party", capacity=3, starts_at=TOMORROW)
    bobs = await bob.book(event.id, seats=3)
    carols = await carol.book(event.id, seats=2)
    daves = await dave.book(event.id)

    [attendee] = await alice.attendees(event.id)
    assert (attendee.booking_id, attendee.user_id) == (bobs.id, bob.identity.user_id)
    assert attendee.email is not None and attendee.email.startswith("bob-")
    assert (attendee.seats, attendee.status) == (3, BookingStatus.CONFIRMED)
    assert attendee.confirmed_at is not None

    waitlist = await alice.waitlist(event.id)
    assert [(w.booking_id, w.position, w.seats) for w in waitlist] == [
        (carols.id, 1, 2),
        (daves.id, 2, 1),
    ]
    assert waitlist[0].email is not None and waitlist[0].email.startswith("carol-")
    assert waitlist[0].waitlisted_at <= waitlist[1].waitlisted_at

    assert await backend.service().attendees(event.id) == [attendee]


async def test_organizer_actions(backend: Backend) -> None:
    alice, bob, carol = [await backend.user() for _ in range(3)]
    draft = await alice.create_event("Later", capacity=1, starts_at=TOMORROW, publish=False)
    assert draft.status is EventStatus.DRAFT
    published = await alice.publish_event(draft.id)
    assert published.status is EventStatus.PUBLISHED
    assert published.published_at is not None

    await bob.book(published.id)
    carols = await carol.book(published.id)
    grown = await alice.set_capacity(published.id, 2)
    assert grown.capacity == 2
    assert await carol.waitlist_position(carols.id) is None  # promoted into the new seat

    cancelled = await alice.cancel_event(published.id)
    assert cancelled.status is EventStatus.CANCELLED
    assert cancelled.cancelled_at is not None
    assert [b.status for b in await carol.my_bookings()] == [BookingStatus.CANCELLED]
    assert (await backend.client.availability(published.id)).seats_available == 0


async def test_service_role_manages_any_event(backend: Backend) -> None:
    alice = await backend.user()
    event = await alice.create_event("Ops", capacity=3, starts_at=TOMORROW)
    service = backend.service()
    assert (await service.set_capacity(event.id, 4)).capacity == 4
    assert (await service.get_event(event.id)).organizer_id == alice.identity.user_id
    assert event.id in {e.id for e in await service.list_events(status=EventStatus.PUBLISHED)}


async def test_timestamps_are_timezone_aware(backend: Backend) -> None:
    alice = await backend.user()
    event = await alice.create_event("Clock", capacity=1, starts_at=TOMORROW)
    assert event.created_at.tzinfo is not None
    assert abs(event.created_at - datetime.now(UTC)) < timedelta(minutes=5)
