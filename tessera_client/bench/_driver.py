"""What every scenario drives the database with: the SDK transport, users, a load loop.

Scenarios call Tessera through the SDK's direct transport (a psycopg pool, the PostgREST
preamble per transaction), exactly as an application would. The baseline function lives in
its own schema; the transport's public ``call(…, schema=…)`` reaches it through the very
same path (pool, transaction, role and claims), so Tessera and the baseline pay identical
client costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from rich.progress import Progress

from tessera_client import AsyncTessera, Identity, RetryPolicy, TesseraError
from tessera_client.bench._stats import Phase
from tessera_client.transports import PostgresTransport, Returns

__all__ = [
    "NO_RETRY",
    "Admin",
    "BenchTransport",
    "Call",
    "UserSupply",
    "bench_client",
    "closed_loop",
    "error_code",
]

NO_RETRY = RetryPolicy(attempts=1)
"""Benchmarks count every failure; a retry would hide a deadlock or a conflict."""

Call = Callable[[], Awaitable[object]]


class BenchTransport(PostgresTransport):
    """The SDK's direct transport, with a shorthand for calls outside ``public``.

    ``call_function(identity, "public", "book_event", args)`` sends exactly what
    ``AsyncTessera.book`` sends; with another schema it is the same transaction, pool and
    preamble around another function.
    """

    async def call_function(
        self,
        identity: Identity,
        schema: str,
        function: str,
        args: Mapping[str, Any],
        *,
        returns: Returns = "one",
    ) -> Any:
        """``select * from schema.function(name => value, …)`` as ``identity``."""
        return await self.call(
            identity, function, args, returns=returns, read_only=False, schema=schema
        )


def bench_client(dsn: str, size: int, *, timeout: float = 30.0) -> AsyncTessera:
    """An SDK client over a :class:`BenchTransport` pool of ``size`` connections, no retries."""
    transport = BenchTransport(
        dsn, min_size=size, max_size=size, timeout=timeout, application_name="tessera-bench"
    )
    return AsyncTessera(transport, retry=NO_RETRY)


def error_code(exc: BaseException) -> str:
    """The SQLSTATE of a Tessera error, else the exception's class name."""
    if isinstance(exc, TesseraError):
        return exc.code
    return type(exc).__name__


async def closed_loop(
    prepare: Callable[[], Awaitable[Call]],
    *,
    clients: int,
    seconds: float,
    warmup: float,
    progress: Progress,
    description: str,
) -> Phase:
    """Run ``clients`` loops that each prepare a call (untimed) and make it (timed).

    Calls completed inside the measured window (after ``warmup``, for ``seconds``) count
    towards throughput and latency; all successful calls count in ``calls_total``.
    """
    phase = Phase(clients=clients)
    task = progress.add_task(description, total=warmup + seconds)
    started = time.perf_counter()
    window_start = started + warmup
    deadline = window_start + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            call = await prepare()
            begin = time.perf_counter()
            try:
                await call()
            except TesseraError as exc:
                phase.record_error(exc.code, exc.message)
                continue
            end = time.perf_counter()
            phase.calls_total += 1
            if window_start <= begin and end <= deadline:
                phase.latencies.append(end - begin)

    async def ticker() -> None:
        while True:
            progress.update(task, completed=min(time.perf_counter() - started, warmup + seconds))
            await asyncio.sleep(0.2)

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
    progress.update(task, completed=warmup + seconds, visible=False)
    phase.seconds = seconds
    return phase


class Admin:
    """Setup and verification as the database owner (``postgres``): never the measured path.

    People (rows of ``auth.users``) are made here; every booking is made by Tessera's own
    functions.
    """

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self.conn = conn

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, dsn: str) -> AsyncIterator[Admin]:
        conn = await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=True,
            prepare_threshold=None,
            row_factory=dict_row,
            application_name="tessera-bench-admin",
        )
        try:
            yield cls(conn)
        finally:
            await conn.close()

    async def rows(
        self, query: str | sql.SQL | sql.Composed, params: Any = None
    ) -> list[dict[str, Any]]:
        # Queries here are the benchmark's own text, never built from input.
        cur = await self.conn.execute(query, params)
        return await cur.fetchall() if cur.description else []

    async def execute(self, query: str) -> None:
        await self.rows(query)

    async def value(self, query: str | sql.SQL | sql.Composed, params: Any = None) -> Any:
        rows = await self.rows(query, params)
        return next(iter(rows[0].values())) if rows else None

    async def create_users(self, count: int, label: str) -> list[uuid.UUID]:
        """``count`` new rows in ``auth.users``, in one statement."""
        if count <= 0:
            return []
        rows = await self.rows(
            "insert into auth.users (id, email) "
            "select u.id, 'bench-' || %s || '-' || u.id || '@example.test' "
            "from (select gen_random_uuid() as id from generate_series(1, %s)) as u "
            "returning id",
            (label, count),
        )
        return [row["id"] for row in rows]

    async def check_invariants(self, events: Sequence[uuid.UUID]) -> list[str]:
        """Problems ``public.check_invariants`` reports for ``events`` (empty: healthy).

        One call per event, so the cost follows those events only, whatever else the
        database holds.
        """
        rows: list[dict[str, Any]] = []
        for event_id in events:
            rows += await self.rows("select * from public.check_invariants(%s)", (event_id,))
        return [
            f"{row['check_name']}: {row['problem']} (event {row['event_id']}"
            + (f", booking {row['booking_id']})" if row["booking_id"] else ")")
            for row in rows
        ]


class UserSupply:
    """Hands out distinct users, creating more when they run out.

    One active booking per user per event means every booking of a hot event needs a user
    of its own. Users are made ahead of a phase (:meth:`ensure`); running out during a
    phase creates another batch and is counted in :attr:`topups`.
    """

    def __init__(self, admin: Admin, label: str, batch: int = 20_000) -> None:
        self._admin = admin
        self._label = label
        self._batch = batch
        self._ids: list[uuid.UUID] = []
        self._next = 0
        self._lock = asyncio.Lock()
        self.topups = 0

    async def ensure(self, count: int) -> None:
        """Have at least ``count`` users in stock (from the current position on)."""
        missing = self._next + count - len(self._ids)
        if missing > 0:
            self._ids += await self._admin.create_users(missing, self._label)

    def rewind(self) -> None:
        """Hand out the same users again (for a new event: their bookings do not clash)."""
        self._next = 0

    @property
    def handed_out(self) -> int:
        return self._next

    async def take_with_index(self) -> tuple[int, uuid.UUID]:
        """The next user and its number in this supply (0-based)."""
        while self._next >= len(self._ids):
            async with self._lock:
                if self._next >= len(self._ids):
                    self.topups += 1
                    self._ids += await self._admin.create_users(self._batch, self._label)
        index = self._next
        self._next += 1
        return index, self._ids[index]
