"""Realtime subscriptions: ledger entries exactly once, in ``seq`` order, across reconnects.

Every subscription works the same way over every transport:

1. It starts from a position: ``after_seq``, or by default "now" (the event's
   ``event_availability(…).last_seq``, or ``ledger_position()`` for one's own bookings).
2. It attaches a :class:`Sink` to the transport's :class:`Notifier`, which from then on tells
   it about new entries. The direct transport's :class:`LedgerPoller` hands over whole rows
   where the subscriber may see them whole; otherwise (and always on Supabase, whose
   broadcasts arrive in commit order, not ``seq`` order) a notification is only a wake-up
   carrying a ``seq``.
3. It reads entries after its position through SQL *as the subscriber*: ``event_changes``
   (which decides visibility, TS001 for someone else's draft, and redacts people for
   non-organizers) or ``my_changes``. Both stop below the ledger horizon, so an entry that
   commits late is never skipped: its ``seq`` is above every position handed out before it
   committed.
4. From then on it delivers entries with a ``seq`` above the last one it delivered, and
   reads through SQL again whenever it may have missed one: a wake-up for an entry it has
   not delivered, a channel that was resubscribed, a buffer that overflowed, or (Supabase,
   where a broadcast can be lost) a periodic resync.

Registering with the notifier *before* reading through SQL is what makes the hand-over
gap-free: everything the notifier passes on afterwards lies past what it had passed on
before, and everything it had passed on before lies below the horizon of the first read.

``NOTIFY`` is deliberately not used: a ``NOTIFY`` in every booking transaction serializes all
commits of the database on the notification queue's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import uuid
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Protocol, Self

from tessera_client._errors import OutcomeUnknown, TransactionConflict, Unavailable
from tessera_client._identity import Identity
from tessera_client._models import Availability, Change, ChangeKind, EventStatus
from tessera_client._transports._base import Transport
from tessera_client._transports._notifier import Notifier, Sink, Topic

__all__ = ["ChangeSource", "ChangeStream"]

logger = logging.getLogger("tessera_client.realtime")

PAGE_SIZE = 1000
"""Entries read per ``event_changes`` / ``my_changes`` call."""

QUEUE_SIZE = 1000
"""Entries a stream reads ahead of its consumer."""

SINK_CAPACITY = 10_000
"""Rows a subscription buffers beyond its queue before it drops them and reads through SQL."""

_TRANSIENT = (Unavailable, OutcomeUnknown, TransactionConflict)


class ChangeSource(Protocol):
    """The public methods of :class:`~tessera_client.AsyncTessera` a stream reads through.

    Declared here, where it is used, so that streams depend on the client's public API
    only and the client module, which makes streams, is the only one importing the other.
    """

    @property
    def identity(self) -> Identity:
        """Who the subscriber is."""

    @property
    def transport(self) -> Transport:
        """Where the notifier comes from (``transport.realtime()``)."""

    async def availability(self, event_id: uuid.UUID) -> Availability:
        """``public.event_availability`` as the subscriber."""

    async def changes(
        self, event_id: uuid.UUID, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Change]:
        """``public.event_changes`` as the subscriber."""

    async def my_changes(self, *, after_seq: int = 0, limit: int | None = None) -> list[Change]:
        """``public.my_changes`` as the subscriber."""

    async def ledger_position(self) -> int:
        """``public.ledger_position()``: the ledger horizon now."""


# -- subscriptions --------------------------------------------------------------------------


class _End:
    """Put in a stream's queue after its last entry."""


_END = _End()


class ChangeStream:
    """A live, ordered feed of ledger entries; iterate it with ``async for``.

    Made by :meth:`AsyncTessera.watch_event` and :meth:`AsyncTessera.watch_my_bookings`.
    It yields each entry once, in ``seq`` order, and survives lost connections on its own
    (retrying with backoff). Watching an event ends after its ``event_cancelled`` entry.
    Errors that end it (the event is not visible to the caller, the caller may not
    subscribe) are raised by :meth:`start` (or entering ``async with``) or by the first
    iteration. Waiting for the next entry may be cancelled (``asyncio.wait_for``) without
    harm to the stream. Use it as an async context manager, or call :meth:`aclose`, to
    unsubscribe.

    Example:
        >>> async with tessera.watch_event(event.id) as changes:
        ...     async for change in changes:
        ...         print(change.seq, change.kind, change.seats_available)
    """

    def __init__(self, client: ChangeSource, topic: Topic, after_seq: int | None) -> None:
        self._follower = _Follower(client, topic, after_seq)
        self._queue: asyncio.Queue[Change | _End | BaseException] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._last: int | None = after_seq
        self._done = False

    @property
    def last_seq(self) -> int | None:
        """The position of the last entry delivered (or the start position): resume from it."""
        return self._last

    async def start(self) -> Self:
        """Subscribe now rather than on the first iteration.

        Raises:
            EventNotFound: The event does not exist or is not visible to the caller.
            PermissionDenied: The caller may not follow this topic.
            Unavailable: The database or Realtime could not be reached.
        """
        if self._task is None:
            loop = asyncio.get_running_loop()
            started: asyncio.Future[int] = loop.create_future()
            self._task = loop.create_task(
                self._follower.run(self._queue, started), name="tessera-change-stream"
            )
            try:
                self._last = await asyncio.shield(started)
            except BaseException:
                if not started.done():
                    self._task.cancel()
                self._done = True
                raise
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Change:
        if self._done:
            raise StopAsyncIteration
        await self.start()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._last = item.seq
        return item

    async def aclose(self) -> None:
        """Unsubscribe; iterating afterwards ends at once."""
        self._done = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped without aclose() (a `break` out of `async for`): unsubscribe anyway.
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)


