"""Ids (whole at 80 columns, unique prefixes), emails, time zones, and short fast failures."""

from __future__ import annotations

import time
import uuid

import pytest

from ..support import TestDatabase
from .helpers import as_json, run, tessera


def _event_with_id(db: TestDatabase, event_id: str, organizer: str) -> None:
    """An events row with a chosen id, for prefix lookups only (written directly: the
    functions give random ids; no queue or seat rows, so nothing else may use it)."""
    db.sql(
        "insert into public.events (id, organizer_id, title, starts_at, capacity, status,"
        " sales_open_at, sales_close_at)"
        " values (%s, %s, 'Chosen', now() + interval '1 day', 5, 'published', now(),"
        " now() + interval '1 day')",
        (event_id, organizer),
    )


def test_ids_are_never_cut_at_80_columns(db: TestDatabase, event: str) -> None:
    first = as_json(db, "book", event, "--as", "ada@example.test")
    second = as_json(db, "book", event, "--as", "bob@example.test")
    url = db.url()
    for argv in (["events", "list"], ["bookings", "list"], ["waitlist", event],
                 ["attendees", event], ["users", "list"], ["bookings", "show", first["id"]],
                 ["events", "show", event]):  # fmt: skip
        result = run(*argv, "--db-url", url, columns=80)
        assert result.returncode == 0, (argv, result.stderr)
        assert "…" not in result.stdout, argv
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, argv
    listed = run("bookings", "list", "--db-url", url, columns=80).stdout
    assert first["id"] in listed and second["id"] in listed
    assert event in run("events", "list", "--db-url", url, columns=80).stdout
    assert second["id"] in run("waitlist", event, "--db-url", url, columns=80).stdout


def test_unique_prefixes_name_events_and_bookings(db: TestDatabase, event: str) -> None:
    booking = as_json(db, "book", event[:4], "--as", "ada@example.test")
    assert booking["event_id"] == event
    assert as_json(db, "bookings", "show", booking["id"][:5].upper())["id"] == booking["id"]
    assert as_json(db, "events", "show", event[:9])["id"] == event  # a dash included
    out = tessera(db, "events", "show", "abc", code=1)
    assert "at least 4 hex digits" in out
    assert "UUID or a prefix" in tessera(db, "cancel", "not-hex!", code=1)
    organizer = db.sql("select id from auth.users where email = 'org@example.test'")[0]["id"]
    _event_with_id(db, "abcd1234-0000-4000-8000-000000000001", organizer)
    _event_with_id(db, "abcd5678-0000-4000-8000-000000000002", organizer)
    out = tessera(db, "events", "show", "abcd", code=1)
    assert "ambiguous" in out and "abcd1234-0000-4000-8000-000000000001" in out
    assert "abcd5678-0000-4000-8000-000000000002" in out
    assert len(out.strip().splitlines()) == 1
    missing = str(uuid.UUID(int=1))[:8]
    assert "no booking id starts with" in tessera(db, "cancel", missing, code=1)


def test_emails_are_case_insensitive(db: TestDatabase) -> None:
    created = as_json(db, "users", "create", "Mixed.Case@Example.TEST")
    assert created["email"] == "mixed.case@example.test"
    assert "already exists" in tessera(db, "users", "create", "MIXED.case@example.test", code=1)
    event = as_json(db, "events", "create", "Talk", "--capacity", "2",
                    "--as", "mixed.CASE@example.test")  # fmt: skip
    booking = as_json(db, "book", event["id"], "--as", "MIXED.CASE@EXAMPLE.TEST")
    assert booking["user_id"] == created["id"]


def test_naive_cli_times_are_local_and_output_names_its_zone(
    db: TestDatabase, event: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    made = as_json(db, "events", "create", "Noon in Paris", "--capacity", "2", "--as",
                   "org@example.test", "--starts-at", "2099-07-01T12:00")  # fmt: skip
    assert made["starts_at"] == "2099-07-01T10:00:00+00:00"  # CEST is UTC+2
    shown = tessera(db, "events", "show", made["id"])
    assert "2099-07-01 12:00 CEST" in shown
    moved = as_json(db, "events", "update", made["id"], "--starts-at", "2099-12-01T12:00")
    assert moved["starts_at"] == "2099-12-01T11:00:00+00:00"  # CET is UTC+1
    monkeypatch.setenv("TZ", "UTC")
    assert "2099-12-01 11:00 UTC" in tessera(db, "events", "show", made["id"])
    data = as_json(db, "events", "show", made["id"])
    assert data["offer_ttl"] == "P1D" and data["created_at"].endswith("+00:00")
    assert "ISO 8601" in tessera(db, "events", "update", made["id"], "--ends-at", "soon", code=1)


def test_a_wrong_password_fails_fast_in_one_line(db: TestDatabase) -> None:
    bad = db.url().replace("password=postgres", "password=wrong")
    started = time.monotonic()
    result = run("events", "list", "--db-url", bad)
    assert time.monotonic() - started < 3 + 2  # python start-up included
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0], result.stderr


def test_a_wrong_host_fails_within_three_seconds(db: TestDatabase) -> None:
    started = time.monotonic()
    # 10.255.255.1 drops packets: only the connect timeout ends the attempt.
    result = run("bookings", "list", "--db-url", "postgresql://postgres:x@10.255.255.1:5432/db")
    assert time.monotonic() - started < 3 + 2
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "10.255.255.1:5432" in result.stderr


def test_a_url_that_is_not_a_url_is_one_line(db: TestDatabase) -> None:
    result = run("events", "list", "--db-url", "not a url")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("error:")
    ]
    assert "not a PostgreSQL URL" in result.stderr and "Traceback" not in result.stderr
