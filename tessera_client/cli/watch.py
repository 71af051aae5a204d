"""`tessera watch`: a live view of one event, fed by realtime."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from tessera_client import AsyncTessera, Availability, Change, WaitlistEntry
from tessera_client.cli._common import DbUrl, console, handle_errors, parse_uuid, resolve_db_url


def _render(
    title: str, numbers: Availability, head: list[WaitlistEntry], latest: deque[Change]
) -> Group:
    summary = Table.grid(padding=(0, 3))
    summary.add_row(
        f"[bold]{numbers.seats_available}[/] available",
        f"[bold]{numbers.seats_confirmed}[/] confirmed",
        f"[bold]{numbers.seats_offered}[/] offered",
        f"[bold]{numbers.waitlist_count}[/] waiting ({numbers.waitlist_seats} seats)",
        f"capacity {numbers.capacity}",
        f"[dim]seq {numbers.last_seq}[/]",
    )
    queue = Table("pos", "email", "seats", "since", title="waitlist head", expand=True)
    for entry in head:
        queue.add_row(str(entry.position), entry.email or "-", str(entry.seats),
                      f"{entry.waitlisted_at:%H:%M:%S}")  # fmt: skip
    changes = Table("seq", "kind", "booking", "status", "available", "waiting",
                    title="latest changes", expand=True)  # fmt: skip
    for c in latest:
        booking = str(c.booking_id or "-")[:8]
        changes.add_row(str(c.seq), str(c.kind), booking, str(c.status or "-"),
                        str(c.seats_available), str(c.waitlist_count))  # fmt: skip
    status = "[red]cancelled[/]" if str(numbers.status) == "cancelled" else str(numbers.status)
    return Group(Panel(summary, title=f"{title} · {status}"), queue, changes)


async def _watch(db_url: str, event_id: uuid.UUID, rows: int) -> None:
    tessera: AsyncTessera
    async with AsyncTessera.connect(db_url, min_size=1, max_size=2) as tessera:
        service = tessera.as_service()
        event = await service.get_event(event_id)
        numbers = await service.availability(event_id)
        head = (await service.waitlist(event_id))[:rows]
        latest: deque[Change] = deque(maxlen=rows)
        if not console.is_terminal:  # piped or logged: one line per change
            async for change in service.watch_event(event_id, after_seq=numbers.last_seq):
                console.print(
                    f"seq={change.seq} kind={change.kind} booking={change.booking_id or '-'} "
                    f"status={change.status or '-'} available={change.seats_available} "
                    f"waiting={change.waitlist_count}",
                    soft_wrap=True,
                )
            console.print("the event was cancelled; watch ended")
            return
        with Live(_render(event.title, numbers, head, latest), console=console,
                  screen=True, refresh_per_second=20) as live:  # fmt: skip
            async for change in service.watch_event(event_id, after_seq=numbers.last_seq):
                latest.appendleft(change)
                numbers = await service.availability(event_id)
                if change.kind in ("waitlisted", "promoted", "offered", "cancelled"):
                    head = (await service.waitlist(event_id))[:rows]
                live.update(_render(event.title, numbers, head, latest))
    console.print("the event was cancelled; watch ended")


@handle_errors
def watch(
    event_id: str = typer.Argument(..., help="Event id."),
    rows: int = typer.Option(10, min=1, help="Rows of waitlist and changes to show."),
    db_url: DbUrl = None,
) -> None:
    """Watch an event live: availability, the waitlist head and the latest changes.

    Ctrl-C exits. Example: tessera watch 0b6c…
    """
    eid = parse_uuid(event_id, "EVENT")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_watch(resolve_db_url(db_url), eid, rows))
