"""How big and how long each benchmark scenario runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["SCENARIOS", "BenchSettings"]

SCENARIOS: tuple[str, ...] = (
    "hot",
    "pgbench",
    "openloop",
    "spread",
    "flash",
    "waitlist",
    "connections",
    "realtime",
    "abuse",
)
"""Every scenario, in the order ``tessera bench all`` runs them."""


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """Knobs of the benchmark suite. The defaults are the measured run of the issue.

    Attributes:
        clients: Concurrent clients of the hot, baseline and spread scenarios.
        seconds: Measured seconds of each hot / baseline / spread phase.
        warmup: Seconds each phase runs before measuring starts (not counted).
        ceiling: Also measure the client ceiling: a function that does nothing, through
            the same pool and call path, at each client count.
        spread_events: Events the spread scenario books over.
        flash_users: Users who rush the flash sale at once.
        flash_seats: Seats of the flash sale.
        flash_cancellations: Confirmed bookings cancelled after the sale.
        flash_clients: Connections the flash sale's users share.
        waitlist_size: People waiting in the big-waitlist scenario.
        waitlist_samples: Samples of each latency measured at that size.
        connections: Client connections held open at once through PgBouncer.
        pgbouncer_pool: Server connections PgBouncer may open.
        bookings_per_connection: Bookings each of those clients makes.
        realtime_subscribers: Subscribers of the realtime scenario.
        realtime_rate: Bookings per second during the realtime scenario.
        realtime_seconds: Length of the realtime scenario.
        open_loop_clients: Connections of the open-loop scenario.
        open_loop_factor: Its arrival rate, as a multiple of the baseline's best closed-loop
            throughput.
        abuse_clients: Clients booking the hot event of the abuse scenario.
        abuse_attackers: Loops making refused calls against it at the same time.
        abuse_attack_rate: Refused calls each attacker loop offers per second (a client over
            the internet, ~50 ms per round trip, makes about 20).
        smoke: A seconds-long version, to check the suite works (not to measure).
    """

    clients: tuple[int, ...] = (1, 8, 32, 128)
    seconds: float = 20.0
    warmup: float = 2.0
    ceiling: bool = True
    spread_events: int = 1000
    flash_users: int = 5000
    flash_seats: int = 1000
    flash_cancellations: int = 500
    flash_clients: int = 128
    waitlist_size: int = 100_000
    waitlist_samples: int = 1000
    connections: int = 2000
    pgbouncer_pool: int = 20
    bookings_per_connection: int = 3
    realtime_subscribers: int = 100
    realtime_rate: float = 100.0
    realtime_seconds: float = 10.0
    open_loop_clients: int = 32
    open_loop_factor: float = 1.5
    abuse_clients: int = 32
    abuse_attackers: int = 16
    abuse_attack_rate: float = 20.0
    smoke: bool = False

    @classmethod
    def for_smoke(cls) -> BenchSettings:
        """Every scenario in a few seconds: small sizes, the same checks."""
        return cls(
            clients=(1, 8),
            seconds=0.7,
            warmup=0.0,
            spread_events=50,
            flash_users=500,
            flash_seats=100,
            flash_cancellations=50,
            flash_clients=32,
            waitlist_size=2000,
            waitlist_samples=20,
            connections=200,
            pgbouncer_pool=5,
            bookings_per_connection=2,
            realtime_subscribers=5,
            realtime_rate=20.0,
            realtime_seconds=1.0,
            open_loop_clients=8,
            abuse_clients=4,
            abuse_attackers=2,
            smoke=True,
        )

    def replace(self, **changes: Any) -> BenchSettings:
        """A copy with some settings changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["clients"] = list(self.clients)
        return data
