"""The contract between transports and realtime subscriptions.

A transport's notifier (:class:`Notifier`) tells each subscription (through its
:class:`Sink`) about new ledger entries of the :class:`Topic` it follows; the subscription
then reads the entries through SQL as its subscriber. This module is the bottom of the
realtime design: notifiers (the ledger poller, Supabase Realtime) implement it, and
:mod:`tessera_client._streams` consumes it; it imports neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tessera_client._identity import Identity
from tessera_client._models import Change

__all__ = ["Notifier", "SharedReads", "Sink", "Topic"]


@dataclass(frozen=True, slots=True)
class Topic:
    """What a subscription follows: one event's entries, or one user's."""

    kind: Literal["event", "user"]
    id: uuid.UUID

    @property
    def name(self) -> str:
        """The Supabase Realtime topic: ``event:<id>`` or ``user:<id>``."""
        return f"{self.kind}:{self.id}"

    @property
    def private(self) -> bool:
        """Every Tessera topic is a private Realtime channel: RLS on ``realtime.messages``
        decides who receives, and nobody but the database may send (on a public channel any
        holder of the anon key could send forged broadcasts)."""
        return True


class Sink:
    """What a notifier feeds one subscription. Called on the subscription's event loop.

    Args:
        takes_rows: Whether :meth:`push` may hand over whole rows to deliver as they are;
            otherwise a pushed row only wakes the subscription up.
        capacity: Rows buffered at most; beyond that the buffer is dropped and the
            subscription reads through SQL again.
    """

    def __init__(self, *, takes_rows: bool, capacity: int = 10_000) -> None:
        self.takes_rows = takes_rows
        self.rows: deque[Change] = deque()
        self.hint = 0
        self.resync = False
        self.error: BaseException | None = None
        self.closed = False
        self.woken_at = -math.inf
        self._capacity = capacity
        self._wake = asyncio.Event()

    def _woken(self) -> None:
        self.woken_at = asyncio.get_running_loop().time()
        self._wake.set()

    def push(self, change: Change) -> None:
        """A new entry of the topic, as the service role sees it."""
        if not self.takes_rows:
            self.announce(change.seq)
            return
        if len(self.rows) >= self._capacity:
            self.rows.clear()
            self.resync = True
        else:
            self.rows.append(change)
        self._woken()

    def announce(self, seq: int) -> None:
        """An entry at ``seq`` exists: read it through SQL."""
        if seq > self.hint:
            self.hint = seq
        self._woken()

    def request_resync(self) -> None:
        """Something may have been missed (a reconnect): read through SQL from the position."""
        self.resync = True
        self._woken()

    def fail(self, error: BaseException) -> None:
        """End the subscription with ``error``."""
        self.error = error
        self._wake.set()

    def close(self) -> None:
        """End the subscription quietly (its client was closed)."""
        self.closed = True
        self._wake.set()

    def clear(self) -> None:
        self._wake.clear()

    async def wait(self, timeout: float | None = None) -> None:
        """Until something is pushed, or ``timeout`` seconds."""
        if timeout is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(timeout, 0.0))


class SharedReads:
    """Single-flight reads through SQL for the subscriptions of one notifier.

    Subscriptions of one identity at one position ask the same question; when many watch
    one event (a page served to many, a benchmark) they are woken together and would each
    make the same call. A read is shared only with subscriptions woken before it started,
    so its snapshot is taken after the wake-up and includes the entry that caused it.
    """

    def __init__(self) -> None:
        self._inflight: dict[Hashable, tuple[float, asyncio.Task[list[Change]]]] = {}
        self.calls = 0
        self.shared = 0

    async def read(
        self,
        key: Hashable,
        not_before: float,
        fetch: Callable[[], Coroutine[Any, Any, list[Change]]],
    ) -> list[Change]:
        """The result of ``fetch()``, or of an identical call started after ``not_before``."""
        found = self._inflight.get(key)
        if found is not None and found[0] >= not_before:
            self.shared += 1
            return await asyncio.shield(found[1])
        loop = asyncio.get_running_loop()
        # A task of its own: a subscription that stops waiting does not cancel the others'.
        task = loop.create_task(fetch())
        entry = (loop.time(), task)
        self._inflight[key] = entry
        self.calls += 1

        def forget(_: asyncio.Task[list[Change]]) -> None:
            if self._inflight.get(key) is entry:
                del self._inflight[key]
            if not task.cancelled():
                task.exception()  # retrieved: every waiter may have gone

        task.add_done_callback(forget)
        return await asyncio.shield(task)


class Notifier(Protocol):
    """How a transport tells subscriptions about new ledger entries."""

    resync_interval: float | None
    """Seconds between reads through SQL when nothing arrived (``None``: never needed)."""

    reads: SharedReads
    """Reads through SQL shared by the subscriptions of this notifier."""

    def takes_rows(self, identity: Identity, topic: Topic) -> bool:
        """Whether rows pushed to this subscriber may be delivered as they are."""

    async def attach(self, identity: Identity, topic: Topic, sink: Sink) -> None:
        """Start notifying ``sink``; returns once every later entry will reach it.

        Raises:
            Unavailable: The notifier could not start.
            PermissionDenied: The subscriber may not follow the topic.
        """

    def detach(self, sink: Sink) -> None:
        """Stop notifying ``sink`` (resources are released in the background)."""

    async def close(self) -> None:
        """Stop for good."""
