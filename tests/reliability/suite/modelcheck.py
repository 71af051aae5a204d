"""Model-based testing: random call sequences against the database and the model at once.

A hypothesis state machine draws a few events (capacity, party limit, waitlist on or off and
its limit, strict or first-fit order, auto or offer promotion, draft or published) and a few
users, then random calls: bookings (with and without idempotency keys, good and bad party
sizes), cancellations, claims, capacity changes, offer deadlines passing, ``expire_offers``,
publishing and cancelling events. Each call goes to the database (as PostgREST would make
it) and to :class:`~tests.reliability.suite.model.BookingModel`; both must answer alike,
and after every step the status and waitlist position of every booking and the availability
of every event must be equal. On a mismatch hypothesis shrinks the sequence to a short one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.reliability.suite._harness import Database
from tests.reliability.suite._results import PartResult
from tests.reliability.suite.model import (
    ACTIVE,
    BookingModel,
    EventRules,
    ModelBooking,
    ModelError,
    Outcome,
)

__all__ = ["booking_machine", "event_rules", "run_model"]

T = TypeVar("T")
Row = dict[str, Any]

AVAILABILITY_FIELDS = (
    "capacity",
    "seats_confirmed",
    "seats_offered",
    "seats_available",
    "waitlist_count",
    "waitlist_seats",
)
# Mostly sensible party sizes, sometimes ones the event must refuse.
PARTY_SIZES = st.sampled_from([1, 2, 1, 3, 2, 1, 0, 4, -1, 11])
# A few keys per user, so repeats (the same request again) are common.
KEYS = st.sampled_from([None, None, "order-a", "order-b", "order-c"])
CAPACITIES = st.sampled_from([1, 2, 3, 4, 5, 6, 8, 2, 3, 0, -1, 1_000_001])
# How often each kind of step is drawn, among those possible at the time.
WEIGHTS = {
    "book": 8,
    "cancel": 3,
    "claim": 2,
    "set_capacity": 2,
    "pass_offer_deadlines": 1,
    "expire_offers": 1,
    "publish": 1,
    "cancel_event": 1,
}


def event_rules() -> st.SearchStrategy[EventRules]:
    """Small events whose options cover every rule."""
    return st.builds(
        EventRules,
        capacity=st.integers(1, 5),
        max_seats_per_booking=st.integers(1, 3),
        waitlist_enabled=st.sampled_from([True] * 5 + [False]),
        waitlist_limit=st.sampled_from([None, None, None, 0, 1, 2, 3]),
        waitlist_policy=st.sampled_from(["strict", "first_fit"]),
        promotion_mode=st.sampled_from(["auto", "offer"]),
        publish=st.sampled_from([True, True, True, True, False]),
        sales_open=st.sampled_from([True] * 9 + [False]),
    )


def booking_machine(database: Database, result: PartResult) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``database``, counting into ``result``."""
    database.relax_rate_limits()
    users_link = database.caller(application_name="tessera-reliability-model")
    service = database.service(application_name="tessera-reliability-model")
    starts_at = datetime.now(UTC) + timedelta(days=30)

    class BookingMachine(RuleBasedStateMachine):
        """The database and the model, side by side."""

        def __init__(self) -> None:
            super().__init__()
            self.model = BookingModel()
            self.organizer = uuid.uuid4()
            self.users: list[uuid.UUID] = []
            self.cancelled_an_event = False
            self.steps = 0
            # What the ledger has told so far: its last position, and each booking's status.
            self.last_seq = 0
            self.told: dict[uuid.UUID, str] = {}

        # -- plumbing ------------------------------------------------------------------

        def _both(
            self,
            operation: str,
            in_database: Callable[[], T],
            in_model: Callable[[T | None], Any],
        ) -> tuple[T | None, Any]:
            """Make the call on both sides; their errors (SQLSTATEs) must agree."""
            found: T | None = None
            db_error = model_error = None
            try:
                found = in_database()
            except psycopg.Error as exc:
                db_error = exc.sqlstate or f"no SQLSTATE ({type(exc).__name__}: {exc})"
            try:
                expected = in_model(found)
            except ModelError as exc:
                expected, model_error = None, exc.code
            outcome = db_error or (found.get("status") if isinstance(found, dict) else None) or "ok"
            result.record(operation, str(outcome))
            if db_error != model_error:
                raise AssertionError(
                    f"{operation}: the database answered {db_error or found!r}, "
                    f"the model {model_error or expected!r}"
                )
            return found, expected

        def _as(self, user: uuid.UUID) -> Any:
            return users_link.as_user(user)

        def _check_booking_row(self, operation: str, row: Row | None, expected: Any) -> None:
            if row is None or not isinstance(expected, Outcome):
                return
            got = Outcome(row["booking_id"], row["status"], row["seats"], row["waitlist_position"])
            if got != expected:
                raise AssertionError(f"{operation} returned {got}, the model expects {expected}")

        def _bookings(self) -> list[ModelBooking]:
            return list(self.model.bookings.values())

        def _someone(self, owner: uuid.UUID) -> st.SearchStrategy[uuid.UUID]:
            """Mostly the owner, sometimes another user."""
            return st.sampled_from([owner] * 8 + self.users)

        # -- set-up --------------------------------------------------------------------

        @initialize(
            rules=st.lists(event_rules(), min_size=1, max_size=3),
            attendees=st.integers(3, 6),
        )
        def open_events(self, rules: list[EventRules], attendees: int) -> None:
            result.outcomes["call sequences run"] += 1
            ids = database.create_users(attendees + 1)
            self.organizer = ids[0]
            self.users = ids  # the organizer may book too
            organizer = self._as(self.organizer)
            for event in rules:
                row = organizer.call(
                    "create_event",
                    title="Model check",
                    capacity=event.capacity,
                    starts_at=starts_at,
                    max_seats_per_booking=event.max_seats_per_booking,
                    waitlist_enabled=event.waitlist_enabled,
                    waitlist_limit=event.waitlist_limit,
                    waitlist_policy=event.waitlist_policy,
                    promotion_mode=event.promotion_mode,
                    publish=event.publish,
                    sales_open_at=None if event.sales_open else starts_at - timedelta(days=1),
                )
                self.model.add_event(row["id"], self.organizer, event)
                result.record("create_event", str(row["status"]))

        # -- steps ---------------------------------------------------------------------

        def _possible(self) -> list[str]:
            """The kinds of step that make sense now, each repeated by its weight."""
            possible = {
                "book": True,
                "cancel": bool(self.model.bookings),
                "claim": bool(self.model.bookings),
                "set_capacity": True,
                "pass_offer_deadlines": bool(self.model.offers(overdue=False)),
                "expire_offers": True,
                "publish": any(e.status == "draft" for e in self.model.events.values()),
                # Late in a sequence only: a cancelled event has little left to test.
                "cancel_event": not self.cancelled_an_event and self.steps >= 20,
            }
            return [kind for kind, ok in possible.items() if ok for _ in range(WEIGHTS[kind])]

        @rule(data=st.data())
        def step(self, data: st.DataObject) -> None:
            """One call, its kind drawn by weight (bookings most often)."""
            kind = data.draw(st.sampled_from(self._possible()), label="step")
            self.steps += 1
            getattr(self, kind)(data)

        def book(self, data: st.DataObject) -> None:
            event_id = data.draw(st.sampled_from(list(self.model.events)), label="event")
            event = self.model.events[event_id]
            # Mostly requests that make sense (a user without a booking, a party that may
            # fit); the rest are repeats and refusals.
            busy = {b.user for b in event.bookings if b.status in ACTIVE}
            free_users = [u for u in self.users if u not in busy]
            sensible = data.draw(st.sampled_from([True] * 4 + [False]), label="sensible")
            if sensible and free_users:
                user = data.draw(st.sampled_from(free_users), label="user")
                seats = data.draw(st.integers(1, max(1, event.largest_party())), label="seats")
            else:
                user = data.draw(st.sampled_from(self.users), label="user")
                seats = data.draw(PARTY_SIZES, label="seats")
            key = data.draw(KEYS, label="idempotency_key")
            row, expected = self._both(
                "book_event",
                lambda: self._as(user).call(
                    "book_event", event_id=event_id, seats=seats, idempotency_key=key
                ),
                lambda row: self.model.book(
                    user, event_id, seats, key, row["booking_id"] if row else uuid.uuid4()
                ),
            )
            self._check_booking_row("book_event", row, expected)

        def cancel(self, data: st.DataObject) -> None:
            active = [b for b in self._bookings() if b.status in ACTIVE]
            sensible = data.draw(st.sampled_from([True] * 4 + [False]), label="sensible")
            pool = active if sensible and active else self._bookings()
            booking = data.draw(st.sampled_from(pool), label="booking")
            user = data.draw(self._someone(booking.user), label="caller")
            row, expected = self._both(
                "cancel_booking",
                lambda: self._as(user).call("cancel_booking", booking_id=booking.id),
                lambda _: self.model.cancel(user, booking.id),
            )
            self._check_booking_row("cancel_booking", row, expected)

        def claim(self, data: st.DataObject) -> None:
            offers = self.model.offers()
            booking = data.draw(st.sampled_from(offers or self._bookings()), label="booking")
            user = data.draw(self._someone(booking.user), label="caller")
            row, expected = self._both(
                "claim_offer",
                lambda: self._as(user).call("claim_offer", booking_id=booking.id),
                lambda _: self.model.claim(user, booking.id),
            )
            self._check_booking_row("claim_offer", row, expected)

        def set_capacity(self, data: st.DataObject) -> None:
            event_id = data.draw(st.sampled_from(list(self.model.events)), label="event")
            user = data.draw(self._someone(self.organizer), label="caller")
            capacity = data.draw(CAPACITIES, label="capacity")
            self._both(
                "set_event_capacity",
                lambda: self._as(user).call(
                    "set_event_capacity", event_id=event_id, capacity=capacity
                ),
                lambda _: self.model.set_capacity(user, event_id, capacity),
            )

        def pass_offer_deadlines(self, data: st.DataObject) -> None:
            """Time passes for some open offers (their deadline is moved into the past)."""
            offers = [b.id for b in self.model.offers(overdue=False)]
            chosen = data.draw(
                st.lists(st.sampled_from(offers), min_size=1, unique=True), label="offers"
            )
            database.sql(
                "update public.bookings set offer_expires_at = now() - interval '1 second'"
                " where id = any(%s) and status = 'offered'",
                (chosen,),
            )
            self.model.pass_deadline(chosen)
            result.operations["offer deadline moved into the past"] += len(chosen)

        def expire_offers(self, data: st.DataObject) -> None:
            # Overdue offers of events outside this run are expired too (and counted).
            [elsewhere] = database.sql(
                "select count(*)::integer as n from public.bookings"
                " where status = 'offered' and offer_expires_at <= now()"
                " and event_id <> all(%s)",
                (list(self.model.events),),
            )
            row, expected = self._both(
                "expire_offers",
                lambda: service.call("expire_offers"),
                lambda _: self.model.expire_offers(),
            )
            assert row is not None
            expired = int(row["expire_offers"]) - int(elsewhere["n"])
            if expired != expected:
                raise AssertionError(f"expire_offers expired {expired}, the model {expected}")

        def publish(self, data: st.DataObject) -> None:
            event_id = data.draw(st.sampled_from(list(self.model.events)), label="event")
            user = data.draw(self._someone(self.organizer), label="caller")
            self._both(
                "publish_event",
                lambda: self._as(user).call("publish_event", event_id=event_id),
                lambda _: self.model.publish(user, event_id),
            )

        def cancel_event(self, data: st.DataObject) -> None:
            event_id = data.draw(st.sampled_from(list(self.model.events)), label="event")
            user = data.draw(self._someone(self.organizer), label="caller")
            row, _ = self._both(
                "cancel_event",
                lambda: self._as(user).call("cancel_event", event_id=event_id),
                lambda _: self.model.cancel_event(user, event_id),
            )
            self.cancelled_an_event = row is not None

        # -- the comparison ------------------------------------------------------------

        @invariant()
        def database_equals_model(self) -> None:
            events = list(self.model.events)
            if not events:
                return
            rows = service.sql(
                "select b.id, b.status, public.waitlist_position(b.id) as position"
                " from public.bookings as b where b.event_id = any(%s)",
                (events,),
            )
            found = {row["id"]: (row["status"], row["position"]) for row in rows}
            expected = {b.id: (b.status, b.position()) for b in self.model.bookings.values()}
            result.checks["bookings and positions equal the model"] += 1
            if found != expected:
                differences = {
                    str(key): {"database": found.get(key), "model": expected.get(key)}
                    for key in found.keys() | expected.keys()
                    if found.get(key) != expected.get(key)
                }
                raise AssertionError(f"bookings differ from the model: {differences}")
            availability = service.sql(
                "select e.id, a.* from unnest(%s::uuid[]) as e (id)"
                " cross join lateral public.event_availability(e.id) as a",
                (events,),
            )
            result.checks["availability equals the model"] += 1
            for row in availability:
                got = {name: row[name] for name in AVAILABILITY_FIELDS}
                want = self.model.availability(row["id"])
                if got != want:
                    raise AssertionError(
                        f"availability of {row['id']}: database {got}, model {want}"
                    )
            self._check_waitlists(events)
            self._check_ledger(events)

        def _check_waitlists(self, events: list[uuid.UUID]) -> None:
            """The organizer's view of each waitlist is the model's queue, in order."""
            rows = service.sql(
                "select e.id as event_id, w.booking_id, w.position, w.seats"
                " from unnest(%s::uuid[]) as e (id)"
                " cross join lateral public.event_waitlist(e.id) as w",
                (events,),
            )
            result.checks["event_waitlist equals the model's queue"] += 1
            for event_id in events:
                got = [
                    (r["booking_id"], r["position"], r["seats"])
                    for r in rows
                    if r["event_id"] == event_id
                ]
                want = [
                    (b.id, b.position(), b.seats) for b in self.model.events[event_id].waiting()
                ]
                if got != want:
                    raise AssertionError(f"event_waitlist of {event_id}: {got}, model {want}")

        def _check_ledger(self, events: list[uuid.UUID]) -> None:
            """The ledger entries of the last step record exactly the bookings that changed."""
            entries = service.sql(
                "select seq, booking_id, status, kind from public.ledger"
                " where event_id = any(%s) and seq > %s order by seq",
                (events, self.last_seq),
            )
            told = [(e["booking_id"], e["status"]) for e in entries if e["booking_id"]]
            changed = {
                b.id: b.status
                for b in self.model.bookings.values()
                if self.told.get(b.id) != b.status
            }
            result.checks["ledger records each change of the step"] += 1
            if len(told) != len(dict(told)) or dict(told) != changed:
                raise AssertionError(
                    f"the ledger recorded {told} in the last step; the model changed {changed}"
                )
            self.told.update(changed)
            if entries:
                self.last_seq = int(entries[-1]["seq"])

        def teardown(self) -> None:
            result.outcomes["waitlist → promoted (model)"] += self.model.promotions
            for event_id in self.model.events:
                problems = database.invariant_problems(event_id)
                result.checks["check_invariants"] += 1
                if problems:
                    raise AssertionError("; ".join(problems))

    return BookingMachine


def run_model(
    database: Database,
    result: PartResult,
    *,
    examples: int,
    steps: int,
    raise_on_failure: bool = True,
) -> PartResult:
    """Run the state machine for ``examples`` sequences of up to ``steps`` calls.

    Args:
        database: A migrated database (runs leave their events and users behind).
        result: Where operations, checks and problems are counted.
        examples: Sequences to try (hypothesis ``max_examples``).
        steps: Longest sequence (hypothesis ``stateful_step_count``).
        raise_on_failure: Raise the shrunk failure (tests) instead of recording it.
    """
    result.settings.update(examples=examples, steps=steps)
    machine = booking_machine(database, result)
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    with result.timed():
        try:
            run_state_machine_as_test(machine, settings=config)
        except AssertionError as exc:
            if raise_on_failure:
                raise
            result.problem(f"model: {str(exc).splitlines()[0]}")
    return result
