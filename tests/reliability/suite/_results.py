"""What a reliability run counts: operations, faults, hostile inputs, checks and problems."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["PartResult", "sqlstate_of"]


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE of a driver or Tessera error, ``"none"`` when it carries none."""
    code = getattr(exc, "sqlstate", None) or getattr(exc, "code", None)
    return str(code) if code else "none"


@dataclass
class PartResult:
    """The tally of one part of the suite.

    Attributes:
        name: Short name (``model``, ``torture``, …).
        title: What the part does, for the report.
        operations: Calls made, by operation.
        outcomes: Results, by ``"operation → status or SQLSTATE"``.
        faults: Faults injected, by kind.
        hostile: Hostile inputs tried, by RPC.
        checks: Invariant checks run, by kind.
        problems: Every violation found, one line each; a healthy run has none.
        seconds: Wall-clock time.
        settings: The sizes the part ran with.
    """

    name: str
    title: str
    operations: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    hostile: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, object] = field(default_factory=dict)

    def record(self, operation: str, outcome: str) -> None:
        self.operations[operation] += 1
        self.outcomes[f"{operation} → {outcome}"] += 1

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def expect(self, condition: bool, text: str) -> None:
        """Count one check, and a problem when ``condition`` is false."""
        self.checks[text.split(":", 1)[0]] += 1
        if not condition:
            self.problems.append(text)

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds += time.monotonic() - started

    def assert_clean(self) -> None:
        """Raise AssertionError listing the problems, if any."""
        if self.problems:
            shown = "\n  ".join(self.problems[:40])
            more = f"\n  … and {len(self.problems) - 40} more" if len(self.problems) > 40 else ""
            raise AssertionError(f"{self.name}: {len(self.problems)} problems:\n  {shown}{more}")
