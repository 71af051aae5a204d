"""Read-your-writes bookkeeping of the direct transport (pure logic; the replica itself is
exercised in tests/ha/test_replica_reads.py), and RetryPolicy.spanning."""

from __future__ import annotations

import uuid

from tessera_client import RetryPolicy
from tessera_client._identity import Identity
from tessera_client._transports._postgres import _WritePositions


def test_each_caller_waits_for_its_own_last_write_only() -> None:
    alice, bob = Identity.user(uuid.uuid4()), Identity.user(uuid.uuid4())
    positions = _WritePositions()
    assert positions.position(alice) is None  # never wrote: any replica will do
    positions.record(alice, "0/3000060")
    positions.record(alice, "0/2000000")  # an older position never lowers the bar
    assert positions.position(alice) == "0/3000060"
    assert positions.position(bob) is None
    positions.record(bob, "1/10")
    assert positions.position(bob) == "1/10"


def test_forgotten_callers_leave_a_floor_so_read_your_writes_still_holds() -> None:
    positions = _WritePositions(capacity=2)
    first, second, third = (Identity.user(uuid.uuid4()) for _ in range(3))
    positions.record(first, "0/500")
    positions.record(second, "0/100")
    positions.record(third, "0/200")  # evicts `first`, the least recent writer
    assert positions.position(first) == "0/500"  # the floor keeps its write visible
    assert positions.position(Identity.anonymous()) == "0/500"
    assert positions.position(third) == "0/500"


def test_retry_policy_spanning_lasts_at_least_that_long() -> None:
    policy = RetryPolicy.spanning(20)
    shortest = sum(
        min(policy.max_delay, policy.initial_delay * 2**retry) / 2
        for retry in range(policy.attempts - 1)
    )
    assert shortest >= 20 > shortest - policy.max_delay
