"""The booking rules, called through the RPCs exactly as PostgREST would call them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from .support import Actor, TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def make_event(db: TestDatabase, capacity: int = 2, **options: Any) -> tuple[Actor, uuid.UUID]:
    organizer = db.actor(db.create_user())
    event = organizer.call("create_event", title="Concert", capacity=capacity,
                           starts_at=TOMORROW, **options)  # fmt: skip
    return organizer, event["id"]


def sqlstate(excinfo: pytest.ExceptionInfo[psycopg.Error]) -> str | None:
    return excinfo.value.sqlstate


def state(db: TestDatabase, event_id: uuid.UUID) -> list[tuple[str, str, int | None]]:
    """(user email, status, position) of every booking, in creation order."""
    rows = db.sql(
        """select u.email, b.status,
                  case when b.status = 'waitlisted' then (
                      select count(*) from bookings w where w.event_id = b.event_id
                      and w.status = 'waitlisted' and w.queue_ticket <= b.queue_ticket) end as pos
           from bookings b join auth.users u on u.id = b.user_id
           where b.event_id = %s order by b.created_at, b.queue_ticket nulls first""",
        (event_id,),
    )
    return [(r["email"], r["status"], r["pos"]) for r in rows]


def test_books_until_full_then_waitlists_in_order(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=2)
    people = [db.actor(db.create_user()) for _ in range(4)]
    results = [p.call("book_event", event_id=event_id) for p in people]
    assert [r["status"] for r in results] == ["confirmed", "confirmed", "waitlisted", "waitlisted"]
    assert [r["waitlist_position"] for r in results] == [None, None, 1, 2]
    availability = people[0].call("event_availability", event_id=event_id)
    assert availability["seats_available"] == 0
    assert availability["seats_confirmed"] == 2
    assert availability["waitlist_count"] == 2
    assert availability["last_seq"] > 0


def test_cancellation_promotes_head_of_waitlist(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1)
    a, b, c = (db.actor(db.create_user()) for _ in range(3))
    first = a.call("book_event", event_id=event_id)
    second = b.call("book_event", event_id=event_id)
    third = c.call("book_event", event_id=event_id)
    cancelled = a.call("cancel_booking", booking_id=first["booking_id"])
    assert cancelled["status"] == "cancelled"
    assert b.call("waitlist_position", booking_id=second["booking_id"])["waitlist_position"] is None
    assert db.sql("select status from bookings where id = %s", (second["booking_id"],)) == [
        {"status": "confirmed"}
    ]
    assert c.call("waitlist_position", booking_id=third["booking_id"])["waitlist_position"] == 1


def test_freed_seats_never_go_to_a_newcomer_while_someone_waits(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=2, max_seats_per_booking=4)
    a, b, newcomer = (db.actor(db.create_user()) for _ in range(3))
    booking = a.call("book_event", event_id=event_id, seats=1)
    a2 = db.actor(db.create_user())
    a2.call("book_event", event_id=event_id, seats=1)
    waiting = b.call("book_event", event_id=event_id, seats=2)
    assert waiting["status"] == "waitlisted"
    a.call("cancel_booking", booking_id=booking["booking_id"])  # 1 seat free, head needs 2
    late = newcomer.call("book_event", event_id=event_id, seats=1)
    assert late["status"] == "waitlisted"
    assert late["waitlist_position"] == 2


def test_strict_policy_does_not_let_smaller_parties_overtake(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=3, max_seats_per_booking=3)
    holder = db.actor(db.create_user())
    held = holder.call("book_event", event_id=event_id, seats=3)
    big = db.actor(db.create_user()).call("book_event", event_id=event_id, seats=3)
    small = db.actor(db.create_user()).call("book_event", event_id=event_id, seats=1)
    assert (big["status"], small["status"]) == ("waitlisted", "waitlisted")
    db.service().call("set_event_capacity", event_id=event_id, capacity=4)  # 1 seat free
    statuses = db.sql("select id, status from bookings where event_id = %s", (event_id,))
    by_id = {r["id"]: r["status"] for r in statuses}
    assert by_id[small["booking_id"]] == "waitlisted"
    assert by_id[big["booking_id"]] == "waitlisted"
    holder.call("cancel_booking", booking_id=held["booking_id"])  # 4 free: big then small
    by_id = {r["id"]: r["status"] for r in db.sql("select id, status from bookings")}
    assert by_id[big["booking_id"]] == "confirmed"
    assert by_id[small["booking_id"]] == "confirmed"


def test_first_fit_policy_seats_the_oldest_party_that_fits(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=3, max_seats_per_booking=3, waitlist_policy="first_fit")
    holder = db.actor(db.create_user())
    held = holder.call("book_event", event_id=event_id, seats=3)
    big = db.actor(db.create_user()).call("book_event", event_id=event_id, seats=3)
    small1 = db.actor(db.create_user()).call("book_event", event_id=event_id, seats=2)
    small2 = db.actor(db.create_user()).call("book_event", event_id=event_id, seats=2)
    db.service().call("set_event_capacity", event_id=event_id, capacity=5)  # 2 free
    by_id = {r["id"]: r["status"] for r in db.sql("select id, status from bookings")}
    assert by_id[big["booking_id"]] == "waitlisted"
    assert by_id[small1["booking_id"]] == "confirmed"
    assert by_id[small2["booking_id"]] == "waitlisted"
    holder.call("cancel_booking", booking_id=held["booking_id"])
    by_id = {r["id"]: r["status"] for r in db.sql("select id, status from bookings")}
    assert by_id[big["booking_id"]] == "confirmed"
    assert by_id[small2["booking_id"]] == "waitlisted"


def test_offer_mode_holds_seats_until_claimed(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1, promotion_mode="offer", offer_ttl=timedelta(hours=1))
    a, b = db.actor(db.create_user()), db.actor(db.create_user())
    first = a.call("book_event", event_id=event_id)
    second = b.call("book_event", event_id=event_id)
    a.call("cancel_booking", booking_id=first["booking_id"])
    offered = db.sql("select status, offer_expires_at from bookings where id = %s",
                     (second["booking_id"],))[0]  # fmt: skip
    assert offered["status"] == "offered"
    assert offered["offer_expires_at"] > datetime.now(UTC)
    availability = b.call("event_availability", event_id=event_id)
    assert (availability["seats_offered"], availability["seats_available"]) == (1, 0)
    claimed = b.call("claim_offer", booking_id=second["booking_id"])
    assert claimed["status"] == "confirmed"
    with pytest.raises(psycopg.Error) as excinfo:
        b.call("claim_offer", booking_id=second["booking_id"])
    assert sqlstate(excinfo) == "TS007"


def test_unclaimed_offer_expires_and_passes_on(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1, promotion_mode="offer")
    a, b, c = (db.actor(db.create_user()) for _ in range(3))
    first = a.call("book_event", event_id=event_id)
    second = b.call("book_event", event_id=event_id)
    third = c.call("book_event", event_id=event_id)
    a.call("cancel_booking", booking_id=first["booking_id"])
    db.sql("update bookings set offer_expires_at = now() - interval '1 second' where id = %s",
           (second["booking_id"],))  # fmt: skip
    with pytest.raises(psycopg.Error) as excinfo:
        b.call("claim_offer", booking_id=second["booking_id"])
    assert sqlstate(excinfo) == "TS007"
    assert db.service().call("expire_offers")["expire_offers"] == 1
    assert db.service().call("expire_offers")["expire_offers"] == 0  # idempotent
    by_id = {r["id"]: r["status"] for r in db.sql("select id, status from bookings")}
    assert by_id[second["booking_id"]] == "expired"
    assert by_id[third["booking_id"]] == "offered"


def test_idempotency_key_returns_the_original_booking(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=5)
    user = db.actor(db.create_user())
    first = user.call("book_event", event_id=event_id, seats=2, idempotency_key="order-1")
    again = user.call("book_event", event_id=event_id, seats=2, idempotency_key="order-1")
    assert again == first
    assert db.sql("select count(*) as n from bookings")[0]["n"] == 1
    assert db.sql("select count(*) as n from ledger where kind = 'booked'")[0]["n"] == 1


def test_one_active_booking_per_user(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=5)
    user = db.actor(db.create_user())
    booking = user.call("book_event", event_id=event_id)
    with pytest.raises(psycopg.Error) as excinfo:
        user.call("book_event", event_id=event_id)
    assert sqlstate(excinfo) == "TS005"
    user.call("cancel_booking", booking_id=booking["booking_id"])
    assert user.call("book_event", event_id=event_id)["status"] == "confirmed"


def test_capacity_cannot_drop_below_held_seats(db: TestDatabase) -> None:
    organizer, event_id = make_event(db, capacity=3, max_seats_per_booking=3)
    db.actor(db.create_user()).call("book_event", event_id=event_id, seats=2)
    with pytest.raises(psycopg.Error) as excinfo:
        organizer.call("set_event_capacity", event_id=event_id, capacity=1)
    assert sqlstate(excinfo) == "TS008"
    event = organizer.call("set_event_capacity", event_id=event_id, capacity=2)
    assert event["capacity"] == 2
    assert organizer.call("event_availability", event_id=event_id)["seats_available"] == 0


def test_cancelling_the_event_cancels_every_booking(db: TestDatabase) -> None:
    organizer, event_id = make_event(db, capacity=1)
    a, b = db.actor(db.create_user()), db.actor(db.create_user())
    a.call("book_event", event_id=event_id)
    b.call("book_event", event_id=event_id)
    event = organizer.call("cancel_event", event_id=event_id)
    assert event["status"] == "cancelled"
    assert {r["status"] for r in db.sql("select status from bookings")} == {"cancelled"}
    availability = a.call("event_availability", event_id=event_id)
    assert (availability["seats_available"], availability["waitlist_count"]) == (0, 0)
    with pytest.raises(psycopg.Error) as excinfo:
        db.actor(db.create_user()).call("book_event", event_id=event_id)
    assert sqlstate(excinfo) == "TS003"


def test_drafts_are_invisible_until_published(db: TestDatabase) -> None:
    organizer, event_id = make_event(db, capacity=1, publish=False)
    stranger = db.actor(db.create_user())
    with pytest.raises(psycopg.Error) as excinfo:
        stranger.call("book_event", event_id=event_id)
    assert sqlstate(excinfo) == "TS001"
    with pytest.raises(psycopg.Error) as excinfo:
        stranger.call("publish_event", event_id=event_id)
    assert sqlstate(excinfo) == "TS001"
    organizer.call("publish_event", event_id=event_id)
    assert stranger.call("book_event", event_id=event_id)["status"] == "confirmed"


def test_only_the_organizer_manages_an_event(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1)
    other = db.actor(db.create_user())
    for fn, extra in (("set_event_capacity", {"capacity": 5}), ("cancel_event", {})):
        with pytest.raises(psycopg.Error) as excinfo:
            other.call(fn, event_id=event_id, **extra)
        assert sqlstate(excinfo) == "42501"


def test_sales_window_is_enforced(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1, sales_open_at=TOMORROW - timedelta(hours=1))
    with pytest.raises(psycopg.Error) as excinfo:
        db.actor(db.create_user()).call("book_event", event_id=event_id)
    assert sqlstate(excinfo) == "TS003"
    assert excinfo.value.diag.message_hint and "Sales open" in excinfo.value.diag.message_hint


def test_disabled_or_full_waitlist_means_sold_out(db: TestDatabase) -> None:
    _, no_list = make_event(db, capacity=1, waitlist_enabled=False)
    _, short_list = make_event(db, capacity=1, waitlist_limit=1)
    for event_id, allowed_waiting in ((no_list, 0), (short_list, 1)):
        db.actor(db.create_user()).call("book_event", event_id=event_id)
        for _ in range(allowed_waiting):
            db.actor(db.create_user()).call("book_event", event_id=event_id)
        with pytest.raises(psycopg.Error) as excinfo:
            db.actor(db.create_user()).call("book_event", event_id=event_id)
        assert sqlstate(excinfo) == "TS006"


def test_the_ledger_records_every_change_in_order(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1)
    a, b = db.actor(db.create_user()), db.actor(db.create_user())
    first = a.call("book_event", event_id=event_id)
    b.call("book_event", event_id=event_id)
    a.call("cancel_booking", booking_id=first["booking_id"])
    changes = db.service().call_all("event_changes", event_id=event_id)
    assert [c["kind"] for c in changes] == [
        "event_published",
        "booked",
        "waitlisted",
        "cancelled",
        "promoted",
    ]
    seqs = [c["seq"] for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    after = db.service().call_all("event_changes", event_id=event_id, after_seq=seqs[2])
    assert [c["seq"] for c in after] == seqs[3:]
    with pytest.raises(psycopg.Error) as excinfo:
        db.sql("update ledger set kind = 'booked'")
    assert sqlstate(excinfo) == "42501"


def test_ledger_hides_entries_of_transactions_still_running(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=100)  # several seat blocks: no waiting between us
    writer = db.actor(db.create_user())
    reader = db.service()
    before = reader.call_all("event_changes", event_id=event_id)
    with writer.conn.transaction():
        with writer.conn.cursor() as cur:
            writer._preamble(cur)
            cur.execute("select * from public.book_event(event_id => %s)", (event_id,))
        # Committed elsewhere but with a larger transaction id: must not be shown early.
        other = db.actor(db.create_user())
        other.call("book_event", event_id=event_id)
        during = reader.call_all("event_changes", event_id=event_id)
        assert [c["seq"] for c in during] == [c["seq"] for c in before]
    after = reader.call_all("event_changes", event_id=event_id)
    assert len(after) == len(before) + 2


def _book_as_operator(db: TestDatabase, event_id: uuid.UUID, people: list[uuid.UUID]) -> None:
    """Each person books the event, in turn, as an operator acting for them (no rate limit)."""
    with psycopg.connect(db.admin_url) as conn:
        for user in people:
            with conn.transaction():
                conn.execute(
                    "select set_config('request.jwt.claims', %s, true)",
                    (json.dumps({"sub": str(user), "role": "authenticated"}),),
                )
                conn.execute("select public.book_event(%s)", (event_id,))


def _positions_in_queue_order(db: TestDatabase, event_id: uuid.UUID) -> int:
    """Checks every waiting booking's reported position against the queue order; the count."""
    rows = db.sql(
        """select public.waitlist_position(b.id) as reported,
                  row_number() over (order by b.queue_ticket) as expected
           from bookings as b where b.event_id = %s and b.status = 'waitlisted'
           order by b.queue_ticket""",
        (event_id,),
    )
    assert [r["reported"] for r in rows] == [r["expected"] for r in rows]
    return len(rows)


