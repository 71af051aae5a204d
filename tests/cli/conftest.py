"""Fixtures for the CLI tests: an event to act on, and a local stack of the module's own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera_client._local.stack import LocalStack

from ..support import TestDatabase, free_port
from .helpers import as_json


@pytest.fixture
def event(db: TestDatabase) -> str:
    """A published event of org@example.test with 1 seat; ada and bob exist too."""
    for email in ("org@example.test", "ada@example.test", "bob@example.test"):
        as_json(db, "users", "create", email)
    created = as_json(db, "events", "create", "Jazz night", "--capacity", "1",
                      "--as", "org@example.test")  # fmt: skip
    return str(created["id"])


@pytest.fixture(scope="module")
def local_stack() -> Iterator[dict[str, str]]:
    """A local stack of its own (the `tessera dev` defaults), as TESSERA_* variables."""
    root = Path(tempfile.mkdtemp(prefix="tessera-test-cli-"))
    root.chmod(0o755)  # as root, the server user must enter it
    env = {"TESSERA_DATA_DIR": str(root / "stack"), "TESSERA_PORT": str(free_port())}
    try:
        yield env
    finally:
        LocalStack(root / "stack").destroy()
        root.rmdir()


@pytest.fixture
def stack_env(local_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The module's local stack, selected through the environment for this test."""
    for name, value in local_stack.items():
        monkeypatch.setenv(name, value)
    return local_stack
