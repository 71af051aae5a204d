"""Abuse scenario: what refused calls of an attacker cost a hot event's bookings.

An attacker holds a booking of the hot event that is dead (cancelled) and calls
``claim_offer`` on it in ``abuse_attackers`` loops, as fast as the answers come back. Each
call is refused (TS007). The attackers are SDK clients of the same kind and pool as the
bookers, as in the hot scenario (and as in the measurement that found the problem).

Before the security review every refused claim took the event's exclusive lock and cut the
hot event's bookings almost in half; now it is refused from a plain read. The scenario books
the hot event with ``abuse_clients`` clients alone and with the attackers running, twice
each, alternately, and reports the ratio of booking throughput (the target: the attack costs
at most 10 %).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tessera_client.bench._driver import Call, UserSupply, bench_client, closed_loop
from tessera_client.bench._stats import Phase
from tessera_client.bench.scenarios import (
    HOT_CAPACITY,
    BenchContext,
    _booking,
    _transport,
    _users_needed,
)

__all__ = ["run_abuse"]

ROUNDS = 2
"""Quiet and attacked phases alternate this many times, so drift affects both alike."""


async def run_abuse(ctx: BenchContext) -> dict[str, Any]:
    """Hot-event booking throughput without and with attackers making refused calls."""
    settings = ctx.settings
    bookers, attackers = settings.abuse_clients, settings.abuse_attackers
    [organizer, attacker] = await ctx.admin.create_users(2, f"{ctx.label}-abuse-people")
    users = UserSupply(ctx.admin, f"{ctx.label}-abuse")
    quiet: list[Phase] = []
    attacked: list[Phase] = []
    attacks: list[Phase] = []
    events = []
    accounted = True
    async with bench_client(ctx.db_url, bookers + attackers) as client:
        transport = _transport(client)
        attacker_identity = transport.user_identity(attacker)

        async def hot_event(title: str) -> Any:
            event = await client.as_user(organizer).create_event(
                title, capacity=HOT_CAPACITY, starts_at=ctx.starts_at()
            )
            events.append(event.id)
            return event

        def phase(description: str, count: int, prepare: Any) -> Any:
            return closed_loop(
                prepare,
                clients=count,
                seconds=settings.seconds,
                warmup=settings.warmup,
                progress=ctx.progress,
                description=description,
            )

        best = 0.0
        for round_number in range(1, ROUNDS + 1):
            # Each phase books an event of its own, so the same users can book again.
            users.rewind()
            await users.ensure(_users_needed(best, settings))
            event = await hot_event(f"Hot event alone, round {round_number}")
            booking = _booking(transport, users, "public", [event.id])
            quiet.append(await phase(f"hot event alone, round {round_number}", bookers, booking))
            best = max(best, quiet[-1].throughput)
            accounted &= await _confirmed(client, event.id) == quiet[-1].calls_total

            users.rewind()
            await users.ensure(_users_needed(best, settings))
            event = await hot_event(f"Hot event under attack, round {round_number}")
            dead = await client.as_user(attacker).book(event.id)
            await client.as_user(attacker).cancel(dead.id)
            claim = {"booking_id": dead.id}

            async def refused_claim(claim: dict[str, Any] = claim) -> object:
                return await transport.call_function(
                    attacker_identity, "public", "claim_offer", claim
                )

            async def prepare_attack(call: Call = refused_claim) -> Call:
                return call

            booking = _booking(transport, users, "public", [event.id])
            booked, attack = await asyncio.gather(
                phase(f"hot event under attack, round {round_number}", bookers, booking),
                phase(f"{attackers} attackers, round {round_number}", attackers, prepare_attack),
            )
            attacked.append(booked)
            attacks.append(attack)
            accounted &= await _confirmed(client, event.id) == booked.calls_total
    quiet_rate = sum(p.throughput for p in quiet) / ROUNDS
    attacked_rate = sum(p.throughput for p in attacked) / ROUNDS
    refusals = sum(sum(p.errors.values()) for p in attacks)
    unexpected = {
        code: count
        for p in attacks
        for code, count in p.errors.items()
        if code not in ("TS007", "TS009")
    }
    booking_errors = sum(sum(p.errors.values()) for p in quiet + attacked)
    invariants = await ctx.invariants(events)
    ratio = round(attacked_rate / quiet_rate, 3) if quiet_rate > 0 else None
    return {
        "seconds": settings.seconds,
        "warmup": settings.warmup,
        "bookers": bookers,
        "attackers": attackers,
        "rounds": ROUNDS,
        "quiet": [p.as_dict() for p in quiet],
        "attacked": [p.as_dict() for p in attacked],
        "attacks": [p.as_dict() for p in attacks],
        "quiet_throughput": round(quiet_rate, 1),
        "attacked_throughput": round(attacked_rate, 1),
        "attack_refusals_per_second": round(
            refusals / (settings.seconds * ROUNDS) if settings.seconds else 0.0, 1
        ),
        "ratio": ratio,
        "bookings_accounted": accounted,
        "invariants": invariants,
        "ok": (
            accounted
            and not invariants
            and not unexpected
            and booking_errors == 0
            and sum(p.calls_total for p in attacks) == 0  # every attack was refused
        ),
    }


async def _confirmed(client: Any, event_id: Any) -> int:
    """Seats confirmed on the event: one per successful booking call."""
    availability = await client.as_service().availability(event_id)
    return int(availability.seats_confirmed)
