"""`tessera doctor`: check the database's invariants and name every problem found."""

from __future__ import annotations

import uuid

import psycopg
import typer

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    console,
    handle_errors,
    new_table,
    print_json,
    resolve_db_url,
    resolve_id,
)

# The checks public.check_invariants() runs, in its order, with what each one promises.
CHECKS = {
    "no_oversell": "no event has more seats confirmed or offered than its capacity",
    "counters_agree": "seat blocks and queue counters agree with the booking rows",
    "one_active_booking": "at most one active booking per user per event",
    "waitlist_positions": "waiting bookings have distinct tickets (positions 1..n)",
    "waitlist_fifo": "strict waitlists were served first in, first out",
    "waitlist_served": "nobody waits while seats they fit are free",
    "ledger_complete": "replaying the ledger gives every booking's current status",
    "no_orphans": "every booking belongs to an existing event",
}


def run_checks(db_url: str, event_id: uuid.UUID | None = None) -> list[dict[str, object]]:
    """Every problem public.check_invariants() reports (empty: healthy)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(
            "select check_name, event_id, booking_id, problem from public.check_invariants(%s)",
            (event_id,),
        )
        return [
            {
                "check": c,
                "event_id": str(e) if e else None,
                "booking_id": str(b) if b else None,
                "problem": p,
            }
            for c, e, b, p in cur.fetchall()
        ]


@handle_errors
def doctor(
    event: str | None = typer.Option(None, help="Check only this event (id or prefix)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Check the booking invariants; exit code 1 when any fails.

    Example: tessera doctor --json
    """
    event_id = resolve_id(db_url, "event", event) if event else None
    problems = run_checks(resolve_db_url(db_url), event_id)
    if json_out:
        print_json({"ok": not problems, "problems": problems})
    else:
        table = new_table("check", "result", "what it guarantees")
        for name, promise in CHECKS.items():
            count = sum(1 for p in problems if p["check"] == name)
            result = "[green]ok[/]" if not count else f"[red]{count} problem(s)[/]"
            table.add_row(name, result, promise)
        console.print(table)
        for p in problems:
            console.print(
                f"[red]{p['check']}[/] event={p['event_id']} booking={p['booking_id']}: "
                f"{p['problem']}"
            )
    if problems:
        raise typer.Exit(1)
