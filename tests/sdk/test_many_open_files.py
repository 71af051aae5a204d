"""A process with many open files (a busy web server, a thousand clients in one process).

The pool checks a connection before lending it. ``select()`` cannot watch a descriptor
numbered 1024 or more: the check raised for every such connection, the pool put the healthy
connection back and tried again with growing pauses, and calls hung until the pool's timeout.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

from tessera_client import AsyncTessera
from tessera_client.local import create_local_user

from ..support import TestDatabase
from .conftest import FAST_RETRY, JWT_SECRET, TOMORROW

HIGH = 1100  # every descriptor this process opens next is numbered above this


@contextmanager
def low_descriptors_taken() -> Iterator[None]:
    """Holds every free descriptor up to HIGH, so new sockets are numbered above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 2 * HIGH, f"the test needs a descriptor limit of {2 * HIGH} (hard: {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * HIGH), hard))
    held: list[int] = []
    try:
        while not held or held[-1] < HIGH:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def sockets_above(number: int) -> list[int]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if int(name) > number and os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.append(int(name))
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
    return found


async def test_connections_numbered_above_1024_are_lent_and_used(db: TestDatabase) -> None:
    organizer = create_local_user(db.url())
    with low_descriptors_taken():
        async with AsyncTessera.connect(
            db.url("authenticator"), jwt_secret=JWT_SECRET, retry=FAST_RETRY, max_size=1,
            timeout=3,
        ) as client:  # fmt: skip
            alice = client.as_user(organizer.id)
            event = await alice.create_event("A crowded process", 5, TOMORROW)
            assert sockets_above(HIGH), "the pool's connection is numbered above 1024"
            for _ in range(5):  # each call borrows the one pooled connection, checked
                assert (await client.availability(event.id)).capacity == 5
            booking = await alice.book(event.id)
            assert (await alice.cancel(booking.id)).status.value == "cancelled"
