"""The booking rules as a small Python model: the specification the database is held to.

It is written from the rules in the booking issue and the README (capacity, the waitlist
that comes first, strict and first-fit order, auto and offer promotion, expiry, capacity
changes, cancellations, idempotency, one active booking per user), not from the SQL. It keeps
no counters and takes no shortcuts: every question is answered by looking at all bookings,
so it is slow and obviously right, where the database is fast and subtle.

Where the rules leave a detail open, the model decides it as follows:

* An event that was never published (a draft, or a draft cancelled before publication) is
  seen by its organizer only: to anyone else it does not exist (TS001).
* A call is checked in this order: visibility of the event (TS001), the caller's right to
  change it (42501), malformed arguments (22023), the event's state (TS003 for bookings,
  TS007 for changes), the party size (TS004), the caller's own bookings (TS005), and last
  the seats (TS006, TS008).
* A party may hold at most ``min(max_seats_per_booking, capacity)`` seats (TS004): a larger
  one could never be seated and would block a strict queue forever.
* Promotion runs until nobody else fits. So under ``first_fit``, when the free seats fit no
  waiting party but fit a newcomer, the newcomer is seated at once (``confirmed``, or
  ``offered`` under ``promotion_mode = 'offer'``, like anyone seated past a queue); under
  ``strict`` a newcomer joins the queue whenever anyone waits.
* A capacity below the seats held, or below the size of a waiting party, is refused (TS008).
* An offer whose deadline has passed can no longer be claimed (TS007) but still holds its
  seats until ``expire_offers`` runs; that call expires every overdue offer of an event
  first, then hands the freed seats to the waitlist.
* An idempotency key names one booking request of its user forever: repeating it with the
  same event and party size returns that booking as it is now and does nothing else, even
  when the booking is cancelled or the call would be refused otherwise; repeating it with
  another event or party size is refused (TS010).
* ``seats_available`` is what a booker could take now: nothing unless the event is published.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

__all__ = [
    "ACTIVE",
    "BookingModel",
    "EventRules",
    "ModelBooking",
    "ModelError",
    "ModelEvent",
    "Outcome",
]

ACTIVE = frozenset({"confirmed", "waitlisted", "offered"})
HOLDING = frozenset({"confirmed", "offered"})
MAX_CAPACITY = 1_000_000


class ModelError(Exception):
    """The model refuses a call with this SQLSTATE."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code
        self.why = why


@dataclass(frozen=True)
class EventRules:
    """How an event was created (the options of ``create_event``)."""

    capacity: int
    max_seats_per_booking: int = 10
    waitlist_enabled: bool = True
    waitlist_limit: int | None = None
    waitlist_policy: str = "strict"
    promotion_mode: str = "auto"
    publish: bool = True
    sales_open: bool = True  # False: sales open tomorrow


@dataclass
class ModelEvent:
    id: uuid.UUID
    organizer: uuid.UUID
    rules: EventRules
    capacity: int
    status: str
    bookings: list[ModelBooking] = field(default_factory=list)
    ever_published: bool = False  # a never-published event stays its organizer's

    def waiting(self) -> list[ModelBooking]:
        """Waiting bookings, first in line first (bookings are kept in arrival order)."""
        return [b for b in self.bookings if b.status == "waitlisted"]

    def held(self) -> int:
        return sum(b.seats for b in self.bookings if b.status in HOLDING)

    def free(self) -> int:
        return self.capacity - self.held()

    def largest_party(self) -> int:
        return min(self.rules.max_seats_per_booking, self.capacity)


@dataclass
class ModelBooking:
    id: uuid.UUID
    event: ModelEvent
    user: uuid.UUID
    seats: int
    status: str
    overdue: bool = False  # an offer whose deadline has passed, not yet expired

    def position(self) -> int | None:
        if self.status != "waitlisted":
            return None
        return self.event.waiting().index(self) + 1


