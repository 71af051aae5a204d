"""Shared CLI plumbing: options read from TESSERA_* variables, output, ids, times and errors."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import psycopg
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from tessera_client import Tessera

console = Console()
err_console = Console(stderr=True)

CONNECT_TIMEOUT = 3  # seconds: a wrong host fails fast instead of hanging

DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        envvar="TESSERA_DB_URL",
        help="PostgreSQL URL (a role like postgres). Default: the local stack.",
        show_default=False,
    ),
]
# A flag: one name (no --no-json) and no metavar (help would show `--json <bool>`).
JsonOut = Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON.")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=10000, help="Show at most this many.")]

F = TypeVar("F", bound=Callable[..., Any])

_debug = False


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    return _debug or os.environ.get("TESSERA_DEBUG", "") not in ("", "0")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(as_data(data), indent=2) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    one_line = escape(" ".join(message.split()))
    err_console.print(f"[bold red]error:[/] {one_line}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


def describe_error(exc: BaseException) -> str:
    """``Class: message [detail] (hint)`` on one line; a TesseraError's detail names ids."""
    message = first_line(exc) or type(exc).__name__
    detail = first_line(getattr(exc, "detail", None) or "")
    hint = first_line(getattr(exc, "hint", None) or "")
    text = f"{type(exc).__name__}: {message}"
    if detail and detail not in message:
        text += f" [{detail}]"
    if hint and hint not in message:
        text += f" ({hint})"
    return text


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
            raise fail(describe_error(exc)) from None

    return wrapper  # type: ignore[return-value]


# -- the database ---------------------------------------------------------------------------


