"""Apply ``supabase/migrations/*.sql`` the way the Supabase CLI does, with its history table.

Each file runs in its own transaction, under an advisory lock so concurrent runs queue up
instead of colliding, and is recorded in ``supabase_migrations.schema_migrations``
(version, name, statements): the Supabase CLI's own table, so ``supabase migration list``
and ``supabase db push`` agree with Tessera about what is applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tessera_client._paths import migrations_dir as default_migrations_dir

# Supabase CLI naming: <14-digit UTC timestamp>_<snake_name>.sql
MIGRATION_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[a-z0-9_]+)\.sql$")
# An arbitrary constant, shared by every Tessera process that migrates.
MIGRATION_LOCK_KEY = 7_243_891_002

HISTORY_DDL = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
    version text not null primary key
);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
"""


class MigrationError(RuntimeError):
    """A migration file failed; it was rolled back whole and nothing after it ran."""

    def __init__(self, file: Path, line: int, message: str) -> None:
        super().__init__(f"{file.name}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name


def discover(directory: Path | None = None) -> list[Migration]:
    """Migration files in version order; a misnamed ``.sql`` file is an error, not skipped."""
    directory = directory or default_migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(path, 0, "name must be <14-digit timestamp>_<snake_name>.sql")
        found.append(Migration(match["version"], match["name"], path))
    return found


def split_statements(sql: str) -> list[tuple[int, str]]:
    """Split a script into (first line, statement) pairs.

    Understands quotes, quoted identifiers, dollar quoting and both comment styles, which is
    all PL/pgSQL migrations need.
    """
    statements: list[tuple[int, str]] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            i = end + 1
        elif ch == "$" and (tag := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            closing = sql.find(tag.group(0), i + len(tag.group(0)))
            i = n if closing < 0 else closing + len(tag.group(0))
        elif ch == ";":
            _append(statements, sql, start, i + 1)
            start = i = i + 1
        else:
            i += 1
    _append(statements, sql, start, n)
    return statements


def _append(statements: list[tuple[int, str]], sql: str, start: int, end: int) -> None:
    text = sql[start:end]
    # Start at the first code character, so error positions map to the right line.
    leading = _LEADING_NOISE.match(text)
    offset = leading.end() if leading else 0
    code = text[offset:].rstrip()
    if not code.strip(";").strip():
        return
    line = sql.count("\n", 0, start + offset) + 1
    statements.append((line, code))


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    exists = conn.execute("select to_regclass('supabase_migrations.schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return set()
    rows = conn.execute("select version from supabase_migrations.schema_migrations").fetchall()
    return {str(row[0]) for row in rows}


def migration_status(db_url: str, directory: Path | None = None) -> list[tuple[Migration, bool]]:
    """Every migration file with whether it is applied."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        done = applied_versions(conn)
    return [(m, m.version in done) for m in discover(directory)]


def apply_migrations(db_url: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations in order; returns the file names applied (empty: no-op)."""
    pending_all = discover(directory)
    applied: list[str] = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        # A session lock: it spans the per-file transactions below.
        conn.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(HISTORY_DDL)
            done = applied_versions(conn)
            for migration in pending_all:
                if migration.version in done:
                    continue
                _apply_one(conn, migration)
                applied.append(migration.filename)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied


def _apply_one(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    statements = split_statements(migration.path.read_text())
    line = 1
    try:
        with conn.transaction():
            for first_line, statement in statements:
                line = first_line  # remembered for the error report
                conn.execute(statement.encode(), prepare=False)
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, name, statements)"
                " values (%s, %s, %s)",
                (migration.version, migration.name, [s for _, s in statements]),
            )
    except psycopg.Error as exc:
        diag = exc.diag
        position = int(diag.statement_position) if diag.statement_position else 0
        if position:
            text = dict(statements).get(line, "")
            line += text[: position - 1].count("\n")
        message = diag.message_primary or str(exc)
        if diag.context:
            message += f" ({diag.context.strip().splitlines()[0]})"
        raise MigrationError(migration.path, line, message) from exc
