"""`tessera book | cancel | claim | attendees | waitlist`: bookings, as operators see them."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import psycopg
import typer
from rich.table import Table

from tessera_client._models import Booking
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
    resolve_db_url,
    service_client,
)


def _print_booking(booking: Booking, json_out: bool) -> None:
    if json_out:
        print_json(as_data(booking))
        return
    line = f"booking [bold]{booking.id}[/]: [green]{booking.status}[/], {booking.seats} seat(s)"
    if booking.waitlist_position:
        line += f", position {booking.waitlist_position} on the waitlist"
    if booking.offer_expires_at:
        line += f", offer open until {booking.offer_expires_at:%Y-%m-%d %H:%M %Z}"
    console.print(line)


def _owner_of(db_url: str | None, booking_id: uuid.UUID) -> uuid.UUID:
    with psycopg.connect(resolve_db_url(db_url), autocommit=True) as conn:
        row = conn.execute("select user_id from public.bookings where id = %s", (booking_id,))
        found = row.fetchone()
    if found is None:
        raise fail(f"no booking {booking_id}")
    owner: uuid.UUID = found[0]
    return owner


def book(
    event_id: str = typer.Argument(..., help="Event id."),
    email: str = typer.Option(..., "--as", help="Email of the person booking."),
    seats: int = typer.Option(1, "--seats", help="Party size."),
    key: str | None = typer.Option(None, "--key", help="Idempotency key (retries book once)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Book seats for a user: confirmed, or a place on the waitlist.

    Example: tessera book 0b6c… --as ada@example.com --seats 2
    """
    eid = parse_uuid(event_id, "EVENT")
    user_id = find_user_id(db_url, email)
    with service_client(db_url) as tessera:
        booking = tessera.as_user(user_id).book(eid, seats=seats, idempotency_key=key)
    _print_booking(booking, json_out)


def cancel(
    booking_id: str = typer.Argument(..., help="Booking id."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Cancel a booking (freed seats go to the waitlist at once).

    Example: tessera cancel 5d1e…
    """
    bid = parse_uuid(booking_id, "BOOKING")
    with service_client(db_url) as tessera:
        booking = tessera.cancel(bid)
    _print_booking(booking, json_out)


def claim(
    booking_id: str = typer.Argument(..., help="Booking id of an open offer."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Claim an offer on behalf of its holder.

    Example: tessera claim 5d1e…
    """
    bid = parse_uuid(booking_id, "BOOKING")
    owner = _owner_of(db_url, bid)
    with service_client(db_url) as tessera:
        booking = tessera.as_user(owner).claim_offer(bid)
    _print_booking(booking, json_out)


def attendees(
    event_id: str = typer.Argument(..., help="Event id."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write them to this CSV file."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List confirmed and offered bookings with attendee emails.

    Example: tessera attendees 0b6c… --csv attendees.csv
    """
    eid = parse_uuid(event_id, "EVENT")
    with service_client(db_url) as tessera:
        people = tessera.attendees(eid)
    rows = [as_data(p) for p in people]
    if csv_file:
        with csv_file.open("w", newline="") as out:
            fields = ["booking_id", "user_id", "email", "seats", "status", "confirmed_at",
                      "offer_expires_at"]  # fmt: skip
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)  # type: ignore[arg-type]
    if json_out:
        print_json(rows)
        return
    table = Table("email", "seats", "status", "since", "booking")
    for p in people:
        since = p.confirmed_at or p.offer_expires_at
        table.add_row(p.email or "-", str(p.seats), str(p.status),
                      f"{since:%Y-%m-%d %H:%M}" if since else "-", str(p.booking_id))  # fmt: skip
    console.print(table)
    console.print(f"{len(people)} booking(s), {sum(p.seats for p in people)} seat(s)")
    if csv_file:
        console.print(f"written to {csv_file}")


def waitlist(
    event_id: str = typer.Argument(..., help="Event id."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Show the waitlist in order: positions, party sizes, waiting since.

    Example: tessera waitlist 0b6c…
    """
    eid = parse_uuid(event_id, "EVENT")
    with service_client(db_url) as tessera:
        entries = tessera.waitlist(eid)
    if json_out:
        print_json(as_data(entries))
        return
    table = Table("position", "email", "seats", "waiting since", "booking")
    for w in entries:
        table.add_row(str(w.position), w.email or "-", str(w.seats),
                      f"{w.waitlisted_at:%Y-%m-%d %H:%M:%S}", str(w.booking_id))  # fmt: skip
    console.print(table)
    console.print(f"{len(entries)} waiting, {sum(w.seats for w in entries)} seat(s)")


def register(app: typer.Typer) -> None:
    for command in (book, cancel, claim, attendees, waitlist):
        app.command()(handle_errors(command))
