"""Compatibility with the real Supabase CLI and pgTAP, run against the test server.

These tools are installed by scripts/test (npm for the pinned CLI, apt for pg_prove and
plpgsql_check). When one is missing these tests FAIL with the command that installs it:
a compatibility check that silently skips would prove nothing.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tessera_client._paths import bootstrap_sql
from tessera_client.migrations import apply_migrations, discover

from .support import url_for
from .tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
SUPABASE_CLI = ROOT / "node_modules" / ".bin" / "supabase"
CLI_ENV = dict(os.environ, SUPABASE_TELEMETRY_DISABLED="1", DO_NOT_TRACK="1", CI="true")


def require(path: str | None, install: str) -> str:
    if not path or not Path(path).exists():
        pytest.fail(f"missing test tool; install it with: {install}")
    return path


def supabase_cli() -> str:
    return require(
        os.environ.get("TESSERA_SUPABASE_CLI") or str(SUPABASE_CLI), "npm ci (in the repo root)"
    )


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
            return str(candidate)
    return require(found, "apt-get install postgresql-client-15")


def cli_url(url: str) -> str:
    """The Supabase CLI wants a URL with sslmode=disable for a server without TLS."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return (
        f"postgresql://{info['user']}:{info['password']}@{info['host']}:{info['port']}"
        f"/{info['dbname']}?sslmode=disable"
    )


@pytest.fixture
def bootstrapped(server_admin_url: str, template_db: str) -> Iterator[Callable[[], str]]:
    """Factory of empty databases that have only the Supabase bootstrap (no migrations)."""
    created: list[str] = []

    def make() -> str:
        name = f"cli_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server_admin_url, autocommit=True) as conn:
            conn.execute(f"create database {name} owner postgres")
        admin = url_for(server_admin_url, database=name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(bootstrap_sql().read_text())  # type: ignore[arg-type]
        created.append(name)
        return admin

    yield make
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f"drop database if exists {name} with (force)")


def schema_dump(admin_url: str, *options: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    result = subprocess.run(
        [pg_tool("pg_dump"), "--schema-only", *(options or ["--no-comments"]),
         "-h", str(info["host"]), "-p", str(info["port"]), "-U", str(info["user"]),
         str(info["dbname"])],
        env=dict(os.environ, PGPASSWORD=str(info["password"])),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict"))
    ]
    return "\n".join(lines)


def test_declarative_schema_matches_the_migrations(bootstrapped: Callable[[], str]) -> None:
    """supabase/schemas/ is the current schema: it builds exactly what the migrations build."""
    migrated = bootstrapped()
    declared = bootstrapped()
    apply_migrations(url_for(migrated, user="postgres"))
    files = sorted((ROOT / "supabase" / "schemas").glob("*.sql"))
    assert files, "supabase/schemas/ has no .sql files"
    with psycopg.connect(url_for(declared, user="postgres"), autocommit=True) as conn:
        for file in files:
            conn.execute(file.read_text().encode())
    # Comments included: an RPC's comment is part of the API PostgREST describes.
    options = ("--exclude-schema=supabase_migrations",)
    ours, theirs = schema_dump(migrated, *options), schema_dump(declared, *options)
    diff = "\n".join(difflib.unified_diff(
        ours.splitlines(), theirs.splitlines(), "migrations", "schemas", lineterm=""
    ))  # fmt: skip
    assert ours == theirs, diff[:6000]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [supabase_cli(), *args, "--workdir", str(ROOT)],
        env=CLI_ENV, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip


def test_supabase_migration_up_builds_the_same_schema_as_tessera(
    bootstrapped: Callable[[], str],
) -> None:
    ours = bootstrapped()
    theirs = bootstrapped()
    apply_migrations(url_for(ours, user="postgres"))
    result = run_cli("migration", "up", "--db-url", cli_url(url_for(theirs, user="postgres")))
    assert result.returncode == 0, result.stderr
    assert schema_dump(ours) == schema_dump(theirs)

    # Both sides agree on the history: the CLI sees every local file as applied remotely.
    listed = run_cli("migration", "list", "--db-url", cli_url(url_for(ours, user="postgres")))
    assert listed.returncode == 0, listed.stderr
    for migration in discover():
        row = [line for line in listed.stdout.splitlines() if migration.version in line]
        assert row and row[0].count(migration.version) == 2, listed.stdout


def test_supabase_db_lint_passes_and_would_catch_a_broken_function(
    bootstrapped: Callable[[], str],
) -> None:
    admin = bootstrapped()
    with psycopg.connect(admin, autocommit=True) as conn:
        available = conn.execute(
            "select 1 from pg_available_extensions where name = 'plpgsql_check'"
        ).fetchone()
        if not available:
            pytest.fail(
                "missing plpgsql_check; install: apt-get install postgresql-15-plpgsql-check"
            )
        # The CLI calls plpgsql_check_function unqualified, as the login role.
        conn.execute("create extension if not exists plpgsql_check with schema public")
    apply_migrations(url_for(admin, user="postgres"))
    url = cli_url(url_for(admin, user="postgres"))
    result = run_cli("db", "lint", "--db-url", url, "--fail-on", "error")
    assert result.returncode == 0, result.stdout + result.stderr

    with psycopg.connect(url_for(admin, user="postgres"), autocommit=True) as conn:
        conn.execute(
            "create function public.lint_canary() returns int language plpgsql as"
            " $$ begin return (select no_such_column from public.events limit 1); end $$"
        )
    broken = run_cli("db", "lint", "--db-url", url, "--fail-on", "error")
    assert broken.returncode != 0
    assert "lint_canary" in broken.stdout


def test_pgtap_suite_passes(server_admin_url: str, template_db: str) -> None:
    pg_prove = require_tool("pg_prove", "libtap-parser-sourcehandler-pgtap-perl")
    name = f"tap_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {template_db} owner postgres")
    info = psycopg.conninfo.conninfo_to_dict(server_admin_url)
    try:
        result = subprocess.run(
            [pg_prove, "--ext", ".sql", "-r", str(ROOT / "supabase" / "tests"),
             "-h", str(info["host"]), "-p", str(info["port"]), "-U", str(info["user"]), "-d", name],
            env=dict(os.environ, PGPASSWORD=str(info["password"])),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        with psycopg.connect(server_admin_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "All tests successful" in result.stdout
