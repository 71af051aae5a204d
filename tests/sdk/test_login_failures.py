"""A rejected login is permanent: it fails at once, as AuthenticationFailed, not retried."""

from __future__ import annotations

import time

import pytest

from tessera_client import AsyncTessera, AuthenticationFailed, Unavailable

from ..support import TestDatabase


@pytest.mark.parametrize("wrong", ["password=wrong", "user=nobody"])
async def test_a_rejected_login_fails_fast_and_is_not_retried(db: TestDatabase, wrong: str) -> None:
    url = (
        db.url().replace("password=postgres", "password=wrong")
        if "password" in wrong
        else (db.url().replace("user=postgres", "user=nobody"))
    )
    started = time.monotonic()
    with pytest.raises(AuthenticationFailed) as caught:
        async with AsyncTessera.connect(url, timeout=10) as tessera:
            await tessera.list_events()
    assert time.monotonic() - started < 3
    assert "authentication failed" in (caught.value.detail or "") or "nobody" in str(
        caught.value.detail
    )


async def test_an_unreachable_host_is_unavailable_within_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable):
        async with AsyncTessera.connect("postgresql://postgres:x@10.255.255.1/db", timeout=2):
            pass
    assert time.monotonic() - started < 4
