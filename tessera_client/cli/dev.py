"""`tessera dev`: the local stack (a Supabase-compatible PostgreSQL, no Docker needed)."""

from __future__ import annotations

import typer

from tessera_client._local import ha
from tessera_client._local.stack import LocalStack
from tessera_client.cli._common import JsonOut, console, fail, handle_errors, print_json

app = typer.Typer(
    help="Run the local stack: `tessera dev up`, then `tessera dev status` for its URL and keys.",
    no_args_is_help=True,
)


@app.command()
@handle_errors
def up(
    ha_formation: bool = typer.Option(
        False, "--ha", envvar="TESSERA_HA", help="A primary, a synchronous standby and a monitor."
    ),
    json_out: JsonOut = False,
) -> None:
    """Start the local stack (initialise and migrate on first run). A no-op when running.

    Example: tessera dev up        (or `tessera dev up --ha`, see docs/ha.md)
    """
    if ha_formation or ha.is_formation():
        _up_ha(json_out)
        return
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
    stopped = ha.HaFormation().down() if ha.is_formation() else LocalStack().down()
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
    if ha.is_formation():
        _status_ha(json_out)
        return
    info = LocalStack().status()
    if json_out:
        print_json(info.as_dict())
        if not info.running:
            raise typer.Exit(1)
        return
    _print_pairs(
        [
            ("status", "[green]running[/]" if info.running else "[red]stopped[/]"),
            ("database URL", info.db_url),
            ("admin URL", info.admin_url),
            ("data dir", str(info.data_dir)),
            ("JWT secret", str(info.jwt_secret_file)),
            ("offers expire", info.offer_expiry),
            ("anon key", info.anon_key or "-"),
            ("service_role key", info.service_role_key or "-"),
        ]
    )
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
    if ha.is_formation():
        raise fail(
            "reset is for the single-node stack; for HA: `tessera dev down`, delete the data dir"
        )
    stack = LocalStack()
    stack.reset()
    if json_out:
        print_json({"reset": True, "db_url": stack.db_url})
        return
    console.print(f"[green]local database recreated[/] at {stack.db_url}")


@app.command()
@handle_errors
def failover(json_out: JsonOut = False) -> None:
    """Planned switchover of the HA formation: the standby becomes the primary.

    Example: tessera dev failover
    """
    if not ha.is_formation():
        raise fail("no HA formation here; start one with `tessera dev up --ha`")
    primary = ha.HaFormation().switchover()
    if json_out:
        print_json({"primary": primary})
        return
    console.print(f"[green]switched over[/]: {primary} is the primary")


def _up_ha(json_out: bool) -> None:
    formation = ha.HaFormation()
    started = formation.up(progress=lambda step: console.print(f"  {step}", style="dim"))
    info = formation.status()
    if json_out:
        print_json({"started": started, **info.as_dict()})
        return
    verb = "started" if started else "already running"
    console.print(f"[green]HA formation {verb}[/] at {info.db_url}")


def _status_ha(json_out: bool) -> None:
    info = ha.HaFormation().status()
    if json_out:
        print_json(info.as_dict())
    else:
        rows = [
            ("status", "[green]running[/]" if info.running else "[red]stopped[/]"),
            ("database URL", info.db_url),
            ("monitor URL", info.monitor_url),
            ("data dir", str(info.data_dir)),
            ("anon key", info.anon_key or "-"),
            ("service_role key", info.service_role_key or "-"),
        ]
        for node in info.nodes:
            state = f"{node.role} ({node.state})" if node.pid else "[red]stopped[/]"
            rows.append((node.name, f"{state} port {node.port} pid {node.pid or '-'}"))
        _print_pairs(rows)
    if not info.running:
        raise typer.Exit(1)


def _print_pairs(rows: list[tuple[str, str]]) -> None:
    """One "name: value" line each, never cut: keys and URLs are copied from here."""
    for name, value in rows:
        console.print(f"{name + ':':<18}{value}", soft_wrap=True, highlight=False)
