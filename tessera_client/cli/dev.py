"""`tessera dev`: the local stack (a Supabase-compatible PostgreSQL, no Docker needed)."""

from __future__ import annotations

import typer

from tessera_client._local.stack import LocalStack
from tessera_client.cli._common import JsonOut, console, handle_errors, print_json

app = typer.Typer(
    help="Run the local stack: `tessera dev up`, then `tessera dev status` for its URL and keys.",
    no_args_is_help=True,
)


@app.command()
@handle_errors
def up(json_out: JsonOut = False) -> None:
    """Start the local stack (initialise and migrate on first run). A no-op when running.

    Example: tessera dev up
    """
    stack = LocalStack()
    started = stack.up()
    if json_out:
        print_json({"started": started, **stack.status().as_dict()})
        return
    verb = "started" if started else "already running"
    console.print(f"[green]local stack {verb}[/] at {stack.db_url}", soft_wrap=True)
    console.print(f"offers expire: {stack.offer_expiry}", soft_wrap=True)


@app.command()
@handle_errors
def down(json_out: JsonOut = False) -> None:
    """Stop the local stack; data is kept for the next `up`.

    Example: tessera dev down
    """
    stopped = LocalStack().down()
    if json_out:
        print_json({"stopped": stopped})
        return
    console.print("local stack stopped" if stopped else "local stack was not running")


@app.command()
@handle_errors
def status(json_out: JsonOut = False) -> None:
    """Show whether the stack runs, its database URL, JWT secret location and API keys.

    Example: tessera dev status --json
    """
    info = LocalStack().status()
    if json_out:
        print_json(info.as_dict())
        if not info.running:
            raise typer.Exit(1)
        return
    # One "name: value" line each, never cut: keys and URLs are copied from here.
    for name, value in (
        ("status", "[green]running[/]" if info.running else "[red]stopped[/]"),
        ("database URL", info.db_url),
        ("admin URL", info.admin_url),
        ("data dir", str(info.data_dir)),
        ("JWT secret", str(info.jwt_secret_file)),
        ("offers expire", info.offer_expiry),
        ("anon key", info.anon_key or "-"),
        ("service_role key", info.service_role_key or "-"),
    ):
        console.print(f"{name + ':':<18}{value}", soft_wrap=True, highlight=False)
    if not info.running:
        raise typer.Exit(1)


@app.command()
@handle_errors
def reset(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_out: JsonOut = False,
) -> None:
    """Recreate the local database and re-apply all migrations (all data is lost).

    Example: tessera dev reset --yes
    """
    if not yes and not typer.confirm("Delete all local data and re-apply migrations?"):
        raise typer.Abort()
    stack = LocalStack()
    stack.reset()
    if json_out:
        print_json({"reset": True, "db_url": stack.db_url})
        return
    console.print(f"[green]local database recreated[/] at {stack.db_url}")
