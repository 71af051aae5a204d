"""`tessera dev`: the local stack (a Supabase-compatible PostgreSQL, no Docker needed)."""

from __future__ import annotations

import typer
from rich.table import Table

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
    console.print(f"[green]local stack {verb}[/] at {stack.db_url}")


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
    table = Table(show_header=False, box=None)
    table.add_row("status", "[green]running[/]" if info.running else "[red]stopped[/]")
    table.add_row("database URL", info.db_url)
    table.add_row("admin URL", info.admin_url)
    table.add_row("data dir", str(info.data_dir))
    table.add_row("JWT secret", str(info.jwt_secret_file))
    table.add_row("anon key", info.anon_key or "-")
    table.add_row("service_role key", info.service_role_key or "-")
    console.print(table)
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
        table = Table(show_header=False, box=None)
        table.add_row("status", "[green]running[/]" if info.running else "[red]stopped[/]")
        table.add_row("database URL", info.db_url)
        table.add_row("monitor URL", info.monitor_url)
        table.add_row("data dir", str(info.data_dir))
        table.add_row("anon key", info.anon_key or "-")
        table.add_row("service_role key", info.service_role_key or "-")
        for node in info.nodes:
            state = f"{node.role} ({node.state})" if node.pid else "[red]stopped[/]"
            table.add_row(node.name, f"{state} port {node.port} pid {node.pid or '-'}")
        console.print(table)
    if not info.running:
        raise typer.Exit(1)
