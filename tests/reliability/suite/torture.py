"""Concurrency torture: many threads doing random calls on a few events, then every check.

Workers book (some with repeated idempotency keys), cancel, claim offers, change capacity
and expire offers on a handful of small events, each worker on its own connection acting as
users the way PostgREST does. Meanwhile two readers follow the ledger the way clients do:
one polls ``ledger_feed`` (service), one polls ``event_changes`` for every event (organizer).
Optionally a killer terminates random worker and reader backends (``pg_terminate_backend``),
preferring ones in the middle of a transaction that has already written.

When the time is up: ``check_invariants`` (``tessera doctor``) is empty; at most one active
booking per user and event; no event holds more seats than its capacity; waitlist positions
are 1..n in ticket order; replaying the ledger gives every booking's final status through
valid transitions only, and strict events promoted in ticket order; each reader saw every
ledger entry exactly once.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.reliability.suite._harness import Caller, Database, quiet_driver
from tests.reliability.suite._results import PartResult

__all__ = [
    "EXPECTED_REFUSALS",
    "LedgerFollower",
    "TortureEvent",
    "check_database",
    "replay_ledger",
    "run_torture",
]

WORKER_APP = "tessera-reliability-worker"
READER_APP = "tessera-reliability-reader"

# What a correct system may answer these calls under contention: refusals by the rules
# (TS001 and TS003: the event that is a draft at first and cancelled later).
# Workers reuse a few idempotency keys across events and party sizes on purpose: TS010.
EXPECTED_REFUSALS = frozenset(
    {"TS001", "TS003", "TS004", "TS005", "TS006", "TS007", "TS008", "TS010"}
)
# The connection died under the call (a backend was terminated, the server went away).
CONNECTION_LOST = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006", "08007"})

# kind of ledger entry -> the booking status it records
KIND_STATUS = {
    "booked": "confirmed",
    "waitlisted": "waitlisted",
    "promoted": "confirmed",
    "offered": "offered",
    "claimed": "confirmed",
    "offer_expired": "expired",
    "cancelled": "cancelled",
}
# status before -> status after, for every change a booking may go through
TRANSITIONS = {
    None: {"confirmed", "waitlisted", "offered"},
    "waitlisted": {"confirmed", "offered", "cancelled"},
    "offered": {"confirmed", "expired", "cancelled"},
    "confirmed": {"cancelled"},
    "cancelled": set(),
    "expired": set(),
}


@dataclass(frozen=True)
class TortureEvent:
    """Options of one event under torture."""

    capacity: int
    max_seats_per_booking: int = 3
    waitlist_policy: str = "strict"
    promotion_mode: str = "auto"
    waitlist_limit: int | None = None
    publish_at: float | None = None  # a draft, published after this part of the run
    cancel_at: float | None = None  # cancelled by its organizer after this part of the run


DEFAULT_EVENTS = (
    TortureEvent(12, 3, "strict", "auto"),
    TortureEvent(8, 3, "first_fit", "auto"),
    TortureEvent(6, 2, "strict", "offer"),
    TortureEvent(5, 3, "first_fit", "offer", waitlist_limit=8),
    TortureEvent(6, 2, "strict", "auto", publish_at=0.2, cancel_at=0.7),
)


def lost_connection(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate in CONNECTION_LOST
    )


class LedgerFollower:
    """Polls the ledger as a client would, resuming after the last position it saw.

    Args:
        poll: ``poll(after_seq)`` returns the next entries (dicts with ``seq``), oldest first.
        name: For problem reports.
    """

    def __init__(self, poll: Callable[[int], list[dict[str, Any]]], name: str) -> None:
        self.poll = poll
        self.name = name
        self.seen: list[int] = []
        self.after = 0
        self.reconnects = 0
        self.errors: list[str] = []

    def step(self) -> int:
        """One poll; the number of new entries."""
        try:
            rows = self.poll(self.after)
        except psycopg.Error as exc:
            if lost_connection(exc):
                self.reconnects += 1
                return 0
            self.errors.append(f"{self.name}: {exc.sqlstate} {exc}")
            return 0
        for row in rows:
            self.seen.append(int(row["seq"]))
        if rows:
            self.after = int(rows[-1]["seq"])
        return len(rows)

    def run(self, stop: threading.Event, pause: float = 0.005) -> None:
        while not stop.is_set():
            if self.step() == 0:
                time.sleep(pause)


def _changes_of(caller: Caller, event_id: uuid.UUID) -> Callable[[int], list[dict[str, Any]]]:
    def poll(after: int) -> list[dict[str, Any]]:
        return caller.call_all("event_changes", event_id=event_id, after_seq=after, max_rows=500)

    return poll


class EventsFollower:
    """Follows ``event_changes`` of several events, each from its own position."""

    def __init__(self, caller: Caller, events: list[uuid.UUID]) -> None:
        self.followers = {
            event_id: LedgerFollower(_changes_of(caller, event_id), f"event_changes({event_id})")
            for event_id in events
        }

    def step(self) -> int:
        return sum(follower.step() for follower in self.followers.values())

    def run(self, stop: threading.Event, pause: float = 0.005) -> None:
        while not stop.is_set():
            if self.step() == 0:
                time.sleep(pause)


@dataclass
class _Shared:
    """What the workers share: the scene and the tally."""

    database: Database
    result: PartResult
    organizer: uuid.UUID
    users: list[uuid.UUID]
    events: list[uuid.UUID]
    capacities: dict[uuid.UUID, int]
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    known: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    known_ids: set[uuid.UUID] = field(default_factory=set)

    def record(self, operation: str, outcome: str) -> None:
        with self.lock:
            self.result.record(operation, outcome)

    def problem(self, text: str) -> None:
        with self.lock:
            self.result.problem(text)

    def remember(self, booking_id: uuid.UUID, user: uuid.UUID) -> bool:
        """Note a booking; False when it was known already."""
        with self.lock:
            if booking_id in self.known_ids:
                return False
            self.known_ids.add(booking_id)
            self.known.append((booking_id, user))
            return True

    def some_known(self, rng: random.Random) -> tuple[uuid.UUID, uuid.UUID] | None:
        with self.lock:
            return rng.choice(self.known) if self.known else None


OPERATIONS = (
    ("book_event", 10),
    ("cancel_booking", 5),
    ("claim_offer", 2),
    ("set_event_capacity", 1),
    ("expire_offers", 1),
    ("read", 1),
)


def _worker(shared: _Shared, seed: int) -> None:
    rng = random.Random(seed)
    link = shared.database.caller(application_name=WORKER_APP)
    names = [name for name, _ in OPERATIONS]
    weights = [weight for _, weight in OPERATIONS]
    with shared.database.connect_admin("tessera-reliability-picker") as picker:

        def pick(status: Iterable[str]) -> tuple[uuid.UUID, uuid.UUID] | None:
            row = picker.execute(
                "select id, user_id from public.bookings"
                " where event_id = any(%s) and status = any(%s)"
                " order by random() limit 1",
                (shared.events, list(status)),
            ).fetchone()
            return (row["id"], row["user_id"]) if row else None

        while time.monotonic() < shared.deadline:
            operation = rng.choices(names, weights)[0]
            try:
                _one(shared, rng, link, picker, pick, operation)
            except psycopg.Error as exc:
                code = exc.sqlstate or "none"
                if lost_connection(exc):
                    shared.record(operation, "connection lost")
                elif code in EXPECTED_REFUSALS:
                    shared.record(operation, code)
                else:
                    shared.record(operation, code)
                    shared.problem(f"{operation}: unexpected {code}: {str(exc).strip()[:200]}")
            except Exception as exc:  # a broken answer (no row, say) is a finding too
                shared.record(operation, type(exc).__name__)
                shared.problem(f"{operation}: {type(exc).__name__}: {exc}")


def _one(
    shared: _Shared,
    rng: random.Random,
    link: Caller,
    picker: Any,
    pick: Callable[[Iterable[str]], tuple[uuid.UUID, uuid.UUID] | None],
    operation: str,
) -> None:
    if operation == "book_event":
        user = rng.choice(shared.users)
        key = rng.choice([None, None, f"order-{rng.randint(1, 3)}"])
        row = link.as_user(user).call(
            "book_event",
            event_id=rng.choice(shared.events),
            seats=rng.choice([1, 1, 1, 2, 2, 3]),
            idempotency_key=key,
        )
        if shared.remember(row["booking_id"], user):
            shared.record("book_event", row["status"])
        else:  # the key named an earlier booking: it comes back as it is now
            shared.record("book_event", f"earlier booking, {row['status']} (repeated key)")
    elif operation == "cancel_booking":
        target = pick(["confirmed", "waitlisted", "offered"]) if rng.random() < 0.7 else None
        target = target or shared.some_known(rng)
        if target is None:
            return
        row = link.as_user(target[1]).call("cancel_booking", booking_id=target[0])
        shared.record("cancel_booking", row["status"])
    elif operation == "claim_offer":
        target = pick(["offered"]) or shared.some_known(rng)
        if target is None:
            return
        row = link.as_user(target[1]).call("claim_offer", booking_id=target[0])
        shared.record("claim_offer", row["status"])
    elif operation == "set_event_capacity":
        event_id = rng.choice(shared.events)
        base = shared.capacities[event_id]
        capacity = rng.randint(max(1, base - 4), base + 4)
        link.as_user(shared.organizer).call(
            "set_event_capacity", event_id=event_id, capacity=capacity
        )
        shared.record("set_event_capacity", "changed")
    elif operation == "expire_offers":
        rows = picker.execute(
            "update public.bookings set offer_expires_at = now() - interval '1 second'"
            " where id in (select id from public.bookings where event_id = any(%s)"
            " and status = 'offered' order by random() limit 2 for update skip locked)"
            " returning id",
            (shared.events,),
        ).fetchall()
        with shared.lock:
            shared.result.operations["offer deadline moved into the past"] += len(rows)
        row = link.as_role("service_role").call("expire_offers")
        shared.record("expire_offers", f"{row['expire_offers']} expired")
    else:
        target = shared.some_known(rng)
        if target is None:
            return
        link.as_user(target[1]).call("waitlist_position", booking_id=target[0])
        link.as_role("anon").call("event_availability", event_id=rng.choice(shared.events))
        shared.record("read", "ok")


def _organizer(shared: _Shared, moments: list[tuple[float, str, uuid.UUID]]) -> None:
    """Publish and cancel events at their moments, while the workers are busy."""
    began = shared.deadline - float(str(shared.result.settings["seconds"]))
    caller = shared.database.caller(shared.organizer, application_name=WORKER_APP)
    for at, action, event_id in moments:
        time.sleep(max(0.0, began + at - time.monotonic()))
        lost = False
        for _ in range(20):  # the attempt was killed: try again
            try:
                caller.call(action, event_id=event_id)
                shared.record(action, "done")
                break
            except psycopg.Error as exc:
                if lost_connection(exc):
                    lost = True
                    shared.record(action, "connection lost")
                    continue
                if lost and exc.sqlstate == "TS007" and action == "cancel_event":
                    # The killed attempt had committed after all: the event is cancelled.
                    shared.record(action, "done by the attempt that lost its connection")
                else:
                    shared.record(action, exc.sqlstate or "none")
                    shared.problem(f"{action}: unexpected {exc.sqlstate}: {exc}")
                break
    caller.close()


def _killer(shared: _Shared, stop: threading.Event, every: float, seed: int) -> None:
    """Terminate a random worker or reader backend every ``every`` seconds."""
    rng = random.Random(seed)
    with shared.database.connect_admin("tessera-reliability-killer") as admin:
        while not stop.wait(rng.uniform(every / 2, every * 1.5)):
            rows = admin.execute(
                "select pid, backend_xid is not null as wrote, application_name"
                " from pg_stat_activity where datname = current_database()"
                " and application_name in (%s, %s) and state <> 'idle'",
                (WORKER_APP, READER_APP),
            ).fetchall()
            if not rows:
                continue
            writing = [r for r in rows if r["wrote"]]
            victim = rng.choice(writing or rows)
            killed = admin.execute(
                "select pg_terminate_backend(%s) as ok", (victim["pid"],)
            ).fetchone()
            if killed and killed["ok"]:
                if victim["application_name"] == READER_APP:
                    kind = "pg_terminate_backend: ledger reader"
                elif victim["wrote"]:
                    kind = "pg_terminate_backend: mid-transaction, after writes"
                else:
                    kind = "pg_terminate_backend: mid-call"
                with shared.lock:
                    shared.result.faults[kind] += 1


def run_torture(
    database: Database,
    result: PartResult,
    *,
    seconds: float,
    workers: int,
    kill_every: float | None = None,
    events: tuple[TortureEvent, ...] = DEFAULT_EVENTS,
    seed: int | None = None,
) -> PartResult:
    """Load a few events from ``workers`` threads for ``seconds``, then check everything.

    Args:
        database: A migrated database (rate limits are lifted).
        result: Where operations, faults, checks and problems are counted.
        seconds: How long the load runs.
        workers: Threads making calls, one connection each.
        kill_every: Terminate a random backend this often (seconds); ``None``: never.
        events: The events under load.
        seed: Seeds the workers' choices (the interleaving is never reproducible).
    """
    seed = random.randrange(2**32) if seed is None else seed
    result.settings.update(seconds=seconds, workers=workers, events=len(events), seed=seed)
    if kill_every:
        result.settings["kill_every_seconds"] = kill_every
    database.relax_rate_limits()
    organizer, *users = database.create_users(1 + 4 * workers)
    setup = database.caller(organizer)
    starts_at = datetime.now(UTC) + timedelta(days=30)
    event_ids: list[uuid.UUID] = []
    capacities: dict[uuid.UUID, int] = {}
    for index, event in enumerate(events):
        row = setup.call(
            "create_event",
            title=f"Torture {index + 1}",
            capacity=event.capacity,
            starts_at=starts_at,
            max_seats_per_booking=event.max_seats_per_booking,
            waitlist_policy=event.waitlist_policy,
            promotion_mode=event.promotion_mode,
            waitlist_limit=event.waitlist_limit,
            publish=event.publish_at is None,
        )
        event_ids.append(row["id"])
        capacities[row["id"]] = event.capacity

    with result.timed(), quiet_driver() if kill_every else contextlib.nullcontext():
        shared = _Shared(
            database,
            result,
            organizer,
            users,
            event_ids,
            capacities,
            deadline=time.monotonic() + seconds,
        )
        feed_caller = database.caller(role="service_role", application_name=READER_APP)
        feed = LedgerFollower(
            lambda after: feed_caller.call_all("ledger_feed", after_seq=after, max_rows=500),
            "ledger_feed",
        )
        changes = EventsFollower(database.caller(organizer, application_name=READER_APP), event_ids)
        stop_readers = threading.Event()
        threads = [
            threading.Thread(target=_worker, args=(shared, seed + i), name=f"worker-{i}")
            for i in range(workers)
        ]
        threads.append(threading.Thread(target=feed.run, args=(stop_readers,), name="feed"))
        threads.append(
            threading.Thread(target=changes.run, args=(stop_readers,), name="event-changes")
        )
        schedule = sorted(
            [(e.publish_at, "publish_event", i) for i, e in enumerate(events) if e.publish_at]
            + [(e.cancel_at, "cancel_event", i) for i, e in enumerate(events) if e.cancel_at]
        )
        if schedule:
            moments = [(at * seconds, action, event_ids[i]) for at, action, i in schedule]
            threads.append(
                threading.Thread(target=_organizer, args=(shared, moments), name="organizer")
            )
        stop_killer = threading.Event()
        if kill_every:
            threads.append(
                threading.Thread(
                    target=_killer, args=(shared, stop_killer, kill_every, seed), name="killer"
                )
            )
        for thread in threads:
            thread.start()
        for thread in threads[:workers]:
            thread.join()
        stop_killer.set()
        _catch_up(database, result, feed, changes)
        stop_readers.set()
        for thread in threads[workers:]:
            thread.join()

        reconnects = feed.reconnects + sum(f.reconnects for f in changes.followers.values())
        if reconnects:
            result.outcomes["ledger readers → reconnected"] += reconnects
        for follower in [feed, *changes.followers.values()]:
            for error in follower.errors:
                result.problem(error)
        check_database(database, result, event_ids)
        check_followers(database, result, feed, changes)
    return result


def _catch_up(
    database: Database, result: PartResult, feed: LedgerFollower, changes: EventsFollower
) -> None:
    """Let the readers reach the end of the ledger (they keep polling on their threads)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        last = {
            r["event_id"]: int(r["last"])
            for r in database.sql(
                "select event_id, max(seq) as last from public.ledger group by event_id"
            )
        }
        done = feed.after >= max(last.values(), default=0) and all(
            follower.after >= last.get(event_id, 0)
            for event_id, follower in changes.followers.items()
        )
        if done:
            return
        time.sleep(0.05)
    result.problem("the ledger readers did not reach the end of the ledger within 30 s")


