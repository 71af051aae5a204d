"""Retries: lost connections, lost replies, serialization failures and deadlocks.

The failures are real: the SDK's backend is killed with ``pg_terminate_backend``, and
PostgreSQL itself raises 40001 / 40P01 from a trigger.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from tessera_client import (
    AsyncTessera,
    BookingStatus,
    OutcomeUnknown,
    RetryPolicy,
    TransactionConflict,
    Unavailable,
)
from tessera_client.local import create_local_user

from ..support import TestDatabase, free_port
from .conftest import FAST_RETRY, TOMORROW, Backend


async def wait_for(db: TestDatabase, query: str, params: object = None) -> dict[str, object]:
    """Poll ``query`` as superuser until it returns a row."""
    for _ in range(500):
        rows = db.sql(query, params)
        if rows:
            return rows[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for: {query}")


def bookings_of(db: TestDatabase, event_id: uuid.UUID) -> list[dict[str, object]]:
    return db.sql("select id, status from public.bookings where event_id = %s", (event_id,))


async def organizer_and_guest(
    client: AsyncTessera, db: TestDatabase
) -> tuple[uuid.UUID, AsyncTessera, uuid.UUID]:
    alice = client.as_user(create_local_user(db.url()).id)
    event = await alice.create_event("Retry", capacity=5, starts_at=TOMORROW)
    guest = create_local_user(db.url()).id
    return event.id, client.as_user(guest), guest


# -- direct transport: the connection dies mid-call -----------------------------------------


async def test_connection_killed_mid_call_is_retried(
    db: TestDatabase, direct: AsyncTessera
) -> None:
    event_id, bob, bob_id = await organizer_and_guest(direct, db)
    key = "order-17"
    # Hold book_event's idempotency lock so the call waits inside its transaction.
    holder = psycopg.connect(db.admin_url, autocommit=True)
    lock = "select pg_advisory_lock(hashtextextended('tessera.idem:' || %s || ':' || %s, 0))"
    holder.execute(lock, (str(bob_id), key))
    try:
        call = asyncio.create_task(bob.book(event_id, idempotency_key=key))
        waiting = await wait_for(
            db,
            """select pid from pg_stat_activity
               where datname = current_database() and application_name = 'tessera'
                 and wait_event_type = 'Lock' and query like '%%book_event%%'""",
        )
        db.sql("select pg_terminate_backend(%s)", (waiting["pid"],))
    finally:
        holder.execute(
            "select pg_advisory_unlock(hashtextextended('tessera.idem:' || %s || ':' || %s, 0))",
            (str(bob_id), key),
        )
        holder.close()
    booking = await call
    assert booking.status is BookingStatus.CONFIRMED
    assert [row["id"] for row in bookings_of(db, event_id)] == [booking.id]


SYNC = b"S\x00\x00\x00\x04"  # the extended protocol's Sync message


class CommitSwallowingProxy:
    """A TCP proxy to PostgreSQL that, once armed, forwards the next call (the client's
    messages up to a ``Sync``, which commits the call's transaction) and then withholds
    everything the server answers: the commit happens, its reply never arrives."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.armed = False
        self.swallowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        state = {"swallow": False}

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if self.armed and SYNC in data:
                    self.armed = False
                    state["swallow"] = True
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                if state["swallow"]:
                    self.swallowing.set()
                    continue
                writer.write(data)
                await writer.drain()
            writer.close()  # the server hung up: so do we

        for pump in (client_to_server(), server_to_client()):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def test_book_after_a_lost_commit_reply_returns_the_same_booking(db: TestDatabase) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db.url("authenticator"))
    proxy = CommitSwallowingProxy(str(info.get("host", "127.0.0.1")), int(info.get("port") or 5432))
    port = await proxy.start()
    info.update(host="127.0.0.1", port=port, application_name="tessera-lost-reply")
    dsn = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    try:
        async with AsyncTessera.connect(dsn, retry=FAST_RETRY, min_size=1, max_size=1) as client:
            event_id, bob, _ = await organizer_and_guest(client, db)
            proxy.armed = True
            call = asyncio.create_task(bob.book(event_id))
            await asyncio.wait_for(proxy.swallowing.wait(), 10)
            # The booking is committed, and the reply is stuck in the proxy. Kill the
            # backend: the client sees its connection drop while waiting for the reply.
            [committed] = bookings_of(db, event_id)
            db.sql(
                """select pg_terminate_backend(pid) from pg_stat_activity
                   where application_name = 'tessera-lost-reply'"""
            )
            booking = await call
            assert booking.id == committed["id"]
            assert [row["id"] for row in bookings_of(db, event_id)] == [booking.id]
    finally:
        await proxy.stop()


