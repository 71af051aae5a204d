"""Typed results: frozen dataclasses for rows, ``str`` enums for statuses and modes.

Rows reach these classes either as native Python values (direct PostgreSQL transport) or as
PostgREST's JSON (Supabase transport: UUIDs, timestamps and intervals as strings);
``from_row`` accepts both, so every transport returns the same objects.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "Attendee",
    "Availability",
    "Booking",
    "BookingStatus",
    "Change",
    "ChangeKind",
    "Event",
    "EventStatus",
    "PromotionMode",
    "WaitlistEntry",
    "WaitlistPolicy",
]


class BookingStatus(StrEnum):
    """Where a booking stands."""

    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    OFFERED = "offered"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class EventStatus(StrEnum):
    """Whether an event can be seen and booked."""

    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class WaitlistPolicy(StrEnum):
    """Who gets freed seats: only the head of the queue, or the oldest party that fits."""

    STRICT = "strict"
    FIRST_FIT = "first_fit"


class PromotionMode(StrEnum):
    """What promotion from the waitlist does: confirm at once, or offer with an expiry."""

    AUTO = "auto"
    OFFER = "offer"


class ChangeKind(StrEnum):
    """The kind of a ledger entry."""

    BOOKED = "booked"
    WAITLISTED = "waitlisted"
    PROMOTED = "promoted"
    OFFERED = "offered"
    CLAIMED = "claimed"
    OFFER_EXPIRED = "offer_expired"
    CANCELLED = "cancelled"
    CAPACITY_CHANGED = "capacity_changed"
    EVENT_PUBLISHED = "event_published"
    EVENT_CANCELLED = "event_cancelled"
    EVENT_UPDATED = "event_updated"


# -- value parsing (native values from psycopg, strings from PostgREST's JSON) --------------


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _opt_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else _uuid(value)


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _opt_dt(value: Any) -> datetime | None:
    return None if value is None else _dt(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


_INTERVAL = re.compile(
    r"^(?:(?P<years>[+-]?\d+) years? ?)?(?:(?P<months>[+-]?\d+) mons? ?)?"
    r"(?:(?P<days>[+-]?\d+) days? ?)?"
    r"(?:(?P<sign>[+-])?(?P<hours>\d+):(?P<minutes>\d\d):(?P<seconds>\d\d(?:\.\d+)?))?$"
)


def _interval(value: Any) -> timedelta:
    """A PostgreSQL interval in its default output style ("1 day 02:00:00") as a timedelta.

    Months and years count as 30 and 365 days, as PostgreSQL does when comparing intervals.
    """
    if isinstance(value, timedelta):
        return value
    match = _INTERVAL.match(str(value).strip())
    if match is None or not str(value).strip():
        raise ValueError(f"not a PostgreSQL interval: {value!r}")
    parts = {k: v for k, v in match.groupdict().items() if v is not None}
    days = (
        int(parts.get("years", 0)) * 365
        + int(parts.get("months", 0)) * 30
        + int(parts.get("days", 0))
    )
    clock = timedelta(
        hours=int(parts.get("hours", 0)),
        minutes=int(parts.get("minutes", 0)),
        seconds=float(parts.get("seconds", 0)),
    )
    if parts.get("sign") == "-":
        clock = -clock
    return timedelta(days=days) + clock


# -- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A bookable event (a row of ``public.events``).

    ``organizer_id`` is ``None`` for anonymous callers, who may not read it.
    """

    id: uuid.UUID
    organizer_id: uuid.UUID | None
    title: str
    description: str | None
    venue: str | None
    starts_at: datetime
    ends_at: datetime | None
    capacity: int
    max_seats_per_booking: int
    status: EventStatus
    sales_open_at: datetime
    sales_close_at: datetime
    waitlist_enabled: bool
    waitlist_limit: int | None
    waitlist_policy: WaitlistPolicy
    promotion_mode: PromotionMode
    offer_ttl: timedelta
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        """Build from a ``public.events`` row."""
        return cls(
            id=_uuid(row["id"]),
            organizer_id=_opt_uuid(row.get("organizer_id")),
            title=row["title"],
            description=row.get("description"),
            venue=row.get("venue"),
            starts_at=_dt(row["starts_at"]),
            ends_at=_opt_dt(row.get("ends_at")),
            capacity=int(row["capacity"]),
            max_seats_per_booking=int(row["max_seats_per_booking"]),
            status=EventStatus(row["status"]),
            sales_open_at=_dt(row["sales_open_at"]),
            sales_close_at=_dt(row["sales_close_at"]),
            waitlist_enabled=bool(row["waitlist_enabled"]),
            waitlist_limit=_opt_int(row.get("waitlist_limit")),
            waitlist_policy=WaitlistPolicy(row["waitlist_policy"]),
            promotion_mode=PromotionMode(row["promotion_mode"]),
            offer_ttl=_interval(row["offer_ttl"]),
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
            published_at=_opt_dt(row.get("published_at")),
            cancelled_at=_opt_dt(row.get("cancelled_at")),
        )


