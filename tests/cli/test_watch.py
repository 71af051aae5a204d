"""`tessera watch`: follows an event, ends on cancellation, JSON lines, no idle redraws."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from ..support import TestDatabase
from .helpers import as_json, run


def test_watch_follows_an_event_until_it_is_cancelled(db: TestDatabase, event: str) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tessera_client.cli", "watch", event[:8], "--db-url", db.url()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "120", "LINES": "40"},
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        assert "watching 'Jazz night'" in watcher.stdout.readline()
        as_json(db, "book", event, "--as", "ada@example.test")
        as_json(db, "book", event, "--as", "bob@example.test")
        time.sleep(0.5)
        as_json(db, "events", "cancel", event)
        output, _ = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, output
    assert "booked" in output and "waitlisted" in output and "event_cancelled" in output
    assert "watch ended" in output


def test_watch_json_prints_one_object_per_change(db: TestDatabase, event: str) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tessera_client.cli", "watch", event, "--json", "--db-url",
         db.url()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watcher.stderr is not None
        assert (
            "watching 'Jazz night'" in watcher.stderr.readline()
        )  # from here on, nothing is missed
        booked = as_json(db, "book", event, "--as", "ada@example.test")
        as_json(db, "events", "update", event, "--venue", "Blue Hall")
        as_json(db, "events", "cancel", event)
        output, errors = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, errors
    changes = [json.loads(line) for line in output.splitlines()]
    kinds = [c["kind"] for c in changes]
    assert kinds[0] == "booked" and changes[0]["booking_id"] == booked["id"]
    assert "event_updated" in kinds and kinds[-1] == "event_cancelled"
    assert all(c["created_at"].endswith("+00:00") for c in changes)


def test_watching_a_cancelled_event_prints_its_last_entry_and_ends(
    db: TestDatabase, event: str
) -> None:
    as_json(db, "book", event, "--as", "ada@example.test")
    as_json(db, "events", "cancel", event, "--yes")
    started = time.monotonic()
    result = run("watch", event, "--db-url", db.url(), timeout=20)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert "kind=event_cancelled" in result.stdout and "nothing more to watch" in result.stdout
    lines = run("watch", event, "--json", "--db-url", db.url(), timeout=20).stdout.splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["event_cancelled"]


def test_an_idle_watch_on_a_terminal_does_not_redraw(db: TestDatabase, event: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        argv = ["-m", "tessera_client.cli", "watch", event, "--db-url", db.url()]
        os.execvpe(sys.executable, [sys.executable, *argv],
                   {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm"})  # fmt: skip

    def read_for(seconds: float) -> bytes:
        got = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    got += os.read(fd, 65536)
                except OSError:
                    break
        return got

    try:
        first = b""
        deadline = time.monotonic() + 30
        while b"available" not in first and time.monotonic() < deadline:
            first += read_for(0.5)  # starts, subscribes, draws
        assert b"available" in first, first[-500:]
        read_for(1.0)  # the rest of the first drawing
        idle = read_for(3.0)
        assert len(idle) == 0, f"{len(idle)} bytes drawn while nothing happened"
        as_json(db, "book", event, "--as", "ada@example.test")
        assert b"booked" in read_for(3.0)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
