"""`tessera events`: create, inspect and manage events."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    Limit,
    as_data,
    connect_db,
    console,
    fail,
    find_user_id,
    handle_errors,
    parse_time,
    print_json,
    print_rows,
    resolve_id,
    service_client,
    show_time,
)

app = typer.Typer(
    help="Manage events: `tessera events create 'Jazz night' --capacity 100 --as org@example.com`.",
    no_args_is_help=True,
)

TIME_HELP = "ISO 8601; without a zone it means local time (TZ)."


@app.command("create")
@handle_errors
def create(
    title: str = typer.Argument(..., help="1 to 200 characters."),
    capacity: int = typer.Option(..., help="Seats, 1 to 1,000,000."),
    organizer: str = typer.Option(..., "--as", help="Email of the organizer (a user)."),
    starts_at: str | None = typer.Option(None, help=f"Start; default: in 7 days. {TIME_HELP}"),
    ends_at: str | None = typer.Option(None, help=f"End. {TIME_HELP}"),
    description: str | None = typer.Option(None),
    venue: str | None = typer.Option(None),
    max_seats: int | None = typer.Option(None, help="Largest party per booking (default 10)."),
    waitlist: bool = typer.Option(True, help="Let bookings join a waitlist once sold out."),
    waitlist_limit: int | None = typer.Option(None, help="Most people waiting."),
    policy: str = typer.Option("strict", help="Waitlist order: strict or first_fit."),
    mode: str = typer.Option("auto", help="Promotion: auto (confirm) or offer (claim)."),
    offer_hours: float = typer.Option(24.0, help="How long an offer stays open."),
    sales_open_at: str | None = typer.Option(None, help=f"Booking opens. {TIME_HELP}"),
    sales_close_at: str | None = typer.Option(None, help=f"Booking closes. {TIME_HELP}"),
    draft: bool = typer.Option(False, help="Create unpublished."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Create an event organized by a user.

    Example: tessera events create "Jazz night" --capacity 100 --as org@example.com
    --starts-at 2026-12-24T19:30
    """
    organizer_id = find_user_id(db_url, organizer)
    start = parse_time(starts_at, "--starts-at") if starts_at else datetime.now(UTC) + timedelta(7)
    with service_client(db_url) as tessera:
        event = tessera.as_user(organizer_id).create_event(
            title,
            capacity,
            start,
            ends_at=parse_time(ends_at, "--ends-at") if ends_at else None,
            description=description,
            venue=venue,
            max_seats_per_booking=max_seats,
            waitlist_enabled=waitlist,
            waitlist_limit=waitlist_limit,
            waitlist_policy=policy,
            promotion_mode=mode,
            offer_ttl=timedelta(hours=offer_hours),
            sales_open_at=parse_time(sales_open_at, "--sales-open-at") if sales_open_at else None,
            sales_close_at=(
                parse_time(sales_close_at, "--sales-close-at") if sales_close_at else None
            ),
            publish=not draft,
        )
    if json_out:
        print_json(event)
        return
    console.print(
        f"[green]created[/] {event.title!r} [bold]{event.id}[/] ({event.status}),"
        f" starts {show_time(event.starts_at)}",
        soft_wrap=True,
    )


