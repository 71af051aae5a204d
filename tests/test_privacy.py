"""Privacy rules of the second security review.

- An event that was never published is its organizer's alone: cancelling a draft (the only
  way to discard one) does not make it public: not in the table, the RPCs, the change feed
  or on its Realtime topic (the role x object matrix checks each of them for ``DC``).
- Idempotency keys may be order ids: organizers read every column of their events'
  bookings but the key; the booking's own user reads it through my_bookings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from .support import TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def test_a_discarded_draft_stays_private(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    draft = organizer.call(
        "create_event", title="Secret plans", description="not for you", capacity=3,
        starts_at=TOMORROW, publish=False,
    )  # fmt: skip
    organizer.call("cancel_event", event_id=draft["id"])
    for stranger in (db.actor(), db.actor(db.create_user())):
        assert (
            stranger.sql("select id, title from public.events where id = %s", (draft["id"],)) == []
        )
        for function in ("event_availability", "event_changes"):
            with pytest.raises(psycopg.Error) as refused:
                stranger.call_all(function, event_id=draft["id"])
            assert refused.value.sqlstate == "TS001", function
    kinds = [entry["kind"] for entry in organizer.call_all("event_changes", event_id=draft["id"])]
    assert kinds == ["event_cancelled"]  # its organizer still sees it all
    # An event cancelled after publication stays public, as before.
    public = organizer.call("create_event", title="Was on", capacity=3, starts_at=TOMORROW)
    organizer.call("cancel_event", event_id=public["id"])
    assert db.actor().sql("select status from public.events where id = %s", (public["id"],)) == [
        {"status": "cancelled"}
    ]


def test_organizers_do_not_read_attendees_idempotency_keys(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    attendee = db.actor(db.create_user())
    event = organizer.call("create_event", title="Gig", capacity=3, starts_at=TOMORROW)
    attendee.call("book_event", event_id=event["id"], idempotency_key="order-4711")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        organizer.sql("select idempotency_key from public.bookings")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        attendee.sql("select * from public.bookings")  # the key is a column of *
    seen = organizer.sql("select user_id, seats from public.bookings where event_id = %s",
                         (event["id"],))  # fmt: skip
    assert seen == [{"user_id": attendee.user_id, "seats": 1}]
    [own] = attendee.call_all("my_bookings")
    assert own["idempotency_key"] == "order-4711"
    assert organizer.call_all("my_bookings") == []
