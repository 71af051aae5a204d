"""What every transport provides to the client.

A transport turns "call ``public.fn`` with these arguments as this identity" and "select
these rows of ``public.table`` as this identity" into one PostgreSQL transaction that runs
with the identity's role and JWT claims, so row level security and ``auth.uid()`` behave
the same whichever way the call travels. It raises only :mod:`tessera_client._errors`
classes; in particular it tells a failure where nothing was done (:class:`Unavailable`,
:class:`TransactionConflict`) from one where the call may have taken effect
(:class:`OutcomeUnknown`), which decides whether the client may retry.

It also provides the notifier behind realtime subscriptions (:meth:`Transport.realtime`):
a ledger poller for direct connections, Supabase Realtime channels for the Supabase API.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tessera_client._identity import Identity
from tessera_client._transports._notifier import Notifier

__all__ = ["Filter", "Operator", "Returns", "Select", "Transport"]

Returns = Literal["one", "many", "scalar"]
"""What a function call returns: one row, a set of rows, or a single value."""

Operator = Literal["eq", "neq", "gt", "gte", "lt", "lte"]

OPERATORS_SQL: Mapping[Operator, str] = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
}


@dataclass(frozen=True, slots=True)
class Filter:
    """``column <op> value``, as PostgREST's ``column=op.value``."""

    column: str
    op: Operator
    value: Any


@dataclass(frozen=True, slots=True)
class Select:
    """A plain read of one table, which row level security filters.

    Attributes:
        table: A table of the ``public`` schema.
        columns: The columns to read; all of them when empty.
        filters: Conditions joined with ``and``.
        order: ``(column, descending)`` pairs.
        limit: At most this many rows.
        after: Keyset pagination: only rows that come after these values of the ``order``
            columns (one value per column; every column ascending).
    """

    table: str
    columns: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()
    limit: int | None = None
    after: tuple[Any, ...] = ()


class Transport(Protocol):
    """How the client reaches the database."""

    name: str
    """``"postgres"`` or ``"supabase"``."""

    async def open(self) -> None:
        """Connect (a no-op when already open)."""

    async def close(self) -> None:
        """Release connections; the transport cannot be used afterwards."""

    def anonymous_identity(self) -> Identity:
        """Role ``anon``."""

    def service_identity(self) -> Identity:
        """Role ``service_role``.

        Raises:
            ValueError: This transport has no way to act as the service role.
        """

    def user_identity(self, user_id: uuid.UUID, email: str | None = None) -> Identity:
        """A signed-in user known by id.

        Raises:
            ValueError: This transport cannot act as a user without that user's token.
        """

    def token_identity(self, token: str) -> Identity:
        """The identity a JWT carries.

        Raises:
            AuthenticationFailed: The token was checked and rejected.
        """

    async def sign_in(self, email: str, password: str) -> Identity:
        """A password session.

        Raises:
            AuthenticationFailed: Wrong email or password.
            NotImplementedError: The transport has no sign-in service.
        """

    async def call(
        self,
        identity: Identity,
        function: str,
        args: Mapping[str, Any],
        *,
        returns: Returns,
        read_only: bool,
        schema: str = "public",
        replica: bool = False,
    ) -> Any:
        """``schema.function(name => value, …)`` in one transaction.

        Tessera's API is in ``public``; another schema serves functions an application or
        a benchmark adds beside it (PostgREST exposes only the schemas it is told to).
        ``replica``: a read replica may answer (with read-your-writes), if the transport
        has one.

        Returns:
            A row as a mapping (``one``), a list of them (``many``), or a value (``scalar``).
        """

    async def select(
        self, identity: Identity, query: Select, *, replica: bool = False
    ) -> list[Mapping[str, Any]]:
        """The rows of ``query``, in one read-only transaction (``replica``: as for call)."""

    def realtime(self) -> Notifier:
        """What tells subscriptions about new ledger entries (one per transport)."""
