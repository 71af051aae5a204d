"""The reference model itself: each rule of the booking issue on a small example.

These need no database. They pin down what the model (the specification the database is
checked against) says, so a change to it is a deliberate change of the rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.suite.model import BookingModel, EventRules, ModelError, Outcome

ORGANIZER = uuid.uuid4()


def event(model: BookingModel, **options: Any) -> uuid.UUID:
    event_id = uuid.uuid4()
    model.add_event(event_id, ORGANIZER, EventRules(**options))
    return event_id


def book(
    model: BookingModel, event_id: uuid.UUID, seats: int = 1, key: str | None = None
) -> tuple[uuid.UUID, Outcome]:
    """A new user books."""
    user = uuid.uuid4()
    return user, model.book(user, event_id, seats, key, uuid.uuid4())


def refused(code: str, call: Callable[..., object], *args: object) -> None:
    with pytest.raises(ModelError) as error:
        call(*args)
    assert error.value.code == code


def test_capacity_then_waitlist_with_positions() -> None:
    model = BookingModel()
    e = event(model, capacity=2)
    assert book(model, e)[1].status == "confirmed"
    assert book(model, e)[1].status == "confirmed"
    assert [book(model, e)[1].waitlist_position for _ in range(3)] == [1, 2, 3]
    assert model.availability(e)["seats_available"] == 0
    assert model.availability(e)["waitlist_count"] == 3


def test_strict_head_blocks_and_first_fit_lets_smaller_parties_go() -> None:
    for policy, promoted in (("strict", []), ("first_fit", ["small"])):
        model = BookingModel()
        e = event(model, capacity=3, max_seats_per_booking=3, waitlist_policy=policy)
        holder, held = book(model, e, 1)
        book(model, e, 2)
        _, big = book(model, e, 3)
        _, small = book(model, e, 1)
        assert big.status == small.status == "waitlisted"
        model.cancel(holder, held.booking_id)  # frees 1 seat: the head needs 3
        names = {big.booking_id: "big", small.booking_id: "small"}
        confirmed = [
            names[b.id]
            for b in model.bookings.values()
            if b.id in names and b.status == "confirmed"
        ]
        assert confirmed == promoted, policy


def test_newcomers_under_first_fit_take_seats_no_waiting_party_fits() -> None:
    for mode, status in (("auto", "confirmed"), ("offer", "offered")):
        model = BookingModel()
        e = event(
            model,
            capacity=3,
            max_seats_per_booking=3,
            waitlist_policy="first_fit",
            promotion_mode=mode,
        )
        book(model, e, 2)
        book(model, e, 3)  # waits: 1 seat free
        assert book(model, e, 1)[1].status == status
        strict = event(model, capacity=3, max_seats_per_booking=3)
        book(model, strict, 2)
        book(model, strict, 3)
        assert book(model, strict, 1)[1].status == "waitlisted"


def test_offers_are_claimed_or_expire_and_pass_on() -> None:
    model = BookingModel()
    e = event(model, capacity=1, promotion_mode="offer")
    holder, held = book(model, e)
    first, offer = book(model, e)
    second, later = book(model, e)
    model.cancel(holder, held.booking_id)
    assert model.bookings[offer.booking_id].status == "offered"
    model.pass_deadline([offer.booking_id])
    refused("TS007", model.claim, first, offer.booking_id)
    assert model.expire_offers() == 1
    assert model.bookings[offer.booking_id].status == "expired"
    assert model.claim(second, later.booking_id).status == "confirmed"
    assert model.expire_offers() == 0


def test_capacity_changes() -> None:
    model = BookingModel()
    e = event(model, capacity=2, max_seats_per_booking=2)
    book(model, e, 2)
    _, waiting = book(model, e, 2)
    refused("TS008", model.set_capacity, ORGANIZER, e, 1)  # below the seats held
    model.set_capacity(ORGANIZER, e, 4)
    assert model.bookings[waiting.booking_id].status == "confirmed"
    refused("22023", model.set_capacity, ORGANIZER, e, 0)
    refused("42501", model.set_capacity, uuid.uuid4(), e, 5)

    other = event(model, capacity=1, max_seats_per_booking=3)
    refused("TS004", book, model, other, 2)  # larger than the whole event
    model.set_capacity(ORGANIZER, other, 3)
    book(model, other, 3)
    book(model, other, 3)  # waits
    refused("TS008", model.set_capacity, ORGANIZER, other, 3 - 1)


def test_one_active_booking_idempotency_and_refusals() -> None:
    model = BookingModel()
    e = event(model, capacity=1, waitlist_limit=1)
    user, first = book(model, e, key="k")
    assert model.book(user, e, 1, "k", uuid.uuid4()) == first
    refused("TS005", model.book, user, e, 1, None, uuid.uuid4())
    book(model, e)  # waits
    refused("TS006", book, model, e)  # waitlist full
    model.cancel(user, first.booking_id)
    # The key still names the first booking, now cancelled; for another event it is refused.
    again = model.book(user, e, 1, "k", uuid.uuid4())
    assert again.booking_id == first.booking_id and again.status == "cancelled"
    refused("TS010", model.book, user, event(model, capacity=5), 1, "k", uuid.uuid4())
    refused("TS010", model.book, user, e, 2, "k", uuid.uuid4())
    refused("TS007", model.cancel, user, first.booking_id)
    refused("TS002", model.cancel, uuid.uuid4(), first.booking_id)
    closed = event(model, capacity=1, waitlist_enabled=False)
    book(model, closed)
    refused("TS006", book, model, closed)


def test_drafts_and_cancelled_events() -> None:
    model = BookingModel()
    draft = event(model, capacity=1, publish=False)
    refused("TS001", book, model, draft)
    refused("TS003", model.book, ORGANIZER, draft, 1, None, uuid.uuid4())
    model.publish(ORGANIZER, draft)
    _, booking = book(model, draft)
    model.cancel_event(ORGANIZER, draft)
    assert model.bookings[booking.booking_id].status == "cancelled"
    assert model.availability(draft)["seats_available"] == 0
    refused("TS003", book, model, draft)
    refused("TS007", model.publish, ORGANIZER, draft)
    # A draft cancelled before publication stays its organizer's: to others it does not exist.
    discarded = event(model, capacity=1, publish=False)
    model.cancel_event(ORGANIZER, discarded)
    refused("TS001", book, model, discarded)
    refused("TS003", model.book, ORGANIZER, discarded, 1, None, uuid.uuid4())
