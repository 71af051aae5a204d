"""Where Tessera's SQL lives: in the source tree, or inside the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE / "_sql"  # filled by the wheel build (pyproject force-include)
_SOURCE = _PACKAGE.parent / "supabase"


def supabase_dir() -> Path:
    return _BUNDLED if _BUNDLED.exists() else _SOURCE


def migrations_dir() -> Path:
    return supabase_dir() / "migrations"


def bootstrap_sql() -> Path:
    return supabase_dir() / "local" / "bootstrap.sql"
