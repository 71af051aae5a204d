"""One HA formation for tests/ha: monitor, primary and synchronous standby on localhost.

Driven by pg_auto_failover and built in a temporary directory on free ports. The tests run in
file order on the same formation; test_stop.py, last, stops it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera_client._local.ha import HaFormation
from tessera_client.bench.failover import free_port_block

from ..tools import require_tool

PACKAGES = "pg-auto-failover-cli postgresql-15-auto-failover"


@pytest.fixture(scope="package")
def formation() -> Iterator[HaFormation]:
    require_tool("pg_autoctl", PACKAGES, "/usr/bin/pg_autoctl")
    if not Path("/usr/share/postgresql/15/extension/pgautofailover.control").exists():
        pytest.fail(f"the pgautofailover extension is missing; apt-get install {PACKAGES}")
    workdir = Path(tempfile.mkdtemp(prefix="tessera-ha-test-"))
    workdir.chmod(0o755)  # the unprivileged server user must enter it when tests run as root
    ha = HaFormation(workdir / "ha", port=free_port_block(3))
    try:
        ha.up()
        yield ha
    finally:
        ha.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
