"""Per-user rate limit on book_event and cancel_booking (TS009), as PostgREST would call them.

The limits of the other writes, and what refused calls cost: tests/test_abuse_limits.py.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from .support import Actor, TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)
RETRY_HINT = re.compile(r"^Retry in (\d+) seconds\.$")


def events(db: TestDatabase, count: int, capacity: int = 10) -> list[uuid.UUID]:
    set_limit(db, "create_event", 1000)  # creating the events is not what these tests limit
    organizer = db.actor(db.create_user())
    return [
        organizer.call("create_event", title=f"Show {i}", capacity=capacity, starts_at=TOMORROW)[
            "id"
        ]
        for i in range(count)
    ]


def counts(db: TestDatabase) -> dict[str, Any]:
    """Everything a refused call must leave alone, the limiter's own usage rows included."""
    return db.sql(
        """select (select count(*) from public.bookings) as bookings,
                  (select count(*) from public.ledger) as ledger,
                  (select jsonb_agg(u order by u.user_id, u.action)
                     from tessera.rate_limit_usage as u) as usage,
                  (select sum(taken) from tessera.seat_blocks) as seats"""
    )[0]


def set_limit(db: TestDatabase, action: str, max_calls: int, window_seconds: int = 60) -> None:
    db.sql(
        "update tessera.rate_limits set max_calls = %s, window_seconds = %s where action = %s",
        (max_calls, window_seconds, action),
    )


def refused(db: TestDatabase, actor: Actor, fn: str, **kwargs: Any) -> psycopg.Error:
    """Call fn, expect TS009 with a retry hint, and check that nothing changed."""
    before = counts(db)
    with pytest.raises(psycopg.Error) as excinfo:
        actor.call(fn, **kwargs)
    error = excinfo.value
    assert error.sqlstate == "TS009", error
    hint = RETRY_HINT.match(error.diag.message_hint or "")
    assert hint and int(hint.group(1)) >= 1, error.diag.message_hint
    assert f"retry_after_seconds={hint.group(1)}" in (error.diag.message_detail or "")
    assert counts(db) == before
    return error


def test_the_31st_booking_in_a_minute_is_refused(db: TestDatabase) -> None:
    shows = events(db, 32)
    user, other = db.actor(db.create_user()), db.actor(db.create_user())
    for event_id in shows[:30]:
        assert user.call("book_event", event_id=event_id)["status"] == "confirmed"
    error = refused(db, user, "book_event", event_id=shows[30])
    assert int(RETRY_HINT.match(error.diag.message_hint or "")[1]) <= 60  # type: ignore[index]
    # Other users have their own budget.
    assert other.call("book_event", event_id=shows[30])["status"] == "confirmed"
    # A service_role caller acting for the same user is not limited.
    operator_for_user = db.actor(user.user_id, role="service_role")
    assert operator_for_user.call("book_event", event_id=shows[31])["status"] == "confirmed"


def test_the_31st_cancellation_in_a_minute_is_refused(db: TestDatabase) -> None:
    set_limit(db, "book_event", 100)  # bookings are not what this test limits
    shows = events(db, 32)
    user = db.actor(db.create_user())
    bookings = [user.call("book_event", event_id=e)["booking_id"] for e in shows]
    for booking_id in bookings[:30]:
        assert user.call("cancel_booking", booking_id=booking_id)["status"] == "cancelled"
    refused(db, user, "cancel_booking", booking_id=bookings[30])
    # The refused cancellation left the booking as it was; service_role may still cancel it.
    assert db.sql("select status from bookings where id = %s", (bookings[30],)) == [
        {"status": "confirmed"}
    ]
    service = db.service()
    for booking_id in bookings[30:]:
        assert service.call("cancel_booking", booking_id=booking_id)["status"] == "cancelled"


def test_service_role_is_never_limited(db: TestDatabase) -> None:
    set_limit(db, "book_event", 100)
    set_limit(db, "cancel_booking", 1)
    shows = events(db, 5)
    users = [db.actor(db.create_user()) for _ in shows]
    bookings = [
        u.call("book_event", event_id=e)["booking_id"] for u, e in zip(users, shows, strict=True)
    ]
    service = db.service()
    for booking_id in bookings:
        service.call("cancel_booking", booking_id=booking_id)
    assert db.sql(
        "select count(*) as n from tessera.rate_limit_usage where action = 'cancel_booking'"
    ) == [{"n": 0}]


def test_the_limit_is_configurable_and_the_window_reopens(db: TestDatabase) -> None:
    set_limit(db, "book_event", 2, window_seconds=1)
    shows = events(db, 4)
    user = db.actor(db.create_user())
    user.call("book_event", event_id=shows[0])
    user.call("book_event", event_id=shows[1])
    error = refused(db, user, "book_event", event_id=shows[2])
    assert error.diag.message_hint == "Retry in 1 seconds."
    assert "limit=2 window_seconds=1" in (error.diag.message_detail or "")
    time.sleep(1.1)
    assert user.call("book_event", event_id=shows[2])["status"] == "confirmed"


def test_a_missing_setting_falls_back_to_30_per_minute(db: TestDatabase) -> None:
    db.sql("delete from tessera.rate_limits where action = 'cancel_booking'")
    set_limit(db, "book_event", 100)
    shows = events(db, 31)
    user = db.actor(db.create_user())
    bookings = [user.call("book_event", event_id=e)["booking_id"] for e in shows]
    for booking_id in bookings[:30]:
        user.call("cancel_booking", booking_id=booking_id)
    refused(db, user, "cancel_booking", booking_id=bookings[30])


def test_idempotent_retries_and_failed_calls_cost_nothing(db: TestDatabase) -> None:
    set_limit(db, "book_event", 2)
    shows = events(db, 3)
    user = db.actor(db.create_user())
    first = user.call("book_event", event_id=shows[0], idempotency_key="order-1")
    for _ in range(5):  # answered from the key: no budget spent
        retry = user.call("book_event", event_id=shows[0], idempotency_key="order-1")
        assert retry["booking_id"] == first["booking_id"]
    for _ in range(3):  # already booked: the call fails and rolls its count back
        with pytest.raises(psycopg.Error) as excinfo:
            user.call("book_event", event_id=shows[0])
        assert excinfo.value.sqlstate == "TS005"
    user.call("book_event", event_id=shows[1])  # the second and last call of the window
    refused(db, user, "book_event", event_id=shows[2])
    # Retries of a booking already made are still answered once the budget is spent.
    again = user.call("book_event", event_id=shows[0], idempotency_key="order-1")
    assert again["booking_id"] == first["booking_id"]


def test_settings_are_validated_and_readable_by_operators_only(db: TestDatabase) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        set_limit(db, "book_event", 0)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.sql("insert into tessera.rate_limits (action, max_calls) values ('drop_table', 5)")
    for actor in (db.actor(), db.actor(db.create_user())):
        with pytest.raises(psycopg.Error) as excinfo:
            actor.sql("select * from tessera.rate_limits")
        assert excinfo.value.sqlstate == "42501"
    service = db.service()
    service.sql("update tessera.rate_limits set max_calls = 45 where action = 'book_event'")
    assert db.sql("select max_calls from tessera.rate_limits where action = 'book_event'") == [
        {"max_calls": 45}
    ]
