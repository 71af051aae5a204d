"""Run every part of the reliability suite and write ``docs/reliability.md``.

Example:
    python -m tests.reliability.suite report --scale 1 --output docs/reliability.md
"""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.reliability.suite._harness import Database, Server, machine_description
from tests.reliability.suite._results import PartResult
from tests.reliability.suite._scale import Scale

__all__ = ["PARTS", "Finding", "Run", "render", "run_parts"]


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    describe: Callable[[Scale], str]


PARTS: tuple[Part, ...] = (
    Part(
        "model",
        "Model-based testing",
        lambda s: (
            f"{s.model_examples} random call sequences of {s.model_steps} steps, "
            "database and reference model side by side"
        ),
    ),
    Part(
        "torture",
        "Concurrency torture",
        lambda s: (
            f"{s.torture_workers} threads for {s.torture_seconds:g} s on 5 events (one "
            "published, then cancelled mid-run), two ledger readers following along"
        ),
    ),
    Part(
        "kills-under-load",
        "Backends killed under load",
        lambda s: (
            f"the torture load for {s.kill_seconds:g} s, a random backend terminated every 50 ms"
        ),
    ),
    Part(
        "kills-half-way",
        "Backends killed half way through a write",
        lambda s: (
            f"6 write paths stopped on a held lock, then terminated (rounds: {s.timeout_rounds})"
        ),
    ),
    Part(
        "timeouts",
        "lock_timeout and statement_timeout",
        lambda s: (
            f"6 write paths stopped on a held lock until a timeout (rounds: {s.timeout_rounds})"
        ),
    ),
    Part(
        "lost-replies",
        "Reply lost after the commit",
        lambda s: f"{s.lost_replies} bookings whose commit reply a proxy drops",
    ),
    Part(
        "restarts",
        "PostgreSQL stopped and restarted",
        lambda s: (
            f"{s.restarts} shutdowns (fast, immediate) of a dedicated server under "
            f"{s.restart_clients} SDK clients"
        ),
    ),
    Part(
        "hostile",
        "Hostile input",
        lambda s: f"every RPC as 5 identities, {s.hostile_examples} argument sets each",
    ),
)


WHAT_IS_CHECKED = """\
## What is checked

- **Model-based testing** (`modelcheck.py`, `model.py`): a hypothesis state machine draws small
  events (capacity, party limit, waitlist on/off and its limit, strict or first-fit, auto or
  offer promotion, draft, sales not open yet) and random calls by several users: bookings
  with and without idempotency keys and with bad party sizes, cancellations, claims, capacity
  changes, offer deadlines passing, `expire_offers`, publishing, cancelling events. A Python
  model written from the booking rules answers each call too. Every answer (status, position,
  SQLSTATE) must agree, and after every step: each booking's status and waitlist position,
  each event's availability, the organizer's `event_waitlist`, and the ledger entries the
  step wrote (exactly one per booking that changed).
- **Concurrency torture** (`torture.py`): threads book, cancel, claim, change capacity and
  expire offers on a handful of small events while one event is published and later
  cancelled; a `ledger_feed` reader and an `event_changes` reader poll throughout. Then:
  `check_invariants()` (what `tessera doctor` runs) is empty; no user holds two active
  bookings of an event; no event holds more seats than its capacity; positions are 1..n in
  ticket order; replaying the ledger gives every booking's final status through valid
  transitions only (strict events promote in ticket order); each reader saw every entry
  exactly once, in order. Only refusals the rules call for are allowed (TS001, TS003 to
  TS008, TS010 for a reused idempotency key); any other error is a violation.
- **Faults** (`faults.py`): random `pg_terminate_backend` under the same load; each write
  path stopped on a row lock after its first writes and then killed (nothing of it may
  remain, and the same call works afterwards); the same stops ended by `lock_timeout` and
  `statement_timeout` (a Tessera error, nothing half done); a proxy that loses the reply to
  a committed call (the SDK's retry must return the same booking); a dedicated server shut down
  (`fast`, `immediate`) and restarted under SDK clients (no booking lost or doubled, each
  client gets its booking or a Tessera error, a ledger reader misses nothing).
- **Hostile input** (`hostile.py`): every RPC in the catalog, called as PostgREST would with
  generated arguments: extreme and negative numbers, nulls, long, unicode and SQL-looking
  strings, real and random ids, timestamps up to ±infinity, huge intervals. Only documented
  SQLSTATEs may come back, and a failed or read-only call must change no table.
"""


@dataclass(frozen=True)
class Finding:
    """A known problem the suite tracks with an expected-failure test until it is fixed."""

    title: str
    test: str
    still_open: bool
    observed: str


@dataclass
class Run:
    """Everything a report shows."""

    scale: Scale
    command: str
    started: datetime
    seconds: float
    results: list[PartResult]
    findings: list[Finding]
    machine: dict[str, str]
    postgres: str

    @property
    def violations(self) -> int:
        return sum(len(r.problems) for r in self.results)


