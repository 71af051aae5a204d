"""`tessera db`: apply and inspect migrations (supabase/migrations, Supabase CLI history)."""

from __future__ import annotations

import typer

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    console,
    handle_errors,
    new_table,
    print_json,
    resolve_db_url,
)
from tessera_client.migrations import apply_migrations, migration_status

app = typer.Typer(help="Apply and list migrations: `tessera db migrate`.", no_args_is_help=True)


@app.command()
@handle_errors
def migrate(db_url: DbUrl = None, json_out: JsonOut = False) -> None:
    """Apply pending migrations in order, each in its own transaction.

    Example: tessera db migrate --db-url postgresql://postgres:...@db.example.supabase.co:5432/postgres
    """
    applied = apply_migrations(resolve_db_url(db_url))
    if json_out:
        print_json({"applied": applied})
        return
    if not applied:
        console.print("database is up to date")
    for name in applied:
        console.print(f"[green]applied[/] {name}")


@app.command()
@handle_errors
def status(db_url: DbUrl = None, json_out: JsonOut = False) -> None:
    """List migrations and whether each is applied.

    Example: tessera db status --json
    """
    rows = migration_status(resolve_db_url(db_url))
    if json_out:
        print_json([{"version": m.version, "name": m.name, "applied": done} for m, done in rows])
        return
    table = new_table("version", "name", "state")
    for m, done in rows:
        table.add_row(m.version, m.name, "[green]applied[/]" if done else "[yellow]pending[/]")
    console.print(table)
