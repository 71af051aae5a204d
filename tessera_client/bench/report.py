"""Results on disk: JSON, a Markdown section appended to docs/benchmarks.md, a PNG chart."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "SavedResults", "render_chart", "render_markdown", "save_results"]

MARKER = "<!-- tessera bench: results are appended below this line -->"

_HEADER = f"""# Benchmarks

Results of `tessera bench`.

{MARKER}
"""


@dataclass(frozen=True, slots=True)
class SavedResults:
    """Where a run's results went."""

    json: Path
    latest: Path
    chart: Path | None
    markdown: Path | None


def _stamp(document: dict[str, Any]) -> str:
    started = datetime.fromisoformat(document["started_at"])
    return started.strftime("%Y%m%dT%H%M%SZ")


def save_results(
    document: dict[str, Any], out_dir: Path, markdown: Path | None = None
) -> SavedResults:
    """Write ``<timestamp>.json``, ``latest.json`` and the chart; append to ``markdown``.

    Args:
        document: What :func:`tessera_client.bench.run_bench` returned.
        out_dir: Directory of the JSON files and charts (created if missing).
        markdown: The Markdown file to append a section to (created with a header if
            missing); ``None`` appends nothing.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(document)
    text = json.dumps(document, indent=2, default=str) + "\n"
    path = out_dir / f"{stamp}.json"
    path.write_text(text)
    latest = out_dir / "latest.json"
    latest.write_text(text)
    chart = out_dir / f"{stamp}.png"
    if render_chart(document, chart):
        (out_dir / "latest.png").write_bytes(chart.read_bytes())
    else:
        chart = None  # type: ignore[assignment]
    if markdown is not None:
        base = markdown.parent
        section = render_markdown(
            document,
            json_link=os.path.relpath(path, base),
            chart_link=os.path.relpath(chart, base) if chart else None,
        )
        existing = markdown.read_text() if markdown.exists() else _HEADER
        if MARKER not in existing:
            existing = existing.rstrip("\n") + "\n\n" + MARKER + "\n"
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(existing.rstrip("\n") + "\n\n" + section)
    return SavedResults(json=path, latest=latest, chart=chart, markdown=markdown)


# -- chart ----------------------------------------------------------------------------------


def _series(rows: Iterable[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]]:
    clients, throughput, p99 = [], [], []
    for row in rows:
        if key in row:
            clients.append(int(row["clients"]))
            throughput.append(float(row[key]["throughput"]))
            p99.append(float(row[key]["latency_ms"]["p99"]))
    return clients, throughput, p99


def render_chart(document: dict[str, Any], path: Path) -> bool:
    """Throughput and p99 against clients for hot, baseline and spread; False if none ran."""
    scenarios = document["scenarios"]
    hot_rows = scenarios.get("hot", {}).get("rows", [])
    spread_rows = scenarios.get("spread", {}).get("rows", [])
    pgbench_rows = scenarios.get("pgbench", {}).get("rows", [])
    lines = [
        ("Tessera, hot event, pgbench", _series(pgbench_rows, "tessera"), "tab:purple", "-"),
        ("Baseline, hot event, pgbench", _series(pgbench_rows, "baseline"), "tab:orange", "-"),
        ("Tessera, hot event, SDK", _series(hot_rows, "tessera"), "tab:blue", "-"),
        ("Baseline (FOR UPDATE), hot event, SDK", _series(hot_rows, "baseline"), "tab:red", "-"),
        ("Tessera, spread over many events", _series(spread_rows, "spread"), "tab:green", "--"),
        ("Client ceiling (no-op call)", _series(hot_rows, "ceiling"), "tab:gray", ":"),
    ]
    lines = [line for line in lines if line[1][0]]
    if not lines:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ticks: set[int] = set()
    for label, (clients, throughput, p99), color, style in lines:
        ticks.update(clients)
        left.plot(clients, throughput, style, marker="o", color=color, label=label)
        right.plot(clients, p99, style, marker="o", color=color, label=label)
    for axis, title, unit in (
        (left, "Throughput", "bookings / s"),
        (right, "p99 latency", "ms"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(ticks))
        axis.set_xticklabels([str(t) for t in sorted(ticks)])
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    right.set_yscale("log")
    right.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    right.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    right.yaxis.set_minor_formatter(NullFormatter())
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    machine = document.get("machine", {})
    smoke = " (smoke run: not a measurement)" if document.get("smoke") else ""
    figure.suptitle(
        f"tessera bench, {document['started_at']}, {machine.get('cores')} cores, "
        f"PostgreSQL {document.get('database', {}).get('postgresql')}{smoke}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


# -- markdown -------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _errors(phase: dict[str, Any]) -> str:
    errors = phase.get("errors") or {}
    if not errors:
        return "0"
    return ", ".join(f"{count} x {code}" for code, count in sorted(errors.items()))


def _num(value: float) -> str:
    """Three significant digits or so: 1,234 / 56.7 / 8.90."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _ms(phase: dict[str, Any], key: str) -> str:
    return _num(float(phase["latency_ms"][key]))


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_markdown(
    document: dict[str, Any], *, json_link: str | None = None, chart_link: str | None = None
) -> str:
    """The Markdown section of one run: machine, command, one table per scenario."""
    machine = document.get("machine", {})
    database = document.get("database", {})
    settings = database.get("settings", {})
    smoke = (
        " (smoke run: sizes cut down, checks correctness not speed)" if document["smoke"] else ""
    )
    out = [f"## Run of {document['started_at']}{smoke}\n"]
    out.append(f"Command: `{document['command']}`\n")
    load = machine.get("load_average_at_start")
    out.append(
        f"Machine: {machine.get('cores')} cores ({machine.get('cpu_model')}), "
        f"{machine.get('ram_gb')} GB RAM, {machine.get('os')}; Python {machine.get('python')}; "
        f"PostgreSQL {database.get('postgresql')} "
        f"(synchronous_commit={settings.get('synchronous_commit')}, "
        f"shared_buffers={settings.get('shared_buffers')}, "
        f"realtime trigger {database.get('realtime_trigger')}"
        f"{', throwaway local stack' if database.get('throwaway_stack') else ''}); "
        f"load average at start {load}.\n"
    )
    links = []
    if json_link:
        links.append(f"[JSON]({json_link})")
    out.append(
        f"Verdict: {'all checks passed' if document['ok'] else '**some checks failed**'}. "
        + (" ".join(links) + "\n" if links else "\n")
    )
    if chart_link:
        out.append(f"![Throughput and p99 against clients]({chart_link})\n")
    scenarios = document["scenarios"]
    for name, render in (
        ("pgbench", _pgbench),
        ("openloop", _open_loop),
        ("hot", _hot),
        ("spread", _spread),
        ("flash", _flash),
        ("waitlist", _waitlist),
        ("connections", _connections),
        ("realtime", _realtime),
        ("abuse", _abuse),
    ):
        if name in scenarios:
            result = scenarios[name]
            if "failed" in result:
                out.append(f"### {name}\n\n**Failed**: {result['failed']}\n")
            else:
                out.append(render(result))
    targets = [t for t in document.get("targets", []) if t["met"] is not None]
    if targets:
        out.append("### Targets\n")
        out.append(
            _table(
                ["target", "goal", "measured", "met"],
                ([t["name"], t["target"], t["measured"], t["met"]] for t in targets),
            )
        )
    return "\n".join(out)


