"""`tessera offers`: offers made from waitlists."""

from __future__ import annotations

import typer

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    console,
    handle_errors,
    print_json,
    service_client,
)

app = typer.Typer(help="Offers from waitlists: `tessera offers expire`.", no_args_is_help=True)


@app.command("expire")
@handle_errors
def expire(db_url: DbUrl = None, json_out: JsonOut = False) -> None:
    """Expire offers past their deadline now and pass their seats on (expire_offers()).

    Example: tessera offers expire
    """
    with service_client(db_url) as tessera:
        expired = tessera.expire_offers()
    if json_out:
        print_json({"expired": expired})
        return
    console.print(f"{expired} offer(s) expired")