def _where(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"


def resolve_db_url(db_url: str | None) -> str:
    """An explicit URL (checked), else the running local stack's."""
    if db_url:
        try:
            psycopg.conninfo.conninfo_to_dict(db_url)
        except psycopg.ProgrammingError as exc:
            raise fail(
                f"--db-url is not a PostgreSQL URL ({first_line(exc)}); "
                "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            ) from None
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


def connect_db(db_url: str | None) -> psycopg.Connection[Any]:
    """A direct autocommit connection that fails within seconds, with one line, if it cannot."""
    url = resolve_db_url(db_url)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as exc:
        raise fail(f"cannot connect to the database at {_where(url)}: {_reason(exc)}") from None


def _reason(exc: psycopg.OperationalError) -> str:
    # libpq writes one line per address tried ("connection to server at … failed: …"):
    # the last reason is the one a person can act on.
    lines = [line for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    reason = last.rsplit("failed:", 1)[-1].strip()
    return " ".join(reason.removeprefix("FATAL:").split()) or last


@contextmanager
def service_client(db_url: str | None) -> Iterator[Tessera]:
    """A sync SDK client acting as service_role (operators), closed on exit."""
    from tessera_client import Tessera

    url = resolve_db_url(db_url)
    connect_db(url).close()  # fail fast and in one line on a wrong password or host
    with Tessera.connect(url, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT * 2) as tessera:
        yield tessera.as_service()


# -- people and ids -------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """Emails are case-insensitive: stored and looked up lower-cased, as supabase-auth does."""
    return email.strip().lower()


def find_user_id(db_url: str | None, email: str) -> uuid.UUID:
    """The auth.users id for an email (the CLI's way to name people)."""
    address = normalize_email(email)
    with connect_db(db_url) as conn:
        row = conn.execute(
            "select id from auth.users where lower(email) = %s", (address,)
        ).fetchone()
    if row is None:
        raise fail(
            f"no user with email {address}; create one with `tessera users create {address}`"
        )
    user_id: uuid.UUID = row[0]
    return user_id


def emails_of(db_url: str | None, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not user_ids:
        return {}
    with connect_db(db_url) as conn:
        rows = conn.execute(
            "select id, email from auth.users where id = any(%s)", (list(user_ids),)
        ).fetchall()
    return {user_id: email for user_id, email in rows}


_PREFIX = re.compile(r"^[0-9a-f-]+$")
MIN_PREFIX = 4
_TABLES = {"event": "public.events", "booking": "public.bookings"}


def resolve_id(db_url: str | None, kind: Literal["event", "booking"], value: str) -> uuid.UUID:
    """A full id, or the one id starting with ``value`` (at least 4 hex digits), like git.

    Raises:
        typer.Exit: Not an id, no match, or an ambiguous prefix (the candidates are listed).
    """
    text = value.strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    if not _PREFIX.match(text) or len(text.replace("-", "")) < MIN_PREFIX:
        raise fail(
            f"{kind} id must be a UUID or a prefix of at least {MIN_PREFIX} hex digits,"
            f" got {value!r}"
        )
    with connect_db(db_url) as conn:
        rows = conn.execute(
            f"select id from {_TABLES[kind]} where id::text like %s order by id limit 6",
            (text + "%",),
        ).fetchall()
    if not rows:
        raise fail(f"no {kind} id starts with {text}")
    if len(rows) > 1:
        shown = ", ".join(str(r[0]) for r in rows[:5]) + (", …" if len(rows) > 5 else "")
        raise fail(f"{kind} id prefix {text} is ambiguous: it matches {shown}")
    found: uuid.UUID = rows[0][0]
    return found


# -- time -----------------------------------------------------------------------------------


def parse_time(value: str, option: str) -> datetime:
    """ISO 8601; a time without a zone means the local zone (``TZ``)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(
            f"{option}: not an ISO 8601 time: {value!r} (e.g. 2026-12-24T19:30,"
            " local time, or 2026-12-24T19:30+01:00)"
        ) from None
    return parsed if parsed.tzinfo else parsed.astimezone()  # naive: local wall-clock time


def show_time(value: datetime | None, seconds: bool = False) -> str:
    """A time in the local zone, naming the zone (``2026-12-24 19:30 CET``)."""
    if value is None:
        return "-"
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "") + " %Z")


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration (``P1DT2H``, ``PT90M`` is written ``PT1H30M``), machine-readable."""
    total = int(value.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    text = (f"{days}D" if days else "") + (f"T{clock}" if clock else "")
    return f"{sign}P{text or 'T0S'}"


def as_data(obj: object) -> object:
    """Models (dataclasses), lists and plain values as JSON data: ISO 8601 times and durations."""
    if isinstance(obj, list | tuple):
        return [as_data(item) for item in obj]
    if isinstance(obj, dict):
        return {str(k): as_data(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return iso_duration(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    return obj


def print_rows(headers: Sequence[str], rows: Sequence[Sequence[str]], id_header: str) -> None:
    """Rows as a table when it fits the terminal, else one block per row; never cut an id.

    ``id_header`` names the column holding the row's id: in the block form it heads the
    block, so it can be copied whole at any width (80 columns included).
    """
    width = [len(h) for h in headers]
    for row in rows:
        width = [max(w, len(cell)) for w, cell in zip(width, row, strict=True)]
    if sum(width) + 2 * len(headers) <= console.width:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for header in headers:
            table.add_column(header, no_wrap=True)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        return
    at = list(headers).index(id_header)
    for row in rows:
        rest = " · ".join(
            f"{h} {cell}" for i, (h, cell) in enumerate(zip(headers, row, strict=True))
            if i != at and cell not in ("", "-")
        )  # fmt: skip
        console.print(Text(row[at], style="bold"), soft_wrap=True)
        console.print(Padding(Text(rest), (0, 0, 0, 2)))


def new_table(*headers: str) -> Table:
    """A table whose cells wrap instead of being cut."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def id_column(table: Table, header: str = "id") -> None:
    """A column for UUIDs: always 36 characters wide, never cut (other columns give way)."""
    table.add_column(header, min_width=36, no_wrap=True, overflow="fold")
