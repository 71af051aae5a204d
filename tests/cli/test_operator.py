"""The commands an operator expects: bookings in every state, event updates, offers, CSV,
pages, --version, --debug anywhere, one-line errors, confirmations."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from tessera_client.cli import app

from ..support import TestDatabase
from .helpers import as_json, runner, tessera


def _offer_world(db: TestDatabase) -> dict[str, str]:
    """An offer-mode event with bookings in all five states; their ids by state."""
    for name in ("org", "c0", "c1", "c2", "c3", "c4", "c5"):
        as_json(db, "users", "create", f"{name}@example.test")
    ev = as_json(db, "events", "create", "Offers", "--capacity", "2", "--as", "org@example.test",
                 "--mode", "offer")["id"]  # fmt: skip

    def book(name: str) -> str:
        return str(as_json(db, "book", ev, "--as", f"{name}@example.test")["id"])

    confirmed, held = book("c0"), book("c1")
    c2, c3, c4 = book("c2"), book("c3"), book("c4")  # waiting
    as_json(db, "cancel", held)  # c2 is offered the seat
    as_json(db, "claim", c2)
    as_json(db, "cancel", c2)  # c3 is offered it
    # c3 lets the offer lapse: its deadline passes and `offers expire` passes it on to c4.
    db.sql("update public.bookings set offer_expires_at = now() - interval '1 second'"
           " where id = %s", (c3,))  # fmt: skip
    assert as_json(db, "offers", "expire") == {"expired": 1}
    waiting = book("c5")
    return {"event": ev, "confirmed": confirmed, "cancelled": held, "expired": c3,
            "offered": c4, "waitlisted": waiting}  # fmt: skip


def test_bookings_list_shows_every_state_and_filters(db: TestDatabase, tmp_path: Path) -> None:
    ids = _offer_world(db)
    rows = as_json(db, "bookings", "list", "--event", ids["event"])
    by_id = {row["id"]: row for row in rows}
    for state in ("confirmed", "waitlisted", "offered", "cancelled", "expired"):
        assert by_id[ids[state]]["status"] == state
    assert by_id[ids["offered"]]["offer_expires_at"].endswith("+00:00")
    assert by_id[ids["waitlisted"]]["waitlist_position"] == 1
    assert by_id[ids["waitlisted"]]["email"] == "c5@example.test"
    only = as_json(db, "bookings", "list", "--event", ids["event"], "--status", "expired",
                   "--status", "offered")  # fmt: skip
    assert {r["status"] for r in only} == {"expired", "offered"}
    mine = as_json(db, "bookings", "list", "--as", "C2@Example.TEST")
    assert [(r["email"], r["status"]) for r in mine] == [("c2@example.test", "cancelled")]
    page = as_json(db, "bookings", "list", "--event", ids["event"], "--limit", "2")
    rest = as_json(db, "bookings", "list", "--event", ids["event"], "--after", page[-1]["id"][:8])
    assert [r["id"] for r in page + rest] == [r["id"] for r in rows]
    out = tmp_path / "bookings.csv"
    tessera(db, "bookings", "list", "--event", ids["event"], "--csv", str(out))
    written = list(csv.DictReader(out.open()))
    assert [r["id"] for r in written] == [r["id"] for r in rows]
    to_stdout = tessera(db, "bookings", "list", "--event", ids["event"], "--csv", "-")
    assert next(csv.DictReader(io.StringIO(to_stdout)))["id"] == rows[0]["id"]
    shown = as_json(db, "bookings", "show", ids["expired"][:6])
    assert shown["status"] == "expired" and shown["expired_at"]
    text = tessera(db, "bookings", "show", ids["expired"])
    assert "expired" in text and ids["expired"] in text
    tessera(db, "bookings", "list", "--status", "lost", code=2)


def test_events_update_through_the_cli(db: TestDatabase, event: str) -> None:
    updated = as_json(db, "events", "update", event[:8], "--venue", "Blue Hall",
                      "--starts-at", "2099-01-01T20:00+00:00", "--max-seats", "2",
                      "--offer-hours", "2")  # fmt: skip
    assert updated["venue"] == "Blue Hall"
    assert updated["starts_at"] == "2099-01-01T20:00:00+00:00"
    assert updated["offer_ttl"] == "PT2H"
    changes = db.sql("select detail from public.ledger where event_id = %s and kind ="
                     " 'event_updated'", (event,))  # fmt: skip
    changed = set(changes[0]["detail"]["changes"])
    assert changed == {"venue", "starts_at", "max_seats_per_booking", "offer_ttl"}
    out = tessera(db, "events", "update", event, "--max-seats", "0", code=1)
    assert "InvalidParameter" in out and len(out.strip().splitlines()) == 1
    assert "nothing to change" in tessera(db, "events", "update", event, code=1)


def test_already_booked_names_the_existing_booking(db: TestDatabase, event: str) -> None:
    first = as_json(db, "book", event, "--as", "ada@example.test")
    out = tessera(db, "book", event, "--as", "ADA@example.test", code=1)
    assert "AlreadyBooked" in out and first["id"] in out
    assert len(out.strip().splitlines()) == 1


def test_waitlist_csv_to_a_file_and_to_stdout(db: TestDatabase, event: str,
                                              tmp_path: Path) -> None:  # fmt: skip
    as_json(db, "book", event, "--as", "ada@example.test")
    waiting = as_json(db, "book", event, "--as", "bob@example.test")
    out = tmp_path / "waiting.csv"
    tessera(db, "waitlist", event, "--csv", str(out))
    rows = list(csv.DictReader(out.open()))
    assert [(r["position"], r["email"], r["booking_id"]) for r in rows] == [
        ("1", "bob@example.test", waiting["id"])
    ]
    assert datetime.fromisoformat(rows[0]["waitlisted_at"]).tzinfo is not None
    piped = tessera(db, "waitlist", event, "--csv", "-")
    assert list(csv.DictReader(io.StringIO(piped))) == rows


def test_events_cancel_says_how_many_bookings_it_cancelled(db: TestDatabase, event: str) -> None:
    as_json(db, "book", event, "--as", "ada@example.test")
    as_json(db, "book", event, "--as", "bob@example.test")
    out = tessera(db, "events", "cancel", event[:6], "--yes")
    assert "2 booking(s) cancelled" in out
    assert as_json(db, "events", "show", event)["status"] == "cancelled"


def test_events_cancel_asks_on_a_terminal(db: TestDatabase, event: str) -> None:
    def cancel_on_a_terminal(answer: bytes) -> str:
        pid, fd = pty.fork()
        if pid == 0:  # the child: `tessera events cancel` with a terminal as stdin
            argv = ["-m", "tessera_client.cli", "events", "cancel", event, "--db-url", db.url()]
            os.execvpe(sys.executable, [sys.executable, *argv], {**os.environ, "COLUMNS": "80"})
        output = b""
        deadline = time.monotonic() + 30
        answered = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                os.write(fd, answer + b"\n")
                answered = True
        os.waitpid(pid, 0)
        return output.decode(errors="replace")

    asked = cancel_on_a_terminal(b"n")
    assert "Cancel 'Jazz night'" in asked and "not cancelled" in asked
    assert as_json(db, "events", "show", event)["status"] == "published"
    done = cancel_on_a_terminal(b"y")
    assert "is cancelled" in done
    assert as_json(db, "events", "show", event)["status"] == "cancelled"


def test_pages_of_events_and_users(db: TestDatabase) -> None:
    as_json(db, "users", "create", "org@example.test")
    for n in range(5):
        as_json(db, "events", "create", f"Talk {n}", "--capacity", "3", "--as",
                "org@example.test", "--starts-at", f"2099-01-0{n + 1}T18:00+00:00")  # fmt: skip
    full = [e["id"] for e in as_json(db, "events", "list")]
    first = as_json(db, "events", "list", "--limit", "2")
    second = as_json(db, "events", "list", "--limit", "2", "--after", first[-1]["id"])
    assert [e["id"] for e in first + second] == full[:4]
    assert "next page: --after" in tessera(db, "events", "list", "--limit", "2")
    users = as_json(db, "users", "list")
    after = as_json(db, "users", "list", "--after", users[0]["email"])
    assert after == users[1:]


def test_version_debug_anywhere_and_json_is_a_flag(db: TestDatabase) -> None:
    from tessera_client import __version__

    assert tessera(None, "--version").strip() == f"tessera {__version__}"
    # --debug after the subcommand: accepted, and shows the traceback of a failure.
    result = runner.invoke(app, ["events", "show", "0000", "--debug", "--db-url", db.url()])
    assert result.exit_code == 1 and "no event id starts with 0000" in result.output
    failing = runner.invoke(app, ["doctor", "--db-url", "postgresql://x:y@127.0.0.1:9/n",
                                  "--debug"])  # fmt: skip
    assert failing.exit_code == 1
    for command in (["events", "list"], ["bookings", "list"], ["waitlist"], ["dev", "status"]):
        out = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"}).output
        [line] = [line for line in out.splitlines() if line.lstrip("│ ").startswith("--json")]
        assert "--no-json" not in line and "<bool>" not in line, (command, line)


def test_usage_errors_are_one_line() -> None:
    for argv in (["events", "create"], ["bookings", "list", "--limit", "0"], ["nonsense"],
                 ["book", "x", "--seats", "many"]):  # fmt: skip
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, argv
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (argv, result.output)


def test_offers_expire_and_the_worker(db: TestDatabase) -> None:
    for name in ("o", "p1", "p2"):
        as_json(db, "users", "create", f"{name}@example.test")
    ev = as_json(db, "events", "create", "Offers", "--capacity", "1", "--as", "o@example.test",
                 "--mode", "offer")["id"]  # fmt: skip
    held = as_json(db, "book", ev, "--as", "p1@example.test")
    waiting = as_json(db, "book", ev, "--as", "p2@example.test")
    as_json(db, "cancel", held["id"])
    assert as_json(db, "offers", "expire") == {"expired": 0}
    db.sql("update public.bookings set offer_expires_at = now() - interval '1 second'"
           " where id = %s", (waiting["id"],))  # fmt: skip
    out = tessera(db, "worker", "--once")
    assert "1 offer(s) expired" in out
    assert as_json(db, "bookings", "show", waiting["id"])["status"] == "expired"
    worker = subprocess.run(
        [sys.executable, "-m", "tessera_client.cli", "worker", "--once", "--json", "--db-url",
         db.url()], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert json.loads(worker.stdout)["expired"] == 0