def check_followers(
    database: Database, result: PartResult, feed: LedgerFollower, changes: EventsFollower
) -> None:
    """Each reader saw every entry exactly once, in order."""
    everything = [int(r["seq"]) for r in database.sql("select seq from public.ledger order by seq")]
    _same_entries(result, "ledger_feed", feed.seen, everything)
    for event_id, follower in changes.followers.items():
        expected = [
            int(r["seq"])
            for r in database.sql(
                "select seq from public.ledger where event_id = %s order by seq", (event_id,)
            )
        ]
        _same_entries(result, f"event_changes({event_id})", follower.seen, expected)


def _same_entries(result: PartResult, name: str, seen: list[int], expected: list[int]) -> None:
    duplicates = len(seen) - len(set(seen))
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    result.expect(
        seen == expected,
        f"ledger reader saw each entry once: {name} saw {len(seen)} of {len(expected)} "
        f"entries, {duplicates} twice, {len(missing)} missed (first {missing[:3]}), "
        f"{len(extra)} unknown, in order: {seen == sorted(seen)}",
    )


def check_database(database: Database, result: PartResult, events: list[uuid.UUID]) -> None:
    """Every check of the final state (see the module docstring)."""
    for problem in database.invariant_problems():
        result.problem(problem)
    result.checks["check_invariants"] += 1

    doubled = database.sql(
        "select event_id, user_id, count(*) as n from public.bookings"
        " where status in ('confirmed', 'waitlisted', 'offered')"
        " group by event_id, user_id having count(*) > 1"
    )
    result.expect(not doubled, f"one active booking per user and event: {doubled[:3]}")

    held = database.sql(
        "select e.id, e.capacity, coalesce(sum(b.seats) filter"
        " (where b.status in ('confirmed', 'offered')), 0) as held"
        " from public.events as e left join public.bookings as b on b.event_id = e.id"
        " group by e.id, e.capacity"
    )
    for row in held:
        result.expect(
            row["held"] <= row["capacity"],
            f"never oversold: event {row['id']} holds {row['held']} of {row['capacity']}",
        )

    positions = database.sql(
        "select b.event_id, b.id, public.waitlist_position(b.id) as position,"
        " row_number() over (partition by b.event_id order by b.queue_ticket) as expected"
        " from public.bookings as b where b.status = 'waitlisted'"
    )
    wrong = [r for r in positions if r["position"] != r["expected"]]
    result.expect(not wrong, f"waitlist positions are 1..n in ticket order: {wrong[:3]}")
    counts = database.sql(
        "select a.event_id, a.waitlist_count, (select count(*) from public.bookings as b"
        " where b.event_id = e.id and b.status = 'waitlisted') as waiting"
        " from public.events as e cross join lateral public.event_availability(e.id) as a"
    )
    for row in counts:
        result.expect(
            row["waitlist_count"] == row["waiting"],
            f"availability counts the waitlist: event {row['event_id']} says "
            f"{row['waitlist_count']}, {row['waiting']} wait",
        )
    for problem in replay_ledger(database, result):
        result.problem(problem)


