"""The transport contract, for extending the SDK: custom transports and extra functions.

:class:`Transport` is what :class:`~tessera_client.AsyncTessera` needs from a transport;
``AsyncTessera(transport)`` makes a client over any object that provides it.
:class:`PostgresTransport` is the direct transport ``AsyncTessera.connect`` builds; its
``call`` reaches a function of any schema through the same pool, transaction and PostgREST
preamble as Tessera's own calls (the benchmark's baseline function does so).

Example:
    >>> transport = PostgresTransport(dsn, max_size=20, application_name="checkout")
    >>> tessera = AsyncTessera(transport)
    >>> await transport.call(tessera.identity, "ping", {}, returns="scalar",
    ...                      read_only=True, schema="app")
"""

from __future__ import annotations

from tessera_client._transports._base import Filter, Operator, Returns, Select, Transport
from tessera_client._transports._notifier import Notifier, SharedReads, Sink, Topic
from tessera_client._transports._postgres import PostgresTransport

__all__ = [
    "Filter",
    "Notifier",
    "Operator",
    "PostgresTransport",
    "Returns",
    "Select",
    "SharedReads",
    "Sink",
    "Topic",
    "Transport",
]
