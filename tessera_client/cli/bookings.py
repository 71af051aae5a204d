"""`tessera book | cancel | claim | attendees | waitlist` and `tessera bookings list | show`."""

from __future__ import annotations

import csv
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

import typer

from tessera_client._models import Booking, BookingStatus
from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    Limit,
    as_data,
    connect_db,
    console,
    emails_of,
    fail,
    find_user_id,
    handle_errors,
    print_json,
    print_rows,
    resolve_id,
    service_client,
    show_time,
)

app = typer.Typer(
    help="Bookings in every state: `tessera bookings list --event E`, `tessera bookings show B`.",
    no_args_is_help=True,
)

CsvOut = typer.Option(None, "--csv", help="Write CSV to this file (`-`: standard output).")
After = typer.Option(None, "--after", help="Start after this booking id (the last one shown).")


@contextmanager
def _csv_target(target: str) -> Iterator[IO[str]]:
    if target == "-":
        yield sys.stdout
        return
    with Path(target).open("w", newline="") as out:
        yield out


def write_csv(target: str, fields: Sequence[str], rows: Sequence[dict[str, object]]) -> None:
    """Rows as CSV with ISO 8601 times (``target`` ``-`` is standard output)."""
    with _csv_target(target) as out:
        writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def emitted(
    rows: list[dict[str, object]], fields: Sequence[str], csv_file: str | None, json_out: bool
) -> bool:
    """Write CSV (when asked) and JSON (when asked); True when nothing else should print."""
    if csv_file:
        write_csv(csv_file, fields, rows)
    if json_out:
        print_json(rows)
    return json_out or csv_file == "-"


def _print_booking(booking: Booking, json_out: bool) -> None:
    if json_out:
        print_json(booking)
        return
    line = f"booking [bold]{booking.id}[/]: [green]{booking.status}[/], {booking.seats} seat(s)"
    if booking.waitlist_position:
        line += f", position {booking.waitlist_position} on the waitlist"
    if booking.offer_expires_at:
        line += f", offer open until {show_time(booking.offer_expires_at)}"
    console.print(line, soft_wrap=True)


def _owner_of(db_url: str | None, booking_id: uuid.UUID) -> uuid.UUID:
    with connect_db(db_url) as conn:
        found = conn.execute(
            "select user_id from public.bookings where id = %s", (booking_id,)
        ).fetchone()
    if found is None:
        raise fail(f"no booking {booking_id}")
    owner: uuid.UUID = found[0]
    return owner


