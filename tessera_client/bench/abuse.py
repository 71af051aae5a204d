"""Abuse scenario: what refused calls of an attacker cost a hot event's bookings.

An attacker holds a booking of the hot event that is dead (cancelled) and calls
``claim_offer`` on it in ``abuse_attackers`` loops, as fast as the answers come back. Each
call is refused (TS007, or TS009 once the attacker's budget is spent). Bookers and attackers
are both pgbench clients making PostgREST-style calls, each in its own process: the measure
is what the refused calls cost the database. (Driven from one Python process, as this
scenario first was, bookers and attackers shared that process's CPU and event loop, and the
ratio mostly measured the client: about 0.77 with nothing locked by the refusals.)

Before the security review every refused claim took the event's exclusive lock and cut the
hot event's bookings almost in half; now it is refused from a plain read. The scenario books
the hot event with ``abuse_clients`` clients alone and with the attackers running, twice
each, alternately, and reports the ratio of booking throughput (the target: the attack costs
at most 10 %).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tessera_client.bench._baseline import drop_baseline, install_baseline
from tessera_client.bench._driver import bench_client
from tessera_client.bench.pgbench import (
    HOT_CAPACITY,
    TESSERA_FUNCTION,
    create_pgbench_users,
    pgbench_phase,
    users_for,
)

__all__ = ["run_abuse"]

ROUNDS = 2
"""Quiet and attacked phases alternate this many times, so drift affects both alike."""


async def run_abuse(ctx: Any) -> dict[str, Any]:
    """Hot-event booking throughput without and with attackers making refused calls."""
    settings = ctx.settings
    bookers, attackers = settings.abuse_clients, settings.abuse_attackers
    attack_rate = attackers * settings.abuse_attack_rate if settings.abuse_attack_rate else None
    prefix = f"{ctx.label}-abuse-"
    [organizer, attacker] = await ctx.admin.create_users(2, f"{ctx.label}-abuse-people")
    quiet: list[dict[str, Any]] = []
    attacked: list[dict[str, Any]] = []
    attacks: list[dict[str, Any]] = []
    events = []
    accounted = True
    next_user = 0
    best = 0.0
    await install_baseline(ctx.admin)  # holds the attack's pgbench wrapper
    try:
        async with bench_client(ctx.db_url, 2) as client:

            async def hot_event(title: str) -> Any:
                event = await client.as_user(organizer).create_event(
                    title, capacity=HOT_CAPACITY, starts_at=ctx.starts_at()
                )
                events.append(event.id)
                return event

            async def book(event: Any, description: str) -> dict[str, Any]:
                nonlocal next_user
                # Each booking needs a user of its own; before the first phase, assume a
                # rate well above what one hot event reaches.
                needed = users_for(best or 5000.0, settings.seconds, bookers)
                await create_pgbench_users(ctx.admin, prefix, next_user, needed)
                first, next_user = next_user, next_user + needed
                return await pgbench_phase(
                    ctx.db_url, function=TESSERA_FUNCTION, event_id=event.id, clients=bookers,
                    seconds=settings.seconds, prefix=prefix, first_user=first,
                    progress=ctx.progress, description=description,
                )  # fmt: skip

            for round_number in range(1, ROUNDS + 1):
                event = await hot_event(f"Hot event alone, round {round_number}")
                quiet.append(await book(event, f"hot event alone, round {round_number}"))
                best = max(best, float(quiet[-1]["throughput"]))
                accounted &= await _confirmed(client, event.id) == quiet[-1]["ops"]

                event = await hot_event(f"Hot event under attack, round {round_number}")
                dead = await client.as_user(attacker).book(event.id)
                await client.as_user(attacker).cancel(dead.id)
                attack_phase = pgbench_phase(
                    ctx.db_url, function=TESSERA_FUNCTION, event_id=event.id, clients=attackers,
                    seconds=settings.seconds, prefix=prefix, first_user=0, progress=ctx.progress,
                    attack=(attacker, dead.id), rate=attack_rate,
                    description=f"{attackers} attackers, round {round_number}",
                )  # fmt: skip
                booked, attack = await asyncio.gather(
                    book(event, f"hot event under attack, round {round_number}"), attack_phase
                )
                attacked.append(booked)
                attacks.append(attack)
                # The one confirmed seat the attacker once held was cancelled: only bookers'.
                accounted &= await _confirmed(client, event.id) == booked["ops"]
    finally:
        await drop_baseline(ctx.admin)
    quiet_rate = sum(float(p["throughput"]) for p in quiet) / ROUNDS
    attacked_rate = sum(float(p["throughput"]) for p in attacked) / ROUNDS
    refusals = sum(int(p["ops"]) for p in attacks)
    errors = sum(int(p["error_count"]) for p in quiet + attacked + attacks)
    invariants = await ctx.invariants(events)
    ratio = round(attacked_rate / quiet_rate, 3) if quiet_rate > 0 else None
    return {
        "driver": "pgbench, PostgREST-style transactions as authenticator (bookers and attackers)",
        "seconds": settings.seconds,
        "bookers": bookers,
        "attackers": attackers,
        "attack_rate_offered": attack_rate,
        "rounds": ROUNDS,
        "quiet": quiet,
        "attacked": attacked,
        "attacks": attacks,
        "quiet_throughput": round(quiet_rate, 1),
        "attacked_throughput": round(attacked_rate, 1),
        "attack_refusals_per_second": round(
            refusals / (settings.seconds * ROUNDS) if settings.seconds else 0.0, 1
        ),
        "ratio": ratio,
        "bookings_accounted": accounted,
        "invariants": invariants,
        # An attack call that was not refused (or refused otherwise) raises: an error.
        "ok": accounted and not invariants and errors == 0 and refusals > 0,
    }


async def _confirmed(client: Any, event_id: Any) -> int:
    """Seats confirmed on the event: one per successful booking call."""
    availability = await client.as_service().availability(event_id)
    return int(availability.seats_confirmed)
