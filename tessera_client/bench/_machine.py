"""What the numbers were measured on: the machine and the database server."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from tessera_client.bench._driver import Admin

__all__ = ["describe_database", "describe_machine"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def describe_machine() -> dict[str, Any]:
    """Cores, RAM, CPU model, OS, Python version and the load when the run started."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "cpu_model": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": load,
    }


async def describe_database(admin: Admin) -> dict[str, Any]:
    """Server version, durability settings and whether realtime publishing is on."""
    settings = {
        row["name"]: row["setting"]
        for row in await admin.rows(
            "select name, current_setting(name) as setting from pg_catalog.pg_settings "
            "where name = any(%s)",
            (
                [
                    "server_version",
                    "synchronous_commit",
                    "fsync",
                    "shared_buffers",
                    "max_connections",
                    "wal_level",
                    "default_transaction_isolation",
                ],
            ),
        )
    }
    trigger = await admin.value(
        "select t.tgenabled::text from pg_catalog.pg_trigger as t "
        "where t.tgrelid = 'public.ledger'::regclass and t.tgname = 'publish_ledger_entry'"
    )
    replication_role = await admin.value("select current_setting('session_replication_role')")
    return {
        "postgresql": settings.get("server_version"),
        "settings": settings,
        "realtime_trigger": "enabled" if trigger in ("O", "A") else (trigger or "missing"),
        "session_replication_role": replication_role,
    }