@dataclass(frozen=True, slots=True)
class Booking:
    """A booking request, waitlisted ones included.

    ``book``, ``cancel`` and ``claim_offer`` fill ``waitlist_position`` (for a waitlisted
    booking) and leave the other timestamps ``None``; ``my_bookings`` fills the timestamps
    and leaves the position ``None`` (ask ``waitlist_position`` for it).
    """

    id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID
    status: BookingStatus
    seats: int
    created_at: datetime
    waitlist_position: int | None = None
    offer_expires_at: datetime | None = None
    confirmed_at: datetime | None = None
    waitlisted_at: datetime | None = None
    offered_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    idempotency_key: str | None = None

    @classmethod
    def from_result(cls, row: Mapping[str, Any]) -> Booking:
        """Build from a ``public.booking_result`` (what book, cancel and claim return)."""
        return cls(
            id=_uuid(row["booking_id"]),
            event_id=_uuid(row["event_id"]),
            user_id=_uuid(row["user_id"]),
            status=BookingStatus(row["status"]),
            seats=int(row["seats"]),
            created_at=_dt(row["created_at"]),
            waitlist_position=_opt_int(row.get("waitlist_position")),
            offer_expires_at=_opt_dt(row.get("offer_expires_at")),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Booking:
        """Build from a ``public.bookings`` row."""
        return cls(
            id=_uuid(row["id"]),
            event_id=_uuid(row["event_id"]),
            user_id=_uuid(row["user_id"]),
            status=BookingStatus(row["status"]),
            seats=int(row["seats"]),
            created_at=_dt(row["created_at"]),
            offer_expires_at=_opt_dt(row.get("offer_expires_at")),
            confirmed_at=_opt_dt(row.get("confirmed_at")),
            waitlisted_at=_opt_dt(row.get("waitlisted_at")),
            offered_at=_opt_dt(row.get("offered_at")),
            cancelled_at=_opt_dt(row.get("cancelled_at")),
            expired_at=_opt_dt(row.get("expired_at")),
            idempotency_key=row.get("idempotency_key"),
        )


@dataclass(frozen=True, slots=True)
class Availability:
    """Seats and waitlist of an event right now (``public.event_availability``).

    ``last_seq`` is the newest ledger entry these numbers include: pass it to ``changes`` to
    follow the event from here on without missing or repeating an entry.
    """

    event_id: uuid.UUID
    capacity: int
    seats_confirmed: int
    seats_offered: int
    seats_available: int
    waitlist_count: int
    waitlist_seats: int
    status: EventStatus
    last_seq: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Availability:
        """Build from a ``public.event_availability_result``."""
        return cls(
            event_id=_uuid(row["event_id"]),
            capacity=int(row["capacity"]),
            seats_confirmed=int(row["seats_confirmed"]),
            seats_offered=int(row["seats_offered"]),
            seats_available=int(row["seats_available"]),
            waitlist_count=int(row["waitlist_count"]),
            waitlist_seats=int(row["waitlist_seats"]),
            status=EventStatus(row["status"]),
            last_seq=int(row["last_seq"]),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One ledger entry: a state change and the event's numbers right after it.

    Who a change is about (``booking_id``, ``user_id``, position, offer expiry) is ``None``
    unless the caller organizes the event or the booking is the caller's own.
    """

    seq: int
    event_id: uuid.UUID
    kind: ChangeKind
    seats_available: int
    waitlist_count: int
    event_status: EventStatus
    created_at: datetime
    booking_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    status: BookingStatus | None = None
    seats: int | None = None
    waitlist_position: int | None = None
    offer_expires_at: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Change:
        """Build from a ``public.ledger`` row."""
        status = row.get("status")
        return cls(
            seq=int(row["seq"]),
            event_id=_uuid(row["event_id"]),
            kind=ChangeKind(row["kind"]),
            seats_available=int(row["seats_available"]),
            waitlist_count=int(row["waitlist_count"]),
            event_status=EventStatus(row["event_status"]),
            created_at=_dt(row["created_at"]),
            booking_id=_opt_uuid(row.get("booking_id")),
            user_id=_opt_uuid(row.get("user_id")),
            actor_id=_opt_uuid(row.get("actor_id")),
            status=None if status is None else BookingStatus(status),
            seats=_opt_int(row.get("seats")),
            waitlist_position=_opt_int(row.get("waitlist_position")),
            offer_expires_at=_opt_dt(row.get("offer_expires_at")),
            detail=dict(row.get("detail") or {}),
        )


@dataclass(frozen=True, slots=True)
class Attendee:
    """A confirmed or offered booking of an event, as its organizer sees it."""

    booking_id: uuid.UUID
    user_id: uuid.UUID
    email: str | None
    seats: int
    status: BookingStatus
    confirmed_at: datetime | None
    offer_expires_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Attendee:
        """Build from a row of ``public.event_attendees``."""
        return cls(
            booking_id=_uuid(row["booking_id"]),
            user_id=_uuid(row["user_id"]),
            email=row.get("email"),
            seats=int(row["seats"]),
            status=BookingStatus(row["status"]),
            confirmed_at=_opt_dt(row.get("confirmed_at")),
            offer_expires_at=_opt_dt(row.get("offer_expires_at")),
        )


@dataclass(frozen=True, slots=True)
class WaitlistEntry:
    """A waiting booking of an event, as its organizer sees it."""

    booking_id: uuid.UUID
    user_id: uuid.UUID
    email: str | None
    seats: int
    position: int
    waitlisted_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WaitlistEntry:
        """Build from a row of ``public.event_waitlist``."""
        return cls(
            booking_id=_uuid(row["booking_id"]),
            user_id=_uuid(row["user_id"]),
            email=row.get("email"),
            seats=int(row["seats"]),
            position=int(row["position"]),
            waitlisted_at=_dt(row["waitlisted_at"]),
        )
