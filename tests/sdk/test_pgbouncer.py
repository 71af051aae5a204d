"""The direct transport through PgBouncer in transaction-pooling mode.

Many client connections share two server connections, so a call's role and claims must
live and die with its transaction: any session state would leak to the next client.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tessera_client import AsyncTessera, BookingStatus, PermissionDenied
from tessera_client.local import create_local_user

from ..support import TestDatabase, free_port
from ..tools import pgbouncer_binary
from .conftest import FAST_RETRY, TOMORROW


@pytest.fixture
def pgbouncer(db: TestDatabase) -> Iterator[str]:
    """PgBouncer (pool_mode=transaction, 2 server connections); yields its DSN."""
    binary = pgbouncer_binary()
    server = psycopg.conninfo.conninfo_to_dict(db.url("authenticator"))
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-test-pgbouncer-"))
    workdir.chmod(0o755)
    config = workdir / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
{db.name} = host={server.get("host", "127.0.0.1")} port={server.get("port", 5432)} \
dbname={db.name} user=authenticator password=postgres pool_size=2
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 100
logfile = {workdir}/pgbouncer.log
"""
    )
    config.chmod(0o644)
    argv = [binary, str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        try:
            pwd.getpwnam("tessera")
        except KeyError:
            pytest.fail("running as root without the 'tessera' system user for PgBouncer")
        argv[1:1] = ["-u", "tessera"]
        os.chown(workdir, pwd.getpwnam("tessera").pw_uid, -1)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dsn = f"postgresql://authenticator:x@127.0.0.1:{port}/{db.name}"
    try:
        for _ in range(100):
            try:
                psycopg.connect(dsn, prepare_threshold=None).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.05)
        else:
            pytest.fail("PgBouncer did not start")
        yield dsn
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_identities_do_not_leak_through_transaction_pooling(
    db: TestDatabase, pgbouncer: str
) -> None:
    organizer = create_local_user(db.url())
    guests = [create_local_user(db.url()).id for _ in range(24)]
    async with AsyncTessera.connect(pgbouncer, retry=FAST_RETRY, min_size=4, max_size=12) as client:
        alice = client.as_user(organizer.id)
        event = await alice.create_event("Pooled", capacity=16, starts_at=TOMORROW)

        async def book_and_check(user_id: object) -> None:
            guest = client.as_user(user_id)  # type: ignore[arg-type]
            booking = await guest.book(event.id)
            assert booking.user_id == user_id
            [mine] = await guest.my_bookings()
            assert mine.id == booking.id
            await client.availability(event.id)  # anonymous calls interleaved
            await client.as_service().changes(event.id)

        await asyncio.gather(*(book_and_check(user_id) for user_id in guests))
        availability = await client.availability(event.id)
        assert (availability.seats_confirmed, availability.waitlist_count) == (16, 8)
        statuses = [b.status for b in await client.as_service().attendees(event.id)]
        assert statuses == [BookingStatus.CONFIRMED] * 16
        with pytest.raises(PermissionDenied):  # anonymous: no role or claims left over
            await client.create_event("Leaked?", capacity=1, starts_at=TOMORROW)
