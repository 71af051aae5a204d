"""``python -m tests.reliability.suite report``: run the suite, write docs/reliability.md."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from tests.reliability.suite._scale import SCALE_VARIABLE, Scale
from tests.reliability.suite.report import PARTS, report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, and return the exit code (1 when a violation was found)."""
    args_given = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.suite",
        description="Tessera's reliability suite: model checks, torture, faults, hostile input.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("report", help="run every part and write the Markdown report")
    run.add_argument(
        "--scale",
        type=float,
        default=Scale.from_environment().factor,
        help=f"sizes as a multiple of the CI run (default: ${SCALE_VARIABLE} or 1)",
    )
    run.add_argument(
        "--output",
        type=Path,
        default=Path(os.environ.get("TESSERA_RELIABILITY_REPORT", "docs/reliability.md")),
        help="where the report goes (default: docs/reliability.md; '-' for standard output)",
    )
    run.add_argument(
        "--part",
        action="append",
        choices=[p.name for p in PARTS],
        help="run only this part (repeatable; default: all)",
    )
    run.add_argument(
        "--db-url",
        default=os.environ.get("TESSERA_RELIABILITY_DB_URL"),
        help="superuser URL of a PostgreSQL server to use (default: a local stack of its own)",
    )
    args = parser.parse_args(args_given)
    if not args.scale > 0:
        parser.error("--scale must be positive")
    command = shlex.join(["python", "-m", "tests.reliability.suite", *args_given])
    to_stdout = str(args.output) == "-"
    outcome = report(
        Scale(args.scale),
        None if to_stdout else args.output,
        command,
        parts=tuple(args.part or [p.name for p in PARTS]),
        db_url=args.db_url,
    )
    if to_stdout:
        from tests.reliability.suite.report import render

        print(render(outcome))
    return 1 if outcome.violations else 0


if __name__ == "__main__":
    sys.exit(main())
