"""Fixtures for the SDK tests: a client per transport over the test database.

``backend`` runs a test twice: over the direct PostgreSQL transport, and over the Supabase
transport. The latter talks to a real Supabase project when ``TESSERA_SUPABASE_URL``,
``TESSERA_SUPABASE_ANON_KEY`` and ``TESSERA_SUPABASE_SERVICE_KEY`` are set (its database
must have Tessera's migrations), and otherwise to the in-repo stand-in for PostgREST and
supabase-auth running on the test database.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tessera_client import AsyncTessera, RetryPolicy
from tessera_client.local import create_local_user

from ..standins import SupabaseStandIn
from ..support import TestDatabase

JWT_SECRET = "tessera-sdk-tests-only-" + "0123456789abcdef" * 2
FAST_RETRY = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05)
NO_RETRY = RetryPolicy(attempts=1)
TOMORROW = datetime.now(UTC) + timedelta(days=1)

REAL_SUPABASE = all(
    os.environ.get(name)
    for name in (
        "TESSERA_SUPABASE_URL",
        "TESSERA_SUPABASE_ANON_KEY",
        "TESSERA_SUPABASE_SERVICE_KEY",
    )
)


@dataclass
class Backend:
    """A root client (anonymous) and a way to get clients acting as fresh users."""

    name: str
    client: AsyncTessera
    database: TestDatabase | None
    standin: SupabaseStandIn | None = None
    _admin: Any = None

    @property
    def db(self) -> TestDatabase:
        """The test database, for setup a real Supabase would not allow (skips there)."""
        if self.database is None:
            pytest.skip("needs direct access to the database (not possible on real Supabase)")
        return self.database

    async def user(self, email: str | None = None) -> AsyncTessera:
        """A client acting as a new user: by id (direct) or signed in with a password."""
        address = email or f"{uuid.uuid4().hex[:12]}@example.test"
        password = secrets.token_urlsafe(12)
        if self.name == "postgres":
            user = create_local_user(self.db.url(), address)
            return self.client.as_user(user.id, email=user.email)
        if self.database is not None:
            create_local_user(self.database.url(), address, password)
        else:
            await self._admin.auth.admin.create_user(
                {"email": address, "password": password, "email_confirm": True}
            )
        return await self.client.sign_in(address, password)

    def service(self) -> AsyncTessera:
        return self.client.as_service()


@pytest.fixture
def standin(db: TestDatabase) -> Iterator[SupabaseStandIn]:
    """The PostgREST + supabase-auth stand-in on the test database."""
    with SupabaseStandIn(db.url("authenticator"), db.url(), JWT_SECRET) as running:
        yield running


@pytest.fixture
async def direct(db: TestDatabase) -> AsyncIterator[AsyncTessera]:
    """A client over the direct transport, logged in as ``authenticator``."""
    async with AsyncTessera.connect(
        db.url("authenticator"), jwt_secret=JWT_SECRET, retry=FAST_RETRY, max_size=4
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def open_backend(name: str, request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    db: TestDatabase = request.getfixturevalue("db")
    if name == "postgres":
        async with AsyncTessera.connect(
            db.url("authenticator"), jwt_secret=JWT_SECRET, retry=FAST_RETRY, max_size=4
        ) as client:
            yield Backend("postgres", client, db)
    elif name == "supabase" and REAL_SUPABASE:
        from supabase import acreate_client

        url = os.environ["TESSERA_SUPABASE_URL"]
        service_key = os.environ["TESSERA_SUPABASE_SERVICE_KEY"]
        admin = await acreate_client(url, service_key)
        async with AsyncTessera.from_supabase(
            url,
            os.environ["TESSERA_SUPABASE_ANON_KEY"],
            service_key=service_key,
            retry=FAST_RETRY,
        ) as client:
            yield Backend("supabase", client, None, _admin=admin)
    else:
        standin: SupabaseStandIn = request.getfixturevalue("standin")
        async with AsyncTessera.from_supabase(
            standin.url,
            standin.anon_key,
            service_key=standin.service_key,
            jwt_secret=JWT_SECRET,
            retry=FAST_RETRY,
        ) as client:
            yield Backend("supabase", client, db, standin=standin)


@pytest.fixture(params=["postgres", "supabase"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The same test over each transport."""
    async with open_backend(request.param, request) as opened:
        yield opened


@pytest.fixture
async def standin_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The Supabase transport over the stand-in (for injecting HTTP failures)."""
    async with open_backend("supabase-stand-in", request) as opened:
        yield opened
