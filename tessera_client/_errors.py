"""Errors raised by Tessera, the same classes whatever the transport.

Every error keeps the four fields PostgreSQL and PostgREST report: ``code`` (the SQLSTATE),
``message``, ``detail`` and ``hint``. Catch the class, never match the message text::

    TesseraError                  any failure; code, message, detail, hint
    ├── EventNotFound             TS001
    ├── BookingNotFound           TS002
    ├── SalesClosed               TS003
    ├── InvalidSeats              TS004
    ├── AlreadyBooked             TS005
    ├── SoldOut                   TS006
    ├── InvalidTransition         TS007
    ├── CapacityConflict          TS008
    ├── RateLimited               TS009
    ├── IdempotencyConflict       TS010
    ├── QuotaExceeded             TS011
    ├── InvalidParameter          22023, and any other class 22 (data exception)
    ├── PermissionDenied          42501
    ├── AuthenticationFailed      class 28, rejected passwords and tokens (PGRST301-303)
    ├── TransactionConflict       40001, 40P01 (class 40); retried before it is raised
    ├── LimitExceeded             class 54
    ├── TimedOut                  57014 statement_timeout, 55P03 lock_timeout
    ├── InternalError             class XX: a broken invariant, a bug to report
    ├── SchemaMismatch            the database's schema is older than this SDK needs
    └── TransportError            the database or the API did not answer
        ├── Unavailable           nothing was done; retried before it is raised
        └── OutcomeUnknown        08007: the reply was lost, the call may have taken effect

A code with no class of its own falls back to the class of its two-character SQLSTATE class
(as psycopg does), then to :class:`TesseraError`.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, ClassVar

__all__ = [
    "AlreadyBooked",
    "AuthenticationFailed",
    "BookingNotFound",
    "CapacityConflict",
    "EventNotFound",
    "IdempotencyConflict",
    "InternalError",
    "InvalidParameter",
    "InvalidSeats",
    "InvalidTransition",
    "LimitExceeded",
    "OutcomeUnknown",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "SalesClosed",
    "SchemaMismatch",
    "SoldOut",
    "TesseraError",
    "TimedOut",
    "TransactionConflict",
    "TransportError",
    "Unavailable",
    "error_class_for",
    "error_for",
]

_BY_CODE: dict[str, type[TesseraError]] = {}
# TS009's detail ends with the wait: "… retry_after_seconds=N" (tessera.enforce_rate_limit).
_RETRY_AFTER = re.compile(r"\bretry_after_seconds=(\d+)")
_BY_CLASS: dict[str, type[TesseraError]] = {}


class TesseraError(Exception):
    """Tessera could not do what was asked."""

    code: str
    message: str
    detail: str | None
    hint: str | None

    default_code: ClassVar[str] = "XX000"

    def __init_subclass__(
        cls,
        code: str | None = None,
        aliases: tuple[str, ...] = (),
        sqlstate_class: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.default_code = code
            _BY_CODE[code] = cls
        for alias in aliases:
            _BY_CODE[alias] = cls
        if sqlstate_class is not None:
            _BY_CLASS[sqlstate_class] = cls

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message or self.default_message()
        self.detail = detail
        self.hint = hint
        super().__init__(self.message)

    @classmethod
    def default_message(cls) -> str:
        """The class docstring's first paragraph, on one line."""
        doc = inspect.cleandoc(cls.__doc__ or cls.__name__)
        return " ".join(doc.split("\n\n", 1)[0].split())

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep every field across pickling (multiprocessing, task queues).
        return (_rebuild, (type(self), self.message, self.code, self.detail, self.hint))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"detail={self.detail!r}, hint={self.hint!r})"
        )


class EventNotFound(TesseraError, code="TS001"):
    """The event does not exist, or the caller may not see it."""


class BookingNotFound(TesseraError, code="TS002"):
    """The booking does not exist, or it is not the caller's."""


class SalesClosed(TesseraError, code="TS003"):
    """Sales are closed for this event."""


class InvalidSeats(TesseraError, code="TS004"):
    """The number of seats is outside what this event allows per booking."""


