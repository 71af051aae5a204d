"""Helpers for the CLI tests: run `tessera` in-process (CliRunner) or as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from typer.testing import CliRunner

from tessera_client.cli import app

from ..support import TestDatabase

runner = CliRunner()


def tessera(db: TestDatabase | None, *args: str, code: int = 0, stdin: str | None = None) -> str:
    """Run `tessera ARGS` in-process (against ``db`` when given); check the exit code."""
    argv = list(args)
    if db is not None:
        argv += ["--db-url", db.url("postgres")]
    result = runner.invoke(app, argv, input=stdin)
    assert result.exit_code == code, (argv, result.output, result.exception)
    return result.output


def as_json(db: TestDatabase | None, *args: str, code: int = 0) -> Any:
    return json.loads(tessera(db, *args, "--json", code=code))


def run(*args: str, columns: int = 80, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`tessera ARGS` as a separate process, as a person's shell runs it (COLUMNS=80)."""
    return subprocess.run(
        [sys.executable, "-m", "tessera_client.cli", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": str(columns), **(env or {})},
    )  # fmt: skip
