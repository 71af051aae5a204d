"""Tessera's benchmark suite (``tessera bench``).

Scenarios: ``hot`` (one event, against the classic ``SELECT … FOR UPDATE`` design in the
same run), ``spread``, ``flash``, ``waitlist``, ``connections`` (through PgBouncer) and
``realtime``. Each books through the SDK's direct transport with realtime publishing on,
reports throughput, latency percentiles and errors, checks its outcome exactly and ends
with ``public.check_invariants``. See docs/benchmarks.md.

Example:
    >>> document = await run_bench(["hot"], BenchSettings.for_smoke())
    >>> save_results(document, Path("docs/benchmarks"), Path("docs/benchmarks.md"))
"""

from __future__ import annotations

from tessera_client.bench._settings import SCENARIOS, BenchSettings
from tessera_client.bench.report import SavedResults, render_chart, render_markdown, save_results
from tessera_client.bench.runner import FORMAT, BenchError, evaluate_targets, run_bench

__all__ = [
    "FORMAT",
    "SCENARIOS",
    "BenchError",
    "BenchSettings",
    "SavedResults",
    "evaluate_targets",
    "render_chart",
    "render_markdown",
    "run_bench",
    "save_results",
]
