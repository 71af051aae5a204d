"""`tessera bench`: dependencies checked first, results written only where --out-dir says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..support import TestDatabase

REPO = Path(__file__).resolve().parents[2]
FLASH = ["bench", "flash", "--smoke", "--users", "40", "--seats", "10", "--cancellations", "2"]


def _tessera(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera_client.cli", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ, **env},
    )  # fmt: skip


def test_a_missing_chart_library_fails_before_anything_runs(tmp_path: Path) -> None:
    without_matplotlib = (
        "import sys; sys.modules['matplotlib'] = None;from tessera_client.cli import app; app()"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", without_matplotlib, "bench", "hot", "--save", "--out-dir",
         str(tmp_path), "--db-url", "postgresql://postgres:x@10.255.255.1/none"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < 15  # no connection was even tried (it would hang)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs matplotlib" in lines[0]
    assert "pip install 'tessera-client[bench]'" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_results_go_to_out_dir_or_the_data_folder_never_the_checkout(
    db: TestDatabase, tmp_path: Path
) -> None:
    docs = REPO / "docs"
    before = {p: p.stat().st_mtime_ns for p in docs.rglob("*") if p.is_file()}
    out = tmp_path / "results"
    ran = _tessera(*FLASH, "--save", "--out-dir", str(out), "--db-url", db.url(), cwd=REPO,
                   env={})  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    names = {p.name for p in out.iterdir()}
    assert {"latest.json", "benchmarks.md"} <= names  # (flash alone draws no chart)
    data_home = tmp_path / "data"
    ran = _tessera(*FLASH, "--save", "--db-url", db.url(), cwd=REPO,
                   env={"XDG_DATA_HOME": str(data_home)})  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (data_home / "tessera" / "bench" / "latest.json").exists()
    assert (data_home / "tessera" / "bench" / "benchmarks.md").exists()
    after = {p: p.stat().st_mtime_ns for p in docs.rglob("*") if p.is_file()}
    assert after == before


def _bench_servers() -> dict[int, str]:
    """PostgreSQL servers of throwaway bench stacks now running: pid -> data directory."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0].endswith("/postgres") and "-D" in argv[:-1]:
            data = argv[argv.index("-D") + 1]
            if "tessera-bench-" in data:
                found[int(proc.name)] = data
    return found


def test_sigterm_stops_the_throwaway_stack_and_exits_143() -> None:
    before = _bench_servers()
    bench = subprocess.Popen(
        [sys.executable, "-m", "tessera_client.cli", "bench", "pgbench", "--smoke", "--no-save"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (started := {p: d for p, d in _bench_servers().items() if p not in before}):
            assert bench.poll() is None, bench.communicate()[1]
            assert time.monotonic() < deadline, "no throwaway stack started"
            time.sleep(0.2)
        time.sleep(1.0)  # the benchmark is under way
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 143
    finally:
        if bench.poll() is None:
            bench.kill()
    assert not set(started) & set(_bench_servers()), "its PostgreSQL still runs"
    assert not any(Path(data).exists() for data in started.values()), "its files remain"
