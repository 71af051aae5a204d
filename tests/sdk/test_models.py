"""Models read the same from native psycopg values and from PostgREST's JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tessera_client import Event, EventStatus
from tessera_client._models import _interval

from ..support import TestDatabase
from .conftest import TOMORROW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24:00:00", timedelta(hours=24)),
        ("00:01:00", timedelta(minutes=1)),
        ("1 day", timedelta(days=1)),
        ("2 days 03:04:05.5", timedelta(days=2, hours=3, minutes=4, seconds=5.5)),
        ("1 mon", timedelta(days=30)),
        ("1 year 2 mons 3 days", timedelta(days=365 + 60 + 3)),
        ("-00:01:00.5", -timedelta(minutes=1, seconds=0.5)),
        ("1 day -02:00:00", timedelta(hours=22)),
    ],
)
def test_interval_text(text: str, expected: timedelta) -> None:
    assert _interval(text) == expected


@pytest.mark.parametrize("bad", ["", "soon", "1 fortnight"])
def test_interval_text_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        _interval(bad)


def test_postgresql_renders_intervals_the_way_the_parser_reads_them(db: TestDatabase) -> None:
    values = ["24 hours", "90 minutes", "1 day 2 hours", "30 days", "1 month", "1 second"]
    for value in values:
        row = db.sql(
            "select %s::interval as native, to_jsonb(%s::interval) #>> '{}' as text",
            (value, value),
        )[0]
        assert _interval(row["text"]) == _interval(row["native"]), value


def test_event_from_native_row_equals_event_from_json(db: TestDatabase) -> None:
    user = db.create_user()
    actor = db.actor(user)
    created = actor.call("create_event", title="Both ways", capacity=3, starts_at=TOMORROW)
    native = db.sql("select * from public.events where id = %s", (created["id"],))[0]
    json_row = db.sql(
        "select to_jsonb(e) as row from public.events as e where id = %s", (created["id"],)
    )[0]["row"]
    assert isinstance(json_row["id"], str) and isinstance(json_row["offer_ttl"], str)
    assert Event.from_row(native) == Event.from_row(json_row)
    assert Event.from_row(native).status is EventStatus.PUBLISHED
