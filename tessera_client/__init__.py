"""Tessera: event booking whose rules live in PostgreSQL.

The SDK calls Tessera's SQL functions, directly over PostgreSQL or through Supabase's API::

    from tessera_client import AsyncTessera

    async with AsyncTessera.connect(dsn) as tessera:
        booking = await tessera.as_user(user_id).book(event_id, seats=2)

:class:`Tessera` is the blocking twin of :class:`AsyncTessera`; each is made by its own
``connect`` or ``from_supabase`` class method. Users and tokens for the local stack are in
:mod:`tessera_client.local`.

Changes arrive live, once each and in order, with ``watch_event`` and ``watch_my_bookings``::

    async with tessera.watch_event(event_id) as changes:
        async for change in changes:
            print(change.kind, change.seats_available)
"""

from __future__ import annotations

from tessera_client._client import AsyncTessera, RetryPolicy
from tessera_client._deprecated import deprecated_name as __getattr__  # noqa: F401
from tessera_client._errors import (
    AlreadyBooked,
    AuthenticationFailed,
    BookingNotFound,
    CapacityConflict,
    EventNotFound,
    IdempotencyConflict,
    InternalError,
    InvalidParameter,
    InvalidSeats,
    InvalidTransition,
    LimitExceeded,
    OutcomeUnknown,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    SalesClosed,
    SchemaMismatch,
    SoldOut,
    TesseraError,
    TimedOut,
    TransactionConflict,
    TransportError,
    Unavailable,
)
from tessera_client._extras import MissingExtra
from tessera_client._identity import Identity
from tessera_client._models import (
    Attendee,
    Availability,
    Booking,
    BookingStatus,
    Change,
    ChangeKind,
    Event,
    EventStatus,
    PromotionMode,
    WaitlistEntry,
    WaitlistPolicy,
)
from tessera_client._streams import ChangeStream
from tessera_client._sync import ChangeIterator, ClientUnusable, Tessera

__version__ = "0.1.0"

__all__ = [
    "AlreadyBooked",
    "AsyncTessera",
    "Attendee",
    "AuthenticationFailed",
    "Availability",
    "Booking",
    "BookingNotFound",
    "BookingStatus",
    "CapacityConflict",
    "Change",
    "ChangeIterator",
    "ChangeKind",
    "ChangeStream",
    "ClientUnusable",
    "Event",
    "EventNotFound",
    "EventStatus",
    "IdempotencyConflict",
    "Identity",
    "InternalError",
    "InvalidParameter",
    "InvalidSeats",
    "InvalidTransition",
    "LimitExceeded",
    "MissingExtra",
    "OutcomeUnknown",
    "PermissionDenied",
    "PromotionMode",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "SalesClosed",
    "SchemaMismatch",
    "SoldOut",
    "Tessera",
    "TesseraError",
    "TimedOut",
    "TransactionConflict",
    "TransportError",
    "Unavailable",
    "WaitlistEntry",
    "WaitlistPolicy",
    "__version__",
]