def _invariants(result: dict[str, Any]) -> str:
    problems = result.get("invariants") or []
    return "none" if not problems else f"**{len(problems)}**: " + "; ".join(problems[:3])


def _hot(result: dict[str, Any]) -> str:
    rows = []
    for row in result["rows"]:
        tessera, baseline = row["tessera"], row["baseline"]
        ceiling = row.get("ceiling")
        rows.append(
            [
                row["clients"],
                tessera["throughput"],
                _ms(tessera, "p50"),
                _ms(tessera, "p95"),
                _ms(tessera, "p99"),
                baseline["throughput"],
                _ms(baseline, "p99"),
                _ratio(row["ratio"]["throughput"]),
                _ratio(row["ratio"]["p99"]),
                f"{_errors(tessera)} / {_errors(baseline)}",
                ceiling["throughput"] if ceiling else None,
            ]
        )
    return (
        f"### Hot event vs baseline ({result['seconds']:g} s per phase, "
        f"{result['warmup']:g} s warm-up; latencies in ms)\n\n"
        "`x` columns: Tessera over baseline (above 1 is better for bookings/s, below 1 for "
        "p99). Errors: Tessera / baseline. Ceiling: calls/s of a function that does "
        "nothing, through the same pool (the client's limit).\n\n"
        + _table(
            [
                "clients",
                "bookings/s",
                "p50",
                "p95",
                "p99",
                "baseline/s",
                "baseline p99",
                "x bookings/s",
                "x p99",
                "errors",
                "ceiling/s",
            ],
            rows,
        )
        + f"\nEvery booking accounted for: {_cell(result['bookings_accounted'])}. "
        f"Invariants: {_invariants(result)}.\n"
    )