def _run_part(name: str, database: Database, scale: Scale, result: PartResult) -> None:
    # Imported here: each part pulls in hypothesis or the SDK only when it runs.
    if name == "model":
        from tests.reliability.suite.modelcheck import run_model

        run_model(
            database,
            result,
            examples=scale.model_examples,
            steps=scale.model_steps,
            raise_on_failure=False,
        )
    elif name == "torture":
        from tests.reliability.suite.torture import run_torture

        run_torture(database, result, seconds=scale.torture_seconds, workers=scale.torture_workers)
    elif name == "kills-under-load":
        from tests.reliability.suite.torture import run_torture

        run_torture(
            database,
            result,
            seconds=scale.kill_seconds,
            workers=scale.torture_workers,
            kill_every=0.05,
        )
    elif name == "kills-half-way":
        from tests.reliability.suite.faults import run_kills_mid_transaction

        run_kills_mid_transaction(database, result, rounds=scale.timeout_rounds)
    elif name == "timeouts":
        from tests.reliability.suite.faults import run_timeouts

        run_timeouts(database, result, rounds=scale.timeout_rounds)
    elif name == "lost-replies":
        from tests.reliability.suite.faults import run_lost_replies

        run_lost_replies(database, result, count=scale.lost_replies)
    elif name == "hostile":
        from tests.reliability.suite.hostile import run_hostile

        run_hostile(database, result, examples=scale.hostile_examples)
    else:
        raise ValueError(f"unknown part {name!r}")


