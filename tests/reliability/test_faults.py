"""Faults: killed backends, timeouts, lost replies, and a server stopped under load."""

from __future__ import annotations

import pytest

from tests.reliability.suite import Database, PartResult, Scale
from tests.reliability.suite.faults import (
    run_kills_mid_transaction,
    run_lost_replies,
    run_restarts,
    run_timeouts,
)
from tests.reliability.suite.torture import run_torture


def test_backends_killed_under_load_leave_no_partial_state(
    database: Database, scale: Scale
) -> None:
    result = run_torture(
        database,
        PartResult("kills", "backends killed under load"),
        seconds=scale.kill_seconds,
        workers=scale.torture_workers,
        kill_every=0.05,
    )
    result.assert_clean()
    assert result.faults["pg_terminate_backend: mid-transaction, after writes"] > 0


def test_backends_killed_half_way_through_each_write_leave_nothing(
    database: Database, scale: Scale
) -> None:
    result = PartResult("kills-half-way", "backends killed half way")
    run_kills_mid_transaction(database, result, rounds=scale.timeout_rounds)
    result.assert_clean()
    assert (
        result.faults["pg_terminate_backend, half way through a write"] == 6 * scale.timeout_rounds
    )


def test_timeouts_are_clear_errors_and_leave_nothing(database: Database, scale: Scale) -> None:
    result = PartResult("timeouts", "lock and statement timeouts")
    run_timeouts(database, result, rounds=scale.timeout_rounds)
    result.assert_clean()
    assert result.faults["lock_timeout hit half way through a write"] > 0
    assert result.faults["statement_timeout hit half way through a write"] > 0


def test_a_lost_commit_reply_is_retried_into_the_same_booking(
    database: Database, scale: Scale
) -> None:
    result = PartResult("lost-replies", "reply lost after commit")
    run_lost_replies(database, result, count=scale.lost_replies)
    result.assert_clean()
    assert result.faults["reply lost after the commit"] == scale.lost_replies


@pytest.mark.slow
def test_server_restarts_lose_and_double_nothing(scale: Scale) -> None:
    """On a dedicated server of its own: fast and immediate shutdowns under SDK load."""
    result = PartResult("restarts", "server stopped and restarted")
    run_restarts(result, restarts=scale.restarts, clients=scale.restart_clients)
    result.assert_clean()
    assert result.faults["server shutdown -m fast, then restart"] >= 1
    assert result.faults["server shutdown -m immediate, then restart"] >= 1