def _pgbench(result: dict[str, Any]) -> str:
    rows = []
    for row in result["rows"]:
        tessera, baseline = row["tessera"], row["baseline"]
        rows.append(
            [
                row["clients"],
                tessera["throughput"],
                _ms(tessera, "p50"),
                _ms(tessera, "p99"),
                baseline["throughput"],
                _ms(baseline, "p99"),
                _ratio(row["ratio"]["throughput"]),
                _ratio(row.get("sdk_over_pgbench")),
                f"{_errors(tessera)} / {_errors(baseline)}",
            ]
        )
    return (
        f"### Hot event vs seed design, pgbench ({result['driver']}; latencies in ms)\n\n"
        "One event of capacity 1,000,000, a fresh user per booking; the seed design is the "
        "classic `select … for update` on the event row, insert, counter bump. `x`: "
        "book_event over the seed design. SDK/pgbench: the SDK-driven hot scenario's "
        "bookings/s over pgbench's at the same client count. Errors: Tessera / seed.\n\n"
        + _table(
            [
                "clients",
                "bookings/s",
                "p50",
                "p99",
                "seed/s",
                "seed p99",
                "x bookings/s",
                "SDK/pgbench",
                "errors",
            ],
            rows,
        )
        + f"\nEvery booking accounted for: {_cell(result['accounted'])}. "
        f"Invariants: {_invariants(result)}.\n"
    )


def _open_loop(result: dict[str, Any]) -> str:
    rows = []
    for name in ("tessera", "baseline"):
        phase = result[name]
        rows.append(
            [
                "book_event" if name == "tessera" else "seed design",
                phase["offered_rate"],
                phase["throughput"],
                f"{phase['served_fraction']:.1%}",
                _ms(phase, "p50"),
                _ms(phase, "p99"),
                _ms(phase, "max"),
                _errors(phase),
            ]
        )
    return (
        f"### Open loop ({result['driver']})\n\n"
        f"{result['factor']:g}x the seed design's best closed-loop rate "
        f"({result['baseline_best_closed_loop']:,.0f}/s), {result['clients']} connections, "
        "the same arrival schedule for both; latencies in ms from each booking's scheduled "
        "start.\n\n"
        + _table(
            ["function", "offered/s", "served/s", "served", "p50", "p99", "max", "errors"], rows
        )
        + f"\nInvariants: {_invariants(result)}.\n"
    )


def _spread(result: dict[str, Any]) -> str:
    rows = [
        [
            row["clients"],
            row["spread"]["throughput"],
            _ms(row["spread"], "p50"),
            _ms(row["spread"], "p95"),
            _ms(row["spread"], "p99"),
            _errors(row["spread"]),
            row.get("hot_over_spread"),
        ]
        for row in result["rows"]
    ]
    return (
        f"### Spread over {result['events']:,} events (latencies in ms)\n\n"
        + _table(
            ["clients", "bookings/s", "p50", "p95", "p99", "errors", "hot / spread"],
            rows,
        )
        + f"\nEvery booking accounted for: {_cell(result['bookings_accounted'])}. "
        f"Invariants: {_invariants(result)}.\n"
    )


def _flash(result: dict[str, Any]) -> str:
    sale, after = result["sale"], result["after_cancellations"]
    booking, cancels = result["booking"], result["cancellations"]
    return (
        f"### Flash sale: {result['users']:,} users, {result['seats']:,} seats, "
        f"{result['clients']} connections\n\n"
        + _table(
            ["", "value"],
            [
                ["sold out after", f"{result['sold_out_seconds']:g} s"],
                ["every request answered after", f"{result['all_answered_seconds']:g} s"],
                ["bookings/s", result["throughput"]],
                [
                    "booking latency p50 / p95 / p99",
                    f"{_ms(booking, 'p50')} / {_ms(booking, 'p95')} / {_ms(booking, 'p99')} ms",
                ],
                [
                    "response time from the rush p50 / p99",
                    f"{_num(result['response_ms']['p50'])} / "
                    f"{_num(result['response_ms']['p99'])} ms",
                ],
                ["confirmed / waitlisted", f"{sale['confirmed']:,} / {sale['waitlisted']:,}"],
                [
                    "positions 1..n (returned and looked up)",
                    sale["positions_returned_ok"] and sale["positions_ok"],
                ],
                [
                    f"{cancels['count']} cancellations: p50 / p99",
                    f"{_ms(cancels, 'p50')} / {_ms(cancels, 'p99')} ms "
                    f"({cancels['seconds']:g} s in all)",
                ],
                [
                    "promotions, in FIFO order",
                    f"{after['promotions']:,}, {_cell(after['promotions_fifo'])}",
                ],
                ["errors", result["error_count"]],
                ["invariants", _invariants(result)],
            ],
        )
    )


