"""Tessera's reliability suite: model-based tests, concurrency torture, faults, hostile input.

Each part is a runner that takes a migrated database and a :class:`Scale` and returns a
:class:`PartResult` (what it did, and every violation it found). The pytest suite in
``tests/reliability`` runs them small; ``python -m tests.reliability.suite report`` runs
them at any scale and writes ``docs/reliability.md``.

The runners use hypothesis, a development dependency of Tessera.
"""

from __future__ import annotations

from tests.reliability.suite._harness import (
    DOCUMENTED_SQLSTATES,
    Caller,
    Database,
    Server,
    dedicated_stack,
)
from tests.reliability.suite._results import PartResult
from tests.reliability.suite._scale import SCALE_VARIABLE, Scale

__all__ = [
    "DOCUMENTED_SQLSTATES",
    "SCALE_VARIABLE",
    "Caller",
    "Database",
    "PartResult",
    "Scale",
    "Server",
    "dedicated_stack",
]
