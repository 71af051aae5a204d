"""The database behaves like the reference model over random call sequences."""

from __future__ import annotations

from tests.reliability.suite import Database, PartResult, Scale
from tests.reliability.suite.modelcheck import run_model


def test_database_follows_the_model(database: Database, scale: Scale) -> None:
    result = PartResult("model", "model-based testing")
    run_model(database, result, examples=scale.model_examples, steps=scale.model_steps)
    result.assert_clean()
    assert result.operations["book_event"] > 0
    assert result.checks["bookings and positions equal the model"] > 0