@app.command("update")
@handle_errors
def update(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    title: str | None = typer.Option(None, help="1 to 200 characters."),
    description: str | None = typer.Option(None, help="Up to 10,000 characters."),
    venue: str | None = typer.Option(None, help="Up to 500 characters."),
    starts_at: str | None = typer.Option(None, help=TIME_HELP),
    ends_at: str | None = typer.Option(None, help=TIME_HELP),
    sales_open_at: str | None = typer.Option(None, help=TIME_HELP),
    sales_close_at: str | None = typer.Option(None, help=TIME_HELP),
    max_seats: int | None = typer.Option(None, help="Largest party per booking, 1 to 1,000."),
    waitlist_limit: int | None = typer.Option(None, help="Most people waiting."),
    offer_hours: float | None = typer.Option(None, help="How long new offers stay open."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Change an event's details; what is not given stays (capacity: `events capacity`).

    Example: tessera events update 0b6c --venue "Blue Hall" --starts-at 2026-12-24T20:00
    """
    changes: dict[str, Any] = {
        "title": title,
        "description": description,
        "venue": venue,
        "starts_at": parse_time(starts_at, "--starts-at") if starts_at else None,
        "ends_at": parse_time(ends_at, "--ends-at") if ends_at else None,
        "sales_open_at": parse_time(sales_open_at, "--sales-open-at") if sales_open_at else None,
        "sales_close_at": (
            parse_time(sales_close_at, "--sales-close-at") if sales_close_at else None
        ),
        "max_seats_per_booking": max_seats,
        "waitlist_limit": waitlist_limit,
        "offer_ttl": timedelta(hours=offer_hours) if offer_hours is not None else None,
    }
    if all(value is None for value in changes.values()):
        raise fail("nothing to change: give at least one option (`tessera events update --help`)")
    eid = resolve_id(db_url, "event", event_id)
    with service_client(db_url) as tessera:
        event = tessera.update_event(eid, **changes)
    if json_out:
        print_json(event)
        return
    console.print(f"[green]updated[/] {event.title!r} ({event.id})", soft_wrap=True)


@app.command("list")
@handle_errors
def list_events(
    status: str | None = typer.Option(None, help="draft, published or cancelled."),
    limit: Limit = 50,
    after: str | None = typer.Option(None, "--after", help="Start after this event id."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List events, soonest first; continue with --after and the last id shown.

    Example: tessera events list --status published --limit 20
    """
    start = resolve_id(db_url, "event", after) if after else None
    with service_client(db_url) as tessera:
        events = tessera.list_events(status=status, limit=limit, after=start)
        numbers = {e.id: tessera.availability(e.id) for e in events}
    if json_out:
        print_json([{**as_data(e), "availability": as_data(numbers[e.id])} for e in events])  # type: ignore[dict-item]
        return
    print_rows(
        ("id", "title", "starts", "status", "seats", "free", "waiting"),
        [(str(e.id), e.title, show_time(e.starts_at), str(e.status), str(e.capacity),
          str(numbers[e.id].seats_available), str(numbers[e.id].waitlist_count))
         for e in events],
        "id",
    )  # fmt: skip
    if len(events) == limit:
        console.print(f"next page: --after {events[-1].id}", soft_wrap=True)


@app.command("show")
@handle_errors
def show(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Show an event and its availability.

    Example: tessera events show 0b6c
    """
    eid = resolve_id(db_url, "event", event_id)
    with service_client(db_url) as tessera:
        event = tessera.get_event(eid)
        numbers = tessera.availability(eid)
    if json_out:
        print_json({**as_data(event), "availability": as_data(numbers)})  # type: ignore[dict-item]
        return
    fields = {
        **{f: getattr(event, f) for f in event.__dataclass_fields__},
        **{f: getattr(numbers, f) for f in numbers.__dataclass_fields__ if f != "event_id"},
    }
    for key, value in fields.items():
        if value is None:
            continue
        shown = show_time(value) if isinstance(value, datetime) else str(value)
        console.print(f"{key + ':':<23}{shown}", soft_wrap=True, highlight=False, markup=False)


@app.command("publish")
@handle_errors
def publish(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Publish a draft event.

    Example: tessera events publish 0b6c
    """
    eid = resolve_id(db_url, "event", event_id)
    with service_client(db_url) as tessera:
        event = tessera.publish_event(eid)
    if json_out:
        print_json(event)
        return
    console.print(f"[green]{event.title!r} is {event.status}[/] ({event.id})", soft_wrap=True)


def _cancelled_by_event(db_url: str | None, event_id: object) -> int:
    """Bookings the event's cancellation cancelled (its ledger says, one entry each)."""
    with connect_db(db_url) as conn:
        row = conn.execute(
            "select count(*) from public.ledger where event_id = %s and kind = 'cancelled'"
            " and detail ->> 'reason' = 'event_cancelled'",
            (event_id,),
        ).fetchone()
    return int(row[0]) if row else 0


@app.command("cancel")
@handle_errors
def cancel(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    yes: bool = typer.Option(False, "--yes", "-y", metavar="", help="Do not ask first."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Cancel an event and every booking of it (asks first on a terminal).

    Example: tessera events cancel 0b6c --yes
    """
    eid = resolve_id(db_url, "event", event_id)
    with service_client(db_url) as tessera:
        if not yes and sys.stdin.isatty():
            event = tessera.get_event(eid)
            numbers = tessera.availability(eid)
            question = (
                f"Cancel {event.title!r} ({event.id}) with {numbers.seats_confirmed} seat(s)"
                f" confirmed, {numbers.seats_offered} offered and {numbers.waitlist_count}"
                " booking(s) waiting?"
            )
            if not typer.confirm(question):
                raise fail("not cancelled")
        event = tessera.cancel_event(eid)
    count = _cancelled_by_event(db_url, eid)
    if json_out:
        print_json({**as_data(event), "bookings_cancelled": count})  # type: ignore[dict-item]
        return
    console.print(
        f"[green]{event.title!r} is cancelled[/] ({event.id}); {count} booking(s) cancelled",
        soft_wrap=True,
    )


@app.command("capacity")
@handle_errors
def capacity(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    seats: int = typer.Argument(..., help="The new capacity."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Change an event's capacity (raising it promotes from the waitlist).

    Example: tessera events capacity 0b6c 120
    """
    eid = resolve_id(db_url, "event", event_id)
    with service_client(db_url) as tessera:
        event = tessera.set_capacity(eid, seats)
        numbers = tessera.availability(eid)
    if json_out:
        print_json({**as_data(event), "availability": as_data(numbers)})  # type: ignore[dict-item]
        return
    console.print(
        f"[green]capacity {event.capacity}[/]: {numbers.seats_available} available,"
        f" {numbers.waitlist_count} waiting"
    )