def book(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    email: str = typer.Option(..., "--as", help="Email of the person booking."),
    seats: int = typer.Option(1, "--seats", help="Party size."),
    key: str | None = typer.Option(None, "--key", help="Idempotency key (retries book once)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Book seats for a user: confirmed, or a place on the waitlist.

    Example: tessera book 0b6c --as ada@example.com --seats 2
    """
    eid = resolve_id(db_url, "event", event_id)
    user_id = find_user_id(db_url, email)
    with service_client(db_url) as tessera:
        booking = tessera.as_user(user_id).book(eid, seats=seats, idempotency_key=key)
    _print_booking(booking, json_out)


def cancel(
    booking_id: str = typer.Argument(..., help="Booking id (or a unique prefix)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Cancel a booking (freed seats go to the waitlist at once).

    Example: tessera cancel 5d1e
    """
    bid = resolve_id(db_url, "booking", booking_id)
    with service_client(db_url) as tessera:
        booking = tessera.cancel(bid)
    _print_booking(booking, json_out)


def claim(
    booking_id: str = typer.Argument(..., help="Booking id of an open offer (or a prefix)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Claim an offer on behalf of its holder.

    Example: tessera claim 5d1e
    """
    bid = resolve_id(db_url, "booking", booking_id)
    owner = _owner_of(db_url, bid)
    with service_client(db_url) as tessera:
        booking = tessera.as_user(owner).claim_offer(bid)
    _print_booking(booking, json_out)


ATTENDEE_FIELDS = ("booking_id", "user_id", "email", "seats", "status", "confirmed_at",
                   "offer_expires_at")  # fmt: skip


def attendees(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    csv_file: str | None = CsvOut,
    limit: Limit = 1000,
    after: str | None = typer.Option(None, "--after", help="Start after this booking id."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List confirmed and offered bookings with attendee emails.

    Example: tessera attendees 0b6c --csv attendees.csv
    """
    eid = resolve_id(db_url, "event", event_id)
    start = resolve_id(db_url, "booking", after) if after else None
    with service_client(db_url) as tessera:
        people = tessera.attendees(eid, limit=limit, after=start)
    if emitted([as_data(x) for x in people], ATTENDEE_FIELDS, csv_file, json_out):  # type: ignore[misc]
        return
    print_rows(
        ("booking", "email", "seats", "status", "since"),
        [(str(p.booking_id), p.email or "-", str(p.seats), str(p.status),
          show_time(p.confirmed_at or p.offer_expires_at)) for p in people],
        "booking",
    )  # fmt: skip
    console.print(f"{len(people)} booking(s), {sum(p.seats for p in people)} seat(s)")
    if csv_file:
        console.print(f"written to {csv_file}")


WAITLIST_FIELDS = ("position", "booking_id", "user_id", "email", "seats", "waitlisted_at")


def waitlist(
    event_id: str = typer.Argument(..., help="Event id (or a unique prefix)."),
    csv_file: str | None = CsvOut,
    limit: Limit = 1000,
    after: str | None = typer.Option(None, "--after", help="Start after this booking id."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Show the waitlist in order: positions, party sizes, waiting since.

    Example: tessera waitlist 0b6c --csv waiting.csv
    """
    eid = resolve_id(db_url, "event", event_id)
    start = resolve_id(db_url, "booking", after) if after else None
    with service_client(db_url) as tessera:
        entries = tessera.waitlist(eid, limit=limit, after=start)
    if emitted([as_data(x) for x in entries], WAITLIST_FIELDS, csv_file, json_out):  # type: ignore[misc]
        return
    print_rows(
        ("#", "booking", "email", "seats", "waiting since"),
        [(str(w.position), str(w.booking_id), w.email or "-", str(w.seats),
          show_time(w.waitlisted_at, seconds=True)) for w in entries],
        "booking",
    )  # fmt: skip
    console.print(f"{len(entries)} waiting, {sum(w.seats for w in entries)} seat(s)")
    if csv_file:
        console.print(f"written to {csv_file}")


def register(app: typer.Typer) -> None:
    for command in (book, cancel, claim, attendees, waitlist):
        app.command()(handle_errors(command))


# -- tessera bookings list | show -----------------------------------------------------------

BOOKING_FIELDS = ("id", "event_id", "user_id", "email", "status", "seats", "waitlist_position",
                  "created_at", "confirmed_at", "waitlisted_at", "offered_at", "offer_expires_at",
                  "cancelled_at", "expired_at")  # fmt: skip


def _with_details(db_url: str | None, bookings: list[Booking]) -> list[dict[str, object]]:
    """Each booking as data, with its holder's email and, if waiting, its position."""
    emails = emails_of(db_url, {b.user_id for b in bookings})
    positions: dict[uuid.UUID, int] = {}
    waiting_events = {b.event_id for b in bookings if b.status == BookingStatus.WAITLISTED}
    if waiting_events:
        with service_client(db_url) as tessera:
            for event_id in waiting_events:
                positions |= {w.booking_id: w.position for w in tessera.waitlist(event_id)}
    rows = []
    for b in bookings:
        row: dict[str, object] = as_data(b)  # type: ignore[assignment]
        row["email"] = emails.get(b.user_id)
        row["waitlist_position"] = positions.get(b.id)
        rows.append(row)
    return rows


@app.command("list")
@handle_errors
def list_bookings(
    event: str | None = typer.Option(None, "--event", help="Only this event's (id or prefix)."),
    status: list[BookingStatus] | None = typer.Option(
        None, "--status", help="Only these states (repeat the option for several)."
    ),
    email: str | None = typer.Option(None, "--as", help="Only this person's (email)."),
    csv_file: str | None = CsvOut,
    limit: Limit = 100,
    after: str | None = After,
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List bookings in every state (confirmed, waitlisted, offered, cancelled, expired).

    Oldest first; continue a long list with --after and the last id shown.

    Example: tessera bookings list --event 0b6c --status waitlisted --status offered
    """
    event_id = resolve_id(db_url, "event", event) if event else None
    user_id = find_user_id(db_url, email) if email else None
    start = resolve_id(db_url, "booking", after) if after else None
    with service_client(db_url) as tessera:
        found = tessera.list_bookings(
            event_id=event_id, user_id=user_id, status=status or None, limit=limit, after=start
        )
    rows = _with_details(db_url, found)
    if emitted(rows, BOOKING_FIELDS, csv_file, json_out):
        return
    lines = []
    for row, b in zip(rows, found, strict=True):
        state = str(b.status)
        if row["waitlist_position"]:
            state += f" #{row['waitlist_position']}"
        lines.append((str(b.id), str(row["email"] or "-"), state, str(b.seats),
                      show_time(b.created_at)))  # fmt: skip
    print_rows(("booking", "email", "status", "seats", "created"), lines, "booking")
    more = f"; next page: --after {found[-1].id}" if len(found) == limit else ""
    console.print(f"{len(found)} booking(s){more}", soft_wrap=True)
    if csv_file:
        console.print(f"written to {csv_file}")


@app.command("show")
@handle_errors
def show(
    booking_id: str = typer.Argument(..., help="Booking id (or a unique prefix)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Show one booking: who, which event, its state and every time it changed.

    Example: tessera bookings show 5d1e
    """
    bid = resolve_id(db_url, "booking", booking_id)
    with service_client(db_url) as tessera:
        booking = tessera.get_booking(bid)
    row = _with_details(db_url, [booking])[0]
    if json_out:
        print_json(row)
        return
    for name in BOOKING_FIELDS:
        value = getattr(booking, name, None)
        text = row[name] if name in ("email", "waitlist_position") else value
        if text is None:
            continue
        shown = show_time(text) if isinstance(text, datetime) else str(text)
        console.print(f"{name + ':':<19}{shown}", soft_wrap=True, highlight=False)
