"""Run the booking page: ``python examples/web/run.py [--port 8000]`` (``scripts/web`` does).

With ``DATABASE_URL`` and ``SUPABASE_JWT_SECRET`` set it serves that database as they say
(``DEV_ADMIN_URL`` too, to enable the development sign-in page). Without them it starts the
local stack (``TESSERA_PORT``, ``TESSERA_DATA_DIR``; ``tessera dev down`` stops it), adds a
few people and events the first time, and enables the development sign-in page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import uvicorn
from app import Settings, create_app

from tessera_client import AsyncTessera
from tessera_client.local import create_local_user

PEOPLE = ("alice@example.test", "bob@example.test", "carol@example.test")


def local_settings() -> Settings:
    """Start the local stack with ``tessera dev up`` (a no-op when it runs), read its URL and
    JWT secret from ``tessera dev status --json``, and add sample data once."""
    subprocess.run(["tessera", "dev", "up"], check=True)
    status = json.loads(
        subprocess.run(
            ["tessera", "dev", "status", "--json"], check=True, capture_output=True, text=True
        ).stdout
    )
    as_postgrest = psycopg.conninfo.conninfo_to_dict(status["db_url"]) | {"user": "authenticator"}
    settings = Settings(
        database_url=psycopg.conninfo.make_conninfo(**as_postgrest),  # type: ignore[arg-type]
        jwt_secret=Path(status["jwt_secret_file"]).read_text().strip(),
        dev_admin_url=status["db_url"],
    )
    asyncio.run(add_sample_events(settings))
    return settings


async def add_sample_events(settings: Settings) -> None:
    """People to sign in as, and three events, unless there are upcoming events already."""
    assert settings.dev_admin_url is not None
    async with AsyncTessera.connect(settings.database_url) as tessera:
        if await tessera.list_events(status="published", starts_after=datetime.now(UTC)):
            return
        for email in PEOPLE:
            create_local_user(settings.dev_admin_url, email)
        organizer = tessera.as_user(create_local_user(settings.dev_admin_url).id)
        soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=7)
        await organizer.create_event(
            "Jazz night", capacity=40, starts_at=soon, venue="The Blue Room",
            description="Two sets of standards and a late jam.",
        )  # fmt: skip
        await organizer.create_event(
            "Board games", capacity=6, starts_at=soon + timedelta(days=2), venue="Library",
            max_seats_per_booking=2,
        )  # fmt: skip
        await organizer.create_event(
            "House concert", capacity=1, starts_at=soon + timedelta(days=5), waitlist_limit=2,
            description="One seat, two places on the waitlist: try it from two browsers.",
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL") and os.environ.get("SUPABASE_JWT_SECRET"):
        settings = Settings(
            database_url=os.environ["DATABASE_URL"],
            jwt_secret=os.environ["SUPABASE_JWT_SECRET"],
            dev_admin_url=os.environ.get("DEV_ADMIN_URL"),
        )
    else:
        settings = local_settings()
    print(f"Tessera bookings on http://{args.host}:{args.port}/")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
