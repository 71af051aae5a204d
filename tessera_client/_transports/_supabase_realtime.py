"""Supabase Realtime as the notifier of the Supabase transport (supabase-py's async realtime).

The ledger trigger broadcasts every entry from the database (``realtime.send``): on the
topics ``event:<id>`` and ``user:<id>``, both private channels: RLS policies on
``realtime.messages`` open an event's topic to whoever may see the event and a user's topic
to that user only, and let no client send on either. Here a broadcast is only a wake-up carrying the
entry's ``seq``; the subscription then reads the entries through ``event_changes`` /
``my_changes`` as the subscriber. Delivering the broadcast payload itself would be wrong:
Realtime relays messages in commit order, which is not ``seq`` order, and drops whatever is
sent while a socket is down, so a subscriber that remembered the largest ``seq`` it saw
would skip an entry that committed later with a smaller one.

A Realtime socket carries one access token, so there is one socket per identity (users of a
multi-user server each get their own), with one channel per topic shared by that
identity's subscriptions. After a reconnect realtime-py rejoins the channels; every
(re)join makes the subscriptions read through SQL again, so nothing sent meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import BroadcastPayload, RealtimeChannelOptions

from tessera_client._errors import EventNotFound, PermissionDenied, Unavailable
from tessera_client._identity import Identity
from tessera_client._transports._notifier import SharedReads, Sink, Topic

__all__ = ["SupabaseRealtime"]

logger = logging.getLogger("tessera_client.realtime")

TokenSource = Callable[[Identity], Awaitable[str]]
"""The access token to join channels with, for an identity (current, refreshed if due)."""


class _Channel:
    """One joined topic of a socket and the subscriptions it wakes up."""

    def __init__(self, topic: Topic, channel: AsyncRealtimeChannel) -> None:
        self.topic = topic
        self.channel = channel
        self.sinks: set[Sink] = set()
        self.joined = asyncio.get_running_loop().create_future()

    def on_state(self, state: RealtimeSubscribeStates, error: Exception | None) -> None:
        if not self.joined.done():
            self.joined.set_result((state, error))
            return
        if state == RealtimeSubscribeStates.SUBSCRIBED:
            # Rejoined after a reconnect: whatever was broadcast meanwhile is gone.
            for sink in self.sinks:
                sink.request_resync()

    def on_broadcast(self, message: BroadcastPayload) -> None:
        seq = message.get("payload", {}).get("seq")
        for sink in self.sinks:
            if isinstance(seq, int):
                sink.announce(seq)
            else:
                sink.request_resync()


class _Socket:
    """One Realtime connection, acting as one identity."""

    def __init__(self, url: str, api_key: str, identity: Identity, timeout: float) -> None:
        self.identity = identity
        self.client = AsyncRealtimeClient(
            url, token=api_key, auto_reconnect=True, max_retries=8, initial_backoff=0.2,
            timeout=max(1, int(timeout)),
        )  # fmt: skip
        self.channels: dict[str, _Channel] = {}
        self.lock = asyncio.Lock()
        self.token: str | None = None
        self.keeper: asyncio.Task[None] | None = None


class SupabaseRealtime:
    """Wakes subscriptions up from Supabase Realtime broadcasts.

    Args:
        url: The project URL; Realtime is at ``<url>/realtime/v1``.
        api_key: The key sent as ``apikey`` (the anon key).
        token_for: The access token to join as an identity.
        timeout: Seconds a connection or a join may take.
        resync_interval: Seconds after which a quiet subscription reads through SQL anyway,
            catching a broadcast Realtime lost while connected.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        token_for: TokenSource,
        *,
        timeout: float = 10.0,
        resync_interval: float = 10.0,
    ) -> None:
        self._url = f"{url.rstrip('/')}/realtime/v1"
        self._api_key = api_key
        self._token_for = token_for
        self._timeout = timeout
        self.resync_interval: float | None = resync_interval
        self.reads = SharedReads()
        self._sockets: dict[tuple[str, str], _Socket] = {}
        self._where: dict[Sink, tuple[_Socket, _Channel]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    def takes_rows(self, identity: Identity, topic: Topic) -> bool:
        """Never: a broadcast only says that an entry exists."""
        return False

    async def attach(self, identity: Identity, topic: Topic, sink: Sink) -> None:
        """Join the topic's channel (once per identity) and wake ``sink`` on its broadcasts."""
        if self._closed:
            raise Unavailable("the client is closed")
        key = (identity.role, str(identity.claims.get("sub", "")))
        while True:
            socket = self._sockets.get(key)
            if socket is None:
                socket = self._sockets[key] = _Socket(
                    self._url, self._api_key, identity, self._timeout
                )
            async with socket.lock:
                if self._sockets.get(key) is not socket:
                    continue  # closed while we waited for it: take the current one
                channel = socket.channels.get(topic.name)
                if channel is None:
                    channel = await self._join(socket, topic)
                channel.sinks.add(sink)
                self._where[sink] = (socket, channel)
                return

    def detach(self, sink: Sink) -> None:
        """Stop waking ``sink``; the channel is left once no subscription needs it."""
        found = self._where.pop(sink, None)
        if found is None:
            return
        socket, channel = found
        channel.sinks.discard(sink)
        if not channel.sinks and not self._closed:
            self._spawn(self._leave_if_unused(socket, channel))

    async def close(self) -> None:
        """Leave every channel and close every socket; open subscriptions end."""
        self._closed = True
        for sink in list(self._where):
            sink.close()
        self._where.clear()
        # Let pending leaves finish (each ends by closing its socket if it was the last).
        await asyncio.gather(*self._background, return_exceptions=True)
        sockets = list(self._sockets.values())
        self._sockets.clear()
        for socket in sockets:
            await self._close_socket(socket)

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _join(self, socket: _Socket, topic: Topic) -> _Channel:
        token = await self._token_for(socket.identity)
        if token != socket.token:
            await socket.client.set_auth(token)
            socket.token = token
        options: RealtimeChannelOptions = {
            "config": {
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
                "private": topic.private,
            }
        }
        channel = _Channel(topic, socket.client.channel(topic.name, options))
        channel.channel.on_broadcast("*", channel.on_broadcast)
        try:
            await asyncio.wait_for(channel.channel.subscribe(channel.on_state), self._timeout)
        except Exception as exc:
            await self._drop_channel(socket, channel)
            raise Unavailable("could not connect to Supabase Realtime", detail=str(exc)) from exc
        state, error = channel.joined.result() if channel.joined.done() else (None, None)
        if state != RealtimeSubscribeStates.SUBSCRIBED:
            await self._drop_channel(socket, channel)
            reason = str(error) if error is not None else str(state)
            if "unauthorized" in reason.lower() or "permission" in reason.lower():
                if topic.kind == "event":  # not visible reads as not found, as in SQL (TS001)
                    raise EventNotFound(
                        "event not found", detail=f"event_id={topic.id}", code="TS001"
                    )
                raise PermissionDenied(
                    f"Realtime refused to join {topic.name}", detail=reason, code="42501"
                )
            raise Unavailable(f"could not join Realtime channel {topic.name}", detail=reason)
        socket.channels[topic.name] = channel
        if socket.keeper is None:
            socket.keeper = asyncio.get_running_loop().create_task(self._keep(socket))
        return channel

    async def _keep(self, socket: _Socket) -> None:
        """Reconnect a socket realtime-py gave up on, and keep its token fresh."""
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            try:
                if socket.channels and not socket.client.is_connected:
                    await socket.client.connect()
                if socket.identity.refresh is not None and ticks % 30 == 0:
                    token = await self._token_for(socket.identity)
                    if token != socket.token:
                        await socket.client.set_auth(token)
                        socket.token = token
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("realtime: Supabase Realtime unreachable (%s)", exc)

    async def _leave_if_unused(self, socket: _Socket, channel: _Channel) -> None:
        async with socket.lock:
            if channel.sinks or socket.channels.get(channel.topic.name) is not channel:
                return
            await self._drop_channel(socket, channel)

    async def _drop_channel(self, socket: _Socket, channel: _Channel) -> None:
        socket.channels.pop(channel.topic.name, None)
        try:
            await socket.client.remove_channel(channel.channel)
        except Exception as exc:  # leaving is best effort: the socket may be gone already
            logger.debug("realtime: leaving %s failed: %s", channel.topic.name, exc)
        if not socket.channels:
            for key, known in list(self._sockets.items()):
                if known is socket:
                    del self._sockets[key]
            await self._close_socket(socket)

    async def _close_socket(self, socket: _Socket) -> None:
        if socket.keeper is not None:
            socket.keeper.cancel()
            socket.keeper = None
        try:
            await socket.client.close()
        except Exception as exc:
            logger.debug("realtime: closing a socket failed: %s", exc)
