"""The sync client's background loop under the three hazards of a loop in a thread.

Each is real: a ``fork()`` of a process holding a client, a SIGINT delivered to a process
blocked in a call, and a client dropped without ``close()``.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import psycopg

from tessera_client import Tessera
from tessera_client.local import create_local_user

from ..support import TestDatabase
from .conftest import FAST_RETRY, TOMORROW


def run_script(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``script`` with ``args`` as ``sys.argv[1:]``."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def backends(db: TestDatabase, application_name: str) -> list[dict[str, object]]:
    return db.sql(
        "select pid, state, wait_event_type, query from pg_stat_activity"
        " where datname = current_database() and application_name = %s",
        (application_name,),
    )


def wait_until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


FORK_SCRIPT = """
    import os, sys
    from tessera_client import ClientUnusable, Tessera

    tessera = Tessera.connect(sys.argv[1])
    before = len(tessera.list_events())
    pid = os.fork()
    if pid == 0:
        try:
            tessera.list_events()
        except ClientUnusable as error:
            print("child refused:", error, flush=True)
            sys.exit(0)  # a normal exit: atexit finalizers run in the child too
        print("child made a call", flush=True)
        sys.exit(1)
    _, status = os.waitpid(pid, 0)
    print("child exit code", os.waitstatus_to_exitcode(status), flush=True)
    # The parent's pool survived the child's exit and finalizer.
    print("parent still works", len(tessera.list_events()) == before, flush=True)
    tessera.close()
"""


def test_a_forked_child_gets_a_clear_error_not_a_hang(db: TestDatabase) -> None:
    process = run_script(FORK_SCRIPT, db.url("authenticator"))
    out, err = process.communicate(timeout=60)  # a hang fails here
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("child refused: this sync Tessera client was created in process")
    assert "after fork()" in lines[0]
    assert lines[1:] == ["child exit code 0", "parent still works True"]


SIGINT_SCRIPT = """
    import sys, uuid
    from tessera_client import RetryPolicy, Tessera

    dsn, guest, event_id = sys.argv[1], uuid.UUID(sys.argv[2]), uuid.UUID(sys.argv[3])
    tessera = Tessera.connect(
        dsn, application_name="tessera-sigint", retry=RetryPolicy(attempts=1)
    )
    guest_client = tessera.as_user(guest)
    print("booking", flush=True)
    try:
        guest_client.book(event_id)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    sys.stdin.readline()  # the test releases its lock
    print("seats", tessera.availability(event_id).seats_available, flush=True)
    tessera.close()
"""


def test_ctrl_c_cancels_the_running_call(db: TestDatabase) -> None:
    organizer, guest = create_local_user(db.url()), create_local_user(db.url())
    with Tessera.connect(db.url("authenticator"), retry=FAST_RETRY) as tessera:
        event = tessera.as_user(organizer.id).create_event("Ctrl-C", 5, TOMORROW)
    blocker = psycopg.connect(db.admin_url)
    try:
        blocker.execute("lock table public.bookings in access exclusive mode")
        process = run_script(SIGINT_SCRIPT, db.url("authenticator"), str(guest.id), str(event.id))
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline() == "booking\n"
        wait_until(
            lambda: any(row["wait_event_type"] == "Lock" for row in backends(db, "tessera-sigint"))
        )
        os.kill(process.pid, signal.SIGINT)
        assert process.stdout.readline() == "interrupted\n"
        # Cancelled on the server too, while the lock is still held: nothing waits any more.
        wait_until(
            lambda: all(
                row["wait_event_type"] != "Lock" and row["state"] != "active"
                for row in backends(db, "tessera-sigint")
            )
        )
    finally:
        blocker.rollback()
        blocker.close()
    out, err = process.communicate("go\n", timeout=30)
    assert process.returncode == 0, err
    assert out == "seats 5\n"
    assert db.sql("select count(*) as n from public.bookings where event_id = %s", (event.id,)) == [
        {"n": 0}
    ]


def test_a_dropped_client_is_closed_by_its_finalizer(db: TestDatabase) -> None:
    name = f"tessera-dropped-{uuid.uuid4().hex[:8]}"
    tessera = Tessera.connect(db.url("authenticator"), application_name=name, min_size=2)
    scoped = tessera.as_anonymous()
    del tessera
    gc.collect()
    scoped.list_events()  # a scoped client keeps its root, and so the pool, alive
    [thread] = [t for t in threading.enumerate() if t.name == "tessera-sync-loop"]
    assert len(backends(db, name)) == 2
    del scoped
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
    wait_until(lambda: backends(db, name) == [])
