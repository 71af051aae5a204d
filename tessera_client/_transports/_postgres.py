"""Direct PostgreSQL transport: psycopg 3 with an async connection pool.

It logs in as a server role (``authenticator``, like PostgREST, or ``postgres``) and runs
each call in one transaction, as PostgREST does::

    select set_config('role', 'authenticated', true),
           set_config('request.jwt.claims', '{"sub": "…", "role": "authenticated"}', true);
    select * from public.book_event("event_id" => $1, "seats" => $2, …);

The statements travel together in one round trip (libpq pipeline mode) and end with one
``Sync``: the server runs everything before a ``Sync`` as one transaction and commits it at
the ``Sync``, or rolls it back when a statement failed, so neither ``BEGIN`` nor ``COMMIT``
is needed (with a read replica they are sent, to read the write's WAL position after the
``COMMIT``).

Like PostgREST, it also applies the impersonated role's own ``statement_timeout`` and
``lock_timeout`` (``alter role authenticated set statement_timeout = '8s'``), which a plain
``set_config('role', …)`` does not: they are read from ``pg_db_role_setting`` once per
transport and set with ``set_config(…, true)`` in the same preamble, so no API call runs
unbounded. All settings are transaction-local and nothing else is left on the connection (no
server-side prepared statements, no ``SET``, no ``LISTEN``), so it works through PgBouncer
or Supavisor in transaction-pooling mode. Realtime subscriptions are the exception: their
:class:`~tessera_client._transports._poller.LedgerPoller` keeps one connection of its own,
outside the pool, with session settings, so it needs a direct or session-pooled address.

Driver errors are translated here and only here. A connection that fails before anything
was sent means nothing was done (:class:`Unavailable`); once the pipeline, its ``Sync``
included, is on its way, a lost connection means nobody knows (:class:`OutcomeUnknown`). To
keep the first case the common one, a pooled connection the server has already closed
(a restart, ``pg_terminate_backend``, an idle timeout) is noticed and replaced before use,
without a round trip.

High availability (docs/ha.md): a multi-host DSN with ``target_session_attrs=read-write``
reaches whichever node is the primary; after a failover, dead pooled connections are dropped
and new ones go to the promoted node. A write that meets a node which no longer accepts
writes (``25006``: a primary being demoted, a standby being promoted) did nothing: the
connection is dropped and the call fails as :class:`Unavailable`, which the client retries.
With ``read_dsn``, reads that tolerate a replica go there, with read-your-writes: each
caller's last write position is remembered, and a replica that has not replayed up to it is
skipped for the primary.
"""

from __future__ import annotations

import functools
import json
import select
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import jwt
import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from tessera_client._errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    TesseraError,
    TransactionConflict,
    Unavailable,
    error_for,
)
from tessera_client._identity import Identity
from tessera_client._transports._base import OPERATORS_SQL, Returns, Select
from tessera_client._transports._poller import LedgerPoller

__all__ = ["PostgresTransport"]

_PREAMBLE = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"
# The per-role settings PostgREST would apply for the impersonated role and that bound a call.
ROLE_LIMITS = ("statement_timeout", "lock_timeout")
# Database-wide role settings first, so those for this database (applied later) win.
_ROLE_SETTINGS = """
select r.rolname as role, s.setconfig as settings
from pg_catalog.pg_db_role_setting as s
join pg_catalog.pg_roles as r on r.oid = s.setrole
where s.setdatabase in (
    0, (select d.oid from pg_catalog.pg_database as d
        where d.datname = pg_catalog.current_database())
)
order by s.setdatabase
"""
# Upper case: what PostgreSQL's own tools send, and what the fault-injecting proxies of the
# test suite look for on the wire.
_BEGIN, _COMMIT, _ROLLBACK = "BEGIN", "COMMIT", "ROLLBACK"
# The server is gone or is going away: the transaction did not survive.
_CONNECTION_LOST_STATES = frozenset({"57P01", "57P02", "57P03"})
# The server does not accept writes (any more): a standby, or a primary being demoted.
_READ_ONLY_STATE = "25006"
# On a replica: is it past the caller's last write? (A promoted replica is not in recovery.)
_REPLAYED = (
    "select coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, not pg_is_in_recovery()) as fresh"
)
_WRITE_POSITION = "select pg_current_wal_insert_lsn()::text as lsn"
# After the replica failed a read, the primary answers reads for this long before it is tried
# again, so that a replica that is down costs one failed attempt, not one per read.
_REPLICA_PAUSE = 5.0
# Longest wait for a replica connection before asking the primary instead.
_REPLICA_CONNECT_WAIT = 2.0


