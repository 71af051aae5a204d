"""`tessera demo`: Tessera's main job on the local stack, start to finish in seconds.

A hot event sells out under a burst of concurrent bookers, the rest queue up, cancellations
promote the next in line (watched live over realtime), and the invariant check closes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera_client import AsyncTessera, Booking, Change, TesseraError
from tessera_client._local.stack import LocalStack
from tessera_client.cli._common import JsonOut, console, handle_errors, print_json
from tessera_client.cli.doctor import CHECKS, run_checks
from tessera_client.local import create_local_users


async def _burst(
    tessera: AsyncTessera, event_id: uuid.UUID, people: list[uuid.UUID], quiet: bool
) -> list[Booking | TesseraError]:
    results: list[Booking | TesseraError] = []
    with Progress(
        TextColumn("[bold]booking[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=quiet, transient=False,
    ) as progress:  # fmt: skip
        task = progress.add_task("book", total=len(people))

        async def one(user_id: uuid.UUID) -> None:
            try:
                results.append(await tessera.as_user(user_id).book(event_id))
            except TesseraError as exc:
                results.append(exc)
            progress.advance(task)

        await asyncio.gather(*(one(user_id) for user_id in people))
    return results


async def _cancel_and_watch(
    tessera: AsyncTessera, event_id: uuid.UUID, cancels: list[Booking], quiet: bool
) -> list[tuple[Change, float]]:
    """Cancel bookings and collect the promotions as they arrive over realtime."""
    service = tessera.as_service()
    start_seq = (await service.availability(event_id)).last_seq
    promotions: list[tuple[Change, float]] = []
    expected = len(cancels)

    async def watch() -> None:
        async for change in service.watch_event(event_id, after_seq=start_seq):
            if change.kind in ("promoted", "offered"):
                promotions.append((change, time.perf_counter()))
                if not quiet:
                    console.print(
                        f"  [green]promoted[/] booking {change.booking_id} "
                        f"[dim](seq {change.seq}, {change.seats_available} seats left, "
                        f"{change.waitlist_count} waiting)[/]"
                    )
                if len(promotions) == expected:
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)  # let the subscription start before the first cancellation
    committed: list[float] = []
    for booking in cancels:
        await tessera.as_user(booking.user_id).cancel(booking.id)
        committed.append(time.perf_counter())
    await asyncio.wait_for(watcher, timeout=15)
    # Each cancellation promotes exactly one waiting booking, in the same order.
    return [
        (change, max(0.0, seen - done))
        for (change, seen), done in zip(promotions, committed, strict=True)
    ]


async def _demo(db_url: str, seats: int, people_count: int, cancels: int, quiet: bool) -> dict:  # type: ignore[type-arg]
    run = uuid.uuid4().hex[:6]
    people = create_local_users(db_url, people_count + 1, prefix=f"demo-{run}")
    organizer, crowd = people[0], people[1:]
    async with AsyncTessera.connect(db_url, min_size=4, max_size=32) as tessera:
        event = await tessera.as_user(organizer).create_event(
            f"Demo concert {run}", seats, datetime.now(UTC) + timedelta(days=30),
            venue="The Local Stack", max_seats_per_booking=4,
        )  # fmt: skip
        if not quiet:
            console.print(
                f"[bold]1.[/] Event [bold]{event.title}[/] ({event.id}): {seats} seats, "
                f"{len(crowd)} people click 'book' at once"
            )
        started = time.perf_counter()
        results = await _burst(tessera, event.id, crowd, quiet)
        burst_seconds = time.perf_counter() - started
        bookings = [r for r in results if isinstance(r, Booking)]
        errors = [r for r in results if not isinstance(r, Booking)]
        counts = Counter(str(b.status) for b in bookings)
        if not quiet:
            table = Table("confirmed", "waitlisted", "errors", "time", "bookings/s")
            table.add_row(
                str(counts["confirmed"]), str(counts["waitlisted"]), str(len(errors)),
                f"{burst_seconds:.2f} s", f"{len(results) / burst_seconds:,.0f}",
            )  # fmt: skip
            console.print(table)
            console.print(
                f"[bold]2.[/] {cancels} confirmed people cancel; the waitlist moves up "
                "(live, over realtime):"
            )
        confirmed = [b for b in bookings if str(b.status) == "confirmed"]
        promotions = await _cancel_and_watch(tessera, event.id, confirmed[:cancels], quiet)
        delays = sorted(delay * 1000 for _, delay in promotions)
        if delays and not quiet:
            console.print(
                f"  each promotion arrived {delays[len(delays) // 2]:.0f} ms (median), at most "
                f"{delays[-1]:.0f} ms after its cancellation returned"
            )
        waiting = await tessera.as_user(organizer).waitlist(event.id)
        numbers = await tessera.as_service().availability(event.id)
    head_tickets = sorted(
        (b for b in bookings if str(b.status) == "waitlisted"),
        key=lambda b: b.waitlist_position or 0,
    )[:cancels]
    fifo = [c.booking_id for c, _ in promotions] == [b.id for b in head_tickets]
    problems = run_checks(db_url)
    if not quiet:
        console.print(
            f"[bold]3.[/] {numbers.seats_confirmed} confirmed, {numbers.waitlist_count} waiting "
            f"(positions 1..{len(waiting)}), promotions in FIFO order: "
            + ("[green]yes[/]" if fifo else "[red]no[/]")
        )
        console.print("[bold]4.[/] Invariant check (tessera doctor):")
        for name in CHECKS:
            bad = [p for p in problems if p["check"] == name]
            mark = "[green]✓[/]" if not bad else f"[red]✗ {len(bad)}[/]"
            console.print(f"  {mark} {CHECKS[name]}")
        console.print(
            f"\nThe stack keeps running with this data: try `tessera events show {event.id}`, "
            f"`tessera waitlist {event.id}`, `tessera watch {event.id}`."
        )
    return {
        "event_id": str(event.id),
        "seats": seats,
        "people": len(crowd),
        "confirmed": counts["confirmed"],
        "waitlisted": counts["waitlisted"],
        "errors": len(errors),
        "burst_seconds": round(burst_seconds, 3),
        "promotions": len(promotions),
        "promotion_delay_ms_max": round(max(delays), 1) if delays else None,
        "promotions_fifo": fifo,
        "waiting_after": numbers.waitlist_count,
        "invariant_problems": problems,
    }


@handle_errors
def demo(
    seats: int = typer.Option(50, min=1, help="Seats of the demo event."),
    people: int = typer.Option(200, min=1, help="People booking at once."),
    cancellations: int = typer.Option(10, min=0, help="Confirmed bookings to cancel."),
    json_out: JsonOut = False,
) -> None:
    """Run the demo: a sell-out, a waitlist, live promotions, the invariant check.

    Starts the local stack when it is not running, and leaves it running with the data.

    Example: tessera demo --seats 50 --people 200
    """
    stack = LocalStack()
    if not json_out:
        with console.status("starting the local stack…"):
            started = stack.up()
        console.print(
            f"local stack {'started' if started else 'running'} at [bold]{stack.db_url}[/]"
        )
    else:
        stack.up()
    cancels = min(cancellations, seats, max(people - seats, 0))
    summary = asyncio.run(_demo(stack.db_url, seats, people, cancels, quiet=json_out))
    if json_out:
        print_json(summary)
    if summary["invariant_problems"] or summary["errors"] or not summary["promotions_fifo"]:
        raise typer.Exit(1)