class AlreadyBooked(TesseraError, code="TS005"):
    """The caller already has an active booking for this event."""


class SoldOut(TesseraError, code="TS006"):
    """The event is sold out and its waitlist is closed or full."""


class InvalidTransition(TesseraError, code="TS007"):
    """The booking or event is not in a state that allows this change."""


class CapacityConflict(TesseraError, code="TS008"):
    """The new capacity is below the seats already confirmed or offered."""


class RateLimited(TesseraError, code="TS009"):
    """Too many requests; wait a moment and try again.

    Attributes:
        retry_after: Whole seconds until the caller's window has room again, from the
            error's detail (``… retry_after_seconds=N``); ``None`` when the detail does
            not say.
    """

    @property
    def retry_after(self) -> int | None:
        found = _RETRY_AFTER.search(self.detail or "")
        return int(found.group(1)) if found else None


class IdempotencyConflict(TesseraError, code="TS010"):
    """The idempotency key already names a booking made with other parameters."""


class QuotaExceeded(TesseraError, code="TS011"):
    """The user holds as many of something as allowed (e.g. open events per organizer)."""


class InvalidParameter(TesseraError, code="22023", sqlstate_class="22"):
    """A parameter has an invalid value."""


class PermissionDenied(TesseraError, code="42501"):
    """The caller is not allowed to do this."""


class AuthenticationFailed(
    TesseraError, code="28000", aliases=("PGRST301", "PGRST302", "PGRST303"), sqlstate_class="28"
):
    """The credentials or the access token were rejected."""


class TransactionConflict(TesseraError, code="40001", sqlstate_class="40"):
    """The transaction clashed with a concurrent one and was rolled back; it is safe to retry."""


class LimitExceeded(TesseraError, code="54000", sqlstate_class="54"):
    """A limit of the database was exceeded."""


class TimedOut(TesseraError, code="57014", aliases=("55P03",)):
    """The call took longer than statement_timeout or lock_timeout allow; nothing was done."""


class InternalError(TesseraError, code="XX000", sqlstate_class="XX"):
    """Tessera's data broke one of its own invariants; this is a bug worth reporting."""


class SchemaMismatch(TesseraError):
    """The database's Tessera schema is older than this SDK needs; apply the migrations.

    Raised by a client's first call, which checks ``public.tessera_schema_version()``
    once. ``code`` is the server's when the function is missing (42883, or PGRST202 through
    PostgREST), else 0A000 (feature_not_supported); ``detail`` gives both versions.
    """

    default_code = "0A000"  # not registered: a SQLSTATE of its own would be the server's


class TransportError(TesseraError):
    """The database or the API could not be reached or did not answer."""

    default_code = "08006"  # connection_failure; not registered: 08* is Unavailable


class Unavailable(
    TransportError,
    code="08001",
    aliases=("57P01", "57P02", "57P03", "PGRST000", "PGRST001", "PGRST002", "PGRST003"),
    sqlstate_class="08",
):
    """The database or the API is unavailable; nothing was done."""


class OutcomeUnknown(TransportError, code="08007"):
    """The connection was lost after the call was sent; it may or may not have taken effect."""


def _rebuild(
    cls: type[TesseraError], message: str, code: str, detail: str | None, hint: str | None
) -> TesseraError:
    return cls(message, code=code, detail=detail, hint=hint)


def error_class_for(code: str | None) -> type[TesseraError]:
    """The class for a SQLSTATE (or PostgREST code): exact match, then its class, then the base.

    Example:
        >>> error_class_for("TS006").__name__
        'SoldOut'
        >>> error_class_for("22P02").__name__
        'InvalidParameter'
    """
    if not code:
        return TesseraError
    return _BY_CODE.get(code) or _BY_CLASS.get(code[:2]) or TesseraError


def error_for(
    code: str | None,
    message: str | None = None,
    detail: str | None = None,
    hint: str | None = None,
) -> TesseraError:
    """Build the error a server reported, as an instance of its class."""
    cls = error_class_for(code)
    return cls(message, code=code or None, detail=detail, hint=hint)
