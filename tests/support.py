"""Helpers for tests: a database handle and actors that call RPCs the way PostgREST does."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

LOCAL_PASSWORD = "postgres"


def url_for(url: str, user: str | None = None, database: str | None = None) -> str:
    """The same server with another login role (local password) and/or database."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    if user:
        info["user"] = user
        info["password"] = LOCAL_PASSWORD
    if database:
        info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def preamble(
    role: str, claims: Mapping[str, Any], settings: Mapping[str, str] | None = None
) -> tuple[str, tuple[Any, ...]]:
    """PostgREST's per-request preamble as one statement and its parameters.

    ``set_config('role', …, true)`` and ``set_config('request.jwt.claims', …, true)``, then
    any further transaction-local ``settings`` (``request.method``, ``realtime.topic``, …),
    for ``cursor.execute(*preamble(role, claims))`` inside the request's transaction.
    """
    extra = dict(settings or {})
    query = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"
    query += "".join(", set_config(%s, %s, true)" for _ in extra)
    params: list[Any] = [role, json.dumps(dict(claims))]
    for name, value in extra.items():
        params += [name, value]
    return query, tuple(params)


def act_as(cur: psycopg.Cursor[Any], role: str, claims: Mapping[str, Any], **settings: str) -> None:
    """Run :func:`preamble` on ``cur``: the rest of its transaction acts as PostgREST would."""
    cur.execute(*preamble(role, claims, settings))


def claims_for(role: str, user_id: uuid.UUID | None) -> dict[str, Any]:
    """The JWT claims supabase-auth would issue for ``role`` (and ``user_id``)."""
    claims: dict[str, Any] = {"role": role}
    if user_id is not None:
        claims["sub"] = str(user_id)
    return claims


class Actor:
    """Calls functions as PostgREST would: login ``authenticator``, then per transaction
    ``set_config('role', …, true)`` and ``set_config('request.jwt.claims', …, true)``."""

    def __init__(self, url: str, role: str, user_id: uuid.UUID | None) -> None:
        self.role = role
        self.user_id = user_id
        self.conn = psycopg.connect(url_for(url, user="authenticator"), row_factory=dict_row)

    def _preamble(self, cur: psycopg.Cursor[Any]) -> None:
        act_as(cur, self.role, claims_for(self.role, self.user_id))

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._preamble(cur)
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def call(self, fn: str, **kwargs: Any) -> dict[str, Any]:
        """One row from ``public.fn(name => value, …)``."""
        rows = self.call_all(fn, **kwargs)
        return rows[0]

    def call_all(self, fn: str, **kwargs: Any) -> list[dict[str, Any]]:
        args = ", ".join(f"{name} => %({name})s" for name in kwargs)
        return self.sql(f"select * from public.{fn}({args})", kwargs)

    def close(self) -> None:
        self.conn.close()


@dataclass
class TestDatabase:
    """A database cloned from the migrated template."""

    admin_url: str
    name: str
    _actors: list[Actor] = field(default_factory=list)

    __test__ = False  # not a test class

    def url(self, user: str = "postgres") -> str:
        return url_for(self.admin_url, user=user)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run SQL as the superuser (setup and inspection, bypassing RLS)."""
        with psycopg.connect(self.admin_url, row_factory=dict_row, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def create_user(self, email: str | None = None) -> uuid.UUID:
        user_id = uuid.uuid4()
        self.sql(
            "insert into auth.users (id, email) values (%s, %s)",
            (user_id, email or f"{user_id.hex[:8]}@example.test"),
        )
        return user_id

    def create_users(self, count: int) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        with psycopg.connect(self.admin_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(
                "insert into auth.users (id, email) values (%s, %s)",
                [(i, f"{i.hex[:8]}@example.test") for i in ids],
            )
        return ids

    def actor(self, user_id: uuid.UUID | None = None, role: str | None = None) -> Actor:
        role = role or ("authenticated" if user_id else "anon")
        actor = Actor(self.admin_url, role, user_id)
        self._actors.append(actor)
        return actor

    def service(self) -> Actor:
        return self.actor(None, "service_role")

    def close(self) -> None:
        for actor in self._actors:
            actor.close()
        self._actors.clear()
