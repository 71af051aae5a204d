"""`tessera demo`: Tessera's main job on the local stack, start to finish in seconds.

A hot event sells out under a burst of concurrent bookers, the rest queue up, cancellations
promote the next in line (watched live over realtime), and the invariant check closes. The
output leads with the verdict, then tells the story.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tessera_client import AsyncTessera, Booking, Change, TesseraError
from tessera_client._local.stack import LocalStack
from tessera_client.cli._common import JsonOut, console, err_console, handle_errors, print_json
from tessera_client.cli.doctor import CHECKS, run_checks
from tessera_client.local import create_local_users

PROMOTION_TIMEOUT = 15.0  # seconds to wait for realtime to deliver every promotion


async def _burst(
    tessera: AsyncTessera, event_id: uuid.UUID, people: list[uuid.UUID], quiet: bool
) -> list[Booking | TesseraError]:
    results: list[Booking | TesseraError] = []
    with Progress(
        TextColumn("[bold]booking[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=quiet, transient=True,
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
    tessera: AsyncTessera, event_id: uuid.UUID, cancels: list[Booking], expected: int
) -> list[tuple[Change, float]]:
    """Cancel bookings; collect the ``expected`` promotions as realtime delivers them.

    Returns each promotion with how long after its cancellation returned it arrived.
    """
    service = tessera.as_service()
    start_seq = (await service.availability(event_id)).last_seq
    promotions: list[tuple[Change, float]] = []

    async def watch() -> None:
        async for change in service.watch_event(event_id, after_seq=start_seq):
            if change.kind in ("promoted", "offered"):
                promotions.append((change, time.perf_counter()))
                if len(promotions) == expected:
                    return

    watcher = asyncio.create_task(watch()) if expected else None
    await asyncio.sleep(0.2 if watcher else 0)  # let the subscription start first
    committed: list[float] = []
    for booking in cancels:
        await tessera.as_user(booking.user_id).cancel(booking.id)
        committed.append(time.perf_counter())
    if watcher is not None:
        try:
            await asyncio.wait_for(watcher, timeout=PROMOTION_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"only {len(promotions)} of {expected} promotions arrived over realtime"
                f" within {PROMOTION_TIMEOUT:.0f} s"
            ) from None
    # Each cancellation promotes the next waiting booking, in the same order.
    pairs = zip(promotions, committed[:expected], strict=True)
    return [(change, max(0.0, seen - done)) for (change, seen), done in pairs]


def _cli_name() -> str:
    """How to call this `tessera` from the user's shell (scripts/demo runs it from .venv)."""
    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    on_path = shutil.which("tessera")
    if me is None or me.name != "tessera" or (on_path and Path(on_path).resolve() == me):
        return "tessera"
    try:
        return str(me.relative_to(Path.cwd()))
    except ValueError:
        return str(me)


def _verdict(seats: int, confirmed: int, waiting: int, fifo: bool, problems: list[Any]) -> str:
    sold = f"{confirmed} of {seats} seats sold"
    oversold = any(p["check"] == "no_oversell" for p in problems) or confirmed > seats
    queue = "nobody waiting" if not waiting else f"{waiting} waiting"
    if waiting:
        queue += " in order" if fifo and not problems else " OUT OF ORDER"
    text = f"{sold}, {'OVERSOLD' if oversold else 'nobody oversold'}, {queue}"
    if problems:
        text += f"; {len(problems)} invariant problem(s), see below"
    return text


