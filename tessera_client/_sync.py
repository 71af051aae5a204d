"""The sync twin of :class:`AsyncTessera`, for scripts, notebooks, Django and workers.

It runs the async client on a private event loop in a background thread, so there is one
implementation of every call, its retries and its error mapping. The methods are kept by
hand, name for name and parameter for parameter; a test checks that both clients match.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from tessera_client._client import AsyncTessera, RetryPolicy
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
from tessera_client._transports._base import Transport

__all__ = ["ChangeIterator", "ClientUnusable", "Tessera"]

T = TypeVar("T")

CANCEL_GRACE = 5.0
"""Seconds a call cancelled by Ctrl-C may take to clean up before the interrupt goes on."""

CLOSE_TIMEOUT = 10.0
"""Seconds the finalizer of a dropped client waits for its connections to close."""


class ClientUnusable(RuntimeError):
    """A sync client used where it cannot work: after ``fork()``, closed, or on its own loop."""


class _LoopThread:
    """An event loop running in a daemon thread; coroutines are submitted to it.

    Three hazards of running a loop in a thread are handled here:

    * ``fork()``: the child inherits the client but not the thread, so a call would wait
      forever for a loop that does not run. Every call first checks the process id and
      raises :class:`ClientUnusable` in a child (whose pooled connections belong to the
      parent anyway): make a new client there.
    * Ctrl-C: :class:`KeyboardInterrupt` arrives in the waiting thread, not in the loop. The
      running call is cancelled on the loop (the driver abandons its query, the transaction
      rolls back) and given a moment to clean up before the interrupt is re-raised.
    * A client dropped without ``close()``: :class:`Tessera` registers a finalizer that
      closes its connections and stops this thread (also at interpreter exit).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tessera-sync-loop", daemon=True
        )
        self._thread.start()

    def _check_usable(self) -> None:
        if os.getpid() != self.pid:
            raise ClientUnusable(
                f"this sync Tessera client was created in process {self.pid} and cannot be "
                "used after fork(): create a new client in the child process"
            )
        if self._loop.is_closed() or not self._thread.is_alive():
            raise ClientUnusable("this sync Tessera client is closed")
        if threading.current_thread() is self._thread:
            raise ClientUnusable("a sync Tessera client cannot be used from its own loop")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; Ctrl-C cancels it."""
        try:
            self._check_usable()
        except ClientUnusable:
            coro.close()
            raise
        done = threading.Event()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(coro)
            task.add_done_callback(lambda _: done.set())
            started.append(task)

        def cancel() -> None:  # scheduled after start(), so the task exists
            started[0].cancel()

        self._loop.call_soon_threadsafe(start)
        try:
            done.wait()
        except BaseException:  # KeyboardInterrupt, or an exception from another signal handler
            self._loop.call_soon_threadsafe(cancel)
            done.wait(CANCEL_GRACE)
            raise
        return started[0].result()

    def build(self, factory: Callable[[], T]) -> T:
        """Call ``factory`` on the loop, so the objects it makes belong to that loop."""

        async def inside() -> T:
            return factory()

        return self.run(inside())

    def stop(self) -> None:
        """Stop and close the loop (a no-op in a forked child and when already stopped)."""
        if os.getpid() != self.pid or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()
            self._loop.close()


def _shut_down(client: AsyncTessera, loop: _LoopThread) -> None:
    """Close a sync client's connections and its loop (its finalizer; no reference to it)."""
    if os.getpid() != loop.pid:
        return  # a forked child: the connections and the thread are the parent's
    try:
        loop.run(asyncio.wait_for(client.close(), CLOSE_TIMEOUT))
    except Exception:  # best effort: the loop may be gone, the server unreachable
        pass
    finally:
        loop.stop()


