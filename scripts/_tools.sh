# External tools the test suite calls (sourced by scripts/test, not run).
# install_test_tools installs what is missing (apt as root, npm ci); verify_test_tools then checks
# every tool by running it, so a missing install step fails here, loudly, on every machine.

# Debian packages: the package that provides each tool is listed explicitly, never left to
# Recommends (pg_prove is only a Recommends of postgresql-15-pgtap).
test_apt_packages=(
    postgresql-15                         # server binaries the tests run (initdb, postgres, pg_ctl)
    postgresql-15-pgtap                   # the pgtap extension
    libtap-parser-sourcehandler-pgtap-perl  # pg_prove
    postgresql-15-plpgsql-check           # plpgsql_check, used by `supabase db lint`
    postgresql-15-cron                    # pg_cron, offer expiry on the local stack
    pgbouncer                             # transaction-pooling tests
    postgresql-15-auto-failover           # pg_auto_failover extension (monitor + nodes), tests/ha
    pg-auto-failover-cli                  # pg_autoctl, which drives the HA formation
    chromium                              # browser tests of the example booking page
    libatomic1                            # needed by Playwright's bundled driver (node)
)

install_test_tools() {
    local missing=() pkg
    for pkg in "${test_apt_packages[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "==> installing ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        else
            echo "error: missing test tools: ${missing[*]}" >&2
            echo "install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
            exit 1
        fi
    fi

    # The pinned Supabase CLI (package.json / package-lock.json).
    if [ ! -x node_modules/.bin/supabase ] ||
        [ "$(node_modules/.bin/supabase --version 2>/dev/null)" != "$(pinned_supabase_cli)" ]; then
        if ! command -v npm >/dev/null; then
            echo "error: npm is needed for the pinned Supabase CLI; install Node.js 20, then: npm ci" >&2
            exit 1
        fi
        echo "==> installing the pinned Supabase CLI (npm ci)"
        npm ci --no-audit --no-fund --loglevel=error
    fi
}

pinned_supabase_cli() {
    sed -n 's/.*"supabase": "\([0-9.]*\)".*/\1/p' package.json
}

# verify_test_tools: run each tool once; name the package that provides a missing one.
verify_test_tools() {
    local pg=/usr/lib/postgresql/15 ext=/usr/share/postgresql/15/extension problems=()
    check() {  # check PACKAGE COMMAND...: the command must succeed
        local package="$1"
        shift
        "$@" >/dev/null 2>&1 || problems+=("'$*' failed: apt-get install $package")
    }
    check postgresql-15 "$pg/bin/postgres" --version
    check postgresql-15 "$pg/bin/initdb" --version
    check postgresql-15 "$pg/bin/pg_ctl" --version
    check postgresql-15 "$pg/bin/pgbench" --version
    check libtap-parser-sourcehandler-pgtap-perl pg_prove --version
    check postgresql-15-pgtap test -f "$ext/pgtap.control"
    check postgresql-15-plpgsql-check test -f "$ext/plpgsql_check.control"
    check postgresql-15-cron test -f "$ext/pg_cron.control"
    check pgbouncer "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" --version
    check pg-auto-failover-cli "$(command -v pg_autoctl || echo /usr/bin/pg_autoctl)" --version
    check postgresql-15-auto-failover test -f "$ext/pgautofailover.control"
    check chromium chromium --version
    local want
    want="$(pinned_supabase_cli)"
    if [ "$(node_modules/.bin/supabase --version 2>/dev/null)" != "$want" ]; then
        problems+=("the pinned Supabase CLI $want is not in node_modules: npm ci")
    fi
    if [ ${#problems[@]} -gt 0 ]; then
        echo "error: test tools missing or broken:" >&2
        printf '  - %s\n' "${problems[@]}" >&2
        exit 1
    fi
    echo "==> test tools verified: PostgreSQL 15, pg_prove, pgTAP, plpgsql_check, pg_cron, PgBouncer, Chromium, pg_auto_failover, Supabase CLI $want"
}

# verify_venv_tools: tools that come with the Python environment, checked once it exists.
verify_venv_tools() {
    if ! python -m playwright --version >/dev/null 2>&1; then
        echo "error: Playwright's driver does not start: apt-get install libatomic1, then pip install -e '.[dev]'" >&2
        exit 1
    fi
}
