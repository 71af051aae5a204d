"""A local high-availability formation: pg_auto_failover's monitor, a primary and a standby.

``tessera dev up --ha`` builds it on localhost. The primary starts life as an ordinary local
stack (:class:`~tessera_client._local.stack.LocalStack`: Supabase bootstrap, then every
migration), is handed to ``pg_autoctl`` as an existing instance, and the standby is cloned from
it by ``pg_autoctl`` (``pg_basebackup``) and kept in synchronous replication: a commit is
acknowledged to the client only once the standby has flushed it, so losing the primary loses no
acknowledged commit (RPO 0).

Layout of a data directory::

    <data_dir>/ha.json            ports and binaries, so `status` and `down` need no flags
    <data_dir>/node1/             a LocalStack directory (pgdata/, jwt_secret, ...) - first primary
    <data_dir>/node2/pgdata/      the standby, cloned from node1
    <data_dir>/monitor/pgdata/    pg_auto_failover's monitor
    <data_dir>/run/               unix sockets, pg_autoctl's pid files
    <data_dir>/logs/<node>.log    pg_autoctl output per node

Ports: the nodes listen on ``port`` and ``port + 1``, the monitor on ``port + 2``.

Failure detection is tuned for a quick failover (:data:`MONITOR_SETTINGS`,
:data:`KEEPER_SETTINGS`): pg_auto_failover's defaults take about 30 s to promote the standby
after the primary dies; these settings take a few seconds, at the price of a formation that
fails over after a few seconds of unresponsiveness (docs/ha.md discusses the trade-off).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tessera_client._local import keys
from tessera_client._local.stack import (
    LOCAL_PASSWORD,
    LocalStack,
    StackError,
    _service_user,
    default_data_dir,
    default_port,
    find_pg_bin,
)

NODE_NAMES = ("node1", "node2")
FORMATION = "default"
# States in which pg_auto_failover lets a node accept writes.
PRIMARY_STATES = frozenset({"single", "wait_primary", "primary", "join_primary", "apply_settings"})

# Monitor health checks (milliseconds). The monitor fails over when a node's keeper has not
# reported for `node_considered_unhealthy_timeout` AND the node's Postgres fails a health check
# (`health_check_max_retries` retries, `health_check_retry_delay` apart, each bounded by
# `health_check_timeout`). Defaults: 5000 / 5000 / 2 / 2000 / 20000 -> about 30 s to promote.
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "2000",
    # Before promoting, the monitor waits this long for an unreachable primary to demote itself
    # (default 30000). Must stay above the keepers' network_partition_timeout below.
    "pgautofailover.primary_demote_timeout": "3000",
}
# Keeper timeouts (seconds), set with `pg_autoctl config set` on each node. Defaults: 20 / 5.
KEEPER_SETTINGS = {
    # A primary cut off from both the monitor and its standby demotes itself after this long,
    # so that a partitioned old primary stops accepting writes the new one cannot see.
    "timeout.network_partition_timeout": "2",
    "timeout.prepare_promotion_walreceiver": "1",
}
# Server settings the local stack uses that pg_auto_failover's include file would override.
SERVER_SETTINGS = {"wal_level": "logical", "shared_buffers": "128MB"}
# pg_auto_failover's internal users, trusted on the loopback interface only (local formation).
HBA_RULES = """\
# pg_auto_failover (tessera dev up --ha)
host replication pgautofailover_replicator 127.0.0.1/32 trust
host all pgautofailover_replicator 127.0.0.1/32 trust
host all pgautofailover_monitor 127.0.0.1/32 trust
"""


class FormationError(StackError):
    """The HA formation could not be started, stopped or changed."""


@dataclass(frozen=True)
class NodeStatus:
    """One data node as the monitor and the node's own files describe it."""

    name: str
    role: str  # "primary" or "secondary"
    state: str  # pg_auto_failover's reported state, e.g. "primary", "secondary", "wait_primary"
    port: int
    pid: int | None  # the postmaster
    keeper_pid: int | None  # `pg_autoctl run`
    data_dir: Path
    healthy: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "state": self.state,
            "port": self.port,
            "pid": self.pid,
            "keeper_pid": self.keeper_pid,
            "data_dir": str(self.data_dir),
            "healthy": self.healthy,
        }


