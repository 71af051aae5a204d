"""The `tessera` command: the operator's tool for Tessera."""

from __future__ import annotations

import os

import typer

from tessera_client.cli import bench, bookings, db, demo, dev, doctor, events, users, watch

app = typer.Typer(
    name="tessera",
    help="Tessera: event booking whose rules live in PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(events.app, name="events")
app.add_typer(bench.app, name="bench")
bookings.register(app)
app.command()(watch.watch)
app.command()(demo.demo)
app.command()(doctor.doctor)


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", envvar="TESSERA_DEBUG", help="Show tracebacks."),
) -> None:
    """Tessera: event booking whose rules live in PostgreSQL."""
    if debug:
        os.environ["TESSERA_DEBUG"] = "1"


def run() -> None:
    app()
