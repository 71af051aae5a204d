"""The `tessera` command: the operator's tool for Tessera."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from tessera_client.cli import (
    bench,
    bookings,
    db,
    demo,
    dev,
    doctor,
    events,
    offers,
    users,
    watch,
    worker,
)
from tessera_client.cli._common import err_console, set_debug


def _without_debug(args: list[str]) -> tuple[list[str], bool]:
    """``--debug`` may stand anywhere on the line (before a ``--``): take it out."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return head + args[end:], len(head) != end


_terminated = False
"""Whether SIGTERM arrived: the command then exits 143 whatever its clean-up reported."""


def _on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C, so that what the command started (a throwaway local stack, pools,
    # subprocesses) is stopped by the same clean-up code instead of being left running.
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


class _TesseraGroup(TyperGroup):
    """The top-level command: ``--debug`` anywhere, and every usage error on one line."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv, debug = _without_debug(list(sys.argv[1:] if args is None else args))
        set_debug(debug)
        time.tzset()  # naive times mean the local zone: honour TZ as it is now
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            if not standalone_mode:
                return super().main(argv, prog_name, complete_var, False, **extra)
            try:
                try:
                    code = super().main(argv, prog_name, complete_var, False, **extra)
                except typer.Abort:
                    err_console.print("[bold red]error:[/] aborted", highlight=False)
                    sys.exit(1)
                except Exception as exc:
                    # Typer's (vendored) click usage errors: known by their shape, not class.
                    if not hasattr(exc, "format_message") or not hasattr(exc, "exit_code"):
                        raise
                    context = getattr(exc, "ctx", None)
                    if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
                        typer.echo(context.get_help())
                        sys.exit(0)
                    where = context.command_path if context is not None else "tessera"
                    message = escape(" ".join(exc.format_message().split()))
                    err_console.print(f"[bold red]error:[/] {message} (see `{where} --help`)",
                                      highlight=False, soft_wrap=True)  # fmt: skip
                    sys.exit(exc.exit_code)
                sys.exit(code if isinstance(code, int) else 0)
            except BaseException:
                if _terminated:  # whatever the clean-up reported: terminated by SIGTERM
                    sys.exit(128 + signal.SIGTERM)
                raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            set_debug(False)


app = typer.Typer(
    cls=_TesseraGroup,
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
app.add_typer(bookings.app, name="bookings")
app.add_typer(offers.app, name="offers")
app.add_typer(bench.app, name="bench")
bookings.register(app)
app.command()(watch.watch)
app.command()(demo.demo)
app.command()(doctor.doctor)
app.command()(worker.worker)


def _print_version(value: bool) -> None:
    if value:
        from tessera_client import __version__

        typer.echo(f"tessera {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", metavar="", help="Show tracebacks (accepted anywhere on the line)."
    ),
    version: bool = typer.Option(
        False,
        "--version",
        metavar="",
        callback=_print_version,
        is_eager=True,
        help="Print the version.",
    ),
) -> None:
    """Tessera: event booking whose rules live in PostgreSQL."""


def run() -> None:
    app()