def test_positions_stay_exact_across_waitlist_buckets(db: TestDatabase) -> None:
    """Positions are sums over ticket buckets: exact across bucket edges, after leavers."""
    _, event_id = make_event(db, capacity=1)
    _book_as_operator(db, event_id, db.create_users(700))  # 699 wait: eleven level-1 buckets
    waiting = db.sql(
        "select id from bookings where event_id = %s and status = 'waitlisted'"
        " order by queue_ticket",
        (event_id,),
    )
    leavers = [waiting[i]["id"] for i in (0, 254, 255, 256, 511, 600)]
    service = db.service()
    for booking_id in [*leavers, db.sql(
        "select id from bookings where event_id = %s and status = 'confirmed'", (event_id,)
    )[0]["id"]]:  # fmt: skip
        service.call("cancel_booking", booking_id=booking_id)
    # the head was promoted into the freed seat
    assert _positions_in_queue_order(db, event_id) == 699 - len(leavers) - 1
    assert db.sql("select * from public.check_invariants(%s)", (event_id,)) == []


@pytest.mark.parametrize("promotion_mode", ["auto", "offer"])
def test_positions_stay_exact_across_every_waitlist_level(
    db: TestDatabase, promotion_mode: str
) -> None:
    """Positions add up buckets of four levels: exact where every level's bucket changes."""
    _, event_id = make_event(db, capacity=1, promotion_mode=promotion_mode)
    bits, levels = 6, 4
    assert db.sql("select tessera.waitlist_bucket_bits() as b, tessera.waitlist_levels() as l")[
        0
    ] == {"b": bits, "l": levels}
    _book_as_operator(db, event_id, db.create_users(100))  # tickets 1..99 wait: two level-1 buckets
    # Jump the ticket counter over the edges of level 3 (2^18), of the top level (2^24) and
    # past 2^30 (where the top level has more than 64 buckets), so the queue holds tickets
    # whose buckets differ at every level.
    for edge in (1 << (3 * bits), 1 << (4 * bits), 5 << (4 * bits), 1 << (5 * bits)):
        db.sql(
            "update tessera.event_queues set tickets_issued = %s where event_id = %s",
            (edge - 40, event_id),
        )
        _book_as_operator(db, event_id, db.create_users(80))
    waiting = db.sql(
        "select id, queue_ticket from bookings where event_id = %s and status = 'waitlisted'"
        " order by queue_ticket",
        (event_id,),
    )
    assert len(waiting) == 99 + 4 * 80
    assert waiting[-1]["queue_ticket"] >= 1 << (5 * bits)
    service = db.service()
    confirmed = db.sql(
        "select id from bookings where event_id = %s and status = 'confirmed'", (event_id,)
    )[0]["id"]
    leavers = [waiting[i]["id"] for i in (0, 63, 64, 120, 139, 140, 300, 378, 379)]
    for booking_id in [*leavers, confirmed]:
        service.call("cancel_booking", booking_id=booking_id)
    # the head was promoted into the freed seat
    assert _positions_in_queue_order(db, event_id) == 99 + 4 * 80 - len(leavers) - 1
    assert db.sql("select * from public.check_invariants(%s)", (event_id,)) == []


