"""`tessera users`: people in the local stack's auth.users (hosted Supabase: use its dashboard)."""

from __future__ import annotations

import psycopg
import typer

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    Limit,
    connect_db,
    console,
    fail,
    handle_errors,
    normalize_email,
    print_json,
    print_rows,
    resolve_db_url,
    show_time,
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
    email = normalize_email(email)
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
    limit: Limit = 100,
    after: str | None = typer.Option(None, "--after", help="Start after this user (id or email)."),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """List users, newest first; continue with --after and the last one shown.

    Example: tessera users list --json
    """
    with connect_db(db_url) as conn:
        cursor = None
        if after:
            cursor = conn.execute(
                "select created_at, id from auth.users where id::text = %s or lower(email) = %s",
                (after.strip().lower(), normalize_email(after)),
            ).fetchone()
            if cursor is None:
                raise fail(f"no user {after}")
        rows = conn.execute(
            "select id, email, created_at from auth.users"
            " where %(c)s::timestamptz is null or (created_at, id) < (%(c)s, %(i)s)"
            " order by created_at desc, id desc limit %(n)s",
            {"c": cursor[0] if cursor else None, "i": cursor[1] if cursor else None, "n": limit},
        ).fetchall()
    if json_out:
        print_json([{"id": i, "email": e, "created_at": c} for i, e, c in rows])
        return
    print_rows(
        ("id", "email", "created"),
        [(str(user_id), email, show_time(created)) for user_id, email, created in rows],
        "id",
    )
