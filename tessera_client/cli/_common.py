"""Shared CLI plumbing: options read from TESSERA_* variables, output, and error handling."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        envvar="TESSERA_DB_URL",
        help="PostgreSQL URL (a role like postgres). Default: the local stack.",
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    return os.environ.get("TESSERA_DEBUG", "") not in ("", "0")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """One place turns any failure into a one-line message and exit code 1 (--debug: traceback)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug_enabled():
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise fail(f"{first}") from None

    return wrapper  # type: ignore[return-value]


def resolve_db_url(db_url: str | None) -> str:
    """An explicit URL, else the running local stack's."""
    if db_url:
        return db_url
    from tessera_client._local.stack import LocalStack

    stack = LocalStack()
    if not stack.is_running():
        raise fail(
            "the local stack is not running: start it with `tessera dev up`, or pass --db-url"
        )
    return stack.db_url
