"""Concurrency torture: random calls from many threads, then every invariant and the ledger."""

from __future__ import annotations

from tests.reliability.suite import Database, PartResult, Scale
from tests.reliability.suite.torture import replay_ledger, run_torture


def test_random_load_keeps_every_invariant(database: Database, scale: Scale) -> None:
    result = run_torture(
        database,
        PartResult("torture", "concurrency torture"),
        seconds=scale.torture_seconds,
        workers=scale.torture_workers,
    )
    result.assert_clean()
    assert result.outcomes["book_event → confirmed"] > 0
    assert result.outcomes["book_event → waitlisted"] > 0
    assert result.outcomes["cancel_booking → cancelled"] > 0
    assert result.checks["ledger reader saw each entry once"] == 6  # ledger_feed + 5 events
    assert result.outcomes["cancel_event → done"] == 1


def test_the_ledger_replay_notices_an_entry_that_does_not_fit(database: Database) -> None:
    """The checker has teeth: a forged promotion of a cancelled booking is reported."""
    organizer, guest = database.create_users(2)
    caller = database.caller(organizer)
    event = caller.call("create_event", title="Replay", capacity=1, starts_at="2100-01-01")
    booking = caller.as_user(guest).call("book_event", event_id=event["id"])
    caller.as_user(guest).call("cancel_booking", booking_id=booking["booking_id"])
    assert replay_ledger(database) == []
    database.sql(
        """insert into public.ledger (seq, event_id, booking_id, user_id, kind, status,
                                      seats_available, waitlist_count, event_status)
           values ((select max(seq) + 1 from public.ledger), %s, %s, %s, 'promoted',
                   'confirmed', 0, 0, 'published')""",
        (event["id"], booking["booking_id"], guest),
    )
    problems = replay_ledger(database)
    assert any("cancelled -> confirmed" in p for p in problems), problems
    assert any(str(booking["booking_id"]) in p and "replays to" in p for p in problems)
    assert len(problems) == 2, problems  # the forged entry's two problems, nothing else
