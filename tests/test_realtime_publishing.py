"""The ledger trigger broadcasts each change on the event and user topics (Supabase path),
both private channels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .support import TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def test_each_change_is_broadcast_without_personal_data_on_the_event_topic(
    db: TestDatabase,
) -> None:
    organizer = db.actor(db.create_user())
    event_id = organizer.call("create_event", title="Live", capacity=1, starts_at=TOMORROW)["id"]
    user = db.create_user()
    booking = db.actor(user).call("book_event", event_id=event_id)
    rows = db.sql(
        "select topic, event, private, payload from realtime.messages order by inserted_at, topic"
    )
    event_topic = [r for r in rows if r["topic"] == f"event:{event_id}"]
    user_topic = [r for r in rows if r["topic"] == f"user:{user}"]
    assert [r["payload"]["kind"] for r in event_topic] == ["event_published", "booked"]
    assert all(r["private"] for r in event_topic)  # private channels: RLS decides
    for r in event_topic:  # realtime.send adds the message id, as on hosted Supabase
        assert set(r["payload"]) - {"id"} == {
            "event_id", "seq", "kind", "seats_available", "waitlist_count", "status"
        }  # fmt: skip
    assert event_topic[-1]["payload"]["seats_available"] == 0
    [mine] = user_topic
    assert mine["private"] is True
    assert mine["payload"]["booking_id"] == str(booking["booking_id"])
    assert mine["payload"]["status"] == "confirmed"
    seqs = db.sql("select seq from ledger order by seq")
    assert [r["payload"]["seq"] for r in event_topic] == [s["seq"] for s in seqs]


def test_broadcasting_can_be_switched_off_for_a_database_without_realtime(
    db: TestDatabase,
) -> None:
    db.sql(f"alter database {db.name} set tessera.realtime_broadcast = 'off'")
    organizer = db.actor(db.create_user())  # a new session picks the setting up
    event_id = organizer.call("create_event", title="Quiet", capacity=1, starts_at=TOMORROW)["id"]
    db.actor(db.create_user()).call("book_event", event_id=event_id)
    assert db.sql("select count(*) as n from realtime.messages")[0]["n"] == 0
    assert db.sql("select count(*) as n from ledger")[0]["n"] == 2