def test_doctor_finds_a_wrong_count_at_any_waitlist_level(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=1)
    for user in db.create_users(3):
        db.actor(user).call("book_event", event_id=event_id)
    for level in (1, 4):
        db.sql(
            "update tessera.waitlist_buckets set waiting = waiting + 1"
            " where event_id = %s and level = %s",
            (event_id, level),
        )
        problems = db.sql("select * from public.check_invariants(%s)", (event_id,))
        assert [(p["check_name"], p["problem"]) for p in problems] == [
            ("counters_agree", f"waitlist level {level} bucket 0 counts 3 waiting; rows: 2")
        ]
        db.sql(
            "update tessera.waitlist_buckets set waiting = waiting - 1"
            " where event_id = %s and level = %s",
            (event_id, level),
        )


def test_a_caller_cannot_steer_ledger_numbering(db: TestDatabase) -> None:
    """A setting the caller sets must not place its entries below what readers saw."""
    _, event_id = make_event(db, capacity=5)
    attendee = db.actor(db.create_user())
    with attendee.conn.transaction(), attendee.conn.cursor() as cur:
        attendee._preamble(cur)
        cur.execute("select set_config('tessera.ledger_n', '-1000000000', true)")
        cur.execute("select booking_id from public.book_event(event_id => %s)", (event_id,))
        cur.execute("select pg_current_xact_id()::text::bigint as xid")
        transaction = cur.fetchone()
    entries = db.sql("select seq, kind from ledger where event_id = %s order by seq", (event_id,))
    assert [e["kind"] for e in entries] == ["event_published", "booked"]
    assert transaction is not None
    assert entries[-1]["seq"] >> 24 == transaction["xid"], "seq lies in its transaction's range"