@dataclass(frozen=True)
class Outcome:
    """What a booking call returns: the booking as it stands after the call."""

    booking_id: uuid.UUID
    status: str
    seats: int
    waitlist_position: int | None

    @classmethod
    def of(cls, booking: ModelBooking) -> Outcome:
        return cls(booking.id, booking.status, booking.seats, booking.position())


class BookingModel:
    """Events and bookings, and what each call must do to them.

    Calls that are refused raise :class:`ModelError` with the SQLSTATE and change nothing.
    Booking ids come from outside (the database assigns them): :meth:`book` takes the id to
    give a new booking.
    """

    def __init__(self) -> None:
        self.events: dict[uuid.UUID, ModelEvent] = {}
        self.bookings: dict[uuid.UUID, ModelBooking] = {}
        self.keys: dict[tuple[uuid.UUID, str], ModelBooking] = {}
        self.promotions = 0

    # -- set-up --------------------------------------------------------------------------

    def add_event(self, event_id: uuid.UUID, organizer: uuid.UUID, rules: EventRules) -> None:
        self.events[event_id] = ModelEvent(
            event_id,
            organizer,
            rules,
            rules.capacity,
            "published" if rules.publish else "draft",
            ever_published=rules.publish,
        )

    # -- questions -----------------------------------------------------------------------

    def availability(self, event_id: uuid.UUID) -> dict[str, int]:
        event = self.events[event_id]
        waiting = event.waiting()
        return {
            "capacity": event.capacity,
            "seats_confirmed": sum(b.seats for b in event.bookings if b.status == "confirmed"),
            "seats_offered": sum(b.seats for b in event.bookings if b.status == "offered"),
            "seats_available": event.free() if event.status == "published" else 0,
            "waitlist_count": len(waiting),
            "waitlist_seats": sum(b.seats for b in waiting),
        }

    def offers(self, *, overdue: bool | None = None) -> list[ModelBooking]:
        return [
            b
            for b in self.bookings.values()
            if b.status == "offered" and (overdue is None or b.overdue == overdue)
        ]

    # -- helpers -------------------------------------------------------------------------

    def _visible(self, event_id: uuid.UUID, user: uuid.UUID | None) -> ModelEvent:
        event = self.events.get(event_id)
        if event is None or (not event.ever_published and event.organizer != user):
            raise ModelError("TS001", "no such event visible to the caller")
        return event

    def _managed(self, event_id: uuid.UUID, user: uuid.UUID | None) -> ModelEvent:
        event = self._visible(event_id, user)
        if event.organizer != user:
            raise ModelError("42501", "only the organizer may change the event")
        return event

    def _own(self, booking_id: uuid.UUID, user: uuid.UUID | None) -> ModelBooking:
        booking = self.bookings.get(booking_id)
        if booking is None or booking.user != user:
            raise ModelError("TS002", "no such booking of the caller's")
        return booking

    def _promote(self, event: ModelEvent) -> None:
        """Hand free seats to the waitlist until nobody else fits (rules 2 and 3)."""
        if event.status != "published":
            return
        while True:
            waiting = event.waiting()
            free = event.free()
            if event.rules.waitlist_policy == "strict":
                fits = waiting[:1] if waiting and waiting[0].seats <= free else []
            else:
                fits = [b for b in waiting if b.seats <= free][:1]
            if not fits:
                return
            chosen = fits[0]
            chosen.status = "confirmed" if event.rules.promotion_mode == "auto" else "offered"
            chosen.overdue = False
            self.promotions += 1

    # -- calls ---------------------------------------------------------------------------

    def book(
        self,
        user: uuid.UUID,
        event_id: uuid.UUID,
        seats: int,
        idempotency_key: str | None,
        new_id: uuid.UUID,
    ) -> Outcome:
        """``book_event``: seat the party, queue it, or refuse."""
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 200:
                raise ModelError("22023", "idempotency keys are 1 to 200 characters")
            if (earlier := self.keys.get((user, idempotency_key))) is not None:
                if earlier.event.id != event_id or earlier.seats != seats:
                    raise ModelError("TS010", "the key already names another booking request")
                return Outcome.of(earlier)
        event = self._visible(event_id, user)
        if event.status != "published" or not event.rules.sales_open:
            raise ModelError("TS003", "sales are closed")
        if not 1 <= seats <= event.largest_party():
            raise ModelError("TS004", "party size out of range")
        if any(b.user == user and b.status in ACTIVE for b in event.bookings):
            raise ModelError("TS005", "already booked")

        someone_waits = bool(event.waiting())
        seated = seats <= event.free() and (
            not someone_waits or event.rules.waitlist_policy == "first_fit"
        )
        if seated:
            past_a_queue = someone_waits and event.rules.promotion_mode == "offer"
            status = "offered" if past_a_queue else "confirmed"
        else:
            limit = event.rules.waitlist_limit
            if not event.rules.waitlist_enabled or (
                limit is not None and len(event.waiting()) >= limit
            ):
                raise ModelError("TS006", "sold out and no room on the waitlist")
            status = "waitlisted"
        booking = ModelBooking(new_id, event, user, seats, status)
        event.bookings.append(booking)
        self.bookings[new_id] = booking
        if idempotency_key is not None:
            self.keys[(user, idempotency_key)] = booking
        return Outcome.of(booking)

    def cancel(self, user: uuid.UUID, booking_id: uuid.UUID) -> Outcome:
        """``cancel_booking``: the seats (or the place in line) go to the waitlist."""
        booking = self._own(booking_id, user)
        if booking.status not in ACTIVE:
            raise ModelError("TS007", f"a {booking.status} booking cannot be cancelled")
        booking.status = "cancelled"
        booking.overdue = False
        self._promote(booking.event)
        return Outcome.of(booking)

    def claim(self, user: uuid.UUID, booking_id: uuid.UUID) -> Outcome:
        """``claim_offer``: an open offer becomes a confirmed booking."""
        booking = self._own(booking_id, user)
        if booking.status != "offered" or booking.overdue:
            raise ModelError("TS007", "no open offer to claim")
        booking.status = "confirmed"
        return Outcome.of(booking)

    def set_capacity(self, user: uuid.UUID, event_id: uuid.UUID, capacity: int) -> None:
        """``set_event_capacity``: more seats go to the waitlist; fewer must still fit."""
        event = self._managed(event_id, user)
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ModelError("22023", "capacity out of range")
        if event.status == "cancelled":
            raise ModelError("TS007", "the event is cancelled")
        if capacity < event.held():
            raise ModelError("TS008", "below the seats confirmed or offered")
        if any(b.seats > capacity for b in event.waiting()):
            raise ModelError("TS008", "below the size of a waiting party")
        event.capacity = capacity
        self._promote(event)

    def publish(self, user: uuid.UUID, event_id: uuid.UUID) -> None:
        """``publish_event``: a draft opens; a published event is left as it is."""
        event = self._managed(event_id, user)
        if event.status == "cancelled":
            raise ModelError("TS007", "a cancelled event cannot be published")
        event.status = "published"
        event.ever_published = True

    def cancel_event(self, user: uuid.UUID, event_id: uuid.UUID) -> None:
        """``cancel_event``: every active booking is cancelled with the event."""
        event = self._managed(event_id, user)
        if event.status == "cancelled":
            raise ModelError("TS007", "the event is already cancelled")
        event.status = "cancelled"
        for booking in event.bookings:
            if booking.status in ACTIVE:
                booking.status = "cancelled"
                booking.overdue = False

    def pass_deadline(self, booking_ids: list[uuid.UUID]) -> None:
        """Time passes for these offers: their deadlines are behind us."""
        for booking_id in booking_ids:
            booking = self.bookings[booking_id]
            if booking.status == "offered":
                booking.overdue = True

    def expire_offers(self) -> int:
        """``expire_offers``: overdue offers expire and their seats pass on."""
        overdue = self.offers(overdue=True)
        for booking in overdue:
            booking.status = "expired"
            booking.overdue = False
        for event in {id(b.event): b.event for b in overdue}.values():
            self._promote(event)
        return len(overdue)