# libpq's words for a login the server refused (its connection errors carry no SQLSTATE).
_LOGIN_REJECTED = (
    "password authentication failed",
    "no pg_hba.conf entry",
    'role "',
    "password supplied",
    "SCRAM authentication",
)


class PostgresTransport:
    """Calls Tessera's functions over a psycopg connection pool.

    Args:
        dsn: Connection string of the login role (``authenticator`` or ``postgres``).
        min_size: Connections kept open.
        max_size: Most connections open at once.
        timeout: Seconds a call waits for a free connection before :class:`Unavailable`.
        jwt_secret: Verifies tokens given to ``as_user`` (HS256). Without it their claims
            are taken as they are.
        application_name: Shown in ``pg_stat_activity`` unless the DSN sets one.
        read_dsn: A read replica (or several, multi-host) for reads that accept one:
            availability, event lists and change feeds. Read-your-writes holds for each
            caller; when the replica is behind or down, the primary answers.

    Attributes:
        replica_reads: Reads the replica answered.
        replica_fallbacks: Reads sent to the primary because the replica was behind or down.

    Example:
        >>> transport = PostgresTransport(dsn, max_size=20, application_name="checkout")
        >>> tessera = AsyncTessera(transport)
    """

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        jwt_secret: str | None = None,
        application_name: str = "tessera",
        read_dsn: str | None = None,
    ) -> None:
        options: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
        if "application_name" not in psycopg.conninfo.conninfo_to_dict(dsn):
            options["application_name"] = application_name
        self._jwt_secret = jwt_secret
        self._timeout = timeout
        self._dsn = dsn
        self._poller: LedgerPoller | None = None

        def pool(target: str, name: str) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
            return AsyncConnectionPool(
                target,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                open=False,
                kwargs=options,
                check=_still_connected,
                name=name,
            )

        self._pool = pool(dsn, "tessera")
        self._read_pool = None if read_dsn is None else pool(read_dsn, "tessera-replica")
        self._written = _WritePositions()
        self._replica_paused_until = 0.0
        self.replica_reads = 0
        self.replica_fallbacks = 0
        self._opened = False
        # role -> [(setting, value)] of ROLE_LIMITS, read once (see role_limits()).
        self._role_limits: dict[str, list[tuple[str, str]]] | None = None
        self._preambles: dict[str, tuple[bytes, list[Any]]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the pool and wait for its first connections.

        Raises:
            AuthenticationFailed: The server rejected the login; permanent, so not retried.
            Unavailable: No connection within the timeout.
        """
        if self._opened:
            return
        await self._check_login()
        self._opened = True
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout as exc:
            raise Unavailable("could not connect to the database", detail=str(exc)) from exc
        if self._read_pool is not None:
            # Not waited for: while the replica is unreachable the primary answers reads.
            await self._read_pool.open(wait=False)

    async def _check_login(self) -> None:
        """Log in once, directly: a wrong password fails now, in one error, instead of the
        pool retrying it in the background until its timeout."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, connect_timeout=max(1, round(self._timeout))
            )
        except psycopg.OperationalError as exc:
            reasons = [line for line in str(exc).splitlines() if line.strip()]
            reason = reasons[-1].rsplit("failed:", 1)[-1].strip() if reasons else str(exc)
            if (exc.sqlstate or "").startswith("28") or any(
                marker in reason for marker in _LOGIN_REJECTED
            ):
                raise AuthenticationFailed(
                    "the database rejected the login", detail=reason
                ) from exc
            raise Unavailable("could not connect to the database", detail=reason) from exc
        await conn.close()

    async def close(self) -> None:
        """Stop the realtime poller and close the pool."""
        if self._poller is not None:
            await self._poller.close()
            self._poller = None
        if self._read_pool is not None:
            await self._read_pool.close()
        await self._pool.close()

    # -- realtime -------------------------------------------------------------------------

    def realtime(self) -> LedgerPoller:
        """The ledger poller shared by every subscription of this transport (made on first use).

        It has a connection of its own, outside the pool, kept for as long as there are
        subscriptions; it needs a direct or session-pooled connection (its role is a session
        setting), not transaction pooling.
        """
        if self._poller is None:
            self._poller = LedgerPoller(self._dsn, timeout=self._timeout)
        return self._poller

    # -- identities -----------------------------------------------------------------------

    def anonymous_identity(self) -> Identity:
        """Role ``anon``."""
        return Identity.anonymous()

    def service_identity(self) -> Identity:
        """Role ``service_role``."""
        return Identity.service()

    def user_identity(self, user_id: uuid.UUID, email: str | None = None) -> Identity:
        """Claims for a user, as supabase-auth would put them in the user's token."""
        return Identity.user(user_id, email=email)

    def token_identity(self, token: str) -> Identity:
        """Claims of ``token``, verified when the transport has a JWT secret."""
        try:
            return Identity.from_jwt(token, self._jwt_secret)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"invalid token: {exc}", code="PGRST301") from exc

    async def sign_in(self, email: str, password: str) -> Identity:
        """Not available: password sign-in is supabase-auth's job."""
        raise NotImplementedError(
            "password sign-in needs the Supabase transport; with a direct connection use "
            "as_user(user_id) or as_user(access_token)"
        )

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self,
        identity: Identity,
        function: str,
        args: Mapping[str, Any],
        *,
        returns: Returns,
        read_only: bool,
        schema: str = "public",
        replica: bool = False,
    ) -> Any:
        """``select * from schema.function(name => value, …)`` as ``identity``.

        ``replica``: the call may be answered by the read replica (when there is one).
        """
        query = _call_statement(schema, function, tuple(args))
        if replica and read_only and self._read_pool is not None:
            rows = await self._read(identity, query, dict(args))
        else:
            rows = await self._on_primary(identity, query, dict(args), write=not read_only)
        if returns == "many":
            return rows
        if not rows:
            return None
        if returns == "scalar":
            return next(iter(rows[0].values()))
        return rows[0]

    async def select(
        self, identity: Identity, query: Select, *, replica: bool = False
    ) -> list[Mapping[str, Any]]:
        """``select … from public.table where … order by … limit …`` as ``identity``.

        ``replica``: the read replica (when there is one) may answer.
        """
        columns: sql.Composable = sql.SQL("*")
        if query.columns:
            columns = sql.SQL(", ").join(sql.Identifier(column) for column in query.columns)
        parts: list[sql.Composable] = [
            sql.SQL("select {} from {}.{}").format(
                columns, sql.Identifier("public"), sql.Identifier(query.table)
            )
        ]
        params: list[Any] = []
        conditions: list[sql.Composable] = []
        for condition in query.filters:
            conditions.append(
                sql.SQL("{} {} %s").format(
                    sql.Identifier(condition.column), sql.SQL(OPERATORS_SQL[condition.op])
                )
            )
            params.append(condition.value)
        if query.after:
            keys = [column for column, _ in query.order[: len(query.after)]]
            conditions.append(
                sql.SQL("({}) > ({})").format(
                    sql.SQL(", ").join(sql.Identifier(key) for key in keys),
                    sql.SQL(", ").join(sql.Placeholder() * len(keys)),
                )
            )
            params.extend(query.after)
        if conditions:
            parts.append(sql.SQL("where {}").format(sql.SQL(" and ").join(conditions)))
        if query.order:
            parts.append(
                sql.SQL("order by {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(
                            sql.Identifier(column), sql.SQL("desc" if descending else "asc")
                        )
                        for column, descending in query.order
                    )
                )
            )
        if query.limit is not None:
            parts.append(sql.SQL("limit %s"))
            params.append(query.limit)
        statement = sql.SQL(" ").join(parts)
        if replica and self._read_pool is not None:
            return list(await self._read(identity, statement, params))
        return list(await self._on_primary(identity, statement, params, write=False))

    async def role_limits(self) -> dict[str, list[tuple[str, str]]]:
        """The ``statement_timeout`` / ``lock_timeout`` each role has in this database.

        Read once per transport, like PostgREST reads them at start-up (restart or make a
        new client after ``alter role … set``).
        """
        if self._role_limits is None:
            limits: dict[str, list[tuple[str, str]]] = {}
            async with self._pool.connection() as conn, conn.cursor() as cur:
                try:
                    await cur.execute(_ROLE_SETTINGS)
                    rows = await cur.fetchall()
                except psycopg.Error as exc:
                    raise await self._translate(conn, exc, self._pool) from exc
                for role, settings in rows:
                    for setting in settings or ():
                        name, _, value = setting.partition("=")
                        if name in ROLE_LIMITS:
                            limits.setdefault(role, []).append((name, value))
            self._role_limits = limits
        return self._role_limits

    async def _preamble(self, identity: Identity) -> tuple[bytes, list[Any]]:
        """``set_config`` of the role, the claims and the role's own time limits."""
        known = self._preambles.get(identity.role)
        if known is None:
            limits = (await self.role_limits()).get(identity.role, [])
            extra = [sql.SQL(", set_config(%s, %s, true)")] * len(limits)
            statement = sql.Composed([sql.SQL(_PREAMBLE), *extra]).as_bytes(None)
            known = self._preambles[identity.role] = (
                statement,
                [value for pair in limits for value in pair],
            )
        statement, limit_params = known
        return statement, [identity.role, json.dumps(dict(identity.claims)), *limit_params]

    async def _on_primary(
        self, identity: Identity, query: sql.Composed | bytes, params: Any, *, write: bool
    ) -> list[dict[str, Any]]:
        rows = await self._run(identity, query, params, write=write)
        assert rows is not None  # only a replica read can come back without rows
        return rows

    async def _read(
        self, identity: Identity, query: sql.Composed | bytes, params: Any
    ) -> list[dict[str, Any]]:
        """A read on the replica if it has replayed the caller's last write, else the primary."""
        assert self._read_pool is not None
        rows: list[dict[str, Any]] | None = None
        now = time.monotonic()
        if now >= self._replica_paused_until:
            try:
                rows = await self._run(
                    identity,
                    query,
                    params,
                    write=False,
                    pool=self._read_pool,
                    replayed=self._written.position(identity),
                )
            except (Unavailable, OutcomeUnknown, TransactionConflict) as exc:
                # Down, or a query cancelled by a recovery conflict: the primary answers.
                if not isinstance(exc, TransactionConflict):
                    self._replica_paused_until = now + _REPLICA_PAUSE
        if rows is None:
            self.replica_fallbacks += 1
            return await self._on_primary(identity, query, params, write=False)
        self.replica_reads += 1
        return rows

    async def _run(
        self,
        identity: Identity,
        query: sql.Composed | bytes,
        params: Any,
        *,
        write: bool,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None,
        replayed: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """One transaction in one round trip: the PostgREST preamble and ``query``.

        The statements of one pipeline up to its ``Sync`` are one transaction, which the
        ``Sync`` commits (or, after an error, rolls back), so no ``BEGIN``/``COMMIT`` is sent.
        With a read replica the transaction is explicit instead: a write also reads its WAL
        position after its ``COMMIT`` (read-your-writes), and a read with ``replayed`` first
        asks the replica whether it has replayed that far: if not, the rows are discarded and
        ``None`` is returned.
        """
        if not self._opened:
            await self.open()
        replica = pool is not None
        pool = pool or self._pool
        track = write and self._read_pool is not None
        explicit = track or replayed is not None
        try:
            preamble, preamble_params = await self._preamble(identity)
            async with pool.connection(
                timeout=min(self._timeout, _REPLICA_CONNECT_WAIT) if replica else None
            ) as conn:
                try:
                    async with conn.cursor(row_factory=dict_row) as cur, conn.cursor() as extra:
                        async with conn.pipeline():
                            if explicit:
                                await conn.execute(_BEGIN)
                            if replayed is not None:
                                await extra.execute(_REPLAYED, (replayed,))
                            await conn.execute(preamble, preamble_params)
                            await cur.execute(query, params)
                            if explicit:
                                await conn.execute(_COMMIT)
                            if track:
                                await extra.execute(_WRITE_POSITION)
                        # Leaving the pipeline sent everything and read every result.
                        rows = await cur.fetchall() if cur.description else []
                        if replayed is not None:
                            fresh = await extra.fetchone()
                            if not (fresh and fresh[0]):
                                return None
                        if track:
                            lsn = await extra.fetchone()
                            if lsn and lsn[0]:
                                self._written.record(identity, str(lsn[0]))
                        return rows
                except psycopg.Error as exc:
                    raise await self._translate(conn, exc, pool) from exc
        except (PoolTimeout, PoolClosed) as exc:
            raise Unavailable("no database connection available", detail=str(exc)) from exc

    async def _translate(
        self,
        conn: psycopg.AsyncConnection[Any],
        exc: psycopg.Error,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
    ) -> TesseraError:
        """The Tessera error for a driver error (the one place that reads psycopg errors)."""
        state = exc.sqlstate
        if state == _READ_ONLY_STATE:
            # This node no longer takes writes (failover): nothing was written. Drop the
            # connection; the pool reconnects through target_session_attrs=read-write.
            await conn.close()
            return Unavailable(
                "the server does not accept writes now (a failover is under way)",
                code=state,
                detail=exc.diag.message_primary or str(exc),
            )
        lost = isinstance(exc, psycopg.OperationalError) and (
            state is None or state.startswith("08") or state in _CONNECTION_LOST_STATES
        )
        if not lost:
            if conn.info.transaction_status == TransactionStatus.INERROR:
                try:  # the server skipped the COMMIT; end the failed transaction
                    await conn.execute(_ROLLBACK)
                except psycopg.Error:
                    await conn.close()  # the pool replaces a closed connection
            diag = exc.diag
            return error_for(
                state, diag.message_primary or str(exc), diag.message_detail, diag.message_hint
            )
        # Other pooled connections probably died with this one: drop them before a retry.
        await pool.check()
        return OutcomeUnknown(
            "the connection was lost with the call and its COMMIT sent; "
            "the call may have taken effect",
            detail=str(exc).strip() or None,
        )


@functools.lru_cache(maxsize=1024)
def _call_statement(schema: str, function: str, names: tuple[str, ...]) -> bytes:
    """``select * from schema.function(name => %(name)s, …)``, built once per shape of call
    (composing and quoting it on every call cost as much CPU as a no-op call's round trip)."""
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in names
    )
    return (
        sql.SQL("select * from {}.{}({})")
        .format(sql.Identifier(schema), sql.Identifier(function), arguments)
        .as_bytes(None)
    )


