"""Event topics are private Realtime channels: RLS decides who receives, nobody but the
database sends (Supabase path, through the Realtime stand-in).

On a public channel Realtime Authorization never applies: any holder of the anon key could
join a draft's topic and send forged broadcasts to every subscriber of an event.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tessera_client import EventNotFound

from ..standins import RealtimeStandIn
from .conftest import Setup, take

FORGED = {"event_id": "forged", "seq": 9_000_000_000, "kind": "event_cancelled"}


async def join_and_send(
    realtime: RealtimeStandIn, topic: str, private: bool, token: str
) -> tuple[str, str | None]:
    """A raw client holding ``token`` joins ``topic`` and broadcasts a forged availability.

    Returns the join's status and the broadcast's status (None when the join failed).
    """
    url = realtime.url + f"/websocket?apikey={realtime.anon_key}&vsn=1.0.0"
    async with websockets.connect(url) as socket:

        async def reply_to(ref: str) -> dict[str, Any]:
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 5))
                if message.get("event") == "phx_reply" and message.get("ref") == ref:
                    return dict(message["payload"])

        await socket.send(json.dumps({
            "topic": f"realtime:{topic}", "event": "phx_join", "ref": "1", "join_ref": "1",
            "payload": {"config": {"private": private}, "access_token": token},
        }))  # fmt: skip
        joined = (await reply_to("1"))["status"]
        if joined != "ok":
            return joined, None
        await socket.send(json.dumps({
            "topic": f"realtime:{topic}", "event": "broadcast", "ref": "2", "join_ref": "1",
            "payload": {"type": "broadcast", "event": "availability", "payload": FORGED},
        }))  # fmt: skip
        return joined, (await reply_to("2"))["status"]


async def test_subscribers_join_event_topics_as_private_channels(supabase_setup: Setup) -> None:
    realtime = supabase_setup.realtime
    assert realtime is not None
    organizer = supabase_setup.user()
    event = await supabase_setup.event(organizer)
    async with supabase_setup.client.watch_event(event.id) as changes:
        await supabase_setup.user().book(event.id)
        assert [c.kind for c in await take(changes, 1)] == ["booked"]
    joins = [j for j in realtime.joins if j.topic == f"event:{event.id}"]
    assert joins and all(j.private and j.accepted for j in joins)
    deliveries = [d for d in realtime.deliveries if d.topic == f"event:{event.id}"]
    assert deliveries and all(d.private for d in deliveries)


async def test_nobody_but_the_database_sends_to_an_events_subscribers(
    supabase_setup: Setup,
) -> None:
    realtime = supabase_setup.realtime
    assert realtime is not None
    organizer = supabase_setup.user()
    event = await supabase_setup.event(organizer)
    topic = f"event:{event.id}"
    async with supabase_setup.client.watch_event(event.id) as changes:
        # The anon key on the private channel: may listen, may not send.
        assert await join_and_send(realtime, topic, True, realtime.anon_key) == ("ok", "error")
        # On a public channel of the same name it may send, but no subscriber listens there.
        assert await join_and_send(realtime, topic, False, realtime.anon_key) == ("ok", "ok")
        await supabase_setup.user().book(event.id)
        [change] = await take(changes, 1)  # what the database sent, read through SQL
        assert change.kind == "booked"
    # The forged broadcast reached nobody: every subscriber of the event is on the private
    # channel, where only the database sends.
    assert [d for d in realtime.deliveries if d.payload == FORGED] == []
    assert [b.accepted for b in realtime.client_broadcasts if b.topic == topic] == [False, True]


async def test_a_drafts_topic_cannot_be_joined_by_strangers(supabase_setup: Setup) -> None:
    realtime = supabase_setup.realtime
    assert realtime is not None
    organizer = supabase_setup.user()
    draft = await supabase_setup.event(organizer, publish=False)
    status, _ = await join_and_send(realtime, f"event:{draft.id}", True, realtime.anon_key)
    assert status == "error"
    with pytest.raises(EventNotFound):  # the SDK's join is refused too: not found, as in SQL
        async with supabase_setup.client.watch_event(draft.id) as changes:
            await take(changes, 1)
