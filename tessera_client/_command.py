"""The ``tessera`` entry point: a one-line message instead of a traceback without ``[cli]``."""

from __future__ import annotations

import sys

from tessera_client._extras import MissingExtra

_CLI_MODULES = frozenset({"typer", "click", "rich", "platformdirs"})


def main() -> None:
    """Run the ``tessera`` command, or say which extra it needs."""
    try:
        from tessera_client.cli import run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _CLI_MODULES:
            raise
        print(f"error: {MissingExtra('cli', 'the tessera command', exc.name)}", file=sys.stderr)
        raise SystemExit(1) from None
    run()