def run_parts(
    server: Server,
    scale: Scale,
    parts: tuple[str, ...] = (),
    progress: Callable[[str], None] = lambda line: None,
) -> list[PartResult]:
    """Run the chosen parts (default: all), each on a fresh database.

    The restart part runs on a server of its own, which it stops and starts.
    """
    results: list[PartResult] = []
    for part in PARTS:
        if parts and part.name not in parts:
            continue
        progress(f"==> {part.title}: {part.describe(scale)}")
        result = PartResult(part.name, part.title)
        started = time.monotonic()
        try:
            if part.name == "restarts":
                from tests.reliability.suite.faults import run_restarts

                run_restarts(result, restarts=scale.restarts, clients=scale.restart_clients)
            else:
                with server.database() as database:
                    database.relax_rate_limits()
                    _run_part(part.name, database, scale, result)
        except Exception as exc:  # a crashed part is a finding too, not the end of the report
            result.problem(f"{part.name} stopped: {type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - started
        results.append(result)
        progress(
            f"    {sum(result.operations.values())} operations, {sum(result.faults.values())} "
            f"faults, {sum(result.hostile.values())} hostile inputs, "
            f"{len(result.problems)} violations ({result.seconds:.1f} s)"
        )
        for problem in result.problems[:10]:
            progress(f"    ! {problem}")
    return results


def known_findings(server: Server) -> list[Finding]:
    """Check each known finding again: is it still there?"""
    from tests.reliability.suite.hostile import deleted_user_outcomes

    with server.database() as database:
        outcomes = deleted_user_outcomes(database)
    still_open = any(code not in ("42501", "ok") for code in outcomes.values())
    return [
        Finding(
            "A valid token of a user deleted from auth.users gets a raw foreign key error "
            "(23503) from book_event and create_event instead of 42501",
            "tests/reliability/test_hostile.py::test_a_deleted_users_token_gets_a_documented_error",
            still_open,
            ", ".join(f"{rpc} → {code}" for rpc, code in outcomes.items()),
        )
    ]


# -- rendering -------------------------------------------------------------------------------


def _total(counter: Counter[str]) -> int:
    return sum(counter.values())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(run: Run) -> str:
    """The Markdown report."""
    scale = run.scale.factor
    sizes = "the CI sizes" if scale == 1 else f"{scale:g} times the CI sizes"
    lines = [
        "# Reliability report",
        "",
        "What Tessera's reliability suite did and found in one run: model-based tests against "
        "a reference model of the booking rules, concurrency torture, injected faults and "
        "hostile input (issue 9). The suite lives in `tests/reliability/suite/`; "
        "`tests/reliability/` runs the same parts at scale 1 in CI.",
        "",
        f"- **Command:** `{run.command}`",
        f"- **Scale:** {scale:g} ({sizes}; `scripts/reliability` runs the long version and "
        "rewrites this page)",
        f"- **When:** {run.started:%Y-%m-%d %H:%M} UTC, {run.seconds:.0f} s in all",
        f"- **Machine:** {run.machine['cpu']}, {run.machine['cores']} cores, "
        f"{run.machine['memory']}, {run.machine['system']}; Python {platform.python_version()}",
        f"- **PostgreSQL:** {run.postgres}",
        "",
        WHAT_IS_CHECKED,
        "## Summary",
        "",
        "| Part | What ran | Operations | Faults injected | Hostile inputs | Checks | Violations |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    describe = {p.name: p for p in PARTS}
    for result in run.results:
        part = describe[result.name]
        lines.append(
            f"| {part.title} | {_cell(part.describe(run.scale))} | {_total(result.operations):,} "
            f"| {_total(result.faults):,} | {_total(result.hostile):,} "
            f"| {_total(result.checks):,} | {len(result.problems)} |"
        )
    lines.append(
        f"| **Total** | | **{sum(_total(r.operations) for r in run.results):,}** "
        f"| **{sum(_total(r.faults) for r in run.results):,}** "
        f"| **{sum(_total(r.hostile) for r in run.results):,}** "
        f"| **{sum(_total(r.checks) for r in run.results):,}** | **{run.violations}** |"
    )
    lines += [
        "",
        f"**Invariant violations found: {run.violations}.**"
        + (" Every check passed." if run.violations == 0 else " See *Violations* below."),
        "",
        "## Operations run, by outcome",
        "",
        "Outcomes are a booking status, or the SQLSTATE of a refusal (TS004 invalid seats, "
        "TS005 already booked, TS006 sold out, TS007 invalid transition, TS008 capacity "
        "conflict, …: refusals the rules call for under contention).",
        "",
        "| Part | Operation → outcome | Count |",
        "|---|---|---:|",
    ]
    for result in run.results:
        if result.name == "hostile":
            continue
        for key, count in sorted(result.outcomes.items()):
            lines.append(f"| {result.name} | {_cell(key)} | {count:,} |")
    faults: Counter[str] = Counter()
    for result in run.results:
        faults.update(result.faults)
    lines += ["", "## Faults injected, by kind", "", "| Fault | Count |", "|---|---:|"]
    lines += [f"| {_cell(kind)} | {count:,} |" for kind, count in sorted(faults.items())]
    hostile = next((r for r in run.results if r.name == "hostile"), None)
    if hostile is not None:
        lines += [
            "",
            "## Hostile inputs, by RPC",
            "",
            "Each RPC was called as anonymous, attendee, organizer, and with tokens whose "
            "`sub` is missing or not a UUID. Allowed answers: success, or TS001 to TS010, "
            "22023, 42501; a failed or read-only call must change nothing.",
            "",
            "| RPC | Inputs tried | Outcomes |",
            "|---|---:|---|",
        ]
        for rpc, count in sorted(hostile.hostile.items()):
            outcomes = sorted(
                (key.split(" → ", 1)[1], n)
                for key, n in hostile.outcomes.items()
                if key.split(" → ", 1)[0] == rpc
            )
            shown = ", ".join(f"{code} {n}" for code, n in outcomes)
            lines.append(f"| `{rpc}` | {count:,} | {shown} |")
    checks: Counter[str] = Counter()
    for result in run.results:
        checks.update(result.checks)
    lines += ["", "## Checks made", "", "| Check | Times |", "|---|---:|"]
    lines += [f"| {_cell(kind)} | {count:,} |" for kind, count in sorted(checks.items())]
    lines += ["", "## Violations", ""]
    if run.violations == 0:
        lines.append("None.")
    for result in run.results:
        lines += [f"- {result.name}: {_cell(problem)}" for problem in result.problems]
    if run.findings:
        lines += [
            "",
            "## Known findings",
            "",
            "Problems the suite found, re-checked on every run; the test named guards each one "
            "(an open finding is not counted as a violation above).",
            "",
            "| Finding | Status | Observed | Test |",
            "|---|---|---|---|",
        ]
        for finding in run.findings:
            status = "open" if finding.still_open else "fixed"
            lines.append(
                f"| {_cell(finding.title)} | {status} | {_cell(finding.observed)} "
                f"| `{finding.test}` |"
            )
    lines += [
        "",
        "## Reproducing",
        "",
        "```sh",
        "scripts/reliability                      # the long run (scale 10), rewrites this page",
        "python -m tests.reliability.suite report --scale 1 --output docs/reliability.md",
        "TESSERA_RELIABILITY_SCALE=5 pytest tests/reliability   # the tests, bigger",
        "```",
        "",
        "Each part runs on a fresh database cloned from a migrated template on a local stack "
        "of its own (restarts: on a dedicated server that is shut down and started again).",
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _server(db_url: str | None) -> Iterator[Server]:
    if db_url:
        server = Server(db_url)
        try:
            yield server
        finally:
            server.drop_template()
    else:
        with Server.local() as server:
            yield server


def report(
    scale: Scale,
    output: Path | None,
    command: str,
    parts: tuple[str, ...] = (),
    db_url: str | None = None,
) -> Run:
    """Run the suite and write the report (to ``output``, or nowhere when ``None``)."""
    started = datetime.now(UTC)
    began = time.monotonic()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with _server(db_url) as server:
        with server.database() as database:
            postgres = database.server_version().split(" on ")[0]
        results = run_parts(server, scale, parts, progress)
        findings = known_findings(server)
    run = Run(
        scale,
        command,
        started,
        time.monotonic() - began,
        results,
        findings,
        machine_description(),
        postgres,
    )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render(run))
        progress(f"==> wrote {output}")
    return run
