"""Faults: killed backends, server crashes and restarts, timeouts, lost replies.

* **Killed mid-transaction.** Each write path (joining the waitlist, a cancellation that
  promotes, a claim, a capacity increase that promotes, ``expire_offers`` passing an offer
  on, cancelling an event) is stopped half way: a superuser holds a row lock the call needs
  after it has already written, and the backend is terminated while it waits. Nothing of
  the call may remain. Random kills under load are part of :mod:`.torture`.
* **Timeouts.** The same half-way stops with ``lock_timeout`` / ``statement_timeout`` set low
  for the session, through the SDK: a clear error class, nothing half done.
* **Lost reply.** A proxy forwards a ``COMMIT`` and cuts the connection before the answer;
  the SDK's retry (same idempotency key) must return the booking the first attempt made.
* **Restarts.** A dedicated local stack is shut down (``fast`` and ``immediate``) and started
  again while SDK clients book and cancel: every client gets its booking or a Tessera error,
  no booking is lost or doubled, and a ledger reader misses nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tessera_client import (
    AsyncTessera,
    Booking,
    OutcomeUnknown,
    RetryPolicy,
    TesseraError,
    TimedOut,
    Unavailable,
)
from tessera_client._local.stack import LocalStack
from tests.reliability.suite._harness import Caller, Database, dedicated_stack, quiet_driver
from tests.reliability.suite._proxy import ReplyCuttingProxy
from tests.reliability.suite._results import PartResult, sqlstate_of
from tests.reliability.suite.torture import LedgerFollower, lost_connection, replay_ledger

__all__ = [
    "run_kills_mid_transaction",
    "run_lost_replies",
    "run_restarts",
    "run_timeouts",
]

VICTIM_APP = "tessera-reliability-victim"
STARTS_AT = datetime.now(UTC) + timedelta(days=30)


# -- half-way stops --------------------------------------------------------------------------


@dataclass
class Stage:
    """A call that will stop half way, waiting for a lock a superuser holds.

    Attributes:
        name: What is stopped, e.g. "cancel_booking during promotion".
        event_id: The event it touches.
        block: SQL (and parameters) that takes the lock the call needs after its first writes.
        direct: Makes the call as PostgREST would, on the given connection.
        sdk: Makes the call through the SDK.
    """

    name: str
    event_id: uuid.UUID
    block: tuple[str, tuple[Any, ...]]
    direct: Callable[[Caller], object]
    sdk: Callable[[AsyncTessera], Awaitable[object]]


QUEUE_ROW = "select 1 from tessera.event_queues where event_id = %s for update"
BOOKING_ROW = "select 1 from public.bookings where id = %s for update"


def _event(database: Database, mode: str = "auto", capacity: int = 1) -> tuple[Caller, Any]:
    organizer = database.create_users(1)[0]
    setup = database.caller(organizer)
    row = setup.call(
        "create_event",
        title="Fault",
        capacity=capacity,
        starts_at=STARTS_AT,
        promotion_mode=mode,
    )
    return setup, row


def _book(setup: Caller, event_id: uuid.UUID, count: int, database: Database) -> list[Any]:
    users = database.create_users(count)
    return [
        (user, setup.as_user(user).call("book_event", event_id=event_id)["booking_id"])
        for user in users
    ]


def _direct(user: uuid.UUID | None, function: str, **kwargs: Any) -> Callable[[Caller], object]:
    """The call as PostgREST makes it: as ``user``, or as the service role."""

    def call(caller: Caller) -> object:
        target = caller.as_user(user) if user else caller.as_role("service_role")
        return target.call(function, **kwargs)

    return call


def _sdk(
    user: uuid.UUID | None, method: str, *args: Any
) -> Callable[[AsyncTessera], Awaitable[object]]:
    """The call through the SDK: ``method`` of a client acting as ``user`` (or the service)."""

    async def call(tessera: AsyncTessera) -> object:
        target = tessera.as_user(user) if user else tessera.as_service()
        outcome: object = await getattr(target, method)(*args)
        return outcome

    return call


def stages(database: Database) -> list[Stage]:
    """One fresh scene per write path, each ready to be stopped half way."""
    found: list[Stage] = []

    # book_event joining the waitlist: the booking row is written, the queue row is locked.
    setup, event = _event(database)
    _book(setup, event["id"], 1, database)
    [newcomer] = database.create_users(1)
    found.append(
        Stage(
            "book_event joining the waitlist",
            event["id"],
            (QUEUE_ROW, (event["id"],)),
            _direct(newcomer, "book_event", event_id=event["id"]),
            _sdk(newcomer, "book", event["id"]),
        )
    )

    # cancel_booking whose freed seat promotes the next in line (locked).
    setup, event = _event(database)
    [(holder, held), (_, waiting)] = _book(setup, event["id"], 2, database)
    found.append(
        Stage(
            "cancel_booking during promotion",
            event["id"],
            (BOOKING_ROW, (waiting,)),
            _direct(holder, "cancel_booking", booking_id=held),
            _sdk(holder, "cancel", held),
        )
    )

    # claim_offer: the booking is confirmed, the queue counters are locked.
    setup, event = _event(database, mode="offer")
    [(holder, held), (offered_to, offer)] = _book(setup, event["id"], 2, database)
    setup.as_user(holder).call("cancel_booking", booking_id=held)
    found.append(
        Stage(
            "claim_offer",
            event["id"],
            (QUEUE_ROW, (event["id"],)),
            _direct(offered_to, "claim_offer", booking_id=offer),
            _sdk(offered_to, "claim_offer", offer),
        )
    )

    # set_event_capacity raising capacity: seat blocks are rebuilt, the promotion is locked.
    setup, event = _event(database)
    [_, (_, waiting)] = _book(setup, event["id"], 2, database)
    found.append(
        Stage(
            "set_event_capacity during promotion",
            event["id"],
            (BOOKING_ROW, (waiting,)),
            _direct(setup.user_id, "set_event_capacity", event_id=event["id"], capacity=2),
            _sdk(setup.user_id, "set_capacity", event["id"], 2),
        )
    )

    # expire_offers: the overdue offer expires, passing the seat on is locked.
    setup, event = _event(database, mode="offer")
    [(holder, held), (_, offer), (_, next_in_line)] = _book(setup, event["id"], 3, database)
    setup.as_user(holder).call("cancel_booking", booking_id=held)
    database.sql(
        "update public.bookings set offer_expires_at = now() - interval '1 second' where id = %s",
        (offer,),
    )
    found.append(
        Stage(
            "expire_offers passing the offer on",
            event["id"],
            (BOOKING_ROW, (next_in_line,)),
            _direct(None, "expire_offers"),
            _sdk(None, "expire_offers"),
        )
    )

    # cancel_event: the first booking is cancelled, the second is locked.
    setup, event = _event(database)
    [_, (_, waiting)] = _book(setup, event["id"], 2, database)
    found.append(
        Stage(
            "cancel_event",
            event["id"],
            (BOOKING_ROW, (waiting,)),
            _direct(setup.user_id, "cancel_event", event_id=event["id"]),
            _sdk(setup.user_id, "cancel_event", event["id"]),
        )
    )
    return found


def _wait_for_lock(database: Database, pid: int, timeout: float = 15.0) -> dict[str, Any] | None:
    """The backend's activity row once it waits for a lock (None: it never did)."""
    deadline = time.monotonic() + timeout
    with database.connect_admin("tessera-reliability-watch") as watch:
        while time.monotonic() < deadline:
            row = watch.execute(
                "select pid, wait_event_type, backend_xid::text as xid, state"
                " from pg_stat_activity where pid = %s",
                (pid,),
            ).fetchone()
            if row and row["wait_event_type"] == "Lock":
                return dict(row)
            time.sleep(0.01)
    return None