@dataclass(frozen=True)
class FormationStatus:
    running: bool
    data_dir: Path
    port: int
    monitor_url: str
    db_url: str
    admin_url: str
    jwt_secret_file: Path
    anon_key: str | None
    service_role_key: str | None
    nodes: list[NodeStatus]

    @property
    def primary(self) -> NodeStatus | None:
        return next((n for n in self.nodes if n.role == "primary" and n.pid), None)

    def as_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "ha": True,
            "data_dir": str(self.data_dir),
            "port": self.port,
            "db_url": self.db_url,
            "admin_url": self.admin_url,
            "monitor_url": self.monitor_url,
            "jwt_secret_file": str(self.jwt_secret_file),
            "anon_key": self.anon_key,
            "service_role_key": self.service_role_key,
            "nodes": [n.as_dict() for n in self.nodes],
        }


def is_formation(data_dir: Path | None = None) -> bool:
    """Whether ``data_dir`` (default: the local stack's) holds an HA formation."""
    return ((data_dir or default_data_dir()) / "ha.json").exists()


def multi_host_url(
    ports: list[int], user: str = "postgres", database: str = "postgres", **params: str
) -> str:
    """A libpq URL naming every node; libpq tries them in order and keeps the first that fits."""
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    query = "&".join(
        f"{k}={v}" for k, v in {"target_session_attrs": "read-write", **params}.items()
    )
    return f"postgresql://{user}:{LOCAL_PASSWORD}@{hosts}/{database}?{query}"


