"""`tessera worker`: expire unclaimed offers on a server without pg_cron."""

from __future__ import annotations

import time

import typer

from tessera_client.cli._common import (
    DbUrl,
    JsonOut,
    console,
    handle_errors,
    print_json,
    service_client,
)


@handle_errors
def worker(
    every: float = typer.Option(30.0, "--every", min=1.0, help="Seconds between two runs."),
    once: bool = typer.Option(
        False, "--once", metavar="", help="Run expire_offers() once and exit."
    ),
    db_url: DbUrl = None,
    json_out: JsonOut = False,
) -> None:
    """Run expire_offers() every N seconds, passing seats of lapsed offers on.

    Needed only where the server has no pg_cron (`tessera dev up` says so). Ctrl-C stops.

    Example: tessera worker --every 30
    """
    with service_client(db_url) as tessera:
        while True:
            expired = tessera.expire_offers()
            if json_out:
                print_json({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "expired": expired})
            elif expired or once:
                console.print(f"{time.strftime('%H:%M:%S %Z')}: {expired} offer(s) expired")
            if once:
                return
            try:
                time.sleep(every)
            except KeyboardInterrupt:
                return
