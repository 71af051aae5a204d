"""Every Python snippet in README.md runs as written, against a local stack of its own.

Snippets run one by one, each as its own script, with the environment a reader has after
`tessera dev up`: TESSERA_PORT names the stack (here a test port), and the Supabase ones get
SUPABASE_URL / SUPABASE_ANON_KEY / SUPABASE_JWT_SECRET and a user's TESSERA_EMAIL /
TESSERA_PASSWORD, served by the in-repo stand-ins for PostgREST, supabase-auth and Realtime
over the same stack.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera_client._local.stack import LocalStack
from tessera_client.local import create_local_user

from .standins import RealtimeStandIn, SupabaseStandIn
from .support import free_port

README = Path(__file__).resolve().parent.parent / "README.md"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def reader_env() -> Iterator[dict[str, str]]:
    """A running local stack and Supabase stand-ins on it, as environment variables."""
    root = Path(tempfile.mkdtemp(prefix="tessera-test-readme-"))
    root.chmod(0o755)  # as root, the server user must enter it
    port = free_port()
    stack = LocalStack(data_dir=root / "stack", port=port)
    previous = os.environ.get("TESSERA_REALTIME_BROADCAST")
    os.environ["TESSERA_REALTIME_BROADCAST"] = "on"  # the Realtime stand-in reads broadcasts
    try:
        stack.up()
        secret = stack.jwt_secret()
        reader = create_local_user(stack.db_url, "reader@example.test", "correct horse")
        with (
            SupabaseStandIn(stack.url("authenticator"), stack.db_url, secret) as rest,
            RealtimeStandIn(stack.db_url, secret) as realtime,
        ):
            rest.realtime_url = realtime.url
            yield {
                "TESSERA_PORT": str(port),
                "TESSERA_DATA_DIR": str(root / "stack"),
                "SUPABASE_URL": rest.url,
                "SUPABASE_ANON_KEY": rest.anon_key,
                "SUPABASE_JWT_SECRET": secret,
                "TESSERA_EMAIL": reader.email,
                "TESSERA_PASSWORD": "correct horse",
            }
    finally:
        if previous is None:
            os.environ.pop("TESSERA_REALTIME_BROADCAST", None)
        else:
            os.environ["TESSERA_REALTIME_BROADCAST"] = previous
        stack.destroy()
        root.rmdir()


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 8


@pytest.mark.parametrize(
    "snippet",
    SNIPPETS,
    ids=[f"{n}:{s.strip().splitlines()[0][:40]}" for n, s in enumerate(SNIPPETS)],
)
def test_a_readme_snippet_runs_as_written(
    snippet: str, reader_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, **reader_env},
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{snippet}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_the_cli_walkthrough_runs(reader_env: dict[str, str]) -> None:
    """The walkthrough's commands in order; its example ids stand for the ones this run got."""
    section = README.read_text().split("## A walkthrough with the CLI", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None
    lines = block.group(1).splitlines()
    ids: dict[str, str] = {}  # the README's 4-digit example prefix -> this run's id
    env = {**os.environ, **reader_env, "COLUMNS": "100"}
    for n, line in enumerate(lines):
        if not line.startswith("tessera "):
            continue
        argv = shlex.split(line.split("  #", 1)[0])
        if argv[1] in ("watch", "dev"):
            continue  # a live view that runs until Ctrl-C; the stack is already up
        ran = subprocess.run(
            [sys.executable, "-m", "tessera_client.cli", *(ids.get(a, a) for a in argv[1:])],
            capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert ran.returncode == 0, (line, ran.stdout, ran.stderr)
        # The output the README shows under a command names the id it made.
        shown = lines[n + 1] if n + 1 < len(lines) else ""
        example = re.search(r"^#   .*? ([0-9a-f]{4})[0-9a-f]*-", shown)
        made = re.search(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ran.stdout
        )
        if example and made:
            ids[example.group(1)] = made.group(0)
    assert {"0b6c", "5d1e"} <= ids.keys()
