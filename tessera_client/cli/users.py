"""`tessera users`: people in the local stack's auth.users (hosted Supabase: use its dashboard)."""

from __future__ import annotations

import psycopg
import typer
from rich.table import Table

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    console,
    fail,
    handle_errors,
    print_json,
    resolve_db_url,
)
from tessera_client.local import create_local_user

app = typer.Typer(help="Create and list users: `tessera users create ada@example.com`.")


@app.command("create")
@handle_errors
def create(
    email: str = typer.Argument(..., help="The user's email (their name in the CLI)."),
    password: str | None = typer.Option(None, help="Password for sign-in through the API."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Create a user.

    Example: tessera users create ada@example.com
    """
    if "@" not in email or len(email) > 255:
        raise fail(f"not an email address: {email!r}")
    try:
        user = create_local_user(resolve_db_url(db_url), email, password)
    except psycopg.errors.UniqueViolation:
        raise fail(f"a user with email {email} already exists") from None
    if json_out:
        print_json({"id": str(user.id), "email": user.email})
        return
    console.print(f"[green]created[/] {user.email} [dim]{user.id}[/]")


@app.command("list")
@handle_errors
def list_users(
    limit: int = typer.Option(100, min=1, help="Show at most this many."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List users, newest first.

    Example: tessera users list --json
    """
    with psycopg.connect(resolve_db_url(db_url), autocommit=True) as conn:
        rows = conn.execute(
            "select id, email, created_at from auth.users order by created_at desc limit %s",
            (limit,),
        ).fetchall()
    if json_out:
        print_json([{"id": str(i), "email": e, "created_at": str(c)} for i, e, c in rows])
        return
    table = Table("email", "id", "created")
    for user_id, email, created in rows:
        table.add_row(email, str(user_id), f"{created:%Y-%m-%d %H:%M}")
    console.print(table)
