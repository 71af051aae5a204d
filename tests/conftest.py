"""Test fixtures: one real PostgreSQL per session, a fresh database per test.

The session starts a local stack in a temporary directory (or uses the superuser URL in
``TESSERA_TEST_DB_URL``), builds ``tessera_template`` once with the bootstrap and every
migration, and each test that asks for ``db`` gets ``CREATE DATABASE … TEMPLATE
tessera_template``: isolated, and a few tens of milliseconds to make.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tessera_client._local.stack import LocalStack
from tessera_client._paths import bootstrap_sql
from tessera_client.migrations import apply_migrations

from . import security_expectations
from .support import TestDatabase, free_port, url_for

TEMPLATE = "tessera_template"


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """A running local stack for the whole session (not migrated: tests use clones)."""
    if os.environ.get("TESSERA_TEST_DB_URL"):
        pytest.skip("using TESSERA_TEST_DB_URL; no local stack")
    tmp = Path(tempfile.mkdtemp(prefix="tessera-test-"))
    tmp.chmod(0o755)  # the unprivileged server user must enter it when tests run as root
    local = LocalStack(data_dir=tmp / "stack", port=free_port())
    local.up(apply=False)
    yield local
    local.destroy()
    tmp.rmdir() if tmp.exists() and not any(tmp.iterdir()) else None


@pytest.fixture(scope="session")
def server_admin_url(request: pytest.FixtureRequest) -> str:
    """Superuser URL of the server the tests use (database ``postgres``)."""
    if url := os.environ.get("TESSERA_TEST_DB_URL"):
        return url
    local: LocalStack = request.getfixturevalue("stack")
    return local.admin_url


def _with_db(url: str, database: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def template_db(server_admin_url: str) -> str:
    """Name of the template database with bootstrap and all migrations applied."""
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {TEMPLATE} with (force)")
        conn.execute(f"create database {TEMPLATE}")
    admin = _with_db(server_admin_url, TEMPLATE)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(bootstrap_sql().read_text())  # type: ignore[arg-type]
    apply_migrations(url_for(admin, user="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        # pgTAP is installed by scripts/test; without it this fails instead of skipping.
        conn.execute("create extension if not exists pgtap with schema extensions")
        conn.execute("vacuum analyze")
    return TEMPLATE


@contextlib.contextmanager
def cloned_database(server_admin_url: str, template: str, prefix: str) -> Iterator[TestDatabase]:
    """A database cloned from ``template``, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {template} owner postgres")
    database = TestDatabase(admin_url=_with_db(server_admin_url, name), name=name)
    try:
        yield database
    finally:
        database.close()
        with psycopg.connect(server_admin_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")


@pytest.fixture
def db(server_admin_url: str, template_db: str) -> Iterator[TestDatabase]:
    """A fresh database cloned from the template, dropped after the test."""
    with cloned_database(server_admin_url, template_db, "test") as database:
        yield database


@pytest.fixture(scope="module")
def world_db(server_admin_url: str, template_db: str) -> Iterator[TestDatabase]:
    """One database per test module for the security world (its checks roll back)."""
    with cloned_database(server_admin_url, template_db, "test_sec") as database:
        yield database


@pytest.fixture(scope="module")
def world(world_db: TestDatabase) -> security_expectations.World:
    """The users, events and bookings of tests/security_expectations.py, in world_db."""
    return security_expectations.build_world(world_db)
