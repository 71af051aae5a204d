"""A TCP proxy in front of PostgreSQL that can lose the reply to a commit.

Once armed, it forwards the client's next call (its messages up to a ``Sync``, which commits
the call's transaction: the SDK sends no ``COMMIT`` statement) to the server and, as soon as
the server starts answering (so the commit has happened), cuts the connection on both sides:
the client never learns that its transaction committed. That is the one failure a retry
cannot tell apart from "nothing happened", and what idempotency keys are for.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["ReplyCuttingProxy"]

_SYNC = b"S\x00\x00\x00\x04"  # the extended protocol's Sync message


class ReplyCuttingProxy:
    """Forwards 127.0.0.1:<port> to ``host:port``; :meth:`arm` loses the next commit reply.

    Example:
        >>> proxy = ReplyCuttingProxy("127.0.0.1", 5432)
        >>> port = await proxy.start()
        >>> proxy.arm()
        >>> await asyncio.wait_for(proxy.cut.wait(), 10)  # a commit's reply was lost
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.cut = asyncio.Event()
        self._armed = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen; returns the local port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def arm(self) -> None:
        """Lose the reply to the next call (``Sync``) that passes through."""
        self.cut.clear()
        self._armed = True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        committing = asyncio.Event()

        def hang_up() -> None:
            for stream in (writer, up_writer):
                with contextlib.suppress(Exception):
                    stream.transport.abort()

        async def client_to_server() -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    if self._armed and _SYNC in data:
                        self._armed = False
                        committing.set()
                    up_writer.write(data)
                    await up_writer.drain()
            hang_up()

        async def server_to_client() -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await up_reader.read(65536):
                    if committing.is_set():
                        # The server answers the COMMIT: it is done. The client never hears.
                        hang_up()
                        self.cut.set()
                        return
                    writer.write(data)
                    await writer.drain()
            hang_up()

        for pump in (client_to_server(), server_to_client()):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