def test_a_caller_cannot_switch_realtime_publishing_off(db: TestDatabase) -> None:
    _, event_id = make_event(db, capacity=5)
    attendee = db.actor(db.create_user())
    with attendee.conn.transaction(), attendee.conn.cursor() as cur:
        attendee._preamble(cur)
        cur.execute("select set_config('tessera.realtime_broadcast', 'off', true)")
        cur.execute("select booking_id from public.book_event(event_id => %s)", (event_id,))
    kinds = db.sql(
        "select payload ->> 'kind' as kind from realtime.messages where topic = %s",
        (f"event:{event_id}",),
    )
    assert sorted(k["kind"] for k in kinds) == ["booked", "event_published"]


def test_ledger_numbering_fails_clearly_long_before_seq_could_overflow(db: TestDatabase) -> None:
    limit = db.sql("select tessera.max_ledger_transaction_id() as n")[0]["n"]
    assert (limit << 24) + (1 << 24) - 1 < 2**63 - 2**55, "a wide margin below overflow"
    assert db.sql("select tessera.ledger_seq_base(%s) as b", (limit,))[0]["b"] == limit << 24
    with pytest.raises(psycopg.Error) as excinfo:
        db.sql("select tessera.ledger_seq_base(%s)", (limit + 1,))
    assert sqlstate(excinfo) == "54000"