def _unchanged(
    database: Database, result: PartResult, before: dict[str, str], what: str, event_id: uuid.UUID
) -> None:
    after = database.digest()
    changed = [table for table in before if before[table] != after[table]]
    result.expect(not changed, f"nothing half done: {what} changed {changed}")
    problems = database.invariant_problems(event_id)
    result.expect(not problems, f"check_invariants after the fault: {what}: {problems}")


def run_kills_mid_transaction(database: Database, result: PartResult, rounds: int = 1) -> None:
    """Terminate each write path's backend half way through; nothing of it may remain."""
    database.relax_rate_limits()
    with result.timed(), quiet_driver():
        for _ in range(rounds):
            for stage in stages(database):
                _kill_one(database, result, stage)


def _kill_one(database: Database, result: PartResult, stage: Stage) -> None:
    victim = database.caller(application_name=VICTIM_APP)
    pid = victim.pid
    before = database.digest()
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            outcome["row"] = stage.direct(victim)
        except psycopg.Error as exc:
            outcome["error"] = exc

    with database.connect_admin("tessera-reliability-blocker") as blocker:
        blocker.execute("begin")
        blocker.execute(*stage.block)
        thread = threading.Thread(target=call, name=f"victim {stage.name}")
        thread.start()
        waiting = _wait_for_lock(database, pid)
        if waiting is None:
            blocker.execute("rollback")
            thread.join(30)
            result.problem(f"{stage.name}: never waited for the held lock ({outcome})")
            return
        database.sql("select pg_terminate_backend(%s)", (pid,))
        thread.join(30)
        blocker.execute("rollback")
    result.faults["pg_terminate_backend, half way through a write"] += 1
    result.operations[stage.name] += 1
    error = outcome.get("error")
    killed = isinstance(error, psycopg.Error) and lost_connection(error)
    result.outcomes[f"{stage.name} → killed"] += int(killed)
    result.expect(killed, f"the call died with its backend: {stage.name}: {outcome}")
    result.expect(
        waiting["xid"] is not None,
        f"the call had written before it was killed: {stage.name} had no transaction id",
    )
    _unchanged(database, result, before, stage.name, stage.event_id)
    try:  # the same call again, unhindered, works
        stage.direct(victim)
        result.record(f"{stage.name} (again)", "ok")
    except psycopg.Error as exc:
        result.record(f"{stage.name} (again)", sqlstate_of(exc))
        result.problem(f"{stage.name}: repeating the killed call failed: {exc}")
    problems = database.invariant_problems(stage.event_id)
    result.expect(not problems, f"check_invariants after the repeat: {stage.name}: {problems}")


