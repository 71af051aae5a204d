"""Concurrency claims, proven with many real connections acting as users at once."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest

from .support import Actor, TestDatabase

T = TypeVar("T")
TOMORROW = datetime.now(UTC) + timedelta(days=1)


def all_at_once(actors: list[Actor], work: Callable[[int, Actor], T]) -> list[T | Exception]:
    """Run work(i, actor) on one thread per actor, released together by a barrier."""
    barrier = threading.Barrier(len(actors))

    def run(i: int) -> T | Exception:
        barrier.wait()
        try:
            return work(i, actors[i])
        except Exception as exc:  # collected, asserted by the caller
            return exc

    with ThreadPoolExecutor(max_workers=len(actors)) as pool:
        return list(pool.map(run, range(len(actors))))


def check_invariants(db: TestDatabase, event_id: uuid.UUID) -> None:
    """Seats held never exceed capacity; counters agree with rows; positions are 1..n."""
    row = db.sql(
        """select e.capacity,
                  (select coalesce(sum(seats), 0) from bookings b where b.event_id = e.id
                     and b.status in ('confirmed', 'offered')) as held,
                  (select sum(taken) from tessera.seat_blocks s where s.event_id = e.id) as taken,
                  (select sum(capacity) from tessera.seat_blocks s
                     where s.event_id = e.id) as blocks,
                  (select count(*) from bookings b where b.event_id = e.id
                     and b.status = 'waitlisted') as waiting,
                  q.waiting_count
           from events e join tessera.event_queues q on q.event_id = e.id where e.id = %s""",
        (event_id,),
    )[0]
    assert row["held"] <= row["capacity"]
    assert row["held"] == row["taken"]
    assert row["blocks"] == row["capacity"]
    assert row["waiting"] == row["waiting_count"]
    dupes = db.sql(
        """select user_id from bookings where event_id = %s
           and status in ('confirmed', 'waitlisted', 'offered')
           group by user_id having count(*) > 1""",
        (event_id,),
    )
    assert dupes == []
    assert db.service().call_all("check_invariants", only_event=event_id) == []


def test_200_bookers_on_50_seats_then_20_cancellations(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    event_id = organizer.call("create_event", title="Hot", capacity=50, starts_at=TOMORROW)["id"]
    users = db.create_users(200)
    actors = [db.actor(u) for u in users]

    results = all_at_once(actors, lambda _, a: a.call("book_event", event_id=event_id))
    assert not [r for r in results if isinstance(r, Exception)]
    statuses = [r["status"] for r in results if isinstance(r, dict)]
    assert statuses.count("confirmed") == 50
    assert statuses.count("waitlisted") == 150
    waiting = db.sql(
        """select id, row_number() over (order by queue_ticket) as expected,
                  waitlist_position(id) as pos
           from bookings where event_id = %s and status = 'waitlisted' order by queue_ticket""",
        (event_id,),
    )
    assert [w["pos"] for w in waiting] == list(range(1, 151))
    check_invariants(db, event_id)

    confirmed = [r for r in results if isinstance(r, dict) and r["status"] == "confirmed"]
    by_user = {a.user_id: a for a in actors}
    cancellers = [by_user[r["user_id"]] for r in confirmed[:20]]
    bookings = {r["user_id"]: r["booking_id"] for r in confirmed[:20]}
    cancelled = all_at_once(
        cancellers, lambda _, a: a.call("cancel_booking", booking_id=bookings[a.user_id])
    )
    assert not [r for r in cancelled if isinstance(r, Exception)]

    promoted = db.sql(
        "select booking_id from ledger where event_id = %s and kind = 'promoted' order by seq",
        (event_id,),
    )
    head = [w["id"] for w in waiting[:20]]
    assert [p["booking_id"] for p in promoted] == head  # exactly 20, in FIFO order
    remaining = db.sql(
        "select waitlist_position(id) as pos from bookings where event_id = %s"
        " and status = 'waitlisted' order by queue_ticket",
        (event_id,),
    )
    assert [r["pos"] for r in remaining] == list(range(1, 131))
    check_invariants(db, event_id)


def test_concurrent_retries_with_one_idempotency_key_book_once(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    event_id = organizer.call("create_event", title="Idem", capacity=10, starts_at=TOMORROW)["id"]
    user = db.create_user()
    actors = [db.actor(user) for _ in range(16)]
    results = all_at_once(
        actors,
        lambda _, a: a.call("book_event", event_id=event_id, seats=2, idempotency_key="retry-7"),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert len({r["booking_id"] for r in results if isinstance(r, dict)}) == 1
    assert db.sql("select count(*) as n from bookings")[0]["n"] == 1
    check_invariants(db, event_id)


@pytest.mark.parametrize("capacity", [10, 1])
def test_same_user_racing_without_a_key_gets_one_booking(db: TestDatabase, capacity: int) -> None:
    # capacity 1: the racers that lose the only seat decide on the slow path while the
    # winner may still hold its block, the mix that must neither deadlock nor double-book.
    organizer = db.actor(db.create_user())
    event = organizer.call("create_event", title="Dup", capacity=capacity, starts_at=TOMORROW)
    event_id = event["id"]
    user = db.create_user()
    actors = [db.actor(user) for _ in range(12)]
    results = all_at_once(actors, lambda _, a: a.call("book_event", event_id=event_id))
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 11
    assert all(isinstance(e, psycopg.Error) and e.sqlstate == "TS005" for e in errors), errors
    [booking] = [r for r in results if isinstance(r, dict)]
    assert booking["status"] == "confirmed"
    check_invariants(db, event_id)


def test_capacity_changes_under_booking_and_cancelling_load(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    event_id = organizer.call(
        "create_event", title="Elastic", capacity=40, starts_at=TOMORROW, max_seats_per_booking=3
    )["id"]
    actors = [db.actor(u) for u in db.create_users(60)]
    stop = threading.Event()
    capacity_errors: list[str] = []

    def change_capacity() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            try:
                organizer.call("set_event_capacity", event_id=event_id,
                               capacity=rng.randint(20, 80))  # fmt: skip
            except psycopg.Error as exc:
                capacity_errors.append(exc.sqlstate or "")

    def churn(i: int, actor: Actor) -> int:
        rng = random.Random(i)
        done = 0
        for _ in range(6):
            try:
                booking = actor.call("book_event", event_id=event_id, seats=rng.randint(1, 3))
                if rng.random() < 0.5:
                    actor.call("cancel_booking", booking_id=booking["booking_id"])
                done += 1
            except psycopg.Error as exc:
                assert exc.sqlstate in ("TS005", "TS006"), exc
        return done

    changer = threading.Thread(target=change_capacity)
    changer.start()
    try:
        results = all_at_once(actors, churn)
    finally:
        stop.set()
        changer.join()
    failures = [r for r in results if isinstance(r, Exception)]
    assert not failures, failures[:3]
    assert set(capacity_errors) <= {"TS008"}
    check_invariants(db, event_id)
    # Nobody waits while seats their head could use are free.
    availability = db.service().call("event_availability", event_id=event_id)
    if availability["waitlist_count"]:
        head = db.sql(
            "select seats from bookings where event_id = %s and status = 'waitlisted'"
            " order by queue_ticket limit 1",
            (event_id,),
        )[0]
        assert head["seats"] > availability["seats_available"]


@pytest.mark.parametrize("mode", ["offer"])
def test_offers_expire_and_pass_on_under_concurrency(db: TestDatabase, mode: str) -> None:
    organizer = db.actor(db.create_user())
    event_id = organizer.call(
        "create_event", title="Offers", capacity=10, starts_at=TOMORROW, promotion_mode=mode
    )["id"]
    actors = [db.actor(u) for u in db.create_users(30)]
    results = all_at_once(actors, lambda _, a: a.call("book_event", event_id=event_id))
    confirmed: list[dict[str, Any]] = [
        r for r in results if isinstance(r, dict) and r["status"] == "confirmed"
    ]
    by_user = {a.user_id: a for a in actors}
    for r in confirmed[:5]:
        by_user[r["user_id"]].call("cancel_booking", booking_id=r["booking_id"])
    offered = db.sql("select id from bookings where status = 'offered' order by queue_ticket")
    assert len(offered) == 5
    db.sql("update bookings set offer_expires_at = now() - interval '1 second'"
           " where status = 'offered'")  # fmt: skip
    service = [db.service() for _ in range(4)]
    counts = all_at_once(service, lambda _, a: a.call("expire_offers")["expire_offers"])
    assert sum(c for c in counts if isinstance(c, int)) == 5  # each offer expired once
    assert len(db.sql("select id from bookings where status = 'offered'")) == 5
    check_invariants(db, event_id)
