# Shared set-up for scripts/demo and scripts/test (sourced, not run).
# Creates or refreshes the project virtual environment in .venv when pyproject.toml changed.

tessera_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

find_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: Tessera needs Python 3.11 or newer (python3 --version)" >&2
    return 1
}

# ensure_venv EXTRAS: install Tessera (editable) with the given extras, e.g. "dev" (everything).
ensure_venv() {
    local extras="$1" venv="$tessera_root/.venv" stamp python
    python="$(find_python)"
    if [ ! -x "$venv/bin/python" ]; then
        echo "==> creating virtual environment in .venv"
        "$python" -m venv "$venv"
    fi
    stamp="$(cat "$tessera_root/pyproject.toml" | sha256sum | cut -c1-16)-$extras"
    if [ "$(cat "$venv/.tessera-installed" 2>/dev/null)" != "$stamp" ]; then
        echo "==> installing Tessera and its dependencies (.[$extras])"
        "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null
        "$venv/bin/python" -m pip install --quiet -e "$tessera_root[$extras]"
        echo "$stamp" >"$venv/.tessera-installed"
    fi
    export PATH="$venv/bin:$PATH"
}

# PostgreSQL 15 from Debian, when present: the one pgTAP and plpgsql_check are built for.
prefer_debian_postgres() {
    if [ -z "${TESSERA_PG_BIN:-}" ] && [ -x /usr/lib/postgresql/15/bin/postgres ]; then
        export TESSERA_PG_BIN=/usr/lib/postgresql/15/bin
    fi
}
