"""public.check_invariants(): silent on a healthy database, loud on each kind of damage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .support import TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def busy_event(db: TestDatabase) -> str:
    organizer = db.actor(db.create_user())
    event = organizer.call("create_event", title="Busy", capacity=2, starts_at=TOMORROW)
    bookings = [db.actor(u).call("book_event", event_id=event["id"]) for u in db.create_users(4)]
    db.service().call("cancel_booking", booking_id=bookings[0]["booking_id"])
    return str(event["id"])


def problems(db: TestDatabase) -> set[str]:
    rows = db.service().call_all("check_invariants")
    return {r["check_name"] for r in rows}


def test_a_healthy_database_has_no_problems(db: TestDatabase) -> None:
    busy_event(db)
    assert problems(db) == set()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("update bookings set status = 'confirmed' where status = 'waitlisted'", "no_oversell"),
        ("update tessera.seat_blocks set taken = 0", "counters_agree"),
        ("update tessera.event_queues set waiting_count = 7", "counters_agree"),
        (
            "drop index bookings_one_active_per_user_idx;"
            " insert into bookings (event_id, user_id, seats, status)"
            " select event_id, user_id, 1, 'cancelled' from bookings limit 1;"
            " update bookings set status = 'waitlisted', queue_ticket = 1"
            " where status = 'cancelled' and queue_ticket is null",
            "one_active_booking",
        ),
        ("update bookings set queue_ticket = 1 where status = 'waitlisted'", "waitlist_positions"),
        (
            "update tessera.seat_blocks set capacity = capacity + 5;"
            " update events set capacity = capacity + 5",
            "waitlist_served",
        ),
        (
            "update bookings set status = 'expired' where status = 'waitlisted'",
            "ledger_complete",
        ),
        ("alter table events disable trigger user; delete from events", "no_orphans"),
    ],
)
def test_each_kind_of_damage_is_reported(db: TestDatabase, damage: str, expected: str) -> None:
    busy_event(db)
    db.sql(damage)
    assert expected in problems(db)


def test_only_operators_may_check(db: TestDatabase) -> None:
    import psycopg

    with pytest.raises(psycopg.Error) as excinfo:
        db.actor(db.create_user()).call_all("check_invariants")
    assert excinfo.value.sqlstate == "42501"
