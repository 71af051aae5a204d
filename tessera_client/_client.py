"""The async client: one method per Tessera function, the same over every transport.

Python never decides a booking rule here. Each method is one call of a SQL function (or one
plain ``SELECT`` that row level security filters); the database decides, and its errors come
back as :mod:`tessera_client._errors` classes.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from tessera_client._errors import (
    BookingNotFound,
    EventNotFound,
    InvalidParameter,
    OutcomeUnknown,
    PermissionDenied,
    SchemaMismatch,
    TesseraError,
    TransactionConflict,
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
    Event,
    EventStatus,
    PromotionMode,
    WaitlistEntry,
    WaitlistPolicy,
)
from tessera_client._streams import ChangeStream
from tessera_client._transports._base import Filter, Returns, Select, Transport
from tessera_client._transports._notifier import Topic
from tessera_client._transports._postgres import PostgresTransport

__all__ = ["AsyncTessera", "RetryPolicy"]

T = TypeVar("T")

# Every column of public.events; the anon role may read all of them but organizer_id.
_EVENT_COLUMNS = (
    "id", "organizer_id", "title", "description", "venue", "starts_at", "ends_at", "capacity",
    "max_seats_per_booking", "status", "sales_open_at", "sales_close_at", "waitlist_enabled",
    "waitlist_limit", "waitlist_policy", "promotion_mode", "offer_ttl", "created_at",
    "updated_at", "published_at", "cancelled_at",
)  # fmt: skip
_PUBLIC_EVENT_COLUMNS = tuple(column for column in _EVENT_COLUMNS if column != "organizer_id")
# Columns of public.bookings; idempotency keys (maybe order ids) only the service role reads
# directly (users read their own through my_bookings).
_BOOKING_COLUMNS = (
    "id", "event_id", "user_id", "status", "seats", "created_at", "offer_expires_at",
    "confirmed_at", "waitlisted_at", "offered_at", "cancelled_at", "expired_at",
)  # fmt: skip
_SERVICE_BOOKING_COLUMNS = (*_BOOKING_COLUMNS, "idempotency_key")

_Item = TypeVar("_Item")


def _require_aware(values: Iterable[tuple[str, Any]]) -> None:
    """Refuse naive datetimes: which zone they mean is a guess the SDK will not make."""
    for name, value in values:
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise InvalidParameter(
                f"{name} must be timezone-aware, got a naive datetime ({value.isoformat()})",
                hint="Give it a zone: datetime(2026, 12, 24, 19, 30, tzinfo=UTC) or "
                "datetime.now().astimezone().",
            )


def _page(
    items: Sequence[_Item],
    key: Callable[[_Item], uuid.UUID],
    after: uuid.UUID | None,
    limit: int | None,
) -> list[_Item]:
    """Items after the one whose id is ``after`` (none: from the start), at most ``limit``."""
    start = 0
    if after is not None:
        ids = [key(item) for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    end = None if limit is None else start + limit
    return list(items[start:end])


# What the server says when public.tessera_schema_version() does not exist.
_MISSING_FUNCTION_CODES = frozenset({"42883", "PGRST202"})


class _SchemaCheck:
    """Whether the database's schema version has been checked; shared with scoped clients."""

    __slots__ = ("passed",)

    def __init__(self) -> None:
        self.passed = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried.

    A call is tried again after :class:`Unavailable` (nothing was done) and
    :class:`TransactionConflict` (the database rolled it back). After
    :class:`OutcomeUnknown` (the reply was lost) only calls that are safe to repeat are
    retried: reads, and ``book``, whose idempotency key makes a repeat return the first
    booking instead of making a second one.

    Attributes:
        attempts: Tries in all, the first included (1 disables retries).
        initial_delay: Seconds before the first retry; doubled for each next one.
        max_delay: Longest pause between two tries.
    """

    attempts: int = 4
    initial_delay: float = 0.05
    max_delay: float = 2.0

    @classmethod
    def spanning(cls, seconds: float, *, max_delay: float = 0.5) -> RetryPolicy:
        """Enough retries to outlast an outage of about ``seconds``, such as a failover.

        Example:
            >>> AsyncTessera.connect(multi_host_dsn, retry=RetryPolicy.spanning(20))
        """
        policy = cls(attempts=1, max_delay=max_delay)
        waited = 0.0
        while waited < seconds:
            # Counted at the shortest pause the jitter allows, so the span is never shorter.
            waited += min(max_delay, policy.initial_delay * 2 ** (policy.attempts - 1)) / 2
            policy = cls(attempts=policy.attempts + 1, max_delay=max_delay)
        return policy

    def delay(self, retry: int) -> float:
        """Pause before retry number ``retry`` (0-based): exponential, with jitter."""
        ceiling = min(self.max_delay, self.initial_delay * (2**retry))
        return random.uniform(ceiling / 2, ceiling)


class AsyncTessera:
    """Tessera's async client. Create it with :meth:`connect` or :meth:`from_supabase`.

    A client acts as one identity: anonymous unless scoped with :meth:`as_user`,
    :meth:`as_service` or :meth:`sign_in`. Scoped clients share the connection pool of the
    client they come from and are cheap to make (one per request is fine); closing the
    original client closes the pool, closing a scoped one does nothing.

    Example:
        >>> async with AsyncTessera.connect(dsn) as tessera:
        ...     alice = tessera.as_user(alice_id)
        ...     event = await alice.create_event("Concert", capacity=100, starts_at=when)
        ...     booking = await alice.as_user(bob_id).book(event.id, seats=2)
    """

    SCHEMA_VERSION = 6
    """The oldest ``public.tessera_schema_version()`` this SDK works with (6: ``update_event``;
    4 made event topics private Realtime channels, which the SDK joins as such).

    A client checks it on its first call (once, shared with the clients it scopes) and
    raises :class:`SchemaMismatch` when the database is older or has no such function.
    """

    def __init__(
        self,
        transport: Transport,
        identity: Identity | None = None,
        *,
        retry: RetryPolicy | None = None,
        owns_transport: bool = True,
    ) -> None:
        self._transport = transport
        self._identity = identity or transport.anonymous_identity()
        self._retry = retry or RetryPolicy()
        self._owns_transport = owns_transport
        self._schema = _SchemaCheck()

    # -- factories ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        jwt_secret: str | None = None,
        retry: RetryPolicy | None = None,
        application_name: str = "tessera",
        read_dsn: str | None = None,
    ) -> AsyncTessera:
        """A client over a direct PostgreSQL connection pool (psycopg 3).

        Nothing connects until the first call or ``async with`` (which also closes the pool).
        Works through PgBouncer / Supavisor in transaction mode.

        Args:
            dsn: Login of a server role: ``authenticator`` (as PostgREST) or ``postgres``.
            min_size: Connections kept open.
            max_size: Most connections at once.
            timeout: Seconds to wait for a free connection.
            jwt_secret: Verifies (HS256) tokens passed to ``as_user``. Without it their
                claims are trusted as they are, so only pass tokens your app has verified.
            retry: How transient failures are retried. Across a failover (a multi-host
                ``dsn``, docs/ha.md) use one that waits long enough, such as
                ``RetryPolicy.spanning(20)``.
            application_name: Shown in ``pg_stat_activity`` unless the DSN sets one.
            read_dsn: A read replica: ``availability``, ``list_events`` and ``changes`` go
                there, with read-your-writes (a caller's reads wait for nothing: when the
                replica has not replayed the caller's last write yet, the primary answers).

        Example:
            >>> dsn = "postgresql://authenticator:…@localhost:54322/postgres"
            >>> async with AsyncTessera.connect(dsn) as tessera:
            ...     print(await tessera.list_events())
        """
        transport = PostgresTransport(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            jwt_secret=jwt_secret,
            application_name=application_name,
            read_dsn=read_dsn,
        )
        return cls(transport, retry=retry)

    @classmethod
    def from_supabase(
        cls,
        url: str,
        key: str,
        *,
        access_token: str | None = None,
        service_key: str | None = None,
        jwt_secret: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> AsyncTessera:
        """A client over a Supabase project's HTTP API (supabase-py; the ``[supabase]`` extra).

        Args:
            url: ``SUPABASE_URL``.
            key: The anon (publishable) key.
            access_token: A user's session token: the client then acts as that user.
            service_key: The service-role key, for ``as_service()`` (keep it server-side).
            jwt_secret: The project's JWT secret, for ``as_user(user_id)`` (local and tests).
            timeout: Seconds an HTTP request may take.
            retry: How transient failures are retried.

        Raises:
            MissingExtra: supabase-py is not installed.

        Example:
            >>> url = os.environ["SUPABASE_URL"]
            >>> async with AsyncTessera.from_supabase(url, anon_key) as tessera:
            ...     alice = await tessera.sign_in("alice@example.com", password)
            ...     await alice.book(event_id)
        """
        try:
            # Imported here: supabase-py is an optional extra, not a core dependency.
            from tessera_client._transports._supabase import SupabaseTransport
        except ModuleNotFoundError as exc:
            if (exc.name or "").startswith("tessera_client"):
                raise
            raise MissingExtra("supabase", "from_supabase()", exc.name) from exc

        transport = SupabaseTransport(
            url, key, service_key=service_key, jwt_secret=jwt_secret, timeout=timeout
        )
        identity = transport.token_identity(access_token) if access_token else None
        return cls(transport, identity, retry=retry)

    # -- identity and lifecycle -----------------------------------------------------------

    @property
    def identity(self) -> Identity:
        """Who this client acts as."""
        return self._identity

    @property
    def transport(self) -> Transport:
        """The transport (``transport.name`` is ``"postgres"`` or ``"supabase"``)."""
        return self._transport

    def _scoped(self, identity: Identity) -> AsyncTessera:
        scoped = AsyncTessera(self._transport, identity, retry=self._retry, owns_transport=False)
        scoped._schema = self._schema
        return scoped

    def as_user(self, user: uuid.UUID | str, *, email: str | None = None) -> AsyncTessera:
        """A client acting as a signed-in user.

        The type of ``user`` says how far it is trusted:

        - a :class:`uuid.UUID` is a user id your server already trusts (a background job, an
          admin tool, tests); nothing is checked;
        - a :class:`str` is always an access token (a JWT), never an id: with ``jwt_secret``
          its signature, expiry and audience are verified, and a string that is not a valid
          JWT (a bare user id included) is refused. Pass what a request's
          ``Authorization: Bearer …`` header carries here, never ``UUID(header)``.

        Args:
            user: The user's id as a UUID, or an access token of the user.
            email: Put in the claims when ``user`` is an id (``auth.email()``).

        Returns:
            A client sharing this one's connections.

        Raises:
            AuthenticationFailed: ``user`` is a string that is not a valid token, or did not
                verify.
            TypeError: ``user`` is neither a UUID nor a string.
            ValueError: The transport cannot act as a user from an id alone (Supabase
                without ``jwt_secret``).

        Example:
            >>> bob = tessera.as_user(bob_id)  # a uuid.UUID the server trusts
            >>> carol = tessera.as_user(request.headers["Authorization"].removeprefix("Bearer "))
        """
        if isinstance(user, uuid.UUID):
            return self._scoped(self._transport.user_identity(user, email))
        if isinstance(user, str):
            return self._scoped(self._transport.token_identity(user))
        raise TypeError(f"as_user() takes a uuid.UUID or a token string, not {type(user).__name__}")

    def as_service(self) -> AsyncTessera:
        """A client acting as ``service_role``: an operator that may manage every event.

        Raises:
            ValueError: The transport has no service credentials (Supabase without
                ``service_key``).

        Example:
            >>> expired = await tessera.as_service().expire_offers()
        """
        return self._scoped(self._transport.service_identity())

    def as_anonymous(self) -> AsyncTessera:
        """A client acting as nobody in particular (role ``anon``)."""
        return self._scoped(self._transport.anonymous_identity())

    async def sign_in(self, email: str, password: str) -> AsyncTessera:
        """A client acting as a user signed in with email and password (Supabase only).

        The session refreshes its access token by itself.

        Raises:
            AuthenticationFailed: Wrong email or password.
            NotImplementedError: On a direct PostgreSQL connection (use :meth:`as_user`).

        Example:
            >>> alice = await tessera.sign_in("alice@example.com", "correct horse")
            >>> await alice.my_bookings()
        """
        identity = await self._retrying(
            lambda: self._transport.sign_in(email, password), idempotent=True
        )
        return self._scoped(identity)

    async def open(self) -> Self:
        """Connect now instead of at the first call.

        Raises:
            Unavailable: The database or API could not be reached.
        """
        await self._transport.open()
        return self

    async def close(self) -> None:
        """Close the connections, if this client opened them (scoped clients do nothing)."""
        if self._owns_transport:
            await self._transport.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------------

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        """Run ``attempt``, retrying transient failures as :class:`RetryPolicy` says."""
        retry = 0
        while True:
            try:
                return await attempt()
            except (Unavailable, TransactionConflict):
                if retry + 1 >= self._retry.attempts:
                    raise
            except OutcomeUnknown:
                if not idempotent or retry + 1 >= self._retry.attempts:
                    raise
            await asyncio.sleep(self._retry.delay(retry))
            retry += 1

    async def _check_schema(self) -> None:
        """Raise :class:`SchemaMismatch` unless the database's schema is recent enough."""
        transport = self._transport
        try:
            version = await self._retrying(
                lambda: transport.call(
                    transport.anonymous_identity(),
                    "tessera_schema_version",
                    {},
                    returns="scalar",
                    read_only=True,
                ),
                idempotent=True,
            )
        except TesseraError as exc:
            if exc.code not in _MISSING_FUNCTION_CODES:
                raise
            raise SchemaMismatch(
                "the database has no public.tessera_schema_version(): its Tessera schema "
                "predates this SDK",
                code=exc.code,
                detail=exc.message,
                hint="Apply Tessera's migrations (tessera db migrate, or supabase db push).",
            ) from exc
        if int(version) < self.SCHEMA_VERSION:
            raise SchemaMismatch(
                detail=f"database schema version {version}; this SDK needs "
                f"{self.SCHEMA_VERSION} or newer",
                hint="Apply Tessera's migrations (tessera db migrate, or supabase db push).",
            )
        self._schema.passed = True

    async def _call(
        self,
        function: str,
        args: Mapping[str, Any],
        returns: Returns,
        *,
        read_only: bool = False,
        idempotent: bool | None = None,
        replica: bool = False,
    ) -> Any:
        """Call ``public.function``; arguments that are ``None`` are left to SQL defaults.

        ``replica``: a read replica may answer (``read_dsn``).
        """
        if not self._schema.passed:
            await self._check_schema()
        given = {name: value for name, value in args.items() if value is not None}
        _require_aware(given.items())
        return await self._retrying(
            lambda: self._transport.call(
                self._identity,
                function,
                given,
                returns=returns,
                read_only=read_only,
                replica=replica,
            ),
            idempotent=read_only if idempotent is None else idempotent,
        )

    def _event_columns(self) -> tuple[str, ...]:
        return _PUBLIC_EVENT_COLUMNS if self._identity.role == "anon" else _EVENT_COLUMNS

    def _booking_columns(self) -> tuple[str, ...]:
        if self._identity.role == "service_role":
            return _SERVICE_BOOKING_COLUMNS
        return _BOOKING_COLUMNS

    async def _select(self, query: Select, *, replica: bool = False) -> list[Mapping[str, Any]]:
        if not self._schema.passed:
            await self._check_schema()
        _require_aware((f.column, f.value) for f in query.filters)
        return await self._retrying(
            lambda: self._transport.select(self._identity, query, replica=replica),
            idempotent=True,
        )

    # -- events ---------------------------------------------------------------------------

    async def create_event(
        self,
        title: str,
        capacity: int,
        starts_at: datetime,
        *,
        ends_at: datetime | None = None,
        description: str | None = None,
        venue: str | None = None,
        max_seats_per_booking: int | None = None,
        waitlist_enabled: bool | None = None,
        waitlist_limit: int | None = None,
        waitlist_policy: WaitlistPolicy | str | None = None,
        promotion_mode: PromotionMode | str | None = None,
        offer_ttl: timedelta | None = None,
        sales_open_at: datetime | None = None,
        sales_close_at: datetime | None = None,
        publish: bool | None = None,
    ) -> Event:
        """Create an event organized by the calling user (``public.create_event``).

        Options left as ``None`` take the database's defaults: 10 seats per booking, a
        waitlist without limit, ``strict`` order, ``auto`` promotion, 24 h offers, sales
        from now until the start, published at once.

        Args:
            title: 1 to 200 characters.
            capacity: Seats, 1 to 1,000,000.
            starts_at: When the event starts (timezone-aware).
            ends_at: When it ends.
            description: Up to 10,000 characters.
            venue: Up to 500 characters.
            max_seats_per_booking: Largest party one booking may hold.
            waitlist_enabled: Whether bookings join a waitlist once sold out.
            waitlist_limit: Most waiting bookings.
            waitlist_policy: ``strict`` (head of the queue only) or ``first_fit``.
            promotion_mode: ``auto`` (confirm) or ``offer`` (claim before it expires).
            offer_ttl: How long an offer stays open, 1 minute to 30 days.
            sales_open_at: When booking opens.
            sales_close_at: When booking closes.
            publish: ``False`` creates a draft only its organizer sees.

        Returns:
            The new event.

        Raises:
            InvalidParameter: A value is out of range.
            PermissionDenied: The caller is not a signed-in user.

        Example:
            >>> event = await alice.create_event(
            ...     "Jazz night", capacity=80, starts_at=datetime(2026, 12, 31, 20, tzinfo=UTC),
            ...     promotion_mode=PromotionMode.OFFER, offer_ttl=timedelta(hours=2),
            ... )
        """
        row = await self._call(
            "create_event",
            {
                "title": title,
                "capacity": capacity,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "description": description,
                "venue": venue,
                "max_seats_per_booking": max_seats_per_booking,
                "waitlist_enabled": waitlist_enabled,
                "waitlist_limit": waitlist_limit,
                "waitlist_policy": waitlist_policy,
                "promotion_mode": promotion_mode,
                "offer_ttl": offer_ttl,
                "sales_open_at": sales_open_at,
                "sales_close_at": sales_close_at,
                "publish": publish,
            },
            "one",
        )
        return Event.from_row(row)

    async def update_event(
        self,
        event_id: uuid.UUID,
        *,
        title: str | None = None,
        description: str | None = None,
        venue: str | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        sales_open_at: datetime | None = None,
        sales_close_at: datetime | None = None,
        max_seats_per_booking: int | None = None,
        waitlist_limit: int | None = None,
        offer_ttl: timedelta | None = None,
    ) -> Event:
        """Change an event's details (``public.update_event``); ``None`` keeps a value.

        The values are checked as :meth:`create_event` checks them; the change is recorded
        as one ``event_updated`` ledger entry (``detail["changes"]`` names each field's old
        and new value), which watchers receive. Capacity is changed by :meth:`set_capacity`.

        Raises:
            EventNotFound: No such event visible to the caller.
            PermissionDenied: The caller does not organize the event (nor is the service).
            InvalidParameter: A value is out of range, or a datetime is naive.
            InvalidTransition: The event is cancelled.

        Example:
            >>> event = await alice.update_event(event.id, venue="Blue Hall")
        """
        row = await self._call(
            "update_event",
            {
                "event_id": event_id,
                "title": title,
                "description": description,
                "venue": venue,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "sales_open_at": sales_open_at,
                "sales_close_at": sales_close_at,
                "max_seats_per_booking": max_seats_per_booking,
                "waitlist_limit": waitlist_limit,
                "offer_ttl": offer_ttl,
            },
            "one",
        )
        return Event.from_row(row)

    async def publish_event(self, event_id: uuid.UUID) -> Event:
        """Publish a draft event (``public.publish_event``); a published one is unchanged.

        Raises:
            EventNotFound: No such event visible to the caller.
            PermissionDenied: The caller does not organize the event.
            InvalidTransition: The event is cancelled.

        Example:
            >>> event = await alice.publish_event(draft.id)
        """
        return Event.from_row(await self._call("publish_event", {"event_id": event_id}, "one"))

    async def cancel_event(self, event_id: uuid.UUID) -> Event:
        """Cancel an event and every active booking of it (``public.cancel_event``).

        Raises:
            EventNotFound: No such event visible to the caller.
            PermissionDenied: The caller does not organize the event.
            InvalidTransition: The event is already cancelled.

        Example:
            >>> event = await alice.cancel_event(event.id)
        """
        return Event.from_row(await self._call("cancel_event", {"event_id": event_id}, "one"))

    async def set_capacity(self, event_id: uuid.UUID, capacity: int) -> Event:
        """Change an event's capacity; freed seats go to the waitlist (``set_event_capacity``).

        Raises:
            EventNotFound: No such event visible to the caller.
            PermissionDenied: The caller does not organize the event.
            CapacityConflict: Fewer seats than are already confirmed or offered.
            InvalidParameter: Not between 1 and 1,000,000.
            InvalidTransition: The event is cancelled.

        Example:
            >>> event = await alice.set_capacity(event.id, 120)
        """
        row = await self._call(
            "set_event_capacity", {"event_id": event_id, "capacity": capacity}, "one"
        )
        return Event.from_row(row)

    async def list_events(
        self,
        *,
        status: EventStatus | str | None = None,
        organizer_id: uuid.UUID | None = None,
        starts_after: datetime | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[Event]:
        """Events the caller may see, soonest first (a ``SELECT`` on ``public.events``).

        Args:
            status: Only events with this status.
            organizer_id: Only events this user organizes (not for anonymous callers, who
                may not read organizers).
            starts_after: Only events starting at or after this time (timezone-aware).
            limit: At most this many.
            after: The id of the last event of the previous page: continue after it.

        Raises:
            EventNotFound: ``after`` is not an event the caller may see.

        Example:
            >>> upcoming = await tessera.list_events(starts_after=datetime.now(UTC))
            >>> more = await tessera.list_events(after=upcoming[-1].id)
        """
        _require_aware([("starts_after", starts_after)])
        cursor: tuple[Any, ...] = ()
        if after is not None:
            last = await self.get_event(after)
            cursor = (last.starts_at, last.id)
        filters: list[Filter] = []
        if status is not None:
            filters.append(Filter("status", "eq", EventStatus(status).value))
        if organizer_id is not None:
            filters.append(Filter("organizer_id", "eq", organizer_id))
        if starts_after is not None:
            filters.append(Filter("starts_at", "gte", starts_after))
        rows = await self._select(
            Select(
                "events",
                self._event_columns(),
                tuple(filters),
                order=(("starts_at", False), ("id", False)),
                limit=limit,
                after=cursor,
            ),
            replica=True,
        )
        return [Event.from_row(row) for row in rows]

    async def get_event(self, event_id: uuid.UUID) -> Event:
        """One event (a ``SELECT`` on ``public.events``).

        Raises:
            EventNotFound: No such event visible to the caller.

        Example:
            >>> event = await tessera.get_event(event_id)
        """
        rows = await self._select(
            Select("events", self._event_columns(), (Filter("id", "eq", event_id),), limit=1)
        )
        if not rows:
            raise EventNotFound("event not found", detail=f"event_id={event_id}")
        return Event.from_row(rows[0])

    async def availability(self, event_id: uuid.UUID) -> Availability:
        """Seats and waitlist of an event right now (``public.event_availability``).

        Raises:
            EventNotFound: No such event visible to the caller.

        Example:
            >>> (await tessera.availability(event.id)).seats_available
            78
        """
        row = await self._call(
            "event_availability", {"event_id": event_id}, "one", read_only=True, replica=True
        )
        return Availability.from_row(row)

    async def changes(
        self, event_id: uuid.UUID, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Change]:
        """Ledger entries of an event after ``after_seq``, oldest first (``event_changes``).

        Entries are final: polling from the last ``seq`` seen never skips or repeats one.

        Args:
            event_id: The event.
            after_seq: Return entries with a larger ``seq`` (``Availability.last_seq`` or
                the last ``Change.seq`` seen).
            limit: At most this many, 1 to 10,000 (the database's default: 1,000).

        Raises:
            EventNotFound: No such event visible to the caller.
            InvalidParameter: ``limit`` is out of range.

        Example:
            >>> for change in await tessera.changes(event.id, after_seq=seen):
            ...     print(change.kind, change.seats_available)
        """
        rows = await self._call(
            "event_changes",
            {"event_id": event_id, "after_seq": after_seq, "max_rows": limit},
            "many",
            read_only=True,
            replica=True,
        )
        return [Change.from_row(row) for row in rows]

    async def my_changes(self, *, after_seq: int = 0, limit: int | None = None) -> list[Change]:
        """Ledger entries about the calling user's bookings after ``after_seq`` (``my_changes``).

        Like :meth:`changes`, entries are final and polling from the last ``seq`` seen never
        skips or repeats one.

        Args:
            after_seq: Return entries with a larger ``seq``.
            limit: At most this many, 1 to 10,000 (the database's default: 1,000).

        Raises:
            PermissionDenied: The caller is not a signed-in user.
            InvalidParameter: ``limit`` is out of range.

        Example:
            >>> for change in await bob.my_changes(after_seq=seen):
            ...     print(change.booking_id, change.status)
        """
        rows = await self._call(
            "my_changes", {"after_seq": after_seq, "max_rows": limit}, "many", read_only=True
        )
        return [Change.from_row(row) for row in rows]

    async def ledger_position(self) -> int:
        """The ledger's horizon now (``public.ledger_position``): a start for polling.

        Every entry with a ``seq`` up to it is visible to :meth:`changes` and
        :meth:`my_changes`; every later entry will have a larger ``seq``.

        Example:
            >>> seen = await bob.ledger_position()
        """
        return int(await self._call("ledger_position", {}, "scalar", read_only=True))

    async def attendees(
        self, event_id: uuid.UUID, *, limit: int | None = None, after: uuid.UUID | None = None
    ) -> list[Attendee]:
        """Confirmed and offered bookings of an event, with emails (``event_attendees``).

        Args:
            event_id: The event.
            limit: At most this many.
            after: The ``booking_id`` of the last attendee of the previous page.

        Raises:
            EventNotFound: No such event visible to the caller.
            PermissionDenied: The caller does not organize the event.

        Example:
            >>> emails = [a.email for a in await alice.attendees(event.id)]
        """
        rows = await self._call("event_attendees", {"event_id": event_id}, "many", read_only=True)
        people = [Attendee.from_row(row) for row in rows]
        return _page(people, lambda a: a.booking_id, after, limit)

    async def waitlist(
        self, event_id: uuid.UUID, *, limit: int | None = None, after: uuid.UUID | None = None
    ) -> list[WaitlistEntry]:
        """The waitlist of an event in order, with emails (``public.event_waitlist``).

        Args:
            event_id: The event.
            limit: At most this many.
            after: The ``booking_id`` of the last entry of the previous page.

        Raises:
            EventNotFound: No such event visible to the caller.
            PermissionDenied: The caller does not organize the event.

        Example:
            >>> for entry in await alice.waitlist(event.id):
            ...     print(entry.position, entry.email, entry.seats)
        """
        rows = await self._call("event_waitlist", {"event_id": event_id}, "many", read_only=True)
        entries = [WaitlistEntry.from_row(row) for row in rows]
        return _page(entries, lambda w: w.booking_id, after, limit)

    async def expire_offers(self) -> int:
        """Expire offers past their deadline and pass the seats on (service role only).

        Returns:
            How many offers expired.

        Raises:
            PermissionDenied: The caller is not the service role.

        Example:
            >>> await tessera.as_service().expire_offers()
            0
        """
        return int(await self._call("expire_offers", {}, "scalar") or 0)

    # -- bookings -------------------------------------------------------------------------

    async def book(
        self, event_id: uuid.UUID, seats: int = 1, *, idempotency_key: str | None = None
    ) -> Booking:
        """Book seats, or join the waitlist when the event is full (``public.book_event``).

        Every call sends an idempotency key (a new UUID unless given), so when a reply is
        lost the retry returns the booking the first attempt made instead of a second one.
        Pass your own key (an order id, say) to make repeated requests safe end to end.

        Args:
            event_id: The event.
            seats: Party size, up to the event's ``max_seats_per_booking``.
            idempotency_key: 1 to 200 characters naming this booking for this user.

        Returns:
            The booking: ``confirmed``, or ``waitlisted`` with its ``waitlist_position``.

        Raises:
            EventNotFound: No such event visible to the caller.
            SalesClosed: Not published, or outside the sales window.
            InvalidSeats: Too few or too many seats.
            AlreadyBooked: The caller already has an active booking for the event.
            SoldOut: No seats and no room on the waitlist.
            PermissionDenied: The caller is not a signed-in user.

        Example:
            >>> booking = await bob.book(event.id, seats=2, idempotency_key=f"order-{order.id}")
            >>> print(booking.status, booking.waitlist_position)
            waitlisted 3
        """
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        row = await self._call(
            "book_event",
            {"event_id": event_id, "seats": seats, "idempotency_key": key},
            "one",
            idempotent=True,
        )
        return Booking.from_result(row)

    async def cancel(self, booking_id: uuid.UUID) -> Booking:
        """Cancel a booking; its seats go to the waitlist (``public.cancel_booking``).

        Raises:
            BookingNotFound: No such booking of the caller's.
            InvalidTransition: Already cancelled or expired.

        Example:
            >>> booking = await bob.cancel(booking.id)
        """
        return Booking.from_result(
            await self._call("cancel_booking", {"booking_id": booking_id}, "one")
        )

    async def claim_offer(self, booking_id: uuid.UUID) -> Booking:
        """Take up an offer made from the waitlist, confirming it (``public.claim_offer``).

        Raises:
            BookingNotFound: No such booking of the caller's.
            InvalidTransition: No open offer (never offered, or it expired).

        Example:
            >>> booking = await bob.claim_offer(booking.id)
        """
        return Booking.from_result(
            await self._call("claim_offer", {"booking_id": booking_id}, "one")
        )

    async def waitlist_position(self, booking_id: uuid.UUID) -> int | None:
        """Where a waiting booking stands (1 = next), or ``None`` when it is not waiting.

        Raises:
            BookingNotFound: No such booking the caller may see.

        Example:
            >>> await bob.waitlist_position(booking.id)
            2
        """
        value = await self._call(
            "waitlist_position", {"booking_id": booking_id}, "scalar", read_only=True
        )
        return None if value is None else int(value)

    async def my_bookings(
        self, *, limit: int | None = None, after: uuid.UUID | None = None
    ) -> list[Booking]:
        """Every booking of the calling user, cancelled ones included (``my_bookings``).

        Args:
            limit: At most this many.
            after: The id of the last booking of the previous page.

        Example:
            >>> active = [b for b in await bob.my_bookings() if b.status == "confirmed"]
        """
        rows = await self._call("my_bookings", {}, "many", read_only=True)
        return _page([Booking.from_row(row) for row in rows], lambda b: b.id, after, limit)

    async def list_bookings(
        self,
        *,
        event_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
        status: Sequence[BookingStatus | str] | BookingStatus | str | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[Booking]:
        """Bookings in every state the caller may see, oldest first (``public.bookings``).

        Row level security decides which: an organizer sees their events' bookings, a user
        their own, the service role all of them.

        Args:
            event_id: Only this event's.
            user_id: Only this user's.
            status: Only bookings in this state, or in any of these.
            limit: At most this many.
            after: The id of the last booking of the previous page: continue after it.

        Raises:
            BookingNotFound: ``after`` is not a booking the caller may see.

        Example:
            >>> waiting = await alice.list_bookings(event_id=event.id, status="waitlisted")
        """
        wanted = [status] if isinstance(status, str) else list(status or [])
        filters: list[Filter] = []
        if event_id is not None:
            filters.append(Filter("event_id", "eq", event_id))
        if user_id is not None:
            filters.append(Filter("user_id", "eq", user_id))
        cursor: tuple[Any, ...] = ()
        if after is not None:
            last = await self.get_booking(after)
            cursor = (last.created_at, last.id)
        states = {BookingStatus(s).value for s in wanted}
        pages: list[Booking] = []
        # One query per state keeps each one a plain filter; merged in (created_at, id) order.
        for state in sorted(states) or [""]:
            more = [Filter("status", "eq", state)] if state else []
            rows = await self._select(
                Select("bookings", self._booking_columns(), (*filters, *more),
                       order=(("created_at", False), ("id", False)), limit=limit, after=cursor)
            )  # fmt: skip
            pages.extend(Booking.from_row(row) for row in rows)
        pages.sort(key=lambda b: (b.created_at, b.id))
        return pages[:limit]

    async def get_booking(self, booking_id: uuid.UUID) -> Booking:
        """One booking the caller may see (a ``SELECT`` on ``public.bookings``).

        Raises:
            BookingNotFound: No such booking visible to the caller.

        Example:
            >>> booking = await bob.get_booking(booking_id)
        """
        rows = await self._select(
            Select("bookings", self._booking_columns(), (Filter("id", "eq", booking_id),), limit=1)
        )
        if not rows:
            raise BookingNotFound("booking not found", detail=f"booking_id={booking_id}")
        return Booking.from_row(rows[0])

    # -- realtime -------------------------------------------------------------------------

    def watch_event(self, event_id: uuid.UUID, *, after_seq: int | None = None) -> ChangeStream:
        """Follow an event live: every ledger entry, once each, in ``seq`` order.

        Each :class:`Change` carries the event's availability right after it. Who an entry
        is about is visible as :meth:`changes` shows it: to the organizer (and the service
        role) always, to others only for their own bookings. The stream reconnects on its
        own and catches up from its last position, so nothing is skipped or repeated; it
        ends after the event's ``event_cancelled`` entry (watching an event that is already
        cancelled yields that final entry and ends).

        Args:
            event_id: The event.
            after_seq: Start after this position (a ``Change.seq`` or
                ``Availability.last_seq`` seen before) to resume without a gap. By default
                only entries from now on.

        Returns:
            A :class:`ChangeStream`: iterate it with ``async for``; close it with ``async
            with`` or ``aclose()``.

        Raises:
            EventNotFound: No such event visible to the caller (on ``start``, ``async with``
                or the first iteration).

        Example:
            >>> async with tessera.watch_event(event.id) as changes:
            ...     async for change in changes:
            ...         print(change.kind, change.seats_available, change.waitlist_count)
        """
        return ChangeStream(self, Topic("event", event_id), after_seq)

    def watch_my_bookings(self, *, after_seq: int | None = None) -> ChangeStream:
        """Follow the calling user's bookings live: promotions, offers, cancellations, …

        Every ledger entry about one of the caller's bookings, once each, in ``seq`` order,
        across reconnects; ``status``, ``waitlist_position`` and ``offer_expires_at`` say
        where the booking stands after the change.

        Args:
            after_seq: Start after this position (the last ``Change.seq`` handled) to
                resume without a gap. By default only entries from now on.

        Returns:
            A :class:`ChangeStream` that never ends by itself.

        Raises:
            PermissionDenied: The caller is not a signed-in user.

        Example:
            >>> async with bob.watch_my_bookings() as mine:
            ...     async for change in mine:
            ...         if change.status == "offered":
            ...             await bob.claim_offer(change.booking_id)
        """
        user_id = self._identity.user_id
        if user_id is None or self._identity.role != "authenticated":
            raise PermissionDenied(
                "not signed in", hint="Watch your bookings as a signed-in user (as_user)."
            )
        return ChangeStream(self, Topic("user", user_id), after_seq)
