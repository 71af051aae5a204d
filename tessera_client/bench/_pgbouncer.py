"""A throwaway PgBouncer in transaction-pooling mode, started and stopped by the benchmark."""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

__all__ = ["PgBouncer", "PgBouncerError", "raise_open_files_limit"]

SERVICE_USER = "tessera"  # PgBouncer refuses to run as root, like PostgreSQL
DATABASE = "tessera_bench"


class PgBouncerError(RuntimeError):
    """PgBouncer is missing or did not start."""


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's soft limit of open files towards ``needed``; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pgbouncer() -> str:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise PgBouncerError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    return binary


class PgBouncer:
    """PgBouncer on a free local port in front of the server of ``server_url``.

    Clients log in with the same user and password as the server's (SCRAM); PgBouncer logs
    in to the server with them too, and opens at most ``pool_size`` server connections.

    Example:
        >>> with PgBouncer(db_url, pool_size=20, max_clients=2000) as bouncer:
        ...     client = AsyncTessera.connect(bouncer.dsn)
    """

    def __init__(self, server_url: str, *, pool_size: int, max_clients: int) -> None:
        info = psycopg.conninfo.conninfo_to_dict(server_url)
        self._host = str(info.get("host") or "127.0.0.1")
        self._port = int(info.get("port") or 5432)
        self._dbname = str(info.get("dbname") or "postgres")
        self.user = str(info.get("user") or "postgres")
        self._password = str(info.get("password") or "")
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.port = 0
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """Where clients connect (transaction pooling: no session state may be kept)."""
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.port,
            dbname=DATABASE,
            user=self.user,
            password=self._password,
        )

    @property
    def admin_dsn(self) -> str:
        """PgBouncer's admin console (``SHOW POOLS``)."""
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.port,
            dbname="pgbouncer",
            user=self.user,
            password=self._password,
        )

    def start(self) -> None:
        binary = find_pgbouncer()
        raise_open_files_limit(self.max_clients + self.pool_size + 200)
        self.port = _free_port()
        workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-pgbouncer-"))
        workdir.chmod(0o755)
        self._workdir = workdir
        quote = '"'
        (workdir / "userlist.txt").write_text(
            f"{quote}{self.user}{quote} {quote}{self._password}{quote}\n"
        )
        (workdir / "pgbouncer.ini").write_text(
            f"""[databases]
{DATABASE} = host={self._host} port={self._port} dbname={self._dbname} \
pool_size={self.pool_size} max_db_connections={self.pool_size}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {workdir}/userlist.txt
admin_users = {self.user}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = {self.max_clients + 50}
listen_backlog = 4096
log_connections = 0
log_disconnections = 0
logfile = {workdir}/pgbouncer.log
"""
        )
        argv = [binary, str(workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            user = _service_user()
            argv[1:1] = ["-u", user.pw_name]
            for path in (workdir, *workdir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
            (workdir / "userlist.txt").chmod(0o600)
        # Its log goes to the logfile; an unread stderr pipe would fill up and stall it.
        self._process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/"
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise PgBouncerError(f"pgbouncer exited: {self._log_tail()}")
            try:
                psycopg.connect(self.dsn, prepare_threshold=None, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        raise PgBouncerError(f"pgbouncer did not accept connections: {last}; {self._log_tail()}")

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        log = self._workdir / "pgbouncer.log"
        lines = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        return " | ".join(lines)

    def pools(self) -> dict[str, Any]:
        """PgBouncer's ``SHOW POOLS`` row of the benchmark database."""
        with psycopg.connect(self.admin_dsn, autocommit=True, prepare_threshold=None) as conn:
            cur = conn.execute("SHOW POOLS")
            names = [column.name for column in cur.description or ()]
            for row in cur.fetchall():
                record = dict(zip(names, row, strict=True))
                if record.get("database") == DATABASE:
                    return record
        return {}

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise PgBouncerError(
            f"running as root needs the '{SERVICE_USER}' user to run PgBouncer "
            "(it is created when the local stack starts)"
        ) from exc