class _Follower:
    """The work behind a :class:`ChangeStream`, in a task of its own.

    It holds no reference to its stream, so a stream dropped without ``aclose()`` is
    collected, and its ``__del__`` ends this task.
    """

    def __init__(self, client: ChangeSource, topic: Topic, after_seq: int | None) -> None:
        self._client = client
        self._topic = topic
        self._after_seq = after_seq
        identity = client.identity
        # What decides visibility in SQL: the role and the user (auth.uid()).
        self._identity_key = (identity.role, str(identity.claims.get("sub", "")))

    async def _position(self) -> int:
        """Where "now" is for this topic, as the subscriber (which also checks visibility)."""
        if self._topic.kind == "event":
            availability = await self._client.availability(self._topic.id)
            if availability.status is EventStatus.CANCELLED:
                # The event's last entry is its cancellation: start right before it, so the
                # stream delivers that final entry and ends.
                return availability.last_seq - 1
            return availability.last_seq
        return await self._client.ledger_position()

    async def _page(self, after_seq: int) -> list[Change]:
        """Entries after ``after_seq`` the subscriber may see, read through SQL."""
        if self._topic.kind == "event":
            return await self._client.changes(self._topic.id, after_seq=after_seq, limit=PAGE_SIZE)
        return await self._client.my_changes(after_seq=after_seq, limit=PAGE_SIZE)

    def _is_final(self, change: Change) -> bool:
        return self._topic.kind == "event" and change.kind is ChangeKind.EVENT_CANCELLED

    async def run(
        self,
        queue: asyncio.Queue[Change | _End | BaseException],
        started: asyncio.Future[int],
    ) -> None:
        """Subscribe, resolve ``started`` with the start position, then fill ``queue``."""
        client = self._client
        notifier: Notifier = client.transport.realtime()
        sink: Sink | None = None
        try:
            last = self._after_seq if self._after_seq is not None else await self._position()
            sink = Sink(
                takes_rows=notifier.takes_rows(client.identity, self._topic),
                capacity=SINK_CAPACITY,
            )
            await notifier.attach(client.identity, self._topic, sink)
            sink.woken_at = asyncio.get_running_loop().time()  # the first read starts later
            started.set_result(last)
            async for change in self._follow(sink, notifier, last):
                await queue.put(change)
                if self._is_final(change):
                    break
            await queue.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if started.done():
                await queue.put(exc)
            else:
                started.set_exception(exc)
        finally:
            if sink is not None:
                notifier.detach(sink)

    async def _follow(
        self, sink: Sink, notifier: Notifier, last: int
    ) -> AsyncGenerator[Change, None]:
        """Every entry after ``last``, once, in order, until the notifier closes."""
        loop = asyncio.get_running_loop()
        read_at = -math.inf
        read_needed = True
        hint_since: float | None = None
        hint_pause = 0.01
        outage = 0
        while True:
            sink.clear()
            if sink.error is not None:
                raise sink.error
            if sink.closed:
                return
            periodic = notifier.resync_interval
            due = periodic is not None and loop.time() - read_at >= periodic
            if read_needed or sink.resync or due or sink.hint > last:
                read_needed = sink.resync = False
                try:
                    page = await notifier.reads.read(
                        (self._identity_key, self._topic, last),
                        sink.woken_at,
                        functools.partial(self._page, last),
                    )
                except _TRANSIENT as exc:
                    # The database is away: keep the position and try again later.
                    read_needed = True
                    outage += 1
                    pause = min(5.0, 0.1 * 2 ** min(outage, 6)) * random.uniform(0.5, 1.0)
                    logger.warning("realtime: read failed (%s); retrying in %.1fs", exc, pause)
                    await sink.wait(pause)
                    continue
                outage = 0
                read_at = loop.time()
                for change in page:
                    if change.seq > last:
                        last = change.seq
                        yield change
                if len(page) == PAGE_SIZE:
                    read_needed = True
                    continue
                if sink.hint > last:
                    # Announced but not yet below the horizon (an older transaction is still
                    # open): look again shortly.
                    now = loop.time()
                    hint_since = now if hint_since is None else hint_since
                    if now - hint_since > 60.0:
                        logger.warning("realtime: entry %d never became visible", sink.hint)
                        sink.hint = last
                    else:
                        await sink.wait(hint_pause)
                        hint_pause = min(hint_pause * 2, 1.0)
                    continue
                hint_since, hint_pause = None, 0.01
                continue
            if sink.rows:
                change = sink.rows.popleft()
                if change.seq > last:
                    last = change.seq
                    yield change
                continue
            timeout = None if periodic is None else read_at + periodic - loop.time()
            await sink.wait(timeout)
