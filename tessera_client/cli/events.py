"""`tessera events`: create, inspect and manage events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    as_data,
    console,
    fail,
    find_user_id,
    handle_errors,
    parse_uuid,
    print_json,
    service_client,
)

app = typer.Typer(
    help="Manage events: `tessera events create 'Jazz night' --capacity 100 --as org@example.com`."
)


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"not an ISO 8601 time: {value!r} (e.g. 2026-12-24T19:30+01:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("create")
@handle_errors
def create(
    title: str = typer.Argument(..., help="1 to 200 characters."),
    capacity: int = typer.Option(..., help="Seats, 1 to 1,000,000."),
    organizer: str = typer.Option(..., "--as", help="Email of the organizer (a user)."),
    starts_at: str | None = typer.Option(None, help="ISO 8601 start; default: in 7 days."),
    venue: str | None = typer.Option(None),
    max_seats: int | None = typer.Option(None, help="Largest party per booking (default 10)."),
    waitlist: bool = typer.Option(True, help="Let bookings join a waitlist once sold out."),
    waitlist_limit: int | None = typer.Option(None, help="Most people waiting."),
    policy: str = typer.Option("strict", help="Waitlist order: strict or first_fit."),
    mode: str = typer.Option("auto", help="Promotion: auto (confirm) or offer (claim)."),
    offer_hours: float = typer.Option(24.0, help="How long an offer stays open."),
    draft: bool = typer.Option(False, help="Create unpublished."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Create an event organized by a user.

    Example: tessera events create "Jazz night" --capacity 100 --as org@example.com
    """
    organizer_id = find_user_id(db_url, organizer)
    start = _parse_time(starts_at) if starts_at else datetime.now(UTC) + timedelta(days=7)
    with service_client(db_url) as tessera:
        event = tessera.as_user(organizer_id).create_event(
            title,
            capacity,
            start,
            venue=venue,
            max_seats_per_booking=max_seats,
            waitlist_enabled=waitlist,
            waitlist_limit=waitlist_limit,
            waitlist_policy=policy,
            promotion_mode=mode,
            offer_ttl=timedelta(hours=offer_hours),
            publish=not draft,
        )
    if json_out:
        print_json(as_data(event))
        return
    console.print(f"[green]created[/] {event.title!r} [bold]{event.id}[/] ({event.status})")


@app.command("list")
@handle_errors
def list_events(
    status: str | None = typer.Option(None, help="draft, published or cancelled."),
    limit: int = typer.Option(50, min=1),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List events, soonest first.

    Example: tessera events list --status published
    """
    with service_client(db_url) as tessera:
        events = tessera.list_events(status=status, limit=limit)
        numbers = {e.id: tessera.availability(e.id) for e in events}
    if json_out:
        print_json([{**as_data(e), "availability": as_data(numbers[e.id])} for e in events])  # type: ignore[dict-item]
        return
    table = Table("id", "title", "starts", "status", "capacity", "available", "waiting")
    for e in events:
        a = numbers[e.id]
        table.add_row(
            str(e.id), e.title, f"{e.starts_at:%Y-%m-%d %H:%M}", str(e.status), str(e.capacity),
            str(a.seats_available), str(a.waitlist_count),
        )  # fmt: skip
    console.print(table)


@app.command("show")
@handle_errors
def show(
    event_id: str = typer.Argument(..., help="Event id."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Show an event and its availability.

    Example: tessera events show 0b6c…
    """
    eid = parse_uuid(event_id, "EVENT")
    with service_client(db_url) as tessera:
        event = tessera.get_event(eid)
        numbers = tessera.availability(eid)
    if json_out:
        print_json({**as_data(event), "availability": as_data(numbers)})  # type: ignore[dict-item]
        return
    table = Table(show_header=False, box=None)
    for key, value in (as_data(event) | as_data(numbers)).items():  # type: ignore[operator]
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


def _organizer_action(event_id: str, db_url: str | None, json_out: bool, action: str) -> None:
    eid = parse_uuid(event_id, "EVENT")
    with service_client(db_url) as tessera:
        event = getattr(tessera, action)(eid)
    if json_out:
        print_json(as_data(event))
        return
    console.print(f"[green]{event.title!r} is {event.status}[/] ({event.id})")


@app.command("publish")
@handle_errors
def publish(event_id: str, db_url: DbUrl = None, json_out: JsonOut = False) -> None:
    """Publish a draft event.

    Example: tessera events publish 0b6c…
    """
    _organizer_action(event_id, db_url, json_out, "publish_event")


@app.command("cancel")
@handle_errors
def cancel(event_id: str, db_url: DbUrl = None, json_out: JsonOut = False) -> None:
    """Cancel an event and every booking of it.

    Example: tessera events cancel 0b6c…
    """
    _organizer_action(event_id, db_url, json_out, "cancel_event")


@app.command("capacity")
@handle_errors
def capacity(
    event_id: str,
    seats: int = typer.Argument(..., help="The new capacity."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Change an event's capacity (raising it promotes from the waitlist).

    Example: tessera events capacity 0b6c… 120
    """
    eid = parse_uuid(event_id, "EVENT")
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
