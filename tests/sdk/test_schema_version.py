"""The client checks the database's schema version once, on its first call."""

from __future__ import annotations

import pytest

from tessera_client import AsyncTessera, SchemaMismatch

from .conftest import Backend


def test_the_migrations_provide_the_version_this_sdk_needs(backend: Backend) -> None:
    [row] = backend.db.sql("select public.tessera_schema_version() as version")
    assert row["version"] >= AsyncTessera.SCHEMA_VERSION


async def test_a_database_without_the_version_function_is_refused(backend: Backend) -> None:
    backend.db.sql("drop function public.tessera_schema_version()")
    with pytest.raises(SchemaMismatch) as refused:
        await backend.client.list_events()
    assert refused.value.code in {"42883", "PGRST202"}  # direct / through PostgREST
    assert refused.value.hint and "migrations" in refused.value.hint
    # Every call keeps refusing: the check passes only once it has passed.
    with pytest.raises(SchemaMismatch):
        await backend.client.as_service().expire_offers()


async def test_an_older_schema_is_refused(backend: Backend) -> None:
    older = AsyncTessera.SCHEMA_VERSION - 1
    backend.db.sql(
        f"create or replace function public.tessera_schema_version() returns integer"
        f" language sql stable as 'select {older}'"
    )
    with pytest.raises(SchemaMismatch) as refused:
        await (await backend.user()).my_bookings()
    assert refused.value.code == "0A000"
    assert refused.value.detail == (
        f"database schema version {older}; this SDK needs {AsyncTessera.SCHEMA_VERSION} or newer"
    )


async def test_the_version_is_checked_once_per_client(backend: Backend) -> None:
    await backend.client.list_events()  # checked here
    backend.db.sql("drop function public.tessera_schema_version()")
    await backend.client.list_events()
    await backend.client.as_anonymous().list_events()  # scoped clients share the check
