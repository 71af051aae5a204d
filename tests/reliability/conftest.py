"""Fixtures for the reliability suite: the test database as a reliability ``Database``.

Sizes scale with ``TESSERA_RELIABILITY_SCALE`` (default 1: the short run CI makes).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.suite import Database, Scale

from ..support import TestDatabase


@pytest.fixture
def database(db: TestDatabase) -> Iterator[Database]:
    """The test's fresh database, with the rate limits lifted."""
    database = Database(db.admin_url)
    database.relax_rate_limits()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="session")
def scale() -> Scale:
    """How big the runs are: ``TESSERA_RELIABILITY_SCALE`` times the CI sizes."""
    return Scale.from_environment()
