"""The benchmark scenarios. Each returns a JSON-ready dict with an ``ok`` verdict.

Every scenario books through Tessera's own functions over the SDK's direct transport,
counts each failure by SQLSTATE (clients never retry, so a deadlock or a conflict shows),
checks what it can verify exactly (counts, positions, FIFO order) and ends with
``public.check_invariants`` on the events it touched.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from rich.progress import Progress, TaskID

from tessera_client._client import AsyncTessera
from tessera_client._errors import TesseraError
from tessera_client._models import Booking, BookingStatus
from tessera_client.bench._baseline import (
    SCHEMA,
    create_baseline_event,
    drop_baseline,
    install_baseline,
)
from tessera_client.bench._driver import (
    Admin,
    BenchTransport,
    Call,
    UserSupply,
    bench_client,
    closed_loop,
)
from tessera_client.bench._pgbouncer import PgBouncer, raise_open_files_limit
from tessera_client.bench._settings import BenchSettings
from tessera_client.bench._stats import Phase, latency_summary

__all__ = [
    "BenchContext",
    "run_connections",
    "run_flash",
    "run_hot",
    "run_realtime",
    "run_spread",
    "run_waitlist",
]

HOT_CAPACITY = 1_000_000  # ample: a phase never sells out
REALTIME_MODULE = "tessera_client.bench.realtime"


@dataclass
class BenchContext:
    """What a scenario runs against.

    Attributes:
        db_url: Login of the ``postgres`` role: the SDK's pool and the setup both use it.
        admin: Setup and verification connection.
        settings: Sizes and durations.
        progress: Where progress bars go (``Progress(disable=True)`` for none).
        label: Tag of this run, in the emails of the users it creates.
        memo: What one scenario measured for a later one (the open loop's rate comes
            from the pgbench scenario's best baseline throughput).
    """

    db_url: str
    admin: Admin
    settings: BenchSettings
    progress: Progress
    label: str
    memo: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def starts_at() -> datetime:
        return datetime.now(UTC) + timedelta(days=30)

    async def invariants(self, events: Sequence[uuid.UUID]) -> list[str]:
        """``public.check_invariants`` on each of ``events``, with a progress bar."""
        task = self.progress.add_task("checking invariants", total=len(events))
        problems: list[str] = []
        for event_id in events:
            problems += await self.admin.check_invariants([event_id])
            self.progress.advance(task)
        self.progress.update(task, visible=False)
        return problems


def _users_needed(rate: float, settings: BenchSettings) -> int:
    """Users to create before a phase: enough for 1.5x the best rate seen so far."""
    return int(max(rate, 500.0) * 1.5 * (settings.warmup + settings.seconds)) + 1000


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def _transport(client: AsyncTessera) -> BenchTransport:
    return cast(BenchTransport, client.transport)


# -- hot event and baseline -----------------------------------------------------------------


def _booking(
    transport: BenchTransport,
    users: UserSupply,
    schema: str,
    events: Sequence[uuid.UUID],
    offset: int = 0,
) -> Callable[[], Awaitable[Call]]:
    """Each call books 1 seat as a user of its own; the event is picked by the user's number.

    With one event every call hits it (hot); with many, consecutive calls go to consecutive
    events and a user never meets the same event in two phases of different ``offset``.
    """
    public = schema == "public"

    async def prepare() -> Call:
        index, user = await users.take_with_index()
        identity = transport.user_identity(user)
        args: dict[str, Any] = {"event_id": events[(index + offset) % len(events)], "seats": 1}
        if public:
            args["idempotency_key"] = str(uuid.uuid4())  # as AsyncTessera.book sends one

        async def call() -> object:
            return await transport.call_function(identity, schema, "book_event", args)

        return call

    return prepare


def _nothing(transport: BenchTransport, user: uuid.UUID) -> Callable[[], Awaitable[Call]]:
    identity = transport.user_identity(user)

    async def call() -> object:
        return await transport.call_function(identity, SCHEMA, "do_nothing", {}, returns="scalar")

    async def prepare() -> Call:
        return call

    return prepare


async def run_hot(ctx: BenchContext) -> dict[str, Any]:
    """Hot event: every client books the same event; the baseline at the same client counts.

    Each client count gets a fresh Tessera event and a fresh baseline event (capacity
    1,000,000) and the same users, through one pool of ``max(clients)`` connections.
    """
    settings = ctx.settings
    clients = sorted(set(settings.clients))
    [organizer] = await ctx.admin.create_users(1, f"{ctx.label}-hot-organizer")
    users = UserSupply(ctx.admin, f"{ctx.label}-hot")
    rows: list[dict[str, Any]] = []
    events: list[uuid.UUID] = []
    accounted = True
    best = 0.0
    await install_baseline(ctx.admin)
    try:
        async with bench_client(ctx.db_url, max(clients)) as client:
            transport = _transport(client)
            for count in clients:
                row: dict[str, Any] = {"clients": count}
                if settings.ceiling:
                    phase = await closed_loop(
                        _nothing(transport, organizer),
                        clients=count,
                        seconds=max(1.0, settings.seconds / 4) if not settings.smoke else 0.3,
                        warmup=min(settings.warmup, 1.0),
                        progress=ctx.progress,
                        description=f"client ceiling, {count} clients",
                    )
                    row["ceiling"] = phase.as_dict()

                users.rewind()
                await users.ensure(_users_needed(best, settings))
                baseline_event = await create_baseline_event(ctx.admin, HOT_CAPACITY)
                phase = await closed_loop(
                    _booking(transport, users, SCHEMA, [baseline_event]),
                    clients=count,
                    seconds=settings.seconds,
                    warmup=settings.warmup,
                    progress=ctx.progress,
                    description=f"baseline, {count} clients",
                )
                booked = await ctx.admin.value(
                    f"select booked from {SCHEMA}.events where id = %s", (baseline_event,)
                )
                accounted &= booked == phase.calls_total
                row["baseline"] = phase.as_dict()
                best = max(best, phase.throughput)

                users.rewind()
                await users.ensure(_users_needed(best, settings))
                event = await client.as_user(organizer).create_event(
                    f"Hot event, {count} clients", capacity=HOT_CAPACITY, starts_at=ctx.starts_at()
                )
                events.append(event.id)
                phase = await closed_loop(
                    _booking(transport, users, "public", [event.id]),
                    clients=count,
                    seconds=settings.seconds,
                    warmup=settings.warmup,
                    progress=ctx.progress,
                    description=f"hot event, {count} clients",
                )
                availability = await client.as_service().availability(event.id)
                accounted &= availability.seats_confirmed == phase.calls_total
                row["tessera"] = phase.as_dict()
                best = max(best, phase.throughput)

                row["ratio"] = _compare(row["tessera"], row["baseline"])
                rows.append(row)
    finally:
        await drop_baseline(ctx.admin)
    invariants = await ctx.invariants(events)
    errors = sum(row[name]["error_count"] for row in rows for name in ("tessera", "baseline"))
    return {
        "seconds": settings.seconds,
        "warmup": settings.warmup,
        "clients": clients,
        "rows": rows,
        "bookings_accounted": accounted,
        "user_topups": users.topups,
        "invariants": invariants,
        "error_count": errors,
        "ok": accounted and not invariants and errors == 0,
    }


def _compare(tessera: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """Tessera over baseline: above 1 is better for throughput, below 1 for latency."""
    ratio: dict[str, float | None] = {
        "throughput": _ratio(tessera["throughput"], baseline["throughput"])
    }
    for name in ("p50", "p95", "p99"):
        ratio[name] = _ratio(tessera["latency_ms"][name], baseline["latency_ms"][name])
    return ratio


# -- spread ---------------------------------------------------------------------------------


async def _create_events(
    admin: Admin, organizer: uuid.UUID, count: int, capacity: int, title: str
) -> list[uuid.UUID]:
    """``count`` events made by ``public.create_event`` for the organizer, in one transaction.

    They are made by an operator (service_role with the organizer's ``sub``): an organizer's
    own calls are limited per minute and in open events, which is not what is measured.
    """
    async with admin.conn.transaction():
        await admin.rows(
            "select set_config('role', 'service_role', true), "
            "set_config('request.jwt.claims', %s, true)",
            (f'{{"sub": "{organizer}", "role": "service_role"}}',),
        )
        rows = await admin.rows(
            "select (public.create_event("
            "title => %s || ' ' || i, capacity => %s, "
            "starts_at => now() + interval '30 days')).id "
            "from generate_series(1, %s) as i",
            (title, capacity, count),
        )
    return [row["id"] for row in rows]


async def run_spread(ctx: BenchContext) -> dict[str, Any]:
    """The hot scenario's clients spread over many events: what contention costs."""
    settings = ctx.settings
    clients = sorted(set(settings.clients))
    [organizer] = await ctx.admin.create_users(1, f"{ctx.label}-spread-organizer")
    events = await _create_events(
        ctx.admin, organizer, settings.spread_events, HOT_CAPACITY, "Spread event"
    )
    users = UserSupply(ctx.admin, f"{ctx.label}-spread")
    rows: list[dict[str, Any]] = []
    calls = 0
    best = 0.0
    async with bench_client(ctx.db_url, max(clients)) as client:
        transport = _transport(client)
        for number, count in enumerate(clients):
            users.rewind()
            await users.ensure(_users_needed(best, settings))
            phase = await closed_loop(
                _booking(transport, users, "public", events, offset=number),
                clients=count,
                seconds=settings.seconds,
                warmup=settings.warmup,
                progress=ctx.progress,
                description=f"spread over {len(events)} events, {count} clients",
            )
            calls += phase.calls_total
            best = max(best, phase.throughput)
            rows.append({"clients": count, "spread": phase.as_dict()})
    confirmed = await ctx.admin.value(
        "select count(*) from public.bookings where event_id = any(%s) and status = 'confirmed'",
        (events,),
    )
    invariants = await ctx.invariants(events)
    errors = sum(row["spread"]["error_count"] for row in rows)
    return {
        "seconds": settings.seconds,
        "warmup": settings.warmup,
        "events": len(events),
        "clients": clients,
        "rows": rows,
        "bookings_accounted": confirmed == calls,
        "user_topups": users.topups,
        "invariants": invariants,
        "error_count": errors,
        "ok": confirmed == calls and not invariants and errors == 0,
    }


# -- flash sale -----------------------------------------------------------------------------


async def _waiting(admin: Admin, event_id: uuid.UUID) -> list[dict[str, Any]]:
    """Waiting bookings in queue order, each with what ``public.waitlist_position`` says."""
    return await admin.rows(
        "select b.id, b.user_id, b.queue_ticket, public.waitlist_position(b.id) as position "
        "from public.bookings as b where b.event_id = %s and b.status = 'waitlisted' "
        "order by b.queue_ticket",
        (event_id,),
    )


async def _promoted_since(admin: Admin, event_id: uuid.UUID, after_seq: int) -> list[uuid.UUID]:
    rows = await admin.rows(
        "select l.booking_id from public.ledger as l "
        "where l.event_id = %s and l.kind = 'promoted' and l.seq > %s order by l.seq",
        (event_id, after_seq),
    )
    return [row["booking_id"] for row in rows]


async def _last_seq(admin: Admin, event_id: uuid.UUID) -> int:
    return int(
        await admin.value(
            "select coalesce(max(seq), 0) from public.ledger where event_id = %s", (event_id,)
        )
    )


def _positions_ok(waiting: Sequence[dict[str, Any]]) -> bool:
    return [row["position"] for row in waiting] == list(range(1, len(waiting) + 1))


async def run_flash(ctx: BenchContext) -> dict[str, Any]:
    """Flash sale: everyone books one seat at once; then cancellations promote the queue."""
    settings = ctx.settings
    users = await ctx.admin.create_users(settings.flash_users, f"{ctx.label}-flash")
    [organizer] = await ctx.admin.create_users(1, f"{ctx.label}-flash-organizer")
    gate = asyncio.Semaphore(settings.flash_clients)
    sale = Phase(clients=settings.flash_clients)
    answered: list[tuple[Booking, float]] = []
    async with bench_client(ctx.db_url, settings.flash_clients) as client:
        event = await client.as_user(organizer).create_event(
            "Flash sale", capacity=settings.flash_seats, starts_at=ctx.starts_at()
        )
        task = ctx.progress.add_task("flash sale", total=len(users))
        started = time.perf_counter()

        async def rush(user: uuid.UUID) -> None:
            async with gate:
                begin = time.perf_counter()
                try:
                    booking = await client.as_user(user).book(event.id)
                except TesseraError as exc:
                    sale.record_error(exc.code, exc.message)
                    return
                finally:
                    ctx.progress.advance(task)
                end = time.perf_counter()
            sale.latencies.append(end - begin)
            answered.append((booking, end - started))

        await asyncio.gather(*(rush(user) for user in users))
        sale.seconds = time.perf_counter() - started
        ctx.progress.update(task, visible=False)

        confirmed = [b for b, _ in answered if b.status == BookingStatus.CONFIRMED]
        waitlisted = [b for b, _ in answered if b.status == BookingStatus.WAITLISTED]
        sold_out = max((at for b, at in answered if b.status == BookingStatus.CONFIRMED), default=0)
        expected_waiting = settings.flash_users - settings.flash_seats
        returned_positions = sorted(b.waitlist_position or 0 for b in waitlisted)
        availability = await client.as_service().availability(event.id)
        queue = await _waiting(ctx.admin, event.id)
        sale_checks = {
            "confirmed": len(confirmed),
            "waitlisted": len(waitlisted),
            "seats_confirmed": availability.seats_confirmed,
            "waitlist_count": availability.waitlist_count,
            "positions_returned_ok": returned_positions == list(range(1, expected_waiting + 1)),
            "positions_ok": _positions_ok(queue) and len(queue) == expected_waiting,
        }

        # Cancellations: each frees a seat that goes to the head of the queue.
        cancelling = random.Random(8).sample(
            confirmed, min(settings.flash_cancellations, len(confirmed))
        )
        before = await _last_seq(ctx.admin, event.id)
        cancels = Phase(clients=settings.flash_clients)
        task = ctx.progress.add_task("cancellations", total=len(cancelling))
        started = time.perf_counter()

        async def cancel(booking: Booking) -> None:
            async with gate:
                begin = time.perf_counter()
                try:
                    await client.as_user(booking.user_id).cancel(booking.id)
                except TesseraError as exc:
                    cancels.record_error(exc.code, exc.message)
                    return
                finally:
                    ctx.progress.advance(task)
                cancels.latencies.append(time.perf_counter() - begin)

        await asyncio.gather(*(cancel(booking) for booking in cancelling))
        cancels.seconds = time.perf_counter() - started
        ctx.progress.update(task, visible=False)
        promoted = await _promoted_since(ctx.admin, event.id, before)
        after = await client.as_service().availability(event.id)
        queue_after = await _waiting(ctx.admin, event.id)

    head = [row["id"] for row in queue[: len(cancelling)]]
    after_checks = {
        "promotions": len(promoted),
        "promotions_fifo": promoted == head,
        "seats_confirmed": after.seats_confirmed,
        "waitlist_count": after.waitlist_count,
        "positions_ok": _positions_ok(queue_after)
        and [row["id"] for row in queue_after] == [row["id"] for row in queue[len(cancelling) :]],
    }
    invariants = await ctx.invariants([event.id])
    errors = sum(sale.errors.values()) + sum(cancels.errors.values())
    ok = (
        errors == 0
        and not invariants
        and sale_checks["confirmed"] == settings.flash_seats
        and sale_checks["waitlisted"] == expected_waiting
        and sale_checks["seats_confirmed"] == settings.flash_seats
        and sale_checks["waitlist_count"] == expected_waiting
        and bool(sale_checks["positions_returned_ok"])
        and bool(sale_checks["positions_ok"])
        and after_checks["promotions"] == len(cancelling)
        and bool(after_checks["promotions_fifo"])
        and after_checks["seats_confirmed"] == settings.flash_seats
        and after_checks["waitlist_count"] == expected_waiting - len(cancelling)
        and bool(after_checks["positions_ok"])
    )
    return {
        "users": settings.flash_users,
        "seats": settings.flash_seats,
        "clients": settings.flash_clients,
        "sold_out_seconds": round(sold_out, 3),
        "all_answered_seconds": round(sale.seconds, 3),
        "throughput": round(sale.throughput, 1),
        "booking": sale.as_dict(),
        "response_ms": latency_summary([at for _, at in answered]),
        "sale": sale_checks,
        "cancellations": {"count": len(cancelling), **cancels.as_dict()},
        "after_cancellations": after_checks,
        "invariants": invariants,
        "error_count": errors,
        "ok": ok,
    }


# -- big waitlist ---------------------------------------------------------------------------

# Books each user of tessera_bench.users on tessera_bench.event through public.book_event,
# acting as that user exactly as PostgREST would (role and claims set per call).
_FILL = """
do $fill$
declare
    v_event uuid := current_setting('tessera_bench.event')::uuid;
    v_users uuid[] := string_to_array(current_setting('tessera_bench.users'), ',')::uuid[];
    v_user uuid;
begin
    perform set_config('role', 'authenticated', true);
    foreach v_user in array v_users loop
        perform set_config(
            'request.jwt.claims',
            json_build_object('sub', v_user, 'role', 'authenticated')::text,
            true
        );
        perform public.book_event(v_event, 1);
    end loop;
end
$fill$
"""


async def _fill(
    ctx: BenchContext, event_id: uuid.UUID, users: Sequence[uuid.UUID], batch: int = 1000
) -> float:
    """Book every user through ``public.book_event``, in batches of one transaction each."""
    task = ctx.progress.add_task("filling the waitlist", total=len(users))
    started = time.perf_counter()
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        async with ctx.admin.conn.transaction():
            await ctx.admin.rows(
                "select set_config('tessera_bench.event', %s, true), "
                "set_config('tessera_bench.users', %s, true)",
                (str(event_id), ",".join(str(user) for user in chunk)),
            )
            await ctx.admin.execute(_FILL)
        ctx.progress.advance(task, len(chunk))
    ctx.progress.update(task, visible=False)
    return time.perf_counter() - started


SMALL_WAITLIST = 1000


async def _sample_positions(
    ctx: BenchContext, client: AsyncTessera, event_id: uuid.UUID, samples: int
) -> tuple[Phase, bool]:
    """``waitlist_position`` of random waiting bookings, one call at a time, checked
    against the queue order."""
    expected = await ctx.admin.rows(
        "select id, user_id, position from ("
        "select b.id, b.user_id, row_number() over (order by b.queue_ticket) as position "
        "from public.bookings as b where b.event_id = %s and b.status = 'waitlisted') as w "
        "order by random() limit %s",
        (event_id, samples),
    )
    positions = Phase(clients=1)
    match = True
    task = ctx.progress.add_task("waitlist_position", total=len(expected))
    for row in expected:
        begin = time.perf_counter()
        try:
            found = await client.as_user(row["user_id"]).waitlist_position(row["id"])
        except TesseraError as exc:
            positions.record_error(exc.code, exc.message)
            continue
        finally:
            ctx.progress.advance(task)
        positions.latencies.append(time.perf_counter() - begin)
        match &= found == row["position"]
    ctx.progress.update(task, visible=False)
    return positions, match


async def run_waitlist(ctx: BenchContext) -> dict[str, Any]:
    """A waitlist of ``waitlist_size`` people: position look-ups, joins, cancel → promotion.

    The event has ``waitlist_samples`` seats, all confirmed, and the queue behind them is
    built through ``book_event`` itself. Each latency is measured one call at a time.
    """
    settings = ctx.settings
    samples = settings.waitlist_samples
    [organizer] = await ctx.admin.create_users(1, f"{ctx.label}-waitlist-organizer")
    people = await ctx.admin.create_users(
        samples + settings.waitlist_size + samples, f"{ctx.label}-waitlist"
    )
    seated, waiting, joiners = (
        people[:samples],
        people[samples : samples + settings.waitlist_size],
        people[samples + settings.waitlist_size :],
    )
    async with bench_client(ctx.db_url, 2) as client:
        event = await client.as_user(organizer).create_event(
            "Big waitlist", capacity=samples, starts_at=ctx.starts_at()
        )
        fill_seconds = await _fill(ctx, event.id, [*seated, *waiting])
        filled = await client.as_service().availability(event.id)

        positions, positions_match = await _sample_positions(ctx, client, event.id, samples)
        # The same look-up on a queue of 1,000: a position must not grow with the queue.
        small_event = await client.as_user(organizer).create_event(
            "Small waitlist", capacity=samples, starts_at=ctx.starts_at()
        )
        small_people = await ctx.admin.create_users(
            samples + SMALL_WAITLIST, f"{ctx.label}-waitlist-small"
        )
        await _fill(ctx, small_event.id, small_people)
        small_positions, small_match = await _sample_positions(ctx, client, small_event.id, samples)
        positions_match &= small_match

        # Joining the back of the queue.
        joins = Phase(clients=1)
        joins_match = True
        task = ctx.progress.add_task("joining the waitlist", total=len(joiners))
        for number, user in enumerate(joiners, start=1):
            begin = time.perf_counter()
            try:
                booking = await client.as_user(user).book(event.id)
            except TesseraError as exc:
                joins.record_error(exc.code, exc.message)
                continue
            finally:
                ctx.progress.advance(task)
            joins.latencies.append(time.perf_counter() - begin)
            joins_match &= booking.status == BookingStatus.WAITLISTED and (
                booking.waitlist_position == settings.waitlist_size + number
            )
        ctx.progress.update(task, visible=False)

        # Cancel → promotion: each cancellation of a confirmed booking promotes the head.
        head = await ctx.admin.rows(
            "select b.id from public.bookings as b where b.event_id = %s "
            "and b.status = 'waitlisted' order by b.queue_ticket limit %s",
            (event.id, samples),
        )
        confirmed = await ctx.admin.rows(
            "select b.id, b.user_id from public.bookings as b "
            "where b.event_id = %s and b.status = 'confirmed' order by b.confirmed_at",
            (event.id,),
        )
        before = await _last_seq(ctx.admin, event.id)
        cancels = Phase(clients=1)
        task = ctx.progress.add_task("cancel → promotion", total=len(confirmed))
        for row in confirmed:
            begin = time.perf_counter()
            try:
                await client.as_user(row["user_id"]).cancel(row["id"])
            except TesseraError as exc:
                cancels.record_error(exc.code, exc.message)
                continue
            finally:
                ctx.progress.advance(task)
            cancels.latencies.append(time.perf_counter() - begin)
        ctx.progress.update(task, visible=False)
        promoted = await _promoted_since(ctx.admin, event.id, before)
        after = await client.as_service().availability(event.id)

    invariants = await ctx.invariants([event.id])
    invariants += await ctx.invariants([small_event.id])
    errors = sum(sum(p.errors.values()) for p in (positions, small_positions, joins, cancels))
    fifo = promoted == [row["id"] for row in head]
    checks = {
        "filled_confirmed": filled.seats_confirmed,
        "filled_waiting": filled.waitlist_count,
        "positions_match": positions_match,
        "joins_match": joins_match,
        "promotions": len(promoted),
        "promotions_fifo": fifo,
        "waiting_after": after.waitlist_count,
    }
    ok = (
        errors == 0
        and not invariants
        and filled.seats_confirmed == samples
        and filled.waitlist_count == settings.waitlist_size
        and positions_match
        and joins_match
        and len(promoted) == len(confirmed) == samples
        and fifo
        and after.seats_confirmed == samples
        and after.waitlist_count == settings.waitlist_size
    )
    return {
        "waiting": settings.waitlist_size,
        "samples": samples,
        "fill_seconds": round(fill_seconds, 3),
        "fill_rate": round((samples + settings.waitlist_size) / fill_seconds, 1),
        "waitlist_position": positions.as_dict(),
        "waitlist_position_small": {"waiting": SMALL_WAITLIST, **small_positions.as_dict()},
        "join": joins.as_dict(),
        "cancel_promotion": cancels.as_dict(),
        "checks": checks,
        "invariants": invariants,
        "error_count": errors,
        "ok": ok,
    }


# -- connections through PgBouncer ----------------------------------------------------------


async def run_connections(ctx: BenchContext) -> dict[str, Any]:
    """Thousands of clients, each its own connection, through PgBouncer onto a small pool.

    Every client is an SDK client with a pool of one connection. All connect first and are
    held open together; then all of them book at once, a few events each.
    """
    settings = ctx.settings
    count = settings.connections
    raise_open_files_limit(count + 1000)
    users = await ctx.admin.create_users(count, f"{ctx.label}-connections")
    [organizer] = await ctx.admin.create_users(1, f"{ctx.label}-connections-organizer")
    async with bench_client(ctx.db_url, 1) as setup:
        events = [
            (
                await setup.as_user(organizer).create_event(
                    f"Crowd {n + 1}", capacity=HOT_CAPACITY, starts_at=ctx.starts_at()
                )
            ).id
            for n in range(settings.bookings_per_connection)
        ]

    bouncer = PgBouncer(ctx.db_url, pool_size=settings.pgbouncer_pool, max_clients=count)
    await asyncio.to_thread(bouncer.start)
    phase = Phase(clients=count)
    connect_errors: dict[str, int] = {}
    peaks = {"clients": 0, "servers": 0}
    held: dict[str, Any] = {}
    try:
        clients = [bench_client(bouncer.dsn, 1, timeout=300) for _ in range(count)]
        opening = asyncio.Semaphore(100)
        task = ctx.progress.add_task("connecting through PgBouncer", total=count)

        async def open_one(client: AsyncTessera) -> bool:
            async with opening:
                try:
                    await client.open()
                    return True
                except TesseraError as exc:
                    connect_errors[exc.code] = connect_errors.get(exc.code, 0) + 1
                    return False
                finally:
                    ctx.progress.advance(task)

        opened = await asyncio.gather(*(open_one(client) for client in clients))
        ctx.progress.update(task, visible=False)
        held = await asyncio.to_thread(bouncer.pools)
        watching = True

        async def watch() -> None:
            while watching:
                pools = await asyncio.to_thread(bouncer.pools)
                peaks["clients"] = max(
                    peaks["clients"],
                    int(pools.get("cl_active", 0)) + int(pools.get("cl_waiting", 0)),
                )
                peaks["servers"] = max(
                    peaks["servers"],
                    sum(
                        int(pools.get(k, 0))
                        for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
                    ),
                )
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        task = ctx.progress.add_task(
            "booking through PgBouncer", total=count * settings.bookings_per_connection
        )
        started = time.perf_counter()

        async def book_all(client: AsyncTessera, user: uuid.UUID) -> None:
            actor = client.as_user(user)
            for event_id in events:
                begin = time.perf_counter()
                try:
                    await actor.book(event_id)
                except TesseraError as exc:
                    phase.record_error(exc.code, exc.message)
                    continue
                finally:
                    ctx.progress.advance(task)
                phase.latencies.append(time.perf_counter() - begin)
                phase.calls_total += 1

        await asyncio.gather(
            *(
                book_all(client, user)
                for client, user, ok in zip(clients, users, opened, strict=True)
                if ok
            )
        )
        phase.seconds = time.perf_counter() - started
        ctx.progress.update(task, visible=False)
        watching = False
        await watcher
        closing = asyncio.Semaphore(200)

        async def close_one(client: AsyncTessera) -> None:
            async with closing:
                await client.close()

        await asyncio.gather(*(close_one(client) for client in clients))
    finally:
        await asyncio.to_thread(bouncer.stop)

    confirmed = await ctx.admin.value(
        "select count(*) from public.bookings where event_id = any(%s) and status = 'confirmed'",
        (events,),
    )
    invariants = await ctx.invariants(events)
    errors = sum(phase.errors.values()) + sum(connect_errors.values())
    held_clients = int(held.get("cl_active", 0)) + int(held.get("cl_waiting", 0))
    return {
        "clients": count,
        "pool_size": settings.pgbouncer_pool,
        "bookings_per_client": settings.bookings_per_connection,
        "connected": sum(opened),
        "connect_errors": connect_errors,
        "clients_held_open": held_clients,
        "peak_clients": peaks["clients"],
        "peak_server_connections": peaks["servers"],
        "booking": phase.as_dict(),
        "bookings_accounted": confirmed == phase.calls_total,
        "invariants": invariants,
        "error_count": errors,
        "ok": errors == 0
        and not invariants
        and confirmed == phase.calls_total == count * settings.bookings_per_connection
        and held_clients >= count
        and peaks["servers"] <= settings.pgbouncer_pool,
    }


# -- realtime -------------------------------------------------------------------------------


async def run_realtime(ctx: BenchContext) -> dict[str, Any]:
    """Commit-to-receipt latency of realtime updates (``tessera_client.bench.realtime``)."""
    settings = ctx.settings
    try:
        module = importlib.import_module(REALTIME_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != REALTIME_MODULE:
            raise
        return {"skipped": f"{REALTIME_MODULE} is not available", "ok": None}
    measure: Callable[..., Awaitable[dict[str, Any]]] = module.run_realtime_latency
    since = await ctx.admin.value("select now()")
    bars: dict[str, TaskID] = {}

    def report(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            bars[phase] = ctx.progress.add_task(f"realtime: {phase}", total=total)
        ctx.progress.update(bars[phase], completed=done, total=total)

    try:
        result = dict(
            await measure(
                ctx.db_url,
                subscribers=settings.realtime_subscribers,
                rate=settings.realtime_rate,
                seconds=settings.realtime_seconds,
                progress=report,
            )
        )
    finally:
        for bar in bars.values():
            ctx.progress.update(bar, visible=False)
    events = await ctx.admin.rows(
        "select id from public.events where created_at >= %s order by created_at", (since,)
    )
    invariants = await ctx.invariants([row["id"] for row in events])
    errors = result.get("error_count", result.get("errors", 0))
    error_count = sum(errors.values()) if isinstance(errors, dict) else int(errors or 0)
    result["invariants"] = invariants
    result["ok"] = bool(result.get("ok", True)) and not invariants and error_count == 0
    return result