def replay_ledger(database: Database, result: PartResult | None = None) -> list[str]:
    """Replay the ledger in ``seq`` order; the problems found (none: it matches the tables).

    Every booking's entries must start with its creation, move only along valid
    transitions and end at the status the bookings table holds; under the strict policy
    bookings leave the queue in ticket order; the last capacity change is the capacity.
    """
    problems: list[str] = []
    bookings = {
        r["id"]: r
        for r in database.sql(
            "select b.id, b.event_id, b.status, b.queue_ticket, e.waitlist_policy"
            " from public.bookings as b join public.events as e on e.id = b.event_id"
        )
    }
    entries = database.sql(
        "select seq, event_id, booking_id, kind, status, detail from public.ledger order by seq"
    )
    state: dict[uuid.UUID, str | None] = defaultdict(lambda: None)
    last_ticket: dict[uuid.UUID, int] = {}
    capacity: dict[uuid.UUID, int] = {}
    for entry in entries:
        kind = entry["kind"]
        if kind == "capacity_changed":
            capacity[entry["event_id"]] = int(entry["detail"]["new_capacity"])
            continue
        if kind not in KIND_STATUS:
            continue
        booking_id = entry["booking_id"]
        booking = bookings.get(booking_id)
        if booking is None:
            problems.append(f"ledger {entry['seq']}: {kind} of unknown booking {booking_id}")
            continue
        after = KIND_STATUS[kind]
        if entry["status"] != after:
            problems.append(f"ledger {entry['seq']}: {kind} records status {entry['status']}")
        before = state[booking_id]
        if after not in TRANSITIONS[before]:
            problems.append(
                f"ledger {entry['seq']}: booking {booking_id} went {before} -> {after} ({kind})"
            )
        # Strict order: leaving the queue for seats happens in ticket order.
        if (
            before == "waitlisted"
            and after in ("confirmed", "offered")
            and booking["waitlist_policy"] == "strict"
        ):
            ticket = int(booking["queue_ticket"])
            previous = last_ticket.get(booking["event_id"], -1)
            if ticket < previous:
                problems.append(
                    f"ledger {entry['seq']}: strict event {booking['event_id']} promoted ticket "
                    f"{ticket} after ticket {previous}"
                )
            last_ticket[booking["event_id"]] = ticket
        state[booking_id] = after
    for booking_id, booking in bookings.items():
        if state[booking_id] != booking["status"]:
            problems.append(
                f"booking {booking_id} is {booking['status']} but the ledger replays to "
                f"{state[booking_id]}"
            )
    if capacity:
        for row in database.sql(
            "select id, capacity from public.events where id = any(%s)", (list(capacity),)
        ):
            if capacity[row["id"]] != row["capacity"]:
                problems.append(
                    f"event {row['id']} has capacity {row['capacity']}, the ledger says "
                    f"{capacity[row['id']]}"
                )
    if result is not None:
        result.checks["ledger replays to the tables"] += 1
        result.checks["ledger entries replayed"] += len(entries)
    return problems
