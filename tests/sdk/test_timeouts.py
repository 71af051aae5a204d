"""Bounded calls: the direct transport applies the API role's own time limits.

PostgREST applies the settings of the role it switches to (``alter role authenticated set
statement_timeout = …``) to every request; ``set_config('role', …)`` alone does not. The
direct transport reads them once and sets them in its preamble, so a call stuck behind a
lock is cut with :class:`TimedOut` instead of waiting for as long as the lock is held.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from tessera_client import AsyncTessera, TimedOut
from tessera_client.local import create_local_user

from ..support import TestDatabase
from .conftest import FAST_RETRY, JWT_SECRET, TOMORROW

# How long the blocking transaction holds its lock: far longer than any limit below.
HOLD_SECONDS = 6.0


def blocking_lock(db: TestDatabase) -> psycopg.Connection:
    """A session holding an exclusive lock on public.events until it rolls back, or for
    HOLD_SECONDS at most (the server then ends it), so an unbounded call cannot hang."""
    blocker = psycopg.connect(db.admin_url)
    blocker.execute(f"set idle_in_transaction_session_timeout = '{HOLD_SECONDS}s'")
    blocker.execute("lock table public.events in access exclusive mode")
    return blocker


def limit_role(db: TestDatabase, role: str, setting: str, value: str) -> None:
    """``alter role … in database … set``: the way an operator bounds an API role."""
    db.sql(f'alter role {role} in database "{db.name}" set {setting} = {value!r}')


@pytest.mark.parametrize(
    ("setting", "sqlstate"), [("statement_timeout", "57014"), ("lock_timeout", "55P03")]
)
async def test_a_call_stuck_on_a_lock_is_cut_by_the_roles_limit(
    db: TestDatabase, setting: str, sqlstate: str
) -> None:
    organizer = create_local_user(db.url())
    limit_role(db, "authenticated", setting, "300ms")
    async with AsyncTessera.connect(
        db.url("authenticator"), jwt_secret=JWT_SECRET, retry=FAST_RETRY, max_size=2
    ) as client:
        alice = client.as_user(organizer.id)
        event = await alice.create_event("Bounded", 5, TOMORROW)
        limits = await client.transport.role_limits()  # type: ignore[attr-defined]
        assert (setting, "300ms") in limits["authenticated"]
        with blocking_lock(db) as blocker:
            started = time.monotonic()
            with pytest.raises(TimedOut) as cut:
                await alice.set_capacity(event.id, 6)
            waited = time.monotonic() - started
            blocker.rollback()
    assert cut.value.code == sqlstate
    assert waited < HOLD_SECONDS / 2


async def test_anonymous_calls_get_the_anon_limit(db: TestDatabase) -> None:
    organizer = create_local_user(db.url())
    limit_role(db, "anon", "statement_timeout", "250ms")
    login = db.url("authenticator")
    async with AsyncTessera.connect(login, retry=FAST_RETRY, max_size=2) as client:
        event = await client.as_user(organizer.id).create_event("Public", 5, TOMORROW)
        with blocking_lock(db) as blocker:
            with pytest.raises(TimedOut):
                await client.availability(event.id)
            blocker.rollback()


def test_the_local_stack_bounds_the_api_roles(db: TestDatabase) -> None:
    rows = db.sql(
        """select r.rolname, s.setconfig from pg_catalog.pg_db_role_setting as s
           join pg_catalog.pg_roles as r on r.oid = s.setrole
           where r.rolname in ('anon', 'authenticated') and s.setdatabase = 0"""
    )
    settings = {row["rolname"]: row["setconfig"] for row in rows}
    for role in ("anon", "authenticated"):
        assert any(s.startswith("statement_timeout=") for s in settings[role]), role
