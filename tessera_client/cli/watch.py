"""`tessera watch`: a live view of one event, fed by realtime."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections import deque

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from tessera_client import AsyncTessera, Availability, Change, WaitlistEntry
from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    as_data,
    connect_db,
    console,
    err_console,
    handle_errors,
    id_column,
    resolve_db_url,
    resolve_id,
    show_time,
)


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
                      show_time(entry.waitlisted_at, seconds=True))  # fmt: skip
    changes = Table("kind", "status", "free", "wait", title="latest changes", expand=True)
    id_column(changes, "booking")
    for c in latest:
        changes.add_row(str(c.kind), str(c.status or "-"), str(c.seats_available),
                        str(c.waitlist_count), str(c.booking_id or "-"))  # fmt: skip
    status = "[red]cancelled[/]" if str(numbers.status) == "cancelled" else str(numbers.status)
    return Group(Panel(summary, title=f"{title} · {status}"), queue, changes)


def _line(change: Change) -> str:
    return (
        f"seq={change.seq} kind={change.kind} booking={change.booking_id or '-'} "
        f"status={change.status or '-'} available={change.seats_available} "
        f"waiting={change.waitlist_count}"
    )


def _emit(change: Change, json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(as_data(change)) + "\n")
        sys.stdout.flush()
    else:
        console.print(_line(change), soft_wrap=True, highlight=False)


def _last_entry(db_url: str, event_id: uuid.UUID) -> int:
    """The seq just before the event's last ledger entry (to replay that entry alone)."""
    with connect_db(db_url) as conn:
        row = conn.execute(
            "select seq from public.ledger where event_id = %s order by seq desc offset 1 limit 1",
            (event_id,),
        ).fetchone()
    return int(row[0]) if row else 0


async def _watch(db_url: str, event_id: uuid.UUID, rows: int, json_out: bool) -> None:
    tessera: AsyncTessera
    async with AsyncTessera.connect(db_url, min_size=1, max_size=2) as tessera:
        service = tessera.as_service()
        event = await service.get_event(event_id)
        numbers = await service.availability(event_id)
        if str(event.status) == "cancelled":
            # Nothing more will happen: show how it ended, then stop.
            for change in await service.changes(event_id, after_seq=_last_entry(db_url, event_id)):
                _emit(change, json_out)
            if not json_out:
                console.print("the event is cancelled; nothing more to watch")
            return
        if json_out or not console.is_terminal:  # piped, logged or --json: one line per change
            err_console.print(
                f"watching {event.title!r} ({event.id}) after seq {numbers.last_seq};"
                " it ends when the event is cancelled",
                soft_wrap=True, highlight=False, markup=False,
            )  # fmt: skip
            async for change in service.watch_event(event_id, after_seq=numbers.last_seq):
                _emit(change, json_out)
            if not json_out:
                console.print("the event was cancelled; watch ended")
            return
        head = (await service.waitlist(event_id))[:rows]
        latest: deque[Change] = deque(maxlen=rows)
        # auto_refresh off: the screen is redrawn only when a change arrives.
        with Live(_render(event.title, numbers, head, latest), console=console,
                  screen=True, auto_refresh=False) as live:  # fmt: skip
            live.refresh()
            async for change in service.watch_event(event_id, after_seq=numbers.last_seq):
                latest.appendleft(change)
                numbers = await service.availability(event_id)
                if change.kind in ("waitlisted", "promoted", "offered", "cancelled"):
                    head = (await service.waitlist(event_id))[:rows]
                live.update(_render(event.title, numbers, head, latest), refresh=True)
    console.print("the event was cancelled; watch ended")


@handle_errors
def watch(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    rows: int = typer.Option(10, min=1, help="Rows of waitlist and changes to show."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Watch an event live: availability, the waitlist head and the latest changes.

    Ends when the event is cancelled; Ctrl-C exits. With --json: one JSON object per change.

    Example: tessera watch 0b6c
    """
    eid = resolve_id(db_url, "event", event_id)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_watch(resolve_db_url(db_url), eid, rows, json_out))
