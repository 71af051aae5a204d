"""The report page: what it shows, from a run's tallies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.reliability.suite import PartResult, Scale
from tests.reliability.suite.__main__ import main
from tests.reliability.suite.report import Finding, Run, render


def test_the_report_shows_counts_faults_inputs_and_violations() -> None:
    torture = PartResult("torture", "Concurrency torture")
    torture.record("book_event", "confirmed")
    torture.record("book_event", "TS005")
    torture.faults["pg_terminate_backend: mid-call"] += 3
    torture.expect(True, "check_invariants: fine")
    hostile = PartResult("hostile", "Hostile input")
    hostile.hostile["book_event"] += 7
    hostile.outcomes["book_event → TS004"] += 7
    hostile.problem("book_event as anon: undocumented XX000")
    run = Run(
        Scale(2),
        "python -m tests.reliability.suite report --scale 2",
        datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        42.0,
        [torture, hostile],
        [Finding("Something odd", "tests/x.py::test_y", True, "book_event → 23503")],
        {"cpu": "Test CPU", "cores": "2", "memory": "4 GiB", "system": "Linux"},
        "PostgreSQL 15",
    )
    page = render(run)
    assert "`python -m tests.reliability.suite report --scale 2`" in page
    assert "Scale:** 2 (2 times the CI sizes" in page
    assert "Test CPU, 2 cores" in page
    assert "| torture | book_event → TS005 | 1 |" in page
    assert "| pg_terminate_backend: mid-call | 3 |" in page
    assert "| `book_event` | 7 | TS004 7 |" in page
    assert "**Invariant violations found: 1.**" in page
    assert "- hostile: book_event as anon: undocumented XX000" in page
    assert "| Something odd | open |" in page


def test_the_command_refuses_a_scale_that_is_not_positive() -> None:
    with pytest.raises(SystemExit) as exit_code:
        main(["report", "--scale", "0"])
    assert exit_code.value.code == 2