# -- timeouts --------------------------------------------------------------------------------


def run_timeouts(database: Database, result: PartResult, rounds: int = 1) -> None:
    """Hit ``lock_timeout`` and ``statement_timeout`` half way through each write path."""
    database.relax_rate_limits()
    with result.timed():
        for _ in range(rounds):
            for index, stage in enumerate(stages(database)):
                setting = ("lock_timeout", "statement_timeout")[index % 2]
                asyncio.run(_time_out_one(database, result, stage, setting))


async def _time_out_one(database: Database, result: PartResult, stage: Stage, setting: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(database.url("authenticator"))
    info["options"] = f"-c {setting}=400ms"
    dsn = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    before = database.digest()
    async with AsyncTessera.connect(
        dsn, retry=RetryPolicy(attempts=1), min_size=1, max_size=1
    ) as client:
        blocker = database.connect_admin("tessera-reliability-blocker")
        try:
            blocker.execute("begin")
            blocker.execute(*stage.block)
            error: BaseException | None = None
            try:
                await stage.sdk(client)
            except Exception as exc:
                error = exc
        finally:
            blocker.execute("rollback")
            blocker.close()
        result.faults[f"{setting} hit half way through a write"] += 1
        label = f"{type(error).__name__} {sqlstate_of(error)}" if error else "no error"
        result.record(f"{stage.name} under {setting}", label)
        result.expect(
            isinstance(error, TimedOut) and error.code in ("55P03", "57014"),
            f"a timeout is a clear Tessera error: {stage.name} under {setting} raised {error!r}",
        )
        _unchanged(database, result, before, f"{stage.name} under {setting}", stage.event_id)
        try:
            await stage.sdk(client)
            result.record(f"{stage.name} (again, no lock held)", "ok")
        except TesseraError as exc:
            result.record(f"{stage.name} (again, no lock held)", sqlstate_of(exc))
            result.problem(f"{stage.name}: repeating the timed-out call failed: {exc!r}")


# -- lost replies ----------------------------------------------------------------------------


def run_lost_replies(database: Database, result: PartResult, count: int = 2) -> None:
    """Cut the connection after ``book`` committed; the retry returns the same booking."""
    database.relax_rate_limits()
    with result.timed(), quiet_driver():
        asyncio.run(_lost_replies(database, result, count))


async def _lost_replies(database: Database, result: PartResult, count: int) -> None:
    info = psycopg.conninfo.conninfo_to_dict(database.url("authenticator"))
    proxy = ReplyCuttingProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    info.update(host="127.0.0.1", port=await proxy.start())
    dsn = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    retry = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05)
    _, event = _event(database, capacity=max(1, count // 2))
    try:
        async with AsyncTessera.connect(dsn, retry=retry, min_size=1, max_size=1) as client:
            for index in range(count):
                [user] = database.create_users(1)
                key = f"lost-reply-{index}" if index % 2 else None
                proxy.arm()
                booking = await client.as_user(user).book(event["id"], idempotency_key=key)
                cut = proxy.cut.is_set()
                result.faults["reply lost after the commit"] += int(cut)
                result.record("book_event with its reply lost", booking.status.value)
                rows = database.sql("select id from public.bookings where user_id = %s", (user,))
                result.expect(cut, f"the proxy cut a commit reply: attempt {index}")
                result.expect(
                    [r["id"] for r in rows] == [booking.id],
                    f"the retry returned the committed booking: got {booking.id}, "
                    f"the database has {[r['id'] for r in rows]}",
                )
    finally:
        await proxy.stop()
    problems = database.invariant_problems(event["id"])
    result.expect(not problems, f"check_invariants after lost replies: {problems}")


# -- restarts --------------------------------------------------------------------------------


@dataclass
class _Client:
    user: uuid.UUID
    key: str
    event_id: uuid.UUID
    cancels: bool
    booking: Booking | None = None
    book_error: BaseException | None = None
    cancelled: Booking | None = None
    cancel_error: BaseException | None = None
    calls: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end


def _stop(stack: LocalStack, mode: str) -> None:
    stack._run_pg(["pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(stack.pgdata)])


def run_restarts(result: PartResult, *, restarts: int, clients: int) -> None:
    """Shut a dedicated server down and start it again, under booking load through the SDK.

    Args:
        result: Where the tally goes.
        restarts: How many times (``fast`` and ``immediate`` shutdowns alternate).
        clients: SDK clients, each booking once with its own idempotency key (every third
            one then cancels).
    """
    result.settings.update(restarts=restarts, clients=clients)
    with result.timed(), quiet_driver(), dedicated_stack() as stack:
        database = Database(stack.admin_url)
        try:
            _restarts(stack, database, result, restarts, clients)
        finally:
            database.close()


def _restarts(
    stack: LocalStack, database: Database, result: PartResult, restarts: int, clients: int
) -> None:
    database.relax_rate_limits()
    organizer, *users = database.create_users(1 + clients)
    setup = database.caller(organizer)
    events = [
        setup.call(
            "create_event",
            title="Restart",
            capacity=max(1, clients // 3),
            starts_at=STARTS_AT,
            waitlist_policy=policy,
            promotion_mode=mode,
        )["id"]
        for policy, mode in (("strict", "auto"), ("first_fit", "offer"))
    ]
    setup.close()
    scene = [
        _Client(user, f"restart-{i}", events[i % 2], cancels=i % 3 == 0)
        for i, user in enumerate(users)
    ]
    feed_caller = database.caller(
        role="service_role", application_name="tessera-reliability-reader"
    )
    feed = LedgerFollower(
        lambda after: feed_caller.call_all("ledger_feed", after_seq=after, max_rows=500),
        "ledger_feed across restarts",
    )
    stop_feed = threading.Event()
    reader = threading.Thread(target=feed.run, args=(stop_feed, 0.02), name="feed")
    reader.start()
    try:
        asyncio.run(_restart_load(stack, database, result, scene, restarts))
    finally:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            [row] = database.sql("select coalesce(max(seq), 0) as last from public.ledger")
            if feed.after >= int(row["last"]):
                break
            time.sleep(0.05)
        stop_feed.set()
        reader.join()
        feed_caller.close()
    _check_restarts(database, result, scene, feed)


async def _restart_load(
    stack: LocalStack,
    database: Database,
    result: PartResult,
    scene: list[_Client],
    restarts: int,
) -> None:
    # Patient enough to wait out a restart (a few seconds).
    retry = RetryPolicy(attempts=40, initial_delay=0.05, max_delay=0.5)
    duration = 1.5 * restarts + 1.0
    async with AsyncTessera.connect(
        database.url("authenticator"), retry=retry, min_size=2, max_size=8, timeout=2.0
    ) as tessera:

        async def client(index: int, who: _Client) -> None:
            await asyncio.sleep(duration * index / len(scene))
            user = tessera.as_user(who.user)
            started = time.monotonic()
            try:
                who.booking = await user.book(who.event_id, idempotency_key=who.key)
            except Exception as exc:
                who.book_error = exc
                return
            finally:
                who.calls.append(("book_event", started, time.monotonic()))
            if who.cancels:
                await asyncio.sleep(0.2)
                started = time.monotonic()
                try:
                    who.cancelled = await user.cancel(who.booking.id)
                except Exception as exc:
                    who.cancel_error = exc
                finally:
                    who.calls.append(("cancel_booking", started, time.monotonic()))

        async def restarter() -> None:
            for number in range(restarts):
                await asyncio.sleep(duration / (restarts + 1))
                mode = ("fast", "immediate")[number % 2]
                down = time.monotonic()
                await asyncio.to_thread(_stop, stack, mode)
                result.faults[f"server shutdown -m {mode}, then restart"] += 1
                await asyncio.sleep(0.3)
                await asyncio.to_thread(stack.up, False)
                outages.append((down, time.monotonic()))

        outages: list[tuple[float, float]] = []
        await asyncio.gather(restarter(), *(client(i, c) for i, c in enumerate(scene)))
        for who in scene:
            for name, start, end in who.calls:
                if any(start < up and end > down for down, up in outages):
                    result.outcomes[f"{name} calls in flight during an outage"] += 1


def _check_restarts(
    database: Database, result: PartResult, scene: list[_Client], feed: LedgerFollower
) -> None:
    repeat = database.caller(application_name="tessera-reliability-check")
    for who in scene:
        result.operations["book_event"] += 1
        if who.booking is not None:
            result.outcomes[f"book_event → {who.booking.status.value}"] += 1
        else:
            result.outcomes[f"book_event → {type(who.book_error).__name__}"] += 1
            result.expect(
                isinstance(who.book_error, TesseraError),
                f"every client got its booking or a Tessera error: {who.book_error!r}",
            )
        rows = database.sql(
            "select id, status, idempotency_key from public.bookings where user_id = %s",
            (who.user,),
        )
        result.expect(len(rows) <= 1, f"no booking doubled: user {who.user} has {len(rows)}")
        if who.booking is not None:
            result.expect(
                [r["id"] for r in rows] == [who.booking.id],
                f"no booking lost: client got {who.booking.id}, the database has {rows}",
            )
        # The same request again, now that the server is up: the same booking, or a new one
        # if the first never happened.
        again = repeat.as_user(who.user).call(
            "book_event", event_id=who.event_id, idempotency_key=who.key
        )
        result.expect(
            not rows or again["booking_id"] == rows[0]["id"],
            f"repeating the key returns the first booking: {again['booking_id']} vs {rows}",
        )
        if who.cancels and who.booking is not None:
            result.operations["cancel_booking"] += 1
            [now] = database.sql(
                "select status from public.bookings where id = %s", (who.booking.id,)
            )
            if who.cancelled is not None:
                result.outcomes["cancel_booking → cancelled"] += 1
                result.expect(
                    now["status"] == "cancelled", f"a cancellation reported done is done: {now}"
                )
            else:
                error = who.cancel_error
                result.outcomes[f"cancel_booking → {type(error).__name__}"] += 1
                result.expect(
                    isinstance(error, TesseraError),
                    f"every cancellation got its result or a Tessera error: {error!r}",
                )
                if isinstance(error, Unavailable):
                    result.expect(
                        now["status"] != "cancelled",
                        "Unavailable means nothing was done, yet the booking is cancelled",
                    )
                elif not isinstance(error, OutcomeUnknown):
                    result.expect(
                        now["status"] != "cancelled", f"a refused cancellation changed: {error!r}"
                    )
    repeat.close()
    for problem in database.invariant_problems():
        result.problem(problem)
    result.checks["check_invariants"] += 1
    for problem in replay_ledger(database, result):
        result.problem(problem)
    if feed.reconnects:
        result.outcomes["ledger reader → reconnected"] += feed.reconnects
    everything = [int(r["seq"]) for r in database.sql("select seq from public.ledger order by seq")]
    result.expect(
        feed.seen == everything,
        f"ledger reader saw each entry once across restarts: saw {len(feed.seen)} of "
        f"{len(everything)}, {len(feed.seen) - len(set(feed.seen))} twice",
    )
