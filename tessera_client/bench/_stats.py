"""Latency percentiles and the result of one measured phase."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Phase", "latency_summary", "percentile"]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 / max / mean in milliseconds of latencies given in seconds."""
    ordered = sorted(latencies)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    return {
        "p50": round(percentile(ordered, 0.50) * 1000, 3),
        "p95": round(percentile(ordered, 0.95) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "max": round((ordered[-1] if ordered else 0.0) * 1000, 3),
        "mean": round(mean * 1000, 3),
    }


@dataclass
class Phase:
    """Calls made during one measured phase.

    Attributes:
        clients: Concurrent clients.
        seconds: Length of the measured window.
        latencies: Seconds each successful call took.
        errors: Failed calls by SQLSTATE.
        error_samples: The first message seen for each SQLSTATE.
        calls_total: Successful calls including warm-up and the tail after the window
            (what the database must account for).
    """

    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    calls_total: int = 0

    def record_error(self, code: str, message: str) -> None:
        self.errors[code] += 1
        self.error_samples.setdefault(code, message)

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "ops": self.ops,
            "seconds": round(self.seconds, 3),
            "throughput": round(self.throughput, 1),
            "latency_ms": latency_summary(self.latencies),
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "error_samples": dict(self.error_samples),
        }
