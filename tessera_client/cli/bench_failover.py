"""`tessera bench failover`: the chaos benchmark of the HA formation (docs/ha.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown

from tessera_client.cli._common import JsonOut, console, err_console, fail, print_json


def failover(
    rate: Annotated[
        float | None,
        typer.Option("--rate", envvar="TESSERA_BENCH_RATE", help="Users arriving per second."),
    ] = None,
    seats: Annotated[
        int | None, typer.Option("--seats", envvar="TESSERA_BENCH_SEATS", help="Capacity.")
    ] = None,
    clients: Annotated[
        int | None,
        typer.Option("--clients", envvar="TESSERA_BENCH_CLIENTS", help="Connections."),
    ] = None,
    kill_after: Annotated[
        float | None,
        typer.Option(
            "--kill-after", envvar="TESSERA_BENCH_KILL_AFTER", help="Seconds before the kill."
        ),
    ] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", envvar="TESSERA_BENCH_SMOKE", help="A CI-sized run.")
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            envvar="TESSERA_BENCH_SAVE_DIR",
            help="Directory to write failover-<time>.json to.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Flash sale across a SIGKILLed primary and a planned switchover (pg_auto_failover).

    Builds a throwaway HA formation, so pg_auto_failover must be installed
    (Debian: postgresql-15-auto-failover, pg-auto-failover-cli).

    Example: tessera bench failover --smoke
    """
    from tessera_client.bench.failover import (
        FailoverSettings,
        render_markdown,
        run_failover_bench,
    )

    base = FailoverSettings.for_smoke() if smoke else FailoverSettings()
    changes = {"rate": rate, "seats": seats, "clients": clients, "kill_after": kill_after}
    settings = base.replace(**{k: v for k, v in changes.items() if v is not None})
    # The pool, the driver and the realtime poller log every refused reconnection while the
    # primary is down; the result accounts for every call, so keep the report readable.
    for name in ("psycopg", "tessera_client"):
        logging.getLogger(name).setLevel(logging.ERROR)
    result = asyncio.run(
        run_failover_bench(
            settings, progress=lambda step: err_console.print(f"  {step}", style="dim")
        )
    )
    command = "tessera bench " + shlex.join(sys.argv[2:])
    result["command"] = command
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        path = save / f"failover-{stamp}.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        err_console.print(f"saved {path}")
    if json_out:
        print_json(result)
    else:
        console.print(Markdown(render_markdown(result, command)))
    if not result["ok"]:
        raise fail("some failover checks failed (see the results above)")