async def _demo(
    db_url: str, seats: int, people_count: int, cancellations: int
) -> tuple[dict[str, Any], list[str]]:
    """Run the demo; returns the summary and the story, line by line (rich markup)."""
    run = uuid.uuid4().hex[:6]
    people = create_local_users(db_url, people_count + 1, prefix=f"demo-{run}")
    organizer, crowd = people[0], people[1:]
    story: list[str] = []
    async with AsyncTessera.connect(db_url, min_size=4, max_size=32) as tessera:
        event = await tessera.as_user(organizer).create_event(
            f"Demo concert {run}", seats, datetime.now(UTC) + timedelta(days=30),
            venue="The Local Stack", max_seats_per_booking=4,
        )  # fmt: skip
        started = time.perf_counter()
        results = await _burst(tessera, event.id, crowd, quiet=False)
        burst_seconds = time.perf_counter() - started
        bookings = [r for r in results if isinstance(r, Booking)]
        errors = [r for r in results if not isinstance(r, Booking)]
        counts = Counter(str(b.status) for b in bookings)
        story.append(
            f"[bold]1.[/] {len(crowd)} people booked [bold]{event.title}[/] ({seats} seats) at"
            f" once: {counts['confirmed']} confirmed, {counts['waitlisted']} on the waitlist,"
            f" {len(errors)} errors, in {burst_seconds:.2f} s"
            f" ({len(results) / burst_seconds:,.0f} bookings/s)"
        )
        confirmed = [b for b in bookings if str(b.status) == "confirmed"]
        waitlisted = sorted(
            (b for b in bookings if str(b.status) == "waitlisted"),
            key=lambda b: b.waitlist_position or 0,
        )
        # Cancellations are there to show promotions: no more than there are people waiting.
        cancels = confirmed[: min(cancellations, len(waitlisted))]
        expected = len(cancels)
        promotions = await _cancel_and_watch(tessera, event.id, cancels, expected)
        position = {b.id: b.waitlist_position for b in waitlisted}
        if cancels:
            story.append(
                f"[bold]2.[/] {len(cancels)} confirmed people cancelled; the waitlist moved up,"
                " live over realtime:"
            )
        elif not waitlisted:
            story.append("[bold]2.[/] nobody waits, so nobody needs to cancel")
        else:
            story.append("[bold]2.[/] nobody cancelled (--cancellations 0)")
        for change, delay in promotions:
            was = position.get(change.booking_id) if change.booking_id else None
            story.append(
                f"   waitlist #{was or '?'} → [green]{change.status}[/]"
                f"  booking {change.booking_id}  [dim]({delay * 1000:.0f} ms after the"
                " cancellation)[/]"
            )
        waiting = await tessera.as_user(organizer).waitlist(event.id)
        numbers = await tessera.as_service().availability(event.id)
    delays = sorted(delay * 1000 for _, delay in promotions)
    fifo = [c.booking_id for c, _ in promotions] == [b.id for b in waitlisted[:expected]]
    problems = run_checks(db_url)
    story.append(
        f"[bold]3.[/] now {numbers.seats_confirmed} confirmed, {numbers.waitlist_count} waiting"
        + (f" (positions 1..{len(waiting)})" if waiting else "")
        + (", promotions in FIFO order: " + ("[green]yes[/]" if fifo else "[red]no[/]"))
        * bool(promotions)
    )
    story.append("[bold]4.[/] invariant check (tessera doctor):")
    for name in CHECKS:
        bad = [p for p in problems if p["check"] == name]
        mark = "[green]✓[/]" if not bad else f"[red]✗ {len(bad)}[/]"
        story.append(f"   {mark} {CHECKS[name]}")
    cli, short = _cli_name(), str(event.id)[:8]
    story.append(
        f"\nThe stack keeps running with this data. Next: `{cli} events show {short}`,"
        f" `{cli} waitlist {short}`, `{cli} bookings list --event {short}`,"
        f" `{cli} watch {short}`."
    )
    summary = {
        "verdict": _verdict(seats, numbers.seats_confirmed, numbers.waitlist_count, fifo, problems),
        "event_id": str(event.id),
        "seats": seats,
        "people": len(crowd),
        "confirmed": counts["confirmed"],
        "waitlisted": counts["waitlisted"],
        "errors": len(errors),
        "burst_seconds": round(burst_seconds, 3),
        "cancellations": len(cancels),
        "promotions": len(promotions),
        "promotion_delay_ms_median": round(delays[len(delays) // 2], 1) if delays else None,
        "promotion_delay_ms_max": round(max(delays), 1) if delays else None,
        "promotions_fifo": fifo,
        "confirmed_after": numbers.seats_confirmed,
        "waiting_after": numbers.waitlist_count,
        "invariant_problems": problems,
    }
    return summary, story


@handle_errors
def demo(
    seats: int = typer.Option(50, min=1, max=100_000, help="Seats of the demo event."),
    people: int = typer.Option(200, min=1, max=100_000, help="People booking at once."),
    cancellations: int = typer.Option(10, min=0, help="Confirmed bookings to cancel."),
    json_out: JsonOut = False,
) -> None:
    """Run the demo: a sell-out, a waitlist, live promotions, the invariant check.

    Starts the local stack when it is not running, and leaves it running with the data.

    Example: tessera demo --seats 50 --people 200
    """
    stack = LocalStack()
    with err_console.status("starting the local stack…") if not json_out else nullcontext():
        started = stack.up()
    if not json_out:
        verb = "started" if started else "running"
        err_console.print(f"[dim]local stack {verb} at {stack.db_url}[/]", soft_wrap=True)
    summary, story = asyncio.run(_demo(stack.db_url, seats, people, cancellations))
    ok = not (summary["invariant_problems"] or summary["errors"] or not summary["promotions_fifo"])
    if json_out:
        print_json(summary)
    else:
        colour = "green" if ok else "red"
        console.print(f"[bold {colour}]{summary['verdict']}[/]", soft_wrap=True)
        console.print()
        for line in story:
            console.print(line, soft_wrap=True, highlight=False)
    if not ok:
        raise typer.Exit(1)
