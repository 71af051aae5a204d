"""Databases and callers for the reliability runners.

A :class:`Caller` calls Tessera's functions exactly as PostgREST does: it logs in as
``authenticator`` and, in every transaction, switches ``role`` and ``request.jwt.claims``
with ``set_config(…, true)``. A :class:`Database` is one migrated database reached as the
superuser (setup and inspection). A :class:`Server` is a PostgreSQL server on which fresh
databases are cloned from a migrated template, the way the test suite does it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tessera_client._local.stack import LocalStack
from tessera_client._paths import bootstrap_sql
from tessera_client.local import create_local_users
from tessera_client.migrations import apply_migrations

from ...support import act_as, claims_for, free_port, url_for

__all__ = [
    "DOCUMENTED_SQLSTATES",
    "Caller",
    "Database",
    "Server",
    "dedicated_stack",
    "free_port",
    "quiet_driver",
    "url_for",
]

DOCUMENTED_SQLSTATES = frozenset({f"TS{n:03d}" for n in range(1, 11)} | {"22023", "42501"})
"""The error codes Tessera documents (README): what a caller may ever see from an RPC."""

Row = dict[str, Any]

# Schemas whose tables a Tessera call may write (sequences aside: their gaps are not state).
STATE_SCHEMAS = ("public", "tessera", "realtime", "auth")


class _Link:
    """A connection opened on first use and again after it was lost."""

    def __init__(self, url: str, application_name: str, options: str | None) -> None:
        self.url = url
        self.application_name = application_name
        self.options = options
        self._conn: psycopg.Connection[Row] | None = None

    def get(self) -> psycopg.Connection[Row]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            extra: dict[str, Any] = {"options": self.options} if self.options else {}
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                application_name=self.application_name,
                connect_timeout=10,
                **extra,
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Caller:
    """Acts as one identity, transaction by transaction, as PostgREST does.

    Callers made with :meth:`as_user` or :meth:`as_role` share this one's connection (one
    thread at a time, like any psycopg connection).

    Args:
        url: Any URL of the database; the login becomes ``authenticator``.
        role: ``anon``, ``authenticated`` or ``service_role``.
        user_id: The ``sub`` claim, for ``authenticated``.
        claims: Claims to send instead of the usual ones (hostile tokens).
        application_name: Shown in ``pg_stat_activity`` (fault injection picks backends by it).
        options: Extra server settings for the session, e.g. ``-c lock_timeout=100ms``.
    """

    def __init__(
        self,
        url: str,
        role: str,
        user_id: uuid.UUID | None = None,
        *,
        claims: Mapping[str, Any] | None = None,
        application_name: str = "tessera-reliability",
        options: str | None = None,
        link: _Link | None = None,
    ) -> None:
        self.role = role
        self.user_id = user_id
        self.claims = dict(claims) if claims is not None else claims_for(role, user_id)
        self._link = link or _Link(url_for(url, user="authenticator"), application_name, options)

    def as_user(self, user_id: uuid.UUID) -> Caller:
        """The same connection, acting as a signed-in user."""
        return Caller("", "authenticated", user_id, link=self._link)

    def as_role(self, role: str, claims: Mapping[str, Any] | None = None) -> Caller:
        """The same connection, acting as ``role`` without a user (or with ``claims``)."""
        return Caller("", role, None, claims=claims, link=self._link)

    @property
    def conn(self) -> psycopg.Connection[Row]:
        """The connection, opened again if the last one was lost."""
        return self._link.get()

    @property
    def pid(self) -> int:
        """The server process serving this caller."""
        return int(self.conn.info.backend_pid)

    def sql(self, query: str | sql.SQL | sql.Composed, params: Any = None) -> list[Row]:
        """Run ``query`` in one transaction as this identity."""
        conn = self.conn
        with conn.transaction(), conn.cursor() as cur:
            act_as(cur, self.role, self.claims)
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def call_all(self, function: str, **kwargs: Any) -> list[Row]:
        """Every row of ``public.function(name => value, …)``."""
        arguments = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in kwargs
        )
        query = sql.SQL("select * from public.{}({})").format(sql.Identifier(function), arguments)
        return self.sql(query, kwargs)

    def call(self, function: str, **kwargs: Any) -> Row:
        """The one row of ``public.function(name => value, …)``."""
        rows = self.call_all(function, **kwargs)
        if len(rows) != 1:
            raise AssertionError(f"{function} returned {len(rows)} rows, expected one")
        return rows[0]

    def close(self) -> None:
        self._link.close()


@dataclass
class Database:
    """One migrated database, reached as the superuser for setup and inspection."""

    admin_url: str
    callers: list[Caller] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _links: list[_Link] = field(default_factory=list, repr=False)
    _digest_query: sql.Composed | None = field(default=None, repr=False)

    def url(self, user: str = "postgres") -> str:
        return url_for(self.admin_url, user=user)

    def sql(self, query: str | sql.SQL | sql.Composed, params: Any = None) -> list[Row]:
        """Run SQL as the superuser (bypasses RLS and every function), in autocommit.

        Each thread has its own connection, opened again when it was lost.
        """
        link: _Link | None = getattr(self._local, "link", None)
        if link is None:
            link = _Link(self.admin_url, "tessera-reliability-admin", None)
            self._local.link = link
            self._links.append(link)
        conn = link.get()
        try:
            cur = conn.execute(query, params)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
            cur = link.get().execute(query, params)  # the server restarted: once more
        return cur.fetchall() if cur.description else []

    def connect_admin(
        self, application_name: str = "tessera-reliability-admin"
    ) -> psycopg.Connection[Row]:
        """A superuser connection (autocommit) the caller closes."""
        return psycopg.connect(
            self.admin_url,
            row_factory=dict_row,
            autocommit=True,
            application_name=application_name,
        )

    def create_users(self, count: int) -> list[uuid.UUID]:
        """New users in ``auth.users``."""
        return create_local_users(self.admin_url, count, prefix="reliability")

    def caller(
        self,
        user_id: uuid.UUID | None = None,
        role: str | None = None,
        *,
        application_name: str = "tessera-reliability",
        claims: Mapping[str, Any] | None = None,
        options: str | None = None,
    ) -> Caller:
        """A caller acting as ``user_id`` (or anonymous, or ``role``); closed by :meth:`close`."""
        caller = Caller(
            self.admin_url,
            role or ("authenticated" if user_id else "anon"),
            user_id,
            claims=claims,
            application_name=application_name,
            options=options,
        )
        self.callers.append(caller)
        return caller

    def service(self, application_name: str = "tessera-reliability") -> Caller:
        return self.caller(None, "service_role", application_name=application_name)

    def relax_rate_limits(self) -> None:
        """Lift the per-user rate limits, so load tests reach the booking rules."""
        self.sql("update tessera.rate_limits set max_calls = 1000000")

    def digest(self) -> dict[str, str]:
        """A fingerprint of every table a call could change (to prove it changed nothing)."""
        if self._digest_query is None:
            tables = self.sql(
                "select schemaname, tablename from pg_catalog.pg_tables"
                " where schemaname = any(%s) order by 1, 2",
                (list(STATE_SCHEMAS),),
            )
            parts = sql.SQL(", ").join(
                sql.SQL(
                    "(select md5(coalesce(string_agg(t::text, ',' order by t::text), ''))"
                    " from {} as t) as {}"
                ).format(
                    sql.Identifier(t["schemaname"], t["tablename"]),
                    sql.Identifier(f"{t['schemaname']}.{t['tablename']}"),
                )
                for t in tables
            )
            self._digest_query = sql.SQL("select {}").format(parts)
        [row] = self.sql(self._digest_query)
        return {name: str(value) for name, value in row.items()}

    def invariant_problems(self, only_event: uuid.UUID | None = None) -> list[str]:
        """What ``check_invariants`` (``tessera doctor``) reports, one line per problem."""
        rows = self.sql("select * from public.check_invariants(%s)", (only_event,))
        return [
            f"check_invariants: {r['check_name']} event={r['event_id']} "
            f"booking={r['booking_id']}: {r['problem']}"
            for r in rows
        ]

    def server_version(self) -> str:
        return str(self.sql("select version() as v")[0]["v"])

    def close(self) -> None:
        for caller in self.callers:
            caller.close()
        self.callers.clear()
        for link in self._links:
            link.close()
        self._links.clear()
        self._local = threading.local()


class Server:
    """A PostgreSQL server on which each run gets a fresh database cloned from a template.

    Args:
        admin_url: Superuser URL of the server (any database).
    """

    TEMPLATE = "tessera_reliability_template"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._template_ready = False

    @classmethod
    @contextlib.contextmanager
    def local(cls) -> Iterator[Server]:
        """A local stack of its own in a temporary directory, removed afterwards."""
        with dedicated_stack(migrate=False) as stack:
            yield cls(stack.admin_url)

    def _template(self) -> str:
        if self._template_ready:
            return self.TEMPLATE
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {self.TEMPLATE} with (force)")
            conn.execute(f"create database {self.TEMPLATE}")
        admin = url_for(self.admin_url, database=self.TEMPLATE)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(bootstrap_sql().read_text())
        apply_migrations(url_for(admin, user="postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("vacuum analyze")
        self._template_ready = True
        return self.TEMPLATE

    @contextlib.contextmanager
    def database(self) -> Iterator[Database]:
        """A fresh migrated database, dropped afterwards."""
        template = self._template()
        name = f"reliability_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"create database {name} template {template} owner postgres")
        database = Database(url_for(self.admin_url, database=name))
        try:
            yield database
        finally:
            database.close()
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f"drop database if exists {name} with (force)")

    def drop_template(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {self.TEMPLATE} with (force)")
        self._template_ready = False


@contextlib.contextmanager
def dedicated_stack(migrate: bool = True) -> Iterator[LocalStack]:
    """A local stack of its own in a temporary directory: safe to stop, crash and restart.

    Args:
        migrate: Apply the bootstrap and the migrations to its ``postgres`` database.
    """
    tmp = Path(tempfile.mkdtemp(prefix="tessera-reliability-"))
    tmp.chmod(0o755)  # the unprivileged server user must enter it when run as root
    stack = LocalStack(data_dir=tmp / "stack", port=free_port())
    try:
        stack.up(apply=migrate)
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.destroy()
        with contextlib.suppress(OSError):
            tmp.rmdir()


@contextlib.contextmanager
def quiet_driver() -> Iterator[None]:
    """Silence psycopg's warnings about connections that die on purpose (fault injection)."""
    logger = logging.getLogger("psycopg")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def machine_description() -> dict[str, str]:
    """Where a run happened: CPU, cores, memory, OS."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) // 1024 // 1024} GiB"
                break
    system = " ".join(os.uname()[i] for i in (0, 2, 4))
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": memory, "system": system}
