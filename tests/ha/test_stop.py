"""`tessera dev down` on the HA formation stops every process it started (runs last)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tessera_client._local.ha import HaFormation
from tessera_client.cli import app


def test_down_stops_every_process(formation: HaFormation) -> None:
    pids = [
        pid
        for node in formation.status().nodes
        for pid in (node.pid, node.keeper_pid)
        if pid is not None
    ] + [formation.keeper_pid("monitor")]
    result = CliRunner().invoke(
        app, ["dev", "down"], env={"TESSERA_DATA_DIR": str(formation.data_dir)}
    )
    assert result.exit_code == 0, result.output
    assert formation.status().running is False
    assert not [pid for pid in pids if pid is None or _running(pid)]


def _running(pid: int) -> bool:
    """Alive and not a zombie (keepers started by this process linger as zombies until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
