"""Browser tests of the example booking page (examples/web) in Debian's Chromium.

Each test gets a fresh database, the app running in its own process (as ``scripts/web`` runs
it) with a JWT secret of its own, and people who sign in through the development sign-in
page in separate browser contexts. Chromium and Playwright are required: a test fails with
the install command when one is missing, never skips.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import Browser, Page, Playwright, sync_playwright
except ImportError:
    pytest.fail(
        "Playwright is missing; install it with: pip install -e '.[dev,web]'", pytrace=False
    )

from tessera_client import Booking, Event, Tessera

from ..support import TestDatabase
from ..tools import require_tool

APP = Path(__file__).parents[2] / "examples" / "web" / "run.py"

# Chromium as the tests run it: no sandbox (root in CI), no GPU, no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    return require_tool("chromium", "chromium", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebApp:
    """The example app serving one test database."""

    url: str
    jwt_secret: str
    db: TestDatabase
    browser: Browser

    def create_event(self, title: str, capacity: int, **options: Any) -> Event:
        """An upcoming, published event, made by an organizer through the SDK."""
        organizer = self.db.create_user()
        with Tessera.connect(self.db.url("authenticator")) as tessera:
            return tessera.as_user(organizer).create_event(
                title, capacity, datetime.now(UTC) + timedelta(days=3), **options
            )

    def book_as(self, user_id: uuid.UUID, event: Event) -> Booking:
        """A booking made outside the browser, by someone else."""
        with Tessera.connect(self.db.url("authenticator")) as tessera:
            return tessera.as_user(user_id).book(event.id)

    def cancel_as(self, user_id: uuid.UUID, booking: Booking) -> None:
        with Tessera.connect(self.db.url("authenticator")) as tessera:
            tessera.as_user(user_id).cancel(booking.id)

    def person(self, email: str) -> Page:
        """A browser of its own for one person, signed in through the dev sign-in page."""
        page = self.browser.new_context().new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{self.url}/dev/sign-in")
        page.fill("input[name=email]", email)
        page.click("form[data-sign-in-form] button")
        page.wait_for_url(f"{self.url}/")
        page.wait_for_selector("#my-bookings[data-live]")
        return page

    def open_event(self, page: Page, event: Event) -> None:
        """Open the event page and wait until both live streams are connected."""
        page.goto(f"{self.url}/events/{event.id}")
        page.wait_for_selector("#availability[data-live]")
        page.wait_for_selector("#my-bookings[data-live]")

    def bookings_of(self, event: Event) -> list[dict[str, Any]]:
        return self.db.sql(
            "select user_id, status from public.bookings where event_id = %s order by created_at",
            (event.id,),
        )


@pytest.fixture
def web(db: TestDatabase, browser: Browser, tmp_path: Path) -> Iterator[WebApp]:
    """The app, started as ``scripts/web`` starts it, on a fresh database."""
    port, secret = _free_port(), secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "DATABASE_URL": db.url("authenticator"),
        "SUPABASE_JWT_SECRET": secret,
        "DEV_ADMIN_URL": db.url("postgres"),
    }
    log = tmp_path / "app.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, str(APP), "--port", str(port)], env=env, stdout=output, stderr=output
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server, log)
        yield WebApp(url=url, jwt_secret=secret, db=db, browser=browser)
    finally:
        for context in browser.contexts:
            context.close()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the example app exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the example app did not answer within 30 s")
