"""Abuse limits on every write an API role can call (TS009), the open-events quota (TS011),
and what refused calls cost: never the event's exclusive lock."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from .support import Actor, TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def set_limit(db: TestDatabase, action: str, max_calls: int) -> None:
    db.sql("update tessera.rate_limits set max_calls = %s where action = %s", (max_calls, action))


def sqlstate(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(psycopg.Error) as refused:
        call(*args, **kwargs)
    return refused.value.sqlstate or "?"


def footprint(db: TestDatabase) -> dict[str, Any]:
    return db.sql(
        """select (select jsonb_agg(e order by e.id) from public.events as e) as events,
                  (select jsonb_agg(b order by b.id) from public.bookings as b) as bookings,
                  (select count(*) from public.ledger) as ledger"""
    )[0]


def offer_world(
    db: TestDatabase, holder: Actor | None = None
) -> tuple[Actor, Actor, uuid.UUID, uuid.UUID]:
    """An event in offer mode: ``holder`` holds an offer (``offered``) after ``first``
    cancelled their booking ``seat``, which is dead."""
    organizer = db.actor(db.create_user())
    event = organizer.call(
        "create_event", title="Offers", capacity=1, starts_at=TOMORROW, promotion_mode="offer"
    )["id"]
    first, holder = db.actor(db.create_user()), holder or db.actor(db.create_user())
    seat = first.call("book_event", event_id=event)["booking_id"]
    offered = holder.call("book_event", event_id=event)["booking_id"]  # waitlisted
    first.call("cancel_booking", booking_id=seat)  # holder now holds an offer
    return first, holder, seat, offered


@pytest.mark.parametrize(
    "action",
    ["create_event", "set_event_capacity", "publish_event", "cancel_event", "update_event",
     "claim_offer", "cancel_booking", "book_event"],
)  # fmt: skip
def test_every_write_has_a_per_user_limit(db: TestDatabase, action: str) -> None:
    organizer = db.actor(db.create_user())
    drafts = [
        organizer.call("create_event", title=f"D{i}", capacity=3, starts_at=TOMORROW,
                       publish=False)["id"]
        for i in range(2)
    ]  # fmt: skip
    for draft in drafts:
        organizer.call("publish_event", event_id=draft)
    first, holder, _, offered = offer_world(db)
    _, _, _, offered_too = offer_world(db, holder)
    db.sql("delete from tessera.rate_limit_usage")  # the set-up's calls are not counted
    set_limit(db, action, 1)
    calls: dict[str, tuple[Actor, list[dict[str, Any]]]] = {
        "create_event": (organizer, [{"title": "A", "capacity": 1, "starts_at": TOMORROW}] * 2),
        "set_event_capacity": (organizer, [{"event_id": d, "capacity": 5} for d in drafts]),
        "publish_event": (organizer, [{"event_id": d} for d in drafts]),
        "cancel_event": (organizer, [{"event_id": d} for d in drafts]),
        "update_event": (organizer, [{"event_id": d, "title": "Renamed"} for d in drafts]),
        "claim_offer": (holder, [{"booking_id": offered}, {"booking_id": offered_too}]),
        "cancel_booking": (holder, [{"booking_id": offered}, {"booking_id": offered_too}]),
        "book_event": (first, [{"event_id": d} for d in drafts]),
    }
    actor, (allowed, over) = calls[action][0], calls[action][1]
    actor.call(action, **allowed)
    before = footprint(db)
    assert sqlstate(actor.call, action, **over) == "TS009"
    assert footprint(db) == before
    # Another user has a budget of their own; service_role has no limit.
    if action == "create_event":
        db.actor(db.create_user()).call(action, **over)
        db.service().sql("select 1")


def test_an_organizer_has_a_quota_of_open_events(db: TestDatabase) -> None:
    db.sql("update tessera.quotas set value = 3 where quota = 'open_events_per_organizer'")
    organizer = db.actor(db.create_user())
    made = [
        organizer.call("create_event", title=f"E{i}", capacity=1, starts_at=TOMORROW,
                       publish=i % 2 == 0)["id"]  # drafts count too
        for i in range(3)
    ]  # fmt: skip
    create = {"title": "One too many", "capacity": 1, "starts_at": TOMORROW}
    assert sqlstate(organizer.call, "create_event", **create) == "TS011"
    organizer.call("cancel_event", event_id=made[0])  # a cancelled event is not open
    organizer.call("create_event", **create)
    assert sqlstate(organizer.call, "create_event", **create) == "TS011"
    # Another organizer has a quota of their own.
    db.actor(db.create_user()).call("create_event", **create)
    # The quotas, like the rate limits, are the operators' to read and change.
    for actor in (db.actor(), organizer):
        assert sqlstate(actor.sql, "select * from tessera.quotas") == "42501"
    db.service().sql("update tessera.quotas set value = 50")


@pytest.fixture
def event_locked(db: TestDatabase) -> Iterator[Callable[[uuid.UUID], None]]:
    """Hold events' exclusive locks in another session, as a long cancellation would."""
    conn = psycopg.connect(db.admin_url, autocommit=True)

    def lock(event_id: uuid.UUID) -> None:
        conn.execute("select pg_advisory_lock(tessera.event_lock_key(%s))", (event_id,))

    yield lock
    conn.close()


def bounded(db: TestDatabase, actor: Actor) -> Actor:
    """The actor, on a session that gives up waiting for any lock after 300 ms (55P03)."""
    actor.conn.execute("set lock_timeout = '300ms'")
    actor.conn.commit()
    return actor


def test_refused_calls_never_wait_for_the_event_lock(
    db: TestDatabase, event_locked: Callable[[uuid.UUID], None]
) -> None:
    first, holder, seat, offered = offer_world(db)
    event_id = db.sql("select event_id from public.bookings where id = %s", (seat,))[0]["event_id"]
    event_locked(event_id)
    attacker = bounded(db, first)
    # A claim or a cancellation of a dead booking: refused from a plain read.
    for _ in range(3):
        assert sqlstate(attacker.call, "claim_offer", booking_id=seat) == "TS007"
        assert sqlstate(attacker.call, "cancel_booking", booking_id=seat) == "TS007"
    # A live call does wait for the lock (and gives up here): the lock is really held.
    assert sqlstate(bounded(db, holder).call, "claim_offer", booking_id=offered) == "55P03"


def test_a_spent_budget_is_refused_before_the_event_lock(
    db: TestDatabase, event_locked: Callable[[uuid.UUID], None]
) -> None:
    organizer = db.actor(db.create_user())
    shows = [
        organizer.call("create_event", title=f"S{i}", capacity=5, starts_at=TOMORROW)["id"]
        for i in range(2)
    ]
    set_limit(db, "set_event_capacity", 1)
    organizer.call("set_event_capacity", event_id=shows[0], capacity=6)
    event_locked(shows[1])
    assert sqlstate(bounded(db, organizer).call, "set_event_capacity", event_id=shows[1],
                    capacity=7) == "TS009"  # fmt: skip
    # Cancelled events are refused before the lock too.
    organizer.call("cancel_event", event_id=shows[0])
    event_locked(shows[0])
    assert sqlstate(organizer.call, "publish_event", event_id=shows[0]) == "TS007"