async def _still_connected(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check before lending a connection: no round trip, one ``poll()``.

    An idle connection has nothing to read. Data or end-of-file means the server has ended
    it (it sends a FATAL error, then closes): close it, and the pool lends another, so the
    call is never sent over a dead connection and a restart reads as :class:`Unavailable`
    (retried) rather than :class:`OutcomeUnknown`.
    """
    if not conn.closed and not _has_input(conn.pgconn.socket):
        return
    await conn.close()
    raise psycopg.OperationalError("the server closed this pooled connection")


def _has_input(fileno: int) -> bool:
    """Whether data or end-of-file waits on the socket, without waiting.

    ``poll``, not ``select``: ``select`` cannot watch a descriptor numbered 1024 or more, and
    raised for every such connection, so in a process with many open files (a busy web
    server, a thousand clients) the pool kept refusing its own healthy connections until the
    call timed out.
    """
    if not hasattr(select, "poll"):  # Windows: no poll; its select limits how many, not which
        readable, _, _ = select.select([fileno], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


class _WritePositions:
    """Where each caller's last write ended in the WAL (``pg_lsn``), for read-your-writes.

    Bounded: the least recently writing callers are forgotten first, and the highest
    position forgotten becomes the floor every unknown caller must wait for, so forgetting
    never breaks read-your-writes (it only makes a replica read wait for a later position).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._positions: OrderedDict[tuple[str, str | None], int] = OrderedDict()
        self._floor = 0

    @staticmethod
    def _key(identity: Identity) -> tuple[str, str | None]:
        sub = identity.claims.get("sub")
        return identity.role, None if sub is None else str(sub)

    def record(self, identity: Identity, lsn: str) -> None:
        key = self._key(identity)
        value = max(_lsn_number(lsn), self._positions.get(key, 0))
        self._positions[key] = value
        self._positions.move_to_end(key)
        while len(self._positions) > self._capacity:
            _, forgotten = self._positions.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    def position(self, identity: Identity) -> str | None:
        """The ``pg_lsn`` a replica must have replayed for ``identity``; None: no constraint."""
        value = max(self._positions.get(self._key(identity), 0), self._floor)
        return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}" if value else None


def _lsn_number(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)
