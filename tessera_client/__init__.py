"""Tessera: event booking whose rules live in PostgreSQL.

The SDK calls Tessera's SQL functions, directly over PostgreSQL or through Supabase's API::

    import tessera_client

    async with tessera_client.connect(dsn) as tessera:
        booking = await tessera.as_user(user_id).book(event_id, seats=2)

:class:`Tessera` (with :func:`connect_sync` and :func:`from_supabase_sync`) is the blocking
twin of :class:`AsyncTessera`.

Changes arrive live, once each and in order, with ``watch_event`` and ``watch_my_bookings``::

    async with tessera.watch_event(event_id) as changes:
        async for change in changes:
            print(change.kind, change.seats_available)
"""

from __future__ import annotations

from tessera_client._client import AsyncTessera, RetryPolicy, connect, from_supabase
from tessera_client._errors import (
    AlreadyBooked,
    AuthenticationFailed,
    BookingNotFound,
    CapacityConflict,
    EventNotFound,
    InternalError,
    InvalidParameter,
    InvalidSeats,
    InvalidTransition,
    LimitExceeded,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    SalesClosed,
    SoldOut,
    TesseraError,
    TimedOut,
    TransactionConflict,
    TransportError,
    Unavailable,
)
from tessera_client._identity import (
    Identity,
    LocalUser,
    create_local_user,
    local_api_key,
    local_user_token,
)
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
from tessera_client._realtime import ChangeStream
from tessera_client._sync import ChangeIterator, Tessera, connect_sync, from_supabase_sync

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
    "Event",
    "EventNotFound",
    "EventStatus",
    "Identity",
    "InternalError",
    "InvalidParameter",
    "InvalidSeats",
    "InvalidTransition",
    "LimitExceeded",
    "LocalUser",
    "OutcomeUnknown",
    "PermissionDenied",
    "PromotionMode",
    "RateLimited",
    "RetryPolicy",
    "SalesClosed",
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
    "connect",
    "connect_sync",
    "create_local_user",
    "from_supabase",
    "from_supabase_sync",
    "local_api_key",
    "local_user_token",
]