async def test_a_lost_commit_reply_is_not_retried_when_repeating_is_unsafe(
    db: TestDatabase,
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db.url("authenticator"))
    proxy = CommitSwallowingProxy(str(info.get("host", "127.0.0.1")), int(info.get("port") or 5432))
    port = await proxy.start()
    info.update(host="127.0.0.1", port=port, application_name="tessera-lost-reply")
    dsn = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    try:
        async with AsyncTessera.connect(dsn, retry=FAST_RETRY, min_size=1, max_size=1) as client:
            event_id, bob, _ = await organizer_and_guest(client, db)
            booking = await bob.book(event_id)
            proxy.armed = True
            call = asyncio.create_task(bob.cancel(booking.id))
            await asyncio.wait_for(proxy.swallowing.wait(), 10)
            db.sql(
                """select pg_terminate_backend(pid) from pg_stat_activity
                   where application_name = 'tessera-lost-reply'"""
            )
            with pytest.raises(OutcomeUnknown) as lost:
                await call
            assert lost.value.code == "08007"
            assert [row["status"] for row in bookings_of(db, event_id)] == ["cancelled"]
    finally:
        await proxy.stop()


async def test_unreachable_database_is_unavailable() -> None:
    dsn = f"postgresql://authenticator:postgres@127.0.0.1:{free_port()}/postgres"
    client = AsyncTessera.connect(
        dsn, timeout=0.5, retry=RetryPolicy(attempts=2, initial_delay=0.01)
    )
    try:
        with pytest.raises(Unavailable):
            await client.availability(uuid.uuid4())
    finally:
        await client.close()


async def test_unreachable_supabase_is_unavailable() -> None:
    client = AsyncTessera.from_supabase(
        f"http://127.0.0.1:{free_port()}",
        "anon-key",
        retry=RetryPolicy(attempts=2, initial_delay=0.01),
    )
    async with client:
        with pytest.raises(Unavailable):
            await client.availability(uuid.uuid4())


# -- both transports: PostgreSQL rolls the transaction back --------------------------------


def fail_bookings(db: TestDatabase, code: str, times: int) -> None:
    """Make the next ``times`` inserts into public.bookings raise ``code``."""
    db.sql(
        f"""
        create sequence public.test_attempts;
        grant usage on sequence public.test_attempts to public;
        create function public.test_fail() returns trigger language plpgsql as $$
        begin
            if nextval('public.test_attempts') <= {times} then
                raise exception using errcode = '{code}', message = 'injected {code}';
            end if;
            return new;
        end $$;
        create trigger test_fail before insert on public.bookings
        for each row execute function public.test_fail();
        """
    )


def attempts(db: TestDatabase) -> int:
    return int(db.sql("select last_value from public.test_attempts")[0]["last_value"])


@pytest.mark.parametrize("code", ["40001", "40P01"])
async def test_rolled_back_calls_are_retried(backend: Backend, code: str) -> None:
    alice, bob = await backend.user(), await backend.user()
    event = await alice.create_event("Conflicts", capacity=5, starts_at=TOMORROW)
    fail_bookings(backend.db, code, times=2)
    booking = await bob.book(event.id)
    assert booking.status is BookingStatus.CONFIRMED
    assert attempts(backend.db) == 3
    assert len(bookings_of(backend.db, event.id)) == 1


async def test_retries_give_up_after_the_policy_attempts(backend: Backend) -> None:
    alice, bob = await backend.user(), await backend.user()
    event = await alice.create_event("Always", capacity=5, starts_at=TOMORROW)
    fail_bookings(backend.db, "40001", times=100)
    with pytest.raises(TransactionConflict):
        await bob.book(event.id)
    assert attempts(backend.db) == FAST_RETRY.attempts


# -- Supabase transport: the API fails or hangs up -----------------------------------------


async def test_supabase_503_is_retried(standin_backend: Backend) -> None:
    backend = standin_backend
    assert backend.standin is not None
    alice = await backend.user()
    event = await alice.create_event("Flaky", capacity=5, starts_at=TOMORROW)
    backend.standin.fail_next(2)
    with backend.standin.recording() as requests:
        availability = await backend.client.availability(event.id)
    assert availability.seats_available == 5
    assert [r.path for r in requests] == ["/rest/v1/rpc/event_availability"] * 3


async def test_supabase_lost_reply_to_book_returns_the_same_booking(
    standin_backend: Backend,
) -> None:
    backend = standin_backend
    assert backend.standin is not None
    alice, bob = await backend.user(), await backend.user()
    event = await alice.create_event("Hang up", capacity=5, starts_at=TOMORROW)
    backend.standin.drop_reply_after_commit()
    with backend.standin.recording() as requests:
        booking = await bob.book(event.id)
    posts = [r for r in requests if r.path == "/rest/v1/rpc/book_event"]
    assert len(posts) == 2
    assert posts[0].body["idempotency_key"] == posts[1].body["idempotency_key"]
    assert [row["id"] for row in bookings_of(backend.db, event.id)] == [booking.id]


async def test_supabase_lost_reply_to_cancel_is_reported(standin_backend: Backend) -> None:
    backend = standin_backend
    assert backend.standin is not None
    alice, bob = await backend.user(), await backend.user()
    event = await alice.create_event("Hang up", capacity=5, starts_at=TOMORROW)
    booking = await bob.book(event.id)
    backend.standin.drop_reply_after_commit()
    with backend.standin.recording() as requests, pytest.raises(OutcomeUnknown):
        await bob.cancel(booking.id)
    assert len([r for r in requests if r.path == "/rest/v1/rpc/cancel_booking"]) == 1
    assert [row["status"] for row in bookings_of(backend.db, event.id)] == ["cancelled"]
