"""One round trip per call on the direct transport, counted on the wire.

A proxy between the SDK and PostgreSQL reads the frontend's protocol messages. Every time
the client waits for the server it has sent a ``Sync`` (extended protocol) or a ``Query``
(simple protocol) first, so the number of those per call is its number of round trips.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter

import psycopg
import pytest

from tessera_client import AsyncTessera, SoldOut
from tessera_client.local import create_local_user

from ..support import TestDatabase
from .conftest import FAST_RETRY, TOMORROW

# Untyped messages a client may send before its startup message.
_NEGOTIATION_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest


class MessageCountingProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL, counting the frontend's message types."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.sent: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    def round_trips(self) -> int:
        return self.sent["S"] + self.sent["Q"]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def frontend() -> None:
            while True:  # untyped: negotiation requests, then the startup message
                length, code = struct.unpack("!ii", await reader.readexactly(8))
                up_writer.write(struct.pack("!ii", length, code))
                up_writer.write(await reader.readexactly(length - 8))
                if code not in _NEGOTIATION_CODES:
                    break
            while True:  # typed: one byte of type, then the length (which counts itself)
                kind = await reader.readexactly(1)
                header = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack("!i", header)[0] - 4)
                self.sent[kind.decode()] += 1
                up_writer.write(kind + header + body)
                await up_writer.drain()

        async def backend() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        for pump in (frontend(), backend()):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def counted(db: TestDatabase) -> tuple[MessageCountingProxy, str]:
    info = psycopg.conninfo.conninfo_to_dict(db.url("authenticator"))
    proxy = MessageCountingProxy(str(info.get("host", "127.0.0.1")), int(info.get("port") or 5432))
    port = await proxy.start()
    info.update(host="127.0.0.1", port=port, sslmode="disable", gssencmode="disable")
    yield proxy, psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    await proxy.stop()


async def test_a_call_is_one_round_trip_failed_or_not(
    db: TestDatabase, counted: tuple[MessageCountingProxy, str]
) -> None:
    proxy, dsn = counted
    organizer, first, second, third = (create_local_user(db.url()).id for _ in range(4))
    async with AsyncTessera.connect(dsn, retry=FAST_RETRY, min_size=1, max_size=1) as client:
        event = await client.as_user(organizer).create_event(
            "Round trips", capacity=1, starts_at=TOMORROW, waitlist_enabled=False
        )
        proxy.sent.clear()
        await client.as_user(first).book(event.id)
        assert proxy.round_trips() == 1, proxy.sent
        proxy.sent.clear()
        await client.list_events()
        assert proxy.round_trips() == 1, proxy.sent
        proxy.sent.clear()
        with pytest.raises(SoldOut):
            await client.as_user(second).book(event.id)
        # The Sync that ends the call also rolls its failed transaction back.
        assert proxy.round_trips() == 1, proxy.sent
        with pytest.raises(SoldOut):  # and the connection is ready for the next call
            await client.as_user(third).book(event.id)
        assert [b.user_id for b in await client.as_service().attendees(event.id)] == [first]
