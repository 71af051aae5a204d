"""Shared CLI plumbing: options read from TESSERA_* variables, output, and error handling."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import psycopg
import typer
from rich.console import Console

if TYPE_CHECKING:
    from tessera_client import Tessera

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
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
            hint = getattr(exc, "hint", None)
            if hint and hint in first:
                hint = None
            raise fail(f"{type(exc).__name__}: {first}" + (f" ({hint})" if hint else "")) from None

    return wrapper  # type: ignore[return-value]


def resolve_db_url(db_url: str | None) -> str:
    """An explicit URL, else the running local stack's."""
    if db_url:
        return db_url
    from tessera_client._local import ha
    from tessera_client._local.stack import LocalStack

    if ha.is_formation():  # `tessera dev up --ha`: the multi-host URL
        return ha.HaFormation().db_url
    stack = LocalStack()
    if not stack.is_running():
        raise fail(
            "the local stack is not running: start it with `tessera dev up`, or pass --db-url"
        )
    return stack.db_url


@contextmanager
def service_client(db_url: str | None) -> Iterator[Tessera]:
    """A sync SDK client acting as service_role (operators), closed on exit."""
    from tessera_client import Tessera

    with Tessera.connect(resolve_db_url(db_url), min_size=1, max_size=4) as tessera:
        yield tessera.as_service()


def find_user_id(db_url: str | None, email: str) -> uuid.UUID:
    """The auth.users id for an email (the CLI's way to name people)."""
    with psycopg.connect(resolve_db_url(db_url), autocommit=True) as conn:
        row = conn.execute("select id from auth.users where email = %s", (email,)).fetchone()
    if row is None:
        raise fail(f"no user with email {email}; create one with `tessera users create {email}`")
    user_id: uuid.UUID = row[0]
    return user_id


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise fail(f"{what} must be a UUID, got {value!r}") from None


def as_data(obj: object) -> object:
    """A model (dataclass), list of models or plain value as JSON-friendly data."""
    if isinstance(obj, list):
        return [as_data(item) for item in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID | datetime | timedelta):
        return str(obj)
    return obj
