"""The `tessera` CLI against a real database: every command, its JSON and its errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tessera_client.cli import app

from ..support import TestDatabase, free_port
from .helpers import as_json, runner, tessera


def test_users_create_and_list(db: TestDatabase) -> None:
    user = as_json(db, "users", "create", "cli@example.test")
    assert user["email"] == "cli@example.test"
    assert "cli@example.test" in [u["email"] for u in as_json(db, "users", "list")]
    out = tessera(db, "users", "create", "cli@example.test", code=1)
    assert "already exists" in out
    assert "Traceback" not in out
    tessera(db, "users", "create", "not-an-email", code=1)


def test_events_lifecycle(db: TestDatabase, event: str) -> None:
    shown = as_json(db, "events", "show", event)
    assert shown["title"] == "Jazz night"
    assert shown["availability"]["seats_available"] == 1
    assert event in [e["id"] for e in as_json(db, "events", "list")]
    draft = as_json(db, "events", "create", "Draft", "--capacity", "5", "--as",
                    "org@example.test", "--draft")  # fmt: skip
    assert draft["status"] == "draft"
    assert as_json(db, "events", "publish", draft["id"])["status"] == "published"
    raised = as_json(db, "events", "capacity", event, "3")
    assert raised["capacity"] == 3
    assert as_json(db, "events", "cancel", draft["id"])["status"] == "cancelled"
    out = tessera(db, "events", "cancel", draft["id"], code=1)
    assert "InvalidTransition" in out
    tessera(db, "events", "create", "x" * 300, "--capacity", "1", "--as", "org@example.test",
            code=1)  # fmt: skip
    tessera(db, "events", "create", "Bad", "--capacity", "1", "--as", "nobody@example.test",
            code=1)  # fmt: skip
    tessera(db, "events", "show", "not-a-uuid", code=1)


def test_book_cancel_waitlist_attendees(db: TestDatabase, event: str, tmp_path: Path) -> None:
    first = as_json(db, "book", event, "--as", "ada@example.test")
    assert first["status"] == "confirmed"
    second = as_json(db, "book", event, "--as", "bob@example.test")
    assert (second["status"], second["waitlist_position"]) == ("waitlisted", 1)
    out = tessera(db, "book", event, "--as", "bob@example.test", code=1)
    assert "AlreadyBooked" in out and "Traceback" not in out
    waiting = as_json(db, "waitlist", event)
    assert [(w["email"], w["position"]) for w in waiting] == [("bob@example.test", 1)]
    csv_file = tmp_path / "attendees.csv"
    people = as_json(db, "attendees", event, "--csv", str(csv_file))
    assert [p["email"] for p in people] == ["ada@example.test"]
    assert "ada@example.test" in csv_file.read_text()
    cancelled = as_json(db, "cancel", first["id"])
    assert cancelled["status"] == "cancelled"
    promoted = db.sql("select status from bookings where id = %s", (second["id"],))[0]
    assert promoted["status"] == "confirmed"
    tessera(db, "cancel", first["id"], code=1)
    tessera(db, "book", event, "--as", "ada@example.test", "--seats", "0", code=1)


def test_claim_an_offer(db: TestDatabase) -> None:
    for email in ("o2@example.test", "c1@example.test", "c2@example.test"):
        as_json(db, "users", "create", email)
    ev = as_json(db, "events", "create", "Offers", "--capacity", "1", "--as", "o2@example.test",
                 "--mode", "offer")["id"]  # fmt: skip
    held = as_json(db, "book", ev, "--as", "c1@example.test")
    waiting = as_json(db, "book", ev, "--as", "c2@example.test")
    tessera(db, "claim", waiting["id"], code=1)  # no offer yet
    as_json(db, "cancel", held["id"])
    assert as_json(db, "claim", waiting["id"])["status"] == "confirmed"


def test_doctor_passes_then_names_a_corrupted_row(db: TestDatabase, event: str) -> None:
    as_json(db, "book", event, "--as", "ada@example.test")
    report = as_json(db, "doctor")
    assert report == {"ok": True, "problems": []}
    db.sql("update tessera.seat_blocks set taken = 0")
    report = as_json(db, "doctor", code=1)
    assert report["ok"] is False
    assert {p["check"] for p in report["problems"]} == {"counters_agree"}
    assert report["problems"][0]["event_id"] == event
    assert "counters_agree" in tessera(db, "doctor", code=1)


def test_db_migrate_and_status(db: TestDatabase) -> None:
    assert as_json(db, "db", "migrate") == {"applied": []}
    assert all(m["applied"] for m in as_json(db, "db", "status"))


def test_help_has_examples() -> None:
    for command in (["book"], ["events", "create"], ["doctor"], ["demo"], ["watch"],
                    ["dev", "up"], ["users", "create"], ["attendees"]):  # fmt: skip
        out = runner.invoke(app, [*command, "--help"]).output
        assert "Example" in out, command


def test_a_database_that_is_not_there_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["doctor", "--db-url", "postgresql://x:y@127.0.0.1:9/none"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_dev_up_status_down(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(tempfile.mkdtemp(prefix="tessera-test-cli-"))
    root.chmod(0o755)
    port = free_port()
    monkeypatch.setenv("TESSERA_DATA_DIR", str(root / "stack"))
    monkeypatch.setenv("TESSERA_PORT", str(port))
    try:
        up = json.loads(tessera(None, "dev", "up", "--json"))
        assert up["started"] is True and up["running"] is True
        assert json.loads(tessera(None, "dev", "up", "--json"))["started"] is False
        status = json.loads(tessera(None, "dev", "status", "--json"))
        assert status["db_url"].endswith(f":{port}/postgres") and status["anon_key"]
        assert json.loads(tessera(None, "dev", "reset", "--yes", "--json"))["reset"] is True
        demo = json.loads(tessera(None, "demo", "--seats", "10", "--people", "40",
                                  "--cancellations", "5", "--json"))  # fmt: skip
        assert (demo["confirmed"], demo["waitlisted"], demo["errors"]) == (10, 30, 0)
        assert demo["promotions"] == 5 and demo["promotions_fifo"] is True
        assert demo["waiting_after"] == 25 and demo["invariant_problems"] == []
        assert json.loads(tessera(None, "dev", "down", "--json")) == {"stopped": True}
        tessera(None, "dev", "status", code=1)
        tessera(None, "doctor", code=1)  # no stack running: a clear error
    finally:
        from tessera_client._local.stack import LocalStack

        LocalStack(root / "stack").destroy()
        os.rmdir(root)
