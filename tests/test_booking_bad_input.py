"""Bad input gets the documented error and changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from .support import Actor, TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)
SQL_FRAGMENT = "'); drop table public.bookings; --"


def snapshot(db: TestDatabase) -> dict[str, Any]:
    """Everything a call could have changed."""
    return {
        "events": db.sql("select * from events order by id"),
        "bookings": db.sql("select * from bookings order by id"),
        "ledger": db.sql("select count(*) as n from ledger"),
        "blocks": db.sql("select * from tessera.seat_blocks order by event_id, block"),
        "queues": db.sql("select * from tessera.event_queues order by event_id"),
    }


@pytest.fixture
def setup(db: TestDatabase) -> tuple[TestDatabase, Actor, Actor, uuid.UUID, uuid.UUID]:
    organizer = db.actor(db.create_user())
    event_id = organizer.call("create_event", title="Gig", capacity=3, starts_at=TOMORROW)["id"]
    attendee = db.actor(db.create_user())
    booking_id = attendee.call("book_event", event_id=event_id)["booking_id"]
    return db, organizer, attendee, event_id, booking_id


def expect(db: TestDatabase, actor: Actor, code: str, fn: str, **kwargs: Any) -> psycopg.Error:
    before = snapshot(db)
    with pytest.raises(psycopg.Error) as excinfo:
        actor.call(fn, **kwargs)
    assert excinfo.value.sqlstate == code, (fn, kwargs, excinfo.value)
    assert snapshot(db) == before, f"{fn} changed state on bad input"
    return excinfo.value


@pytest.mark.parametrize("seats", [0, -1, -2_147_483_648, 11, 2_147_483_647, None])
def test_bad_seat_counts(setup: Any, seats: int | None) -> None:
    db, _, _, event_id, _ = setup
    newcomer = db.actor(db.create_user())
    expect(db, newcomer, "TS004", "book_event", event_id=event_id, seats=seats)


def test_unknown_and_null_ids(setup: Any) -> None:
    db, organizer, attendee, _, _ = setup
    missing = uuid.uuid4()
    expect(db, attendee, "TS001", "book_event", event_id=missing)
    expect(db, attendee, "TS001", "book_event", event_id=None)
    expect(db, attendee, "TS002", "cancel_booking", booking_id=missing)
    expect(db, attendee, "TS002", "cancel_booking", booking_id=None)
    expect(db, attendee, "TS002", "claim_offer", booking_id=missing)
    expect(db, attendee, "TS002", "waitlist_position", booking_id=missing)
    expect(db, attendee, "TS001", "event_availability", event_id=missing)
    expect(db, organizer, "TS001", "set_event_capacity", event_id=missing, capacity=5)
    expect(db, organizer, "TS001", "publish_event", event_id=None)
    expect(db, organizer, "TS001", "cancel_event", event_id=missing)


def test_someone_elses_booking_is_not_found(setup: Any) -> None:
    db, _, _, _, booking_id = setup
    stranger = db.actor(db.create_user())
    expect(db, stranger, "TS002", "cancel_booking", booking_id=booking_id)
    expect(db, stranger, "TS002", "waitlist_position", booking_id=booking_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {"title": ""},
        {"title": "x" * 10_000},
        {"title": None},
        {"description": "d" * 10_001},
        {"venue": "v" * 501},
        {"capacity": 0},
        {"capacity": -5},
        {"capacity": 1_000_001},
        {"capacity": None},
        {"starts_at": None},
        {"ends_at": TOMORROW - timedelta(hours=1)},
        {"max_seats_per_booking": 0},
        {"waitlist_limit": -1},
        {"waitlist_policy": "lottery"},
        {"promotion_mode": SQL_FRAGMENT},
        {"offer_ttl": timedelta(seconds=5)},
        {"sales_open_at": TOMORROW + timedelta(days=2)},
    ],
)
def test_create_event_rejects_malformed_input(db: TestDatabase, overrides: dict[str, Any]) -> None:
    organizer = db.actor(db.create_user())
    args: dict[str, Any] = {"title": "Fine", "capacity": 10, "starts_at": TOMORROW, **overrides}
    expect(db, organizer, "22023", "create_event", **args)


def test_text_is_stored_as_given_and_never_interpreted(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    event = organizer.call(
        "create_event", title=SQL_FRAGMENT, description="<script>x</script> %s {0}",
        capacity=1, starts_at=TOMORROW,
    )  # fmt: skip
    assert event["title"] == SQL_FRAGMENT
    assert db.sql("select count(*) as n from bookings")[0]["n"] == 0  # table still there


def test_bad_capacity_changes_and_feed_arguments(setup: Any) -> None:
    db, organizer, attendee, event_id, _ = setup
    for capacity in (0, -1, 1_000_001, None):
        expect(db, organizer, "22023", "set_event_capacity", event_id=event_id, capacity=capacity)
    for max_rows in (0, -1, 10_001, None):
        expect(db, attendee, "22023", "event_changes", event_id=event_id, max_rows=max_rows)
    expect(db, attendee, "22023", "book_event", event_id=event_id, idempotency_key="")
    expect(db, attendee, "22023", "book_event", event_id=event_id, idempotency_key="k" * 201)


def test_anonymous_callers_cannot_change_anything(setup: Any) -> None:
    db, _, _, event_id, booking_id = setup
    anon_as_authenticated = db.actor(None, "authenticated")  # a token without a user
    expect(db, anon_as_authenticated, "42501", "book_event", event_id=event_id)
    expect(db, anon_as_authenticated, "42501", "create_event", title="x", capacity=1,
           starts_at=TOMORROW)  # fmt: skip
    anon = db.actor(None, "anon")
    for fn, kwargs in (
        ("book_event", {"event_id": event_id}),
        ("cancel_booking", {"booking_id": booking_id}),
        ("expire_offers", {}),
    ):
        expect(db, anon, "42501", fn, **kwargs)
