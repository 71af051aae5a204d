"""How long and how big a reliability run is."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["SCALE_VARIABLE", "Scale"]

SCALE_VARIABLE = "TESSERA_RELIABILITY_SCALE"


@dataclass(frozen=True)
class Scale:
    """Sizes of every part, as a multiple of the short run CI makes (``factor = 1``).

    Example:
        >>> Scale(10).torture_seconds
        60.0
    """

    factor: float = 1.0

    @classmethod
    def from_environment(cls) -> Scale:
        """``TESSERA_RELIABILITY_SCALE`` (default 1)."""
        raw = os.environ.get(SCALE_VARIABLE, "1").strip() or "1"
        factor = float(raw)
        if not factor > 0:
            raise ValueError(f"{SCALE_VARIABLE} must be a positive number, not {raw!r}")
        return cls(factor)

    def times(self, base: float, minimum: int = 1) -> int:
        return max(minimum, round(base * self.factor))

    @property
    def model_examples(self) -> int:
        """Random call sequences the model check tries."""
        return self.times(25)

    @property
    def model_steps(self) -> int:
        """Longest call sequence (grows slowly: long sequences shrink slowly)."""
        return max(30, min(100, round(30 + 15 * math.log2(self.factor)))) if self.factor > 1 else 30

    @property
    def torture_seconds(self) -> float:
        return 6.0 * self.factor

    @property
    def torture_workers(self) -> int:
        return min(24, 6 + round(2 * math.log2(self.factor))) if self.factor > 1 else 6

    @property
    def kill_seconds(self) -> float:
        """Load under random ``pg_terminate_backend``."""
        return 4.0 * self.factor

    @property
    def restarts(self) -> int:
        """Server restarts under load (fast and immediate shutdowns alternate)."""
        return self.times(2, minimum=2)

    @property
    def restart_clients(self) -> int:
        """Clients booking through the restarts."""
        return self.times(40)

    @property
    def timeout_rounds(self) -> int:
        return self.times(1)

    @property
    def lost_replies(self) -> int:
        return self.times(2)

    @property
    def hostile_examples(self) -> int:
        """Generated argument sets per RPC."""
        return self.times(12)
