"""External tools the tests call: found, or the test fails with the install command.

scripts/test installs and verifies every one of them; a test never skips because a tool is
missing, since a skipped check proves nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def require_tool(name: str, package: str, *fallbacks: str) -> str:
    """Path of the executable ``name`` (or the first existing fallback path), else fail."""
    found = shutil.which(name) or next((f for f in fallbacks if Path(f).exists()), None)
    if not found:
        pytest.fail(f"missing test tool {name}; install it with: apt-get install {package}")
    return found


def pgbouncer_binary() -> str:
    return require_tool("pgbouncer", "pgbouncer", "/usr/sbin/pgbouncer")
