"""STAND-IN for Supabase Realtime's websocket (broadcast from the database), for tests only.

Supabase Realtime cannot be installed here, so this replays, on the real local PostgreSQL,
just the part of it the SDK's Supabase transport uses:

- ``/realtime/v1/websocket?apikey=…&vsn=1.0.0`` speaking Phoenix protocol v1 (JSON objects
  with ``topic``, ``event``, ``payload``, ``ref``, ``join_ref``); the ``apikey`` must be an
  anon or service key signed with the project's secret.
- ``phx_join`` of ``realtime:<topic>`` with ``config.private`` and ``access_token``: the token
  is verified (HS256). A private join is authorised as Realtime does it: in one transaction
  it inserts a probe message for the topic, switches to the token's role and claims with
  ``realtime.topic`` set, selects the probe (so RLS on ``realtime.messages`` decides) and
  rolls back. The reply is ``phx_reply`` ``ok``, or ``error`` with an "Unauthorized" reason.
- ``heartbeat`` on ``phoenix``, ``phx_leave`` (answered, then ``phx_close``), ``access_token``.
- Broadcast from the database: like Realtime, it reads the inserts into ``realtime.messages``
  in commit order from a temporary logical replication slot (``test_decoding`` here,
  ``pgoutput`` there) and pushes each as a ``broadcast`` to the sockets that joined its topic
  with the same privacy: a private message reaches private channels only.

- Client broadcasts (``broadcast`` on a joined channel): on a public channel anyone may send
  and it reaches every public subscriber of the topic; on a private channel Realtime checks
  write access as it checks reads, by inserting the message as the client (RLS INSERT
  policies on ``realtime.messages`` decide) and refuses it otherwise.

Nothing else (presence, postgres_changes, rate limits) exists here.

Faults: :meth:`drop_connections` cuts every socket without a close frame; :meth:`outage`
also refuses new ones for a while; :meth:`lose_broadcasts` silently drops the next
messages, as a lossy network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import psycopg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tessera_client._local import keys

from ..support import preamble

__all__ = ["Delivery", "Join", "RealtimeStandIn"]

_INSERTED_ID = re.compile(
    r"^table realtime\.messages(?:_\w+)?: INSERT: id\[uuid\]:'([0-9a-f-]{36})'"
)


@dataclass(frozen=True)
class Join:
    """A join the stand-in answered."""

    topic: str
    private: bool
    role: str
    sub: str | None
    accepted: bool


@dataclass(frozen=True)
class Delivery:
    """A broadcast the stand-in pushed to one socket."""

    topic: str
    private: bool
    role: str
    sub: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class ClientBroadcast:
    """A broadcast a client sent, and whether the stand-in relayed it."""

    topic: str
    private: bool
    role: str
    sub: str | None
    accepted: bool


@dataclass(eq=False)
class _Socket:
    ws: ServerConnection
    claims: dict[str, Any]
    joined: dict[str, tuple[str, bool, str | None]] = field(default_factory=dict)
    """Full topic (``realtime:…``) -> (topic, private, join_ref)."""


class RealtimeStandIn:
    """The stand-in server; use it as a context manager.

    Args:
        dsn: Login on the test database that may create replication slots and write
            ``realtime.messages`` (``postgres``).
        jwt_secret: Verifies the API keys and access tokens.
        poll_interval: Seconds between reads of the replication slot.
    """

    def __init__(self, dsn: str, jwt_secret: str, *, poll_interval: float = 0.005) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.anon_key = keys.api_key(jwt_secret, "anon")
        self.service_key = keys.api_key(jwt_secret, "service_role")
        self.poll_interval = poll_interval
        self.joins: list[Join] = []
        self.deliveries: list[Delivery] = []
        self.client_broadcasts: list[ClientBroadcast] = []
        self.connections = 0
        self._lose = 0
        self._refusing = False
        self._sockets: set[_Socket] = set()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._decoder: asyncio.Task[None] | None = None
        self._decode_conn: psycopg.AsyncConnection[Any] | None = None
        self._auth_conn: psycopg.AsyncConnection[Any] | None = None
        self._auth_lock: asyncio.Lock | None = None
        self._slot = f"tessera_realtime_standin_{secrets.token_hex(4)}"

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port/realtime/v1``, what supabase-py derives from a project URL."""
        assert self._server is not None, "start() first"
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}/realtime/v1"

    def start(self) -> RealtimeStandIn:
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="realtime-stand-in", daemon=True
        )
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._thread = None

    def __enter__(self) -> RealtimeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._auth_lock = asyncio.Lock()
        self._decode_conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        await self._decode_conn.execute(
            "select pg_catalog.pg_create_logical_replication_slot(%s, 'test_decoding', true)",
            (self._slot,),
        )
        self._auth_conn = await psycopg.AsyncConnection.connect(self.dsn)
        self._server = await serve(
            self._serve, "127.0.0.1", 0, process_request=self._check_request, ping_interval=None
        )
        self._decoder = asyncio.get_running_loop().create_task(self._decode())

    async def _stop(self) -> None:
        if self._decoder is not None:
            self._decoder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._decoder
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for conn in (self._decode_conn, self._auth_conn):
            if conn is not None:
                await conn.close()  # the temporary slot goes with its session

    # -- faults ---------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Cut every socket at once, without a close frame (a network failure).

        Returns:
            How many sockets were cut.
        """

        async def cut() -> int:
            sockets = list(self._sockets)
            for socket in sockets:
                socket.ws.transport.abort()
            return len(sockets)

        result: int = self._call(cut())
        return result

    @contextlib.contextmanager
    def outage(self) -> Iterator[int]:
        """Cut every socket and refuse new ones (503) until the block ends.

        Yields:
            How many sockets were cut.
        """
        self._refusing = True
        try:
            yield self.drop_connections()
        finally:
            self._refusing = False

    def lose_broadcasts(self, count: int = 1) -> None:
        """Drop the next ``count`` messages from the database without pushing them."""

        async def lose() -> None:
            self._lose += count

        self._call(lose())

    # -- the socket -----------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if self._refusing:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "outage\n")
        if parts.path.rstrip("/") != "/realtime/v1/websocket":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        apikey = dict(parse_qsl(parts.query)).get("apikey", "")
        if self._api_key_role(apikey) not in ("anon", "service_role"):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid apikey\n")
        return None

    def _api_key_role(self, apikey: str) -> str | None:
        """The role of an API key signed with the project's secret (any anon or service key)."""
        try:
            return str(keys.decode(self.jwt_secret, apikey).get("role"))
        except jwt.InvalidTokenError:
            return None

    async def _serve(self, ws: ServerConnection) -> None:
        apikey = dict(parse_qsl(urlsplit(ws.request.path if ws.request else "").query))["apikey"]
        socket = _Socket(ws, keys.decode(self.jwt_secret, apikey))
        self._sockets.add(socket)
        self.connections += 1
        try:
            async for raw in ws:
                message = json.loads(raw)
                await self._on_message(socket, message)
        except ConnectionClosed:
            pass
        finally:
            self._sockets.discard(socket)

    async def _send(self, socket: _Socket, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await socket.ws.send(json.dumps(message, default=str))

    async def _reply(
        self, socket: _Socket, message: dict[str, Any], status: str, response: dict[str, Any]
    ) -> None:
        await self._send(
            socket,
            {
                "topic": message.get("topic"),
                "event": "phx_reply",
                "payload": {"status": status, "response": response},
                "ref": message.get("ref"),
                "join_ref": message.get("join_ref"),
            },
        )

    async def _on_message(self, socket: _Socket, message: dict[str, Any]) -> None:
        event = message.get("event")
        full_topic = str(message.get("topic", ""))
        payload = message.get("payload") or {}
        if event == "heartbeat":
            await self._reply(socket, message, "ok", {})
        elif event == "phx_join":
            await self._join(socket, message, full_topic, payload)
        elif event == "phx_leave":
            socket.joined.pop(full_topic, None)
            await self._reply(socket, message, "ok", {})
            await self._send(
                socket,
                {
                    "topic": full_topic,
                    "event": "phx_close",
                    "payload": {},
                    "ref": message.get("ref"),
                },
            )
        elif event == "broadcast":
            await self._client_broadcast(socket, message, full_topic, payload)
        elif event == "access_token":
            token = payload.get("access_token")
            with contextlib.suppress(jwt.InvalidTokenError):
                socket.claims = keys.decode(self.jwt_secret, str(token))
        else:
            await self._reply(socket, message, "ok", {})

    async def _join(
        self, socket: _Socket, message: dict[str, Any], full_topic: str, payload: dict[str, Any]
    ) -> None:
        topic = full_topic.removeprefix("realtime:")
        private = bool((payload.get("config") or {}).get("private", False))
        token = payload.get("access_token")
        try:
            claims = keys.decode(self.jwt_secret, str(token)) if token else socket.claims
        except jwt.InvalidTokenError as exc:
            await self._reply(socket, message, "error", {"reason": f"Invalid JWT: {exc}"})
            return
        socket.claims = claims
        role = str(claims.get("role", "anon"))
        sub = claims.get("sub")
        accepted = not private or await self._can_read(topic, role, claims)
        self.joins.append(Join(topic, private, role, sub, accepted))
        if not accepted:
            reason = (
                "Unauthorized: You do not have permissions to read from this Channel topic: "
                + topic
            )
            await self._reply(socket, message, "error", {"reason": reason})
            return
        socket.joined[full_topic] = (topic, private, message.get("join_ref"))
        await self._reply(socket, message, "ok", {"postgres_changes": []})

    async def _can_read(self, topic: str, role: str, claims: dict[str, Any]) -> bool:
        """Realtime's read check: can the client, as itself, see a probe message of the topic?"""
        assert self._auth_conn is not None and self._auth_lock is not None
        async with self._auth_lock:
            conn = self._auth_conn
            try:
                async with conn.transaction(force_rollback=True):
                    cur = await conn.execute(
                        """insert into realtime.messages (topic, extension, private)
                           values (%s, 'broadcast', true) returning id""",
                        (topic,),
                    )
                    probe = await cur.fetchone()
                    assert probe is not None
                    await conn.execute(
                        *preamble(role, claims, {"realtime.topic": topic, "request.headers": "{}"})
                    )
                    cur = await conn.execute(
                        """select id from realtime.messages
                           where topic = %s and extension = 'broadcast' and id = %s""",
                        (topic, probe[0]),
                    )
                    return await cur.fetchone() is not None
            except psycopg.Error:
                return False

    async def _client_broadcast(
        self, socket: _Socket, message: dict[str, Any], full_topic: str, payload: dict[str, Any]
    ) -> None:
        """A client sends on a channel it joined: relayed, unless the channel is private and
        RLS does not let the client write the topic."""
        joined = socket.joined.get(full_topic)
        if joined is None:
            await self._reply(socket, message, "error", {"reason": "not joined"})
            return
        topic, private, _ = joined
        role, sub = str(socket.claims.get("role", "anon")), socket.claims.get("sub")
        event = str(payload.get("event", ""))
        body = payload.get("payload") or {}
        accepted = not private or await self._can_write(topic, event, body, role, socket.claims)
        self.client_broadcasts.append(ClientBroadcast(topic, private, role, sub, accepted))
        if not accepted:
            reason = "Unauthorized: You do not have permissions to write to this Channel topic"
            await self._reply(socket, message, "error", {"reason": f"{reason}: {topic}"})
            return
        await self._reply(socket, message, "ok", {})
        await self._push(
            [(f"client-{len(self.client_broadcasts)}", topic, event, private, body)], socket
        )

    async def _can_write(
        self, topic: str, event: str, body: Any, role: str, claims: dict[str, Any]
    ) -> bool:
        """Realtime's write check: may the client, as itself, insert the message?"""
        assert self._auth_conn is not None and self._auth_lock is not None
        async with self._auth_lock:
            conn = self._auth_conn
            try:
                async with conn.transaction(force_rollback=True):
                    await conn.execute(
                        """select set_config('role', %s, true),
                                  set_config('realtime.topic', %s, true),
                                  set_config('request.jwt.claims', %s, true),
                                  set_config('request.headers', '{}', true)""",
                        (role, topic, json.dumps(claims)),
                    )
                    await conn.execute(
                        """insert into realtime.messages (topic, extension, private, event, payload)
                           values (%s, 'broadcast', true, %s, %s)""",
                        (topic, event, json.dumps(body)),
                    )
                    return True
            except psycopg.Error:
                return False

    # -- broadcast from the database ------------------------------------------------------

    async def _decode(self) -> None:
        assert self._decode_conn is not None
        conn = self._decode_conn
        while True:
            cur = await conn.execute(
                """select data from pg_catalog.pg_logical_slot_get_changes(
                       %s, null, null, 'skip-empty-xacts', '1', 'include-xids', '0')""",
                (self._slot,),
            )
            ids = [
                found.group(1)
                for (line,) in await cur.fetchall()
                if (found := _INSERTED_ID.match(line)) is not None
            ]
            if ids:
                cur = await conn.execute(
                    """select id::text, topic, event, private, payload from realtime.messages
                       where id = any(%s::uuid[])""",
                    (ids,),
                )
                rows = {row[0]: row for row in await cur.fetchall()}
                await self._push(rows[i] for i in ids if i in rows)
            await asyncio.sleep(self.poll_interval)

    async def _push(
        self, rows: Iterable[tuple[str, str, str, bool, Any]], sender: _Socket | None = None
    ) -> None:
        for message_id, topic, event, private, payload in rows:
            if self._lose > 0:
                self._lose -= 1
                continue
            for socket in list(self._sockets):
                if socket is sender:
                    continue  # Realtime's default: broadcasts do not echo to their sender
                for full_topic, (joined, joined_private, join_ref) in list(socket.joined.items()):
                    if joined != topic or joined_private != bool(private):
                        continue
                    sub = socket.claims.get("sub")
                    self.deliveries.append(
                        Delivery(topic, bool(private), str(socket.claims.get("role")), sub, payload)
                    )
                    await self._send(
                        socket,
                        {
                            "topic": full_topic,
                            "event": "broadcast",
                            "payload": {
                                "type": "broadcast",
                                "event": event,
                                "payload": payload,
                                "meta": {"id": message_id},
                            },
                            "ref": None,
                            "join_ref": join_ref,
                        },
                    )
