"""Input rules of the second security review: offer lengths, idempotency conflicts and
anonymous sign-ins."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tessera_client import AsyncTessera, IdempotencyConflict

from .support import TestDatabase

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def sqlstate_of(call: Any, *args: Any, **kwargs: Any) -> str:
    """The SQLSTATE ``call(*args, **kwargs)`` fails with (it must fail)."""
    with pytest.raises(psycopg.Error) as refused:
        call(*args, **kwargs)
    return refused.value.sqlstate or "?"


@pytest.mark.parametrize(
    "ttl",
    [
        "1000 months -29970 days",  # compared as 30 days, lasts about 465
        "-1000 months 30000 days 1 hour",  # compared as 1 hour, expired long before it is made
        "1 month",  # 28 to 31 days: no fixed length
        "1 day -23 hours",
        "-1 hour",
        "30 days 1 second",
        "59 seconds",
    ],
)
def test_offer_lengths_without_a_fixed_length_or_out_of_range_are_refused(
    db: TestDatabase, ttl: str
) -> None:
    organizer = db.actor(db.create_user())
    made = sqlstate_of(
        organizer.call, "create_event", title="Offers", capacity=2, starts_at=TOMORROW,
        offer_ttl=ttl, promotion_mode="offer",
    )  # fmt: skip
    assert made == "22023"
    # The table refuses it too, whoever writes it.
    service_write = sqlstate_of(
        db.service().sql,
        """insert into public.events (organizer_id, title, starts_at, capacity, sales_close_at,
               offer_ttl)
           values (%s, 'Direct', now() + interval '2 days', 5, now() + interval '1 day', %s)""",
        (organizer.user_id, ttl),
    )
    assert service_write == "23514"


@pytest.mark.parametrize("ttl", ["1 minute", "2 days", "720 hours", "30 days", "1 day 2 hours"])
def test_fixed_offer_lengths_in_range_are_accepted(db: TestDatabase, ttl: str) -> None:
    organizer = db.actor(db.create_user())
    event = organizer.call(
        "create_event", title="Offers", capacity=2, starts_at=TOMORROW, offer_ttl=ttl
    )
    assert event["offer_ttl"] == db.sql("select %s::interval as v", (ttl,))[0]["v"]


def test_an_idempotency_key_names_one_request(db: TestDatabase) -> None:
    organizer = db.actor(db.create_user())
    first = organizer.call("create_event", title="First", capacity=5, starts_at=TOMORROW)
    second = organizer.call("create_event", title="Second", capacity=5, starts_at=TOMORROW)
    guest = db.actor(db.create_user())
    booked = guest.call("book_event", event_id=first["id"], seats=2, idempotency_key="order-1")
    again = guest.call("book_event", event_id=first["id"], seats=2, idempotency_key="order-1")
    assert again["booking_id"] == booked["booking_id"]
    for event_id, seats in ((second["id"], 2), (first["id"], 3)):
        retry = sqlstate_of(
            guest.call, "book_event", event_id=event_id, seats=seats, idempotency_key="order-1"
        )
        assert retry == "TS010"
    # The conflict changed nothing: still one booking, on the first event.
    rows = db.sql("select event_id, seats from public.bookings where user_id = %s",
                  (guest.user_id,))  # fmt: skip
    assert rows == [{"event_id": first["id"], "seats": 2}]
    # Another user's key is another name: no conflict.
    other = db.actor(db.create_user())
    other.call("book_event", event_id=second["id"], seats=1, idempotency_key="order-1")


async def test_the_sdk_raises_idempotency_conflict(db: TestDatabase) -> None:
    organizer, guest = db.create_user(), db.create_user()
    async with AsyncTessera.connect(db.url("authenticator")) as tessera:
        first = await tessera.as_user(organizer).create_event("A", 5, TOMORROW)
        second = await tessera.as_user(organizer).create_event("B", 5, TOMORROW)
        await tessera.as_user(guest).book(first.id, idempotency_key="checkout-9")
        with pytest.raises(IdempotencyConflict):
            await tessera.as_user(guest).book(second.id, idempotency_key="checkout-9")


def call_with_claims(db: TestDatabase, claims: dict[str, Any], query: str, params: Any) -> Any:
    with (
        psycopg.connect(db.url("authenticator"), row_factory=dict_row) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(
            "select set_config('role', 'authenticated', true),"
            " set_config('request.jwt.claims', %s, true)",
            (json.dumps(claims),),
        )
        cur.execute(query, params)
        row = cur.fetchone()
        conn.commit()
        return row


def test_anonymous_sign_ins_may_book_but_not_organize(db: TestDatabase) -> None:
    guest = db.create_user()
    claims = {"role": "authenticated", "sub": str(guest), "is_anonymous": True}
    create = (
        "select id from public.create_event(title => 'Mine', capacity => 3,"
        " starts_at => now() + interval '1 day')"
    )
    organize = sqlstate_of(call_with_claims, db, claims, create, None)
    assert organize == "42501"
    event = db.actor(db.create_user()).call(
        "create_event", title="Open", capacity=3, starts_at=TOMORROW
    )
    booking = call_with_claims(
        db, claims, "select * from public.book_event(event_id => %s)", (event["id"],)
    )
    assert booking["status"] == "confirmed"
    # A permanent account (is_anonymous false) organizes as before.
    claims["is_anonymous"] = False
    made = call_with_claims(db, claims, create, None)
    assert isinstance(made["id"], uuid.UUID)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sales_open_at", "4713-01-01 00:00:00+00 BC"),
        ("sales_open_at", "0001-01-01 00:00:00+00"),
        ("starts_at", "12000-01-01 00:00:00+00"),
        ("ends_at", "10000-01-01 00:00:00+00"),
    ],
)
def test_event_times_a_client_could_not_read_back_are_refused(
    db: TestDatabase, field: str, value: str
) -> None:
    organizer = db.actor(db.create_user())
    event = organizer.call("create_event", title="Times", capacity=5, starts_at=TOMORROW)
    before = db.sql("select * from public.events where id = %s", (event["id"],))
    # Sent as text and cast by the server, as PostgREST sends JSON values.
    update = sqlstate_of(organizer.call, "update_event", event_id=event["id"], **{field: value})
    assert update == "22023"
    assert db.sql("select * from public.events where id = %s", (event["id"],)) == before
    create = {"title": "Old", "capacity": 5, "starts_at": TOMORROW, field: value}
    assert sqlstate_of(organizer.call, "create_event", **create) == "22023"
    assert db.sql("select count(*) as n from public.events")[0]["n"] == 1