class ChangeIterator:
    """The blocking twin of :class:`ChangeStream`: iterate it with ``for``.

    Each ``next()`` waits on the client's background loop for the next entry. Use it as a
    context manager (or call :meth:`close`) to unsubscribe.

    Example:
        >>> with tessera.watch_event(event.id) as changes:
        ...     for change in changes:
        ...         print(change.kind, change.seats_available)
    """

    def __init__(self, stream: ChangeStream, loop: _LoopThread, client: Tessera) -> None:
        self._stream = stream
        self._loop = loop
        self._client = client  # keeps the loop's owner, and so the loop, alive

    @property
    def last_seq(self) -> int | None:
        """The position of the last entry delivered (or the start position)."""
        return self._stream.last_seq

    def start(self) -> Self:
        """Subscribe now rather than on the first ``next()``. See :meth:`ChangeStream.start`."""
        self._loop.run(self._stream.start())
        return self

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Change:
        try:
            return self._loop.run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Unsubscribe."""
        self._loop.run(self._stream.aclose())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Tessera:
    """Tessera's sync client: every method of :class:`AsyncTessera`, blocking.

    Create it with :meth:`connect` or :meth:`from_supabase`; use it as a context manager (or
    call :meth:`close`) to release the pool and the background loop. A client dropped
    without closing is closed by a finalizer. Ctrl-C cancels the call in progress. After
    ``fork()`` a client cannot be used in the child (:class:`ClientUnusable`): make a new
    one there.

    Example:
        >>> with Tessera.connect(dsn) as tessera:
        ...     bob = tessera.as_user(bob_id)
        ...     booking = bob.book(event_id, seats=2)
    """

    def __init__(
        self, client: AsyncTessera, loop: _LoopThread, *, root: Tessera | None = None
    ) -> None:
        self._async = client
        self._loop = loop
        # Scoped clients keep their root alive: its finalizer closes the shared pool.
        self._root = root
        self._finalizer: weakref.finalize[[AsyncTessera, _LoopThread], Tessera] | None = None
        if root is None:
            self._finalizer = weakref.finalize(self, _shut_down, client, loop)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coro)

    def _scoped(self, client: AsyncTessera) -> Tessera:
        return Tessera(client, self._loop, root=self._root or self)

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
    ) -> Tessera:
        """The blocking twin of :meth:`AsyncTessera.connect`.

        Example:
            >>> with Tessera.connect("postgresql://authenticator:…@localhost:54322/postgres") as db:
            ...     print(db.as_user(alice_id).my_bookings())
        """
        return cls._start(
            lambda: AsyncTessera.connect(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                jwt_secret=jwt_secret,
                retry=retry,
                application_name=application_name,
                read_dsn=read_dsn,
            )
        )

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
    ) -> Tessera:
        """The blocking twin of :meth:`AsyncTessera.from_supabase`.

        Example:
            >>> with Tessera.from_supabase(os.environ["SUPABASE_URL"], anon_key) as tessera:
            ...     print(tessera.list_events())
        """
        return cls._start(
            lambda: AsyncTessera.from_supabase(
                url,
                key,
                access_token=access_token,
                service_key=service_key,
                jwt_secret=jwt_secret,
                timeout=timeout,
                retry=retry,
            )
        )

    @classmethod
    def _start(cls, factory: Callable[[], AsyncTessera]) -> Tessera:
        loop = _LoopThread()
        try:
            return cls(loop.build(factory), loop)
        except BaseException:
            loop.stop()
            raise

    # -- identity and lifecycle -----------------------------------------------------------

    @property
    def identity(self) -> Identity:
        """Who this client acts as."""
        return self._async.identity

    @property
    def transport(self) -> Transport:
        """The transport (``transport.name`` is ``"postgres"`` or ``"supabase"``)."""
        return self._async.transport

    def as_user(self, user: uuid.UUID | str, *, email: str | None = None) -> Tessera:
        """A client acting as a user, by id or access token. See :meth:`AsyncTessera.as_user`."""
        return self._scoped(self._async.as_user(user, email=email))

    def as_service(self) -> Tessera:
        """A client acting as ``service_role``. See :meth:`AsyncTessera.as_service`."""
        return self._scoped(self._async.as_service())

    def as_anonymous(self) -> Tessera:
        """A client acting as role ``anon``."""
        return self._scoped(self._async.as_anonymous())

    def sign_in(self, email: str, password: str) -> Tessera:
        """A client for a password session. See :meth:`AsyncTessera.sign_in`."""
        return self._scoped(self._run(self._async.sign_in(email, password)))

    def open(self) -> Self:
        """Connect now instead of at the first call."""
        self._run(self._async.open())
        return self

    def close(self) -> None:
        """Close the connections and the background loop (scoped clients do nothing)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- events ---------------------------------------------------------------------------

    def create_event(
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
        """Create an event. See :meth:`AsyncTessera.create_event`."""
        return self._run(
            self._async.create_event(
                title,
                capacity,
                starts_at,
                ends_at=ends_at,
                description=description,
                venue=venue,
                max_seats_per_booking=max_seats_per_booking,
                waitlist_enabled=waitlist_enabled,
                waitlist_limit=waitlist_limit,
                waitlist_policy=waitlist_policy,
                promotion_mode=promotion_mode,
                offer_ttl=offer_ttl,
                sales_open_at=sales_open_at,
                sales_close_at=sales_close_at,
                publish=publish,
            )
        )

    def update_event(
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
        """Change an event's details. See :meth:`AsyncTessera.update_event`."""
        return self._run(
            self._async.update_event(
                event_id,
                title=title,
                description=description,
                venue=venue,
                starts_at=starts_at,
                ends_at=ends_at,
                sales_open_at=sales_open_at,
                sales_close_at=sales_close_at,
                max_seats_per_booking=max_seats_per_booking,
                waitlist_limit=waitlist_limit,
                offer_ttl=offer_ttl,
            )
        )

    def publish_event(self, event_id: uuid.UUID) -> Event:
        """Publish a draft. See :meth:`AsyncTessera.publish_event`."""
        return self._run(self._async.publish_event(event_id))

    def cancel_event(self, event_id: uuid.UUID) -> Event:
        """Cancel an event. See :meth:`AsyncTessera.cancel_event`."""
        return self._run(self._async.cancel_event(event_id))

    def set_capacity(self, event_id: uuid.UUID, capacity: int) -> Event:
        """Change the capacity. See :meth:`AsyncTessera.set_capacity`."""
        return self._run(self._async.set_capacity(event_id, capacity))

    def list_events(
        self,
        *,
        status: EventStatus | str | None = None,
        organizer_id: uuid.UUID | None = None,
        starts_after: datetime | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[Event]:
        """Events the caller may see. See :meth:`AsyncTessera.list_events`."""
        return self._run(
            self._async.list_events(
                status=status,
                organizer_id=organizer_id,
                starts_after=starts_after,
                limit=limit,
                after=after,
            )
        )

    def get_event(self, event_id: uuid.UUID) -> Event:
        """One event. See :meth:`AsyncTessera.get_event`."""
        return self._run(self._async.get_event(event_id))

    def availability(self, event_id: uuid.UUID) -> Availability:
        """Seats and waitlist now. See :meth:`AsyncTessera.availability`."""
        return self._run(self._async.availability(event_id))

    def changes(
        self, event_id: uuid.UUID, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Change]:
        """Ledger entries after a position. See :meth:`AsyncTessera.changes`."""
        return self._run(self._async.changes(event_id, after_seq=after_seq, limit=limit))

    def my_changes(self, *, after_seq: int = 0, limit: int | None = None) -> list[Change]:
        """Ledger entries about your bookings. See :meth:`AsyncTessera.my_changes`."""
        return self._run(self._async.my_changes(after_seq=after_seq, limit=limit))

    def ledger_position(self) -> int:
        """The ledger's horizon now. See :meth:`AsyncTessera.ledger_position`."""
        return self._run(self._async.ledger_position())

    def attendees(
        self, event_id: uuid.UUID, *, limit: int | None = None, after: uuid.UUID | None = None
    ) -> list[Attendee]:
        """An event's attendees (organizer). See :meth:`AsyncTessera.attendees`."""
        return self._run(self._async.attendees(event_id, limit=limit, after=after))

    def waitlist(
        self, event_id: uuid.UUID, *, limit: int | None = None, after: uuid.UUID | None = None
    ) -> list[WaitlistEntry]:
        """An event's waitlist (organizer). See :meth:`AsyncTessera.waitlist`."""
        return self._run(self._async.waitlist(event_id, limit=limit, after=after))

    def expire_offers(self) -> int:
        """Expire overdue offers (service role). See :meth:`AsyncTessera.expire_offers`."""
        return self._run(self._async.expire_offers())

    # -- bookings -------------------------------------------------------------------------

    def book(
        self, event_id: uuid.UUID, seats: int = 1, *, idempotency_key: str | None = None
    ) -> Booking:
        """Book seats or join the waitlist. See :meth:`AsyncTessera.book`."""
        return self._run(self._async.book(event_id, seats, idempotency_key=idempotency_key))

    def cancel(self, booking_id: uuid.UUID) -> Booking:
        """Cancel a booking. See :meth:`AsyncTessera.cancel`."""
        return self._run(self._async.cancel(booking_id))

    def claim_offer(self, booking_id: uuid.UUID) -> Booking:
        """Claim an offer. See :meth:`AsyncTessera.claim_offer`."""
        return self._run(self._async.claim_offer(booking_id))

    def waitlist_position(self, booking_id: uuid.UUID) -> int | None:
        """A waiting booking's position. See :meth:`AsyncTessera.waitlist_position`."""
        return self._run(self._async.waitlist_position(booking_id))

    def my_bookings(
        self, *, limit: int | None = None, after: uuid.UUID | None = None
    ) -> list[Booking]:
        """The caller's bookings. See :meth:`AsyncTessera.my_bookings`."""
        return self._run(self._async.my_bookings(limit=limit, after=after))

    def list_bookings(
        self,
        *,
        event_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
        status: Sequence[BookingStatus | str] | BookingStatus | str | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[Booking]:
        """Bookings in every state. See :meth:`AsyncTessera.list_bookings`."""
        return self._run(
            self._async.list_bookings(
                event_id=event_id, user_id=user_id, status=status, limit=limit, after=after
            )
        )

    def get_booking(self, booking_id: uuid.UUID) -> Booking:
        """One booking. See :meth:`AsyncTessera.get_booking`."""
        return self._run(self._async.get_booking(booking_id))

    # -- realtime -------------------------------------------------------------------------

    def watch_event(self, event_id: uuid.UUID, *, after_seq: int | None = None) -> ChangeIterator:
        """Follow an event live, blocking. See :meth:`AsyncTessera.watch_event`."""
        stream = self._async.watch_event(event_id, after_seq=after_seq)
        return ChangeIterator(stream, self._loop, self)

    def watch_my_bookings(self, *, after_seq: int | None = None) -> ChangeIterator:
        """Follow your bookings live, blocking. See :meth:`AsyncTessera.watch_my_bookings`."""
        stream = self._async.watch_my_bookings(after_seq=after_seq)
        return ChangeIterator(stream, self._loop, self)