class HaFormation:
    """Monitor + two data nodes in ``data_dir``; the nodes listen on ``port`` and ``port + 1``.

    Example:
        >>> ha = HaFormation(Path("/tmp/ha"), port=55450)
        >>> ha.up()                        # builds it on first run, restarts stopped nodes after
        >>> ha.status().db_url             # multi-host, target_session_attrs=read-write
        >>> ha.switchover()                # planned: the standby becomes the primary
        >>> ha.down()
    """

    def __init__(
        self, data_dir: Path | None = None, port: int | None = None, pg_bin: Path | None = None
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        saved = self._read_saved()
        self.port = port or int(saved.get("port", 0)) or default_port()
        self._pg_bin = pg_bin or (Path(saved["pg_bin"]) if "pg_bin" in saved else None)

    # -- layout ---------------------------------------------------------------------------
    @property
    def pg_bin(self) -> Path:
        if self._pg_bin is None:
            self._pg_bin = find_pg_bin()
        return self._pg_bin

    @property
    def node_ports(self) -> dict[str, int]:
        return {name: self.port + i for i, name in enumerate(NODE_NAMES)}

    @property
    def monitor_port(self) -> int:
        return self.port + len(NODE_NAMES)

    def pgdata(self, node: str) -> Path:
        return self.data_dir / node / "pgdata"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def log_file(self, node: str) -> Path:
        return self.data_dir / "logs" / f"{node}.log"

    @property
    def jwt_secret_file(self) -> Path:
        return self.data_dir / "node1" / "jwt_secret"

    @property
    def monitor_url(self) -> str:
        return (
            f"postgresql://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover"
            "?sslmode=disable"
        )

    @property
    def db_url(self) -> str:
        return multi_host_url(list(self.node_ports.values()))

    @property
    def admin_url(self) -> str:
        return multi_host_url(list(self.node_ports.values()), user="supabase_admin")

    def node_url(self, node: str, user: str = "postgres", database: str = "postgres") -> str:
        """A URL for one node, whatever its role (for tests and read replicas)."""
        return f"postgresql://{user}:{LOCAL_PASSWORD}@127.0.0.1:{self.node_ports[node]}/{database}"

    # -- lifecycle ------------------------------------------------------------------------
    def up(self, progress: Callable[[str], None] = lambda _msg: None) -> bool:
        """Build the formation on first run, else start whatever is not running.

        Returns False when every node was already running (a no-op). Waits until a primary
        accepts writes and, when both nodes run, until the standby is in synchronous
        replication.
        """
        _require_pg_autoctl()
        fresh = not (self.data_dir / "ha.json").exists()
        if fresh:
            if (self.data_dir / "stack.json").exists():
                raise FormationError(
                    f"{self.data_dir} holds a single-node local stack; choose another "
                    "TESSERA_DATA_DIR for the HA formation"
                )
            self._create(progress)
            return True
        started = False
        for node in ("monitor", *NODE_NAMES):
            if self.keeper_pid(node) is None:
                progress(f"starting {node}")
                self._spawn_run(node)
                started = True
        if started:
            self.wait_until_writable()
            self.wait_until_replicated()
        return started

    def down(self) -> bool:
        """Stop the nodes, then the monitor; returns False when nothing ran."""
        stopped = False
        for node in (*NODE_NAMES, "monitor"):
            pid = self.keeper_pid(node)
            if pid is None:
                continue
            self._autoctl(
                ["stop", "--pgdata", str(self.pgdata(node)), "--fast"], check=False, node=node
            )
            stopped = True
            if not _wait_gone(pid, 30):
                _kill_group(pid)
        for node in (*NODE_NAMES, "monitor"):
            pid = self.postmaster_pid(node)
            if pid is not None:  # a postmaster whose keeper was killed outright
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid, 30)
                stopped = True
        return stopped

    def destroy(self) -> None:
        """Stop everything and delete the data directory."""
        self.down()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill_node(self, node: str) -> None:
        """Simulate losing the node's machine: SIGKILL its pg_autoctl keeper, its postmaster
        and the postmaster's children (backends, WAL sender), all at once."""
        keeper = self.keeper_pid(node)
        postmaster = self.postmaster_pid(node)
        # PostgreSQL's children run in sessions of their own: killing the postmaster's process
        # group would miss them, and an orphaned backend could still answer a client.
        children = _children(postmaster) if postmaster else []
        if keeper:
            _kill_group(keeper)
        for pid in [postmaster, *children]:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start_node(self, node: str) -> None:
        """Start a stopped or killed node again; it rejoins as a standby of the current primary."""
        if self.keeper_pid(node) is None:
            self._spawn_run(node)

    def switchover(self, timeout: float = 60.0) -> str:
        """Planned switchover: promote the standby, demote the primary. Returns the new primary."""
        before = self.status()
        if before.primary is None:
            raise FormationError("no primary is running; nothing to switch over")
        self.wait_until_replicated(timeout)
        self._autoctl(
            [
                "perform", "switchover", "--pgdata", str(self.pgdata("monitor")),
                "--formation", FORMATION, "--wait", str(int(timeout)),
            ]
        )  # fmt: skip
        self.wait_until_replicated(timeout)
        after = self.status().primary
        if after is None or after.name == before.primary.name:
            raise FormationError("switchover finished but the primary did not change")
        return after.name

    def status(self) -> FormationStatus:
        anon = service = None
        if self.jwt_secret_file.exists():
            secret = self.jwt_secret_file.read_text().strip()
            anon = keys.api_key(secret, "anon")
            service = keys.api_key(secret, "service_role")
        states = self._monitor_states()
        nodes = []
        for name in NODE_NAMES:
            state, healthy = states.get(name, ("unknown", False))
            nodes.append(
                NodeStatus(
                    name=name,
                    role="primary" if state in PRIMARY_STATES else "secondary",
                    state=state,
                    port=self.node_ports[name],
                    pid=self.postmaster_pid(name),
                    keeper_pid=self.keeper_pid(name),
                    data_dir=self.pgdata(name),
                    healthy=healthy,
                )
            )
        return FormationStatus(
            running=any(n.pid for n in nodes),
            data_dir=self.data_dir,
            port=self.port,
            monitor_url=self.monitor_url,
            db_url=self.db_url,
            admin_url=self.admin_url,
            jwt_secret_file=self.jwt_secret_file,
            anon_key=anon,
            service_role_key=service,
            nodes=nodes,
        )

    # -- waiting --------------------------------------------------------------------------
    def wait_until_writable(self, timeout: float = 60.0) -> str:
        """Wait until some node accepts writes; returns its name."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for name in NODE_NAMES:
                try:
                    with psycopg.connect(self.node_url(name), connect_timeout=2) as conn:
                        # A standby being promoted is out of recovery but still read-only
                        # until the monitor confirms the old primary is gone.
                        row = conn.execute(
                            "select pg_is_in_recovery()"
                            " or current_setting('transaction_read_only')::boolean"
                        ).fetchone()
                        if row and not row[0]:
                            return name
                except psycopg.OperationalError as exc:
                    last = exc
            time.sleep(0.2)
        raise FormationError(f"no node accepted writes within {timeout:.0f} s: {last}")

    def wait_until_replicated(self, timeout: float = 120.0) -> None:
        """Wait until the monitor reports a primary and a synchronous secondary."""
        deadline = time.monotonic() + timeout
        states: dict[str, tuple[str, bool]] = {}
        while time.monotonic() < deadline:
            states = self._monitor_states()
            reported = sorted(state for state, _ in states.values())
            if reported == ["primary", "secondary"] and self._standby_is_synchronous():
                return
            time.sleep(0.3)
        raise FormationError(f"formation not replicated within {timeout:.0f} s: {states}")

    # -- internals ------------------------------------------------------------------------
    def _create(self, progress: Callable[[str], None]) -> None:
        if not (self.pg_bin.parent / "lib" / "pgautofailover.so").exists():
            raise FormationError(
                f"the PostgreSQL in {self.pg_bin} has no pg_auto_failover extension; on Debian: "
                "apt-get install postgresql-15-auto-failover (or set TESSERA_PG_BIN)"
            )
        for node in NODE_NAMES:
            _check_port_free(self.node_ports[node])
        _check_port_free(self.monitor_port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o755)
        for sub in ("run", "logs", "node2"):
            (self.data_dir / sub).mkdir(exist_ok=True)
        (self.data_dir / "ha.json").write_text(
            json.dumps({"port": self.port, "pg_bin": str(self.pg_bin)}, indent=2) + "\n"
        )

        progress("monitor")
        self._autoctl(
            [
                "create", "monitor", "--pgdata", str(self.pgdata("monitor")),
                "--pgport", str(self.monitor_port), "--hostname", "127.0.0.1",
                "--auth", "trust", "--no-ssl", "--pgctl", str(self.pg_bin / "pg_ctl"),
            ],
            before=lambda: self._prepare_monitor_conf(),
        )  # fmt: skip
        # pg_autoctl starts the monitor with `-h *`; a local formation stays on the loopback.
        self._autoctl(
            ["config", "set", "--pgdata", str(self.pgdata("monitor")),
             "postgresql.listen_addresses", "127.0.0.1"]
        )  # fmt: skip
        self._spawn_run("monitor")
        self._wait_monitor()
        self._tune_monitor()

        # The first primary is an ordinary local stack: bootstrap and migrations, then handed
        # to pg_autoctl, which registers it with the monitor as an existing instance.
        progress("primary: bootstrap and migrations")
        node1 = LocalStack(data_dir=self.data_dir / "node1", port=self.node_ports["node1"])
        node1._pg_bin = self.pg_bin
        node1.up()
        node1.down()
        (self.data_dir / "node1" / "stack.json").unlink()  # not a standalone stack any more
        self._append_conf(self.pgdata("node1"))
        self._hand_over(self.data_dir)
        self._create_node("node1")
        self._spawn_run("node1")
        self.wait_until_writable()

        progress("standby: cloning the primary")
        self._create_node("node2")
        self._spawn_run("node2")
        self.wait_until_replicated()

    def _create_node(self, node: str) -> None:
        self._autoctl(
            node=node,
            args=
            [
                "create", "postgres", "--pgdata", str(self.pgdata(node)),
                "--pgport", str(self.node_ports[node]), "--hostname", "127.0.0.1",
                "--listen", "127.0.0.1", "--name", node,
                "--username", "supabase_admin", "--dbname", "postgres",
                "--monitor", self.monitor_url, "--auth", "trust", "--no-ssl",
                "--pgctl", str(self.pg_bin / "pg_ctl"),
            ]
        )  # fmt: skip
        for key, value in KEEPER_SETTINGS.items():
            self._autoctl(
                ["config", "set", "--pgdata", str(self.pgdata(node)), key, value], node=node
            )

    def _prepare_monitor_conf(self) -> None:
        # Initialised here rather than by pg_autoctl so that its unix socket goes to run/
        # (Debian's default /var/run/postgresql is not writable by the server user).
        pgdata = self.pgdata("monitor")
        result = subprocess.run(
            [str(self.pg_bin / "initdb"), "-D", str(pgdata), "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-instructions"],
            capture_output=True, text=True, env=self._env(), preexec_fn=_drop_privileges(),
            cwd="/",
        )  # fmt: skip
        if result.returncode != 0:
            raise FormationError(f"initdb of the monitor failed: {result.stderr.strip()}")
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.run_dir}'\n")
            conf.write("listen_addresses = '127.0.0.1'\n")

    def _append_conf(self, pgdata: Path) -> None:
        # postgresql.auto.conf is read last, so these win over pg_autoctl's include file.
        with (pgdata / "postgresql.auto.conf").open("a") as conf:
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = '{value}'\n")
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.run_dir}'\n")
        # pg_autoctl appends its rules, after initdb's scram-sha-256 ones that would match
        # first; its internal users (replication, monitor health checks) go on top instead.
        # Application roles keep their passwords.
        hba = pgdata / "pg_hba.conf"
        hba.write_text(HBA_RULES + hba.read_text())

    def _tune_monitor(self) -> None:
        with psycopg.connect(self._monitor_admin_url(), autocommit=True) as conn:
            for key, value in MONITOR_SETTINGS.items():
                conn.execute(f"alter system set {key} = '{value}'")
            conn.execute("select pg_reload_conf()")

    def _monitor_admin_url(self) -> str:
        return f"postgresql:///pg_auto_failover?host={self.run_dir}&port={self.monitor_port}" + (
            f"&user={_server_user_name()}"
        )

    def _wait_monitor(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.monitor_url, connect_timeout=2) as conn:
                    conn.execute("select pgautofailover.formation_settings()")
                    return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.2)
        raise FormationError(f"the monitor did not start: {last}")

    def _monitor_states(self) -> dict[str, tuple[str, bool]]:
        try:
            with psycopg.connect(self.monitor_url, connect_timeout=2) as conn:
                rows = conn.execute(
                    "select nodename, reportedstate::text, health = 1"
                    " from pgautofailover.node where formationid = %s",
                    (FORMATION,),
                ).fetchall()
        except psycopg.Error:
            return {}
        return {str(name): (str(state), bool(healthy)) for name, state, healthy in rows}

    def _standby_is_synchronous(self) -> bool:
        for name in NODE_NAMES:
            try:
                with psycopg.connect(
                    self.node_url(name, user="supabase_admin"), connect_timeout=2
                ) as conn:
                    row = conn.execute(
                        "select count(*) from pg_stat_replication"
                        " where sync_state in ('sync', 'quorum') and state = 'streaming'"
                    ).fetchone()
                    recovery = conn.execute("select pg_is_in_recovery()").fetchone()
                    if recovery and not recovery[0]:
                        return bool(row and row[0] >= 1)
            except psycopg.OperationalError:
                continue
        return False

    def postmaster_pid(self, node: str) -> int | None:
        """The node's running postmaster, from ``postmaster.pid``; None when it is not running."""
        pidfile = self.pgdata(node) / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def keeper_pid(self, node: str) -> int | None:
        """The node's ``pg_autoctl run`` process; None when it is not running."""
        pidfile = (
            self.run_dir / "pg_autoctl" / str(self.pgdata(node)).lstrip("/") / ("pg_autoctl.pid")
        )
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def _read_saved(self) -> dict[str, str]:
        path = self.data_dir / "ha.json"
        if path.exists():
            data: dict[str, str] = json.loads(path.read_text())
            return data
        return {}

    def _env(self, node: str = "monitor") -> dict[str, str]:
        # pg_autoctl connects to its local server as PGUSER: the data nodes' superuser is
        # supabase_admin (Supabase's), the monitor's is the OS user that initialised it.
        user = "supabase_admin" if node in NODE_NAMES else _server_user_name()
        return {
            "PGUSER": user,
            "PATH": f"{self.pg_bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",  # else the nodes are initialised as SQL_ASCII
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.data_dir),
            "PGHOST": str(self.run_dir),
            "XDG_CONFIG_HOME": str(self.data_dir / "config"),
            "XDG_DATA_HOME": str(self.data_dir / "share"),
            "XDG_RUNTIME_DIR": str(self.run_dir),
        }

    def _hand_over(self, path: Path) -> None:
        # As root: the unprivileged server user owns every file, as for the single-node stack.
        LocalStack(data_dir=self.data_dir / "node1", pg_bin=self.pg_bin)._hand_over(path)

    def _autoctl(
        self,
        args: list[str],
        check: bool = True,
        before: Callable[[], None] | None = None,
        node: str = "monitor",
    ) -> subprocess.CompletedProcess[str]:
        self._hand_over(self.data_dir)
        if before:
            before()
        result = subprocess.run(
            [_require_pg_autoctl(), *args],
            capture_output=True,
            text=True,
            env=self._env(node),
            preexec_fn=_drop_privileges(),
            cwd="/",
            timeout=300,
        )
        if check and result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
            raise FormationError(f"pg_autoctl {' '.join(args[:2])} failed:\n{tail}")
        return result

    def _spawn_run(self, node: str) -> None:
        self._hand_over(self.data_dir)
        log = self.log_file(node).open("a")
        subprocess.Popen(
            [_require_pg_autoctl(), "run", "--pgdata", str(self.pgdata(node))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(node),
            preexec_fn=_drop_privileges(),
            start_new_session=True,  # its own process group: killed as one, outlives the CLI
            cwd="/",
        )
        log.close()
        deadline = time.monotonic() + 10
        while self.keeper_pid(node) is None and time.monotonic() < deadline:
            time.sleep(0.1)


def _server_user_name() -> str:
    if os.geteuid() == 0:
        return _service_user().pw_name
    import getpass

    return getpass.getuser()


def _drop_privileges() -> Callable[[], None] | None:
    if os.geteuid() != 0:
        return None
    user = _service_user()

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop


def _require_pg_autoctl() -> str:
    found = shutil.which("pg_autoctl") or (
        "/usr/bin/pg_autoctl" if Path("/usr/bin/pg_autoctl").exists() else None
    )
    if not found:
        raise FormationError(
            "pg_autoctl is not installed; on Debian: apt-get install "
            "pg-auto-failover-cli postgresql-15-auto-failover"
        )
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child of this process lingers as a zombie until reaped.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _check_port_free(port: int) -> None:
    import socket

    with socket.socket() as sock:
        # Like PostgreSQL itself: connections in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise FormationError(f"port {port} is in use: {exc}") from None
