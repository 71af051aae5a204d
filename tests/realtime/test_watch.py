"""Realtime subscriptions over both transports: every change once, in order, nothing private
leaking, and the stream's end when an event is cancelled."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest
import websockets

from tessera_client import (
    AsyncTessera,
    BookingStatus,
    ChangeKind,
    EventNotFound,
    PermissionDenied,
    PromotionMode,
    Tessera,
)
from tessera_client.local import local_user_token

from ..sdk.conftest import JWT_SECRET, TOMORROW
from ..support import TestDatabase, claims_for, preamble, url_for
from .conftest import Setup, nothing_more, take, take_until_end


async def test_watch_event_delivers_each_change_once_in_order(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer, capacity=2)
    start = (await organizer.availability(event.id)).last_seq
    async with transport.service().watch_event(event.id) as changes:
        assert changes.last_seq == start
        alice, bob, carol = transport.users(3)
        booked = [await person.book(event.id) for person in (alice, bob, carol)]
        await alice.cancel(booked[0].id)  # carol is promoted
        await organizer.set_capacity(event.id, 5)
        expected = await transport.everything_after(event.id, start)
        assert [c.kind for c in expected] == [
            ChangeKind.BOOKED, ChangeKind.BOOKED, ChangeKind.WAITLISTED,
            ChangeKind.CANCELLED, ChangeKind.PROMOTED, ChangeKind.CAPACITY_CHANGED,
        ]  # fmt: skip
        got = await take(changes, len(expected))
        assert [c.seq for c in got] == [c.seq for c in expected]
        assert got == expected  # the service role sees whole entries
        assert got[-1].seats_available == 3
        assert changes.last_seq == expected[-1].seq
        await nothing_more(changes)


async def test_the_default_start_is_now_and_after_seq_resumes(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer)
    first, second = transport.users(2)
    await first.book(event.id)  # before the stream: not delivered
    async with organizer.watch_event(event.id) as changes:
        booking = await second.book(event.id)
        [change] = await take(changes, 1)
        assert (change.kind, change.booking_id) == (ChangeKind.BOOKED, booking.id)
        resume_at = changes.last_seq
    await second.cancel(booking.id)  # while nobody watches
    third = transport.user()
    await third.book(event.id)
    async with organizer.watch_event(event.id, after_seq=resume_at) as changes:
        missed = await take(changes, 2)
    assert [c.kind for c in missed] == [ChangeKind.CANCELLED, ChangeKind.BOOKED]
    assert [c.seq for c in missed] == [
        c.seq for c in await transport.everything_after(event.id, resume_at)
    ]


async def test_a_late_commit_is_delivered_in_seq_order(transport: Setup) -> None:
    """A transaction that started first (smaller seq) but commits last is neither skipped nor
    delivered after the younger entry: delivery waits for it, then goes in seq order."""
    organizer = transport.user()
    event = await transport.event(organizer, capacity=100)  # several seat blocks: no waiting
    early_user, late_user = transport.db.create_users(2)
    async with transport.service().watch_event(event.id) as changes:
        with psycopg.connect(url_for(transport.db.admin_url, user="authenticator")) as slow:
            slow.execute(*preamble("authenticated", claims_for("authenticated", early_user)))
            slow.execute("select public.book_event(%s)", (event.id,))  # open, not committed
            younger = transport.client.as_user(late_user).book(event.id)
            await asyncio.wait_for(younger, 10)  # commits first
            await nothing_more(changes, 0.7)
            slow.commit()
        got = await take(changes, 2)
    assert [c.user_id for c in got] == [early_user, late_user]
    assert got[0].seq < got[1].seq


async def test_a_burst_of_a_thousand_changes_arrives_complete_and_in_order(
    transport: Setup,
) -> None:
    organizer = transport.user()
    event = await transport.event(organizer, capacity=600)
    start = (await organizer.availability(event.id)).last_seq
    # Booked over a direct connection on both transports: the subject is delivery, and the
    # PostgREST stand-in would take most of the test's time to serve 1,000 bookings.
    people = [transport.booker.as_user(user_id) for user_id in transport.db.create_users(1000)]
    async with (
        transport.service().watch_event(event.id) as service_view,
        organizer.watch_event(event.id) as organizer_view,
    ):
        limit = asyncio.Semaphore(16)

        async def book(person: AsyncTessera) -> None:
            async with limit:
                await person.book(event.id)

        await asyncio.gather(*(book(person) for person in people))
        expected = [c.seq for c in await transport.everything_after(event.id, start)]
        assert len(expected) == 1000
        assert expected == sorted(expected)
        assert [c.seq for c in await take(service_view, 1000, timeout=60)] == expected
        assert [c.seq for c in await take(organizer_view, 1000, timeout=60)] == expected
        await nothing_more(service_view, 0.3)


async def test_watchers_who_do_not_organize_see_only_their_own_people(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer)
    alice, bob = transport.users(2)
    async with (
        bob.watch_event(event.id) as bobs_view,
        organizer.watch_event(event.id) as organizers_view,
    ):
        alices = await alice.book(event.id)
        bobs = await bob.book(event.id)
        seen_by_bob = await take(bobs_view, 2)
        seen_by_organizer = await take(organizers_view, 2)
    assert [c.seq for c in seen_by_bob] == [c.seq for c in seen_by_organizer]
    assert (seen_by_bob[0].booking_id, seen_by_bob[0].user_id) == (None, None)  # Alice's
    assert seen_by_bob[0].seats_available == seen_by_organizer[0].seats_available
    assert (seen_by_bob[1].booking_id, seen_by_bob[1].user_id) == (bobs.id, bobs.user_id)
    assert seen_by_organizer[0].booking_id == alices.id


async def test_my_bookings_are_mine_alone(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer, capacity=1)
    other_event = await transport.event(organizer)
    alice, bob = transport.users(2)
    async with alice.watch_my_bookings() as alices, bob.watch_my_bookings() as bobs:
        a1 = await alice.book(event.id)
        b1 = await bob.book(other_event.id)
        await alice.cancel(a1.id)
        a2 = await alice.book(other_event.id)
        mine = await take(alices, 3)
        theirs = await take(bobs, 1)
        await nothing_more(bobs)
    assert [(c.booking_id, c.kind) for c in mine] == [
        (a1.id, ChangeKind.BOOKED),
        (a1.id, ChangeKind.CANCELLED),
        (a2.id, ChangeKind.BOOKED),
    ]
    assert {c.user_id for c in mine} == {a1.user_id}
    assert [(c.booking_id, c.user_id) for c in theirs] == [(b1.id, b1.user_id)]


async def test_a_waiting_user_learns_of_promotion_and_of_offers(transport: Setup) -> None:
    organizer = transport.user()
    auto = await transport.event(organizer, capacity=1)
    offer = await transport.event(organizer, capacity=1, promotion_mode=PromotionMode.OFFER)
    holder, waiter = transport.users(2)
    async with waiter.watch_my_bookings() as mine:
        held = [await holder.book(auto.id), await holder.book(offer.id)]
        waiting = [await waiter.book(auto.id), await waiter.book(offer.id)]
        first = await take(mine, 2)
        assert [(c.kind, c.status, c.waitlist_position) for c in first] == [
            (ChangeKind.WAITLISTED, BookingStatus.WAITLISTED, 1)
        ] * 2
        for booking in held:
            await holder.cancel(booking.id)
        promoted, offered = await take(mine, 2)
    assert (promoted.kind, promoted.status, promoted.booking_id) == (
        ChangeKind.PROMOTED, BookingStatus.CONFIRMED, waiting[0].id,
    )  # fmt: skip
    assert (offered.kind, offered.status, offered.booking_id) == (
        ChangeKind.OFFERED, BookingStatus.OFFERED, waiting[1].id,
    )  # fmt: skip
    assert offered.offer_expires_at is not None
    # The holder's cancellation caused both, but who acted is only the organizer's to see.
    assert (promoted.actor_id, offered.actor_id) == (None, None)
    assert holder.identity.user_id not in {promoted.actor_id, offered.actor_id}


async def test_watching_a_cancelled_event_ends_with_a_final_message(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer)
    attendee, other = transport.users(2)
    async with attendee.watch_event(event.id) as changes:
        mine = await attendee.book(event.id)
        await other.book(event.id)
        await organizer.cancel_event(event.id)
        got = await take_until_end(changes)
    kinds = [c.kind for c in got]
    assert kinds[:2] == [ChangeKind.BOOKED, ChangeKind.BOOKED]
    assert sorted(kinds[2:4]) == [ChangeKind.CANCELLED, ChangeKind.CANCELLED]
    assert kinds[4:] == [ChangeKind.EVENT_CANCELLED]
    assert got[0].booking_id == mine.id and got[1].booking_id is None
    # Watching it afterwards yields the cancellation once and ends.
    [final] = await take_until_end(other.watch_event(event.id))
    assert (final.kind, final.seq) == (ChangeKind.EVENT_CANCELLED, got[-1].seq)


async def test_someone_elses_draft_cannot_be_watched(transport: Setup) -> None:
    organizer = transport.user()
    draft = await transport.event(organizer, publish=False)
    with pytest.raises(EventNotFound):
        await transport.user().watch_event(draft.id).start()
    with pytest.raises(EventNotFound):
        async for _ in transport.client.watch_event(draft.id, after_seq=0):
            pass
    async with organizer.watch_event(draft.id) as mine:
        await organizer.publish_event(draft.id)
        [published] = await take(mine, 1)
    assert published.kind is ChangeKind.EVENT_PUBLISHED


async def test_only_signed_in_users_watch_their_bookings(transport: Setup) -> None:
    with pytest.raises(PermissionDenied):
        transport.client.watch_my_bookings()
    with pytest.raises(PermissionDenied):
        transport.service().watch_my_bookings()


async def test_waiting_for_a_change_can_be_cancelled(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer)
    async with organizer.watch_event(event.id) as changes:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.2)
        booking = await transport.user().book(event.id)
        [change] = await take(changes, 1)
    assert change.booking_id == booking.id


async def test_streams_end_when_their_client_closes(transport: Setup) -> None:
    organizer = transport.user()
    event = await transport.event(organizer)
    stream = await organizer.watch_event(event.id).start()
    await transport.client.close()
    assert [change async for change in stream] == []


# -- the Supabase path: what the Realtime socket carries --------------------------------------


async def test_private_topics_reach_their_user_only(supabase_setup: Setup) -> None:
    realtime = supabase_setup.realtime
    assert realtime is not None
    organizer = supabase_setup.user()
    event = await supabase_setup.event(organizer)
    alice_id, bob_id = supabase_setup.db.create_users(2)
    alice = supabase_setup.client.as_user(alice_id)
    bob = supabase_setup.client.as_user(bob_id)
    async with alice.watch_my_bookings() as alices, bob.watch_my_bookings() as bobs:
        booking = await alice.book(event.id)
        await alice.cancel(booking.id)
        assert len(await take(alices, 2)) == 2
        await nothing_more(bobs)
    private = [d for d in realtime.deliveries if d.topic == f"user:{alice_id}"]
    assert len(private) == 2
    assert {(d.private, d.sub) for d in private} == {(True, str(alice_id))}
    assert all(d.sub != str(bob_id) or d.topic == f"user:{bob_id}" for d in realtime.deliveries)
    public = [d for d in realtime.deliveries if d.topic == f"event:{event.id}"]
    assert all(set(d.payload) <= {"event_id", "seq", "kind", "seats_available",
                                  "waitlist_count", "status"} for d in public)  # fmt: skip

    # Bob joining Alice's topic himself: refused as private, silent as public.
    url = realtime.url + f"/websocket?apikey={realtime.anon_key}&vsn=1.0.0"
    bob_token = local_user_token(JWT_SECRET, bob_id)
    async with websockets.connect(url) as socket:
        for ref, private_channel in (("1", True), ("2", False)):
            await socket.send(json.dumps({
                "topic": f"realtime:user:{alice_id}", "event": "phx_join", "ref": ref,
                "join_ref": ref, "payload": {"config": {"private": private_channel},
                                             "access_token": bob_token},
            }))  # fmt: skip
            reply = json.loads(await socket.recv())
            assert reply["payload"]["status"] == ("error" if private_channel else "ok")
        await alice.book(event.id)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), 0.7)
    assert [j.accepted for j in realtime.joins if j.sub == str(bob_id) and j.private] == [
        True,  # his own topic
        False,  # Alice's
    ]


async def test_a_dropped_socket_and_lost_broadcasts_lose_nothing(supabase_setup: Setup) -> None:
    realtime = supabase_setup.realtime
    assert realtime is not None
    organizer = supabase_setup.user()
    event = await supabase_setup.event(organizer, capacity=50)
    start = (await organizer.availability(event.id)).last_seq
    people = supabase_setup.users(12)
    async with supabase_setup.service().watch_event(event.id) as changes:
        for person in people[:3]:
            await person.book(event.id)
        assert len(await take(changes, 3)) == 3
        with realtime.outage() as cut:
            assert cut >= 1
            for person in people[3:6]:  # while the socket is down: nothing is pushed
                await person.book(event.id)
            await nothing_more(changes, 0.3)
        # Caught up by the read after the rejoin, well before the periodic resync (10 s).
        assert len(await take(changes, 3, timeout=5)) == 3
        realtime.lose_broadcasts(2)
        for person in people[6:12]:
            await person.book(event.id)
        got = await take(changes, 6)
    assert realtime.connections >= 2
    expected = await supabase_setup.everything_after(event.id, start)
    assert got[-1].seq == expected[-1].seq
    assert len(expected) == 12


# -- the direct path: the poller ----------------------------------------------------------------


async def test_the_poller_survives_pg_terminate_backend(direct_setup: Setup) -> None:
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer, capacity=50)
    start = (await organizer.availability(event.id)).last_seq
    people = direct_setup.users(9)
    poller = direct_setup.client.transport.realtime()
    async with (
        direct_setup.service().watch_event(event.id) as changes,
        organizer.watch_event(event.id) as organizers,
        people[0].watch_my_bookings() as mine,
    ):
        first = await people[0].book(event.id)
        for person in people[1:3]:
            await person.book(event.id)
        before = await take(changes, 3)
        pid = poller.backend_pid  # type: ignore[attr-defined]
        assert pid is not None
        killed = direct_setup.db.sql("select pg_terminate_backend(%s) as ok", (pid,))
        assert killed == [{"ok": True}]
        for person in people[3:9]:
            await person.book(event.id)
        await people[0].cancel(first.id)
        after = await take(changes, 7)
        from_organizer = await take(organizers, 10)
        own = await take(mine, 2)
        assert poller.reconnects >= 1  # type: ignore[attr-defined]
        assert poller.backend_pid not in (None, pid)  # type: ignore[attr-defined]
    expected = [c.seq for c in await direct_setup.everything_after(event.id, start)]
    assert [c.seq for c in before + after] == expected
    assert [c.seq for c in from_organizer] == expected
    assert [c.kind for c in own] == [ChangeKind.BOOKED, ChangeKind.CANCELLED]


async def test_one_poller_serves_every_subscription_of_a_client(direct_setup: Setup) -> None:
    organizer = direct_setup.user()
    event = await direct_setup.event(organizer)
    streams = [await direct_setup.service().watch_event(event.id).start() for _ in range(20)]
    try:
        rows = direct_setup.db.sql(
            "select count(*) as n from pg_stat_activity where application_name = %s",
            ("tessera-realtime",),
        )
        assert rows == [{"n": 1}]
        booking = await direct_setup.user().book(event.id)
        for stream in streams:
            [change] = await take(stream, 1)
            assert change.booking_id == booking.id
    finally:
        for stream in streams:
            await stream.aclose()


def test_the_sync_client_iterates_changes(db: TestDatabase) -> None:
    with Tessera.connect(db.url("authenticator"), jwt_secret=JWT_SECRET) as tessera:
        organizer = tessera.as_user(db.create_user())
        event = organizer.create_event("Sync", capacity=5, starts_at=TOMORROW)
        with organizer.watch_event(event.id) as changes:
            booking = tessera.as_user(db.create_user()).book(event.id)
            change = next(changes)
            assert (change.kind, change.booking_id) == (ChangeKind.BOOKED, booking.id)
            assert changes.last_seq == change.seq
            organizer.cancel_event(event.id)
            rest = list(changes)
    assert [c.kind for c in rest] == [ChangeKind.CANCELLED, ChangeKind.EVENT_CANCELLED]