def _waitlist(result: dict[str, Any]) -> str:
    rows = [
        [
            label,
            _ms(result[key], "p50"),
            _ms(result[key], "p95"),
            _ms(result[key], "p99"),
            _ms(result[key], "max"),
            result[key]["ops"],
            _errors(result[key]),
        ]
        for key, label in (
            ("waitlist_position", "waitlist_position"),
            ("join", "join the waitlist"),
            ("cancel_promotion", "cancel → promotion"),
        )
    ]
    checks = result["checks"]
    return (
        f"### Big waitlist: {result['waiting']:,} waiting\n\n"
        f"Built through `book_event` in {result['fill_seconds']:g} s "
        f"({result['fill_rate']:,.0f} bookings/s). Calls one at a time:\n\n"
        + _table(["call", "p50 ms", "p95 ms", "p99 ms", "max ms", "samples", "errors"], rows)
        + f"\nPositions correct: {_cell(checks['positions_match'])}; joins got the last "
        f"position: {_cell(checks['joins_match'])}; promotions in FIFO order: "
        f"{_cell(checks['promotions_fifo'])}. Invariants: {_invariants(result)}.\n"
    )


def _connections(result: dict[str, Any]) -> str:
    booking = result["booking"]
    return (
        f"### Connections: {result['clients']:,} clients through PgBouncer "
        f"(transaction pooling, {result['pool_size']} server connections)\n\n"
        + _table(
            ["", "value"],
            [
                [
                    "clients connected and held open",
                    f"{result['connected']:,} / {result['clients_held_open']:,}",
                ],
                ["peak server connections", result["peak_server_connections"]],
                ["bookings", f"{booking['ops']:,} ({result['bookings_per_client']} per client)"],
                ["bookings/s", booking["throughput"]],
                [
                    "latency p50 / p95 / p99",
                    f"{_ms(booking, 'p50')} / {_ms(booking, 'p95')} / {_ms(booking, 'p99')} ms",
                ],
                ["errors", result["error_count"]],
                ["invariants", _invariants(result)],
            ],
        )
    )


def _realtime(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"### Realtime latency\n\nNot run: {result['skipped']}.\n"
    latency = result.get("latency_ms")
    if not isinstance(latency, dict) or "p99" not in latency:
        rows = [
            [key, json.dumps(value) if isinstance(value, dict | list) else value]
            for key, value in result.items()
            if key not in ("ok", "duration_seconds")
        ]
        return "### Realtime latency\n\n" + _table(["", "value"], rows)
    calls = result.get("booking_call_ms") or {}
    rows = [
        [
            "commit-to-receipt p50 / p95 / p99 / max",
            " / ".join(_num(float(latency[k])) for k in ("p50", "p95", "p99", "max")) + " ms",
        ],
        ["bookings (achieved rate)", f"{result.get('bookings')} ({result.get('achieved_rate')}/s)"],
        [
            "received / expected",
            f"{_cell(result.get('received'))} / {_cell(result.get('expected'))}",
        ],
        [
            "lost / duplicated / out of order",
            f"{result.get('lost')} / {result.get('duplicated')} / {result.get('out_of_order')}",
        ],
    ]
    if "p50" in calls:
        rows.append(["booking call p50 / p99", f"{_num(calls['p50'])} / {_num(calls['p99'])} ms"])
    rows += [
        ["errors", json.dumps(result.get("errors", {}))],
        ["invariants", _invariants(result)],
    ]
    return (
        f"### Realtime latency: {result.get('subscribers')} subscribers, "
        f"{result.get('rate', 0):g} bookings/s for {result.get('seconds', 0):g} s\n\n"
        + _table(["", "value"], rows)
    )


def _abuse(result: dict[str, Any]) -> str:
    rows = [
        ["bookers / attackers", f"{result['bookers']} / {result['attackers']}"],
        ["hot event alone (bookings/s)", _num(result["quiet_throughput"])],
        ["hot event under attack (bookings/s)", _num(result["attacked_throughput"])],
        ["ratio (under attack / alone)", _ratio(result["ratio"])],
        ["refused claims/s", _num(result["attack_refusals_per_second"])],
        ["bookings accounted, invariants", f"{result['bookings_accounted']}, "
         + _invariants(result)],
    ]  # fmt: skip
    offered = result.get("attack_rate_offered")
    pace = f", offering {_num(offered)} calls/s in all" if offered else ", as fast as answered"
    return (
        "### Abuse: refused calls against a hot event\n\n"
        f"{result['attackers']} loops call `claim_offer` on a cancelled booking of the hot event"
        f"{pace}, while {result['bookers']} clients book it; bookers and attackers are pgbench"
        f" clients (PostgREST-style calls); {result['rounds']} rounds each, alternating."
        "\n\n" + _table(["", "value"], rows)
    )
