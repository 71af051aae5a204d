"""Read replicas: `read_dsn` sends public reads to the standby, with read-your-writes.

The standby's replay is paused to make it stale on purpose: a caller who has just booked
must still read its own booking (the primary answers), while another caller's read is
answered by the stale replica, which proves where reads go.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import psycopg

from tessera_client import AsyncTessera, RetryPolicy
from tessera_client._local.ha import HaFormation
from tessera_client._transports._postgres import PostgresTransport
from tessera_client.local import create_local_users


def _wait_for_replay(formation: HaFormation, standby: str, timeout: float = 30.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    with psycopg.connect(formation.status().admin_url, autocommit=True) as primary:
        row = primary.execute("select pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    with psycopg.connect(formation.node_url(standby, "supabase_admin"), autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while True:
            done = conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", row).fetchone()
            if done and done[0]:
                return
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)


def test_replica_reads_keep_read_your_writes(formation: HaFormation) -> None:
    formation.wait_until_replicated()
    status = formation.status()
    standby = next(node.name for node in status.nodes if node.role == "secondary")
    organizer, fan = create_local_users(status.db_url, 2, prefix="replica")
    asyncio.run(_scenario(formation, status.db_url, standby, organizer, fan))


async def _scenario(
    formation: HaFormation, db_url: str, standby: str, organizer: uuid.UUID, fan: uuid.UUID
) -> None:
    async with AsyncTessera.connect(
        db_url, read_dsn=formation.node_url(standby), retry=RetryPolicy.spanning(20)
    ) as tessera:
        transport = cast(PostgresTransport, tessera.transport)
        event = await tessera.as_user(organizer).create_event(
            "Replica reads", capacity=10, starts_at=datetime.now(UTC) + timedelta(days=30)
        )
        # The organizer's own new event is listed at once, wherever the read goes.
        assert event.id in {e.id for e in await tessera.as_user(organizer).list_events()}
        await asyncio.to_thread(_wait_for_replay, formation, standby)
        before = await tessera.as_anonymous().availability(event.id)

        pause = "select pg_wal_replay_pause()"
        admin_url = formation.node_url(standby, "supabase_admin")
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(pause)
            try:
                booking = await tessera.as_user(fan).book(event.id, 1)
                fallbacks = transport.replica_fallbacks
                mine = await tessera.as_user(fan).availability(event.id)
                assert mine.seats_available == before.seats_available - 1
                seen = await tessera.as_user(fan).changes(event.id, after_seq=before.last_seq)
                assert booking.id in {change.booking_id for change in seen}
                assert transport.replica_fallbacks == fallbacks + 2  # the primary answered

                reads = transport.replica_reads
                stale = await tessera.as_anonymous().availability(event.id)
                assert transport.replica_reads == reads + 1
                assert stale.seats_available == before.seats_available  # the paused replica
            finally:
                await admin.execute("select pg_wal_replay_resume()")

        # Replayed: the replica answers the writer again, with its booking.
        await asyncio.to_thread(_wait_for_replay, formation, standby)
        reads = transport.replica_reads
        mine = await tessera.as_user(fan).availability(event.id)
        assert transport.replica_reads == reads + 1
        assert mine.seats_available == before.seats_available - 1


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(
    formation: HaFormation,
) -> None:
    status = formation.status()
    (organizer,) = create_local_users(status.db_url, 1, prefix="replica-down")

    async def scenario() -> None:
        nowhere = formation.node_url("node1").replace(
            f":{formation.node_ports['node1']}/", ":1/"
        )  # nothing listens on port 1
        async with AsyncTessera.connect(status.db_url, read_dsn=nowhere) as tessera:
            transport = cast(PostgresTransport, tessera.transport)
            event = await tessera.as_user(organizer).create_event(
                "No replica", capacity=5, starts_at=datetime.now(UTC) + timedelta(days=30)
            )
            for _ in range(3):
                availability = await tessera.as_anonymous().availability(event.id)
                assert availability.seats_available == 5
            assert transport.replica_reads == 0 and transport.replica_fallbacks == 3

    asyncio.run(scenario())
