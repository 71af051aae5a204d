"""Hostile input: every RPC answers garbage with a documented error and changes nothing."""

from __future__ import annotations

from tests.reliability.suite import Database, PartResult, Scale
from tests.reliability.suite.hostile import api_functions, deleted_user_outcomes, run_hostile


def test_every_rpc_survives_hostile_input(database: Database, scale: Scale) -> None:
    result = PartResult("hostile", "hostile input")
    run_hostile(database, result, examples=scale.hostile_examples)
    result.assert_clean()
    names = {rpc.name for rpc in api_functions(database)}
    assert {"book_event", "cancel_booking", "create_event", "event_changes"} <= names
    assert set(result.hostile) == names


def test_a_deleted_users_token_gets_a_documented_error(database: Database) -> None:
    # supabase-auth tokens stay valid until they expire, after their user is deleted.
    outcomes = deleted_user_outcomes(database)
    assert outcomes == {"book_event": "42501", "create_event": "42501"}
