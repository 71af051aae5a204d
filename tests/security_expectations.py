"""Who may do what: the one table of expectations the security tests are generated from.

The world every expectation refers to (built by :func:`build_world`):

- users: attendees ``A`` and ``B``, organizers ``O`` and ``O2``, and ``W``, a bystander
  attendee whose data nobody but organizers should see;
- events of ``O``: ``E`` (published, 1 seat: A confirmed, W waitlisted), ``F`` (published,
  1 seat, offer mode: A holds an offer after W cancelled), ``D`` (draft), ``C`` (cancelled),
  ``DC`` (a draft cancelled before it was ever published: still only O's);
  event of ``O2``: ``E2`` (published: W confirmed, plus a stray cancelled booking ``bX`` of W
  written directly, with no ledger entry, so that deleting it is possible);
- bookings: ``bA`` (A on E), ``bW`` (W on E), ``bWF`` (W on F), ``bAF`` (A on F), ``bW2`` and
  ``bX`` (W on E2).

Actors, in column order: ``anon``; ``A``; ``B``; ``O``; ``O2``; ``service`` (service_role).
An outcome is ``ok`` or the SQLSTATE of the error the caller must get.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .support import Actor, TestDatabase

ACTORS = ("anon", "A", "B", "O", "O2", "service")
USERS = ("A", "B", "O", "O2", "W")
OK = "ok"
DENIED = "42501"
TOMORROW = datetime.now(UTC) + timedelta(days=1)


@dataclass(frozen=True)
class Rows:
    """The rows of a table an actor sees: those of the named events or of the named users."""

    events: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    everything: bool = False

    def matches(self, world: World, row: dict[str, Any]) -> bool:
        """Whether ``row`` (with ``event_id`` and, where the table has one, ``user_id``) is in."""
        if self.everything:
            return True
        events = {world.events[name] for name in self.events}
        users = {world.users[name] for name in self.users}
        return row["event_id"] in events or row.get("user_id") in users


def rows(events: str = "", users: str = "") -> Rows:
    return Rows(frozenset(events.split()), frozenset(users.split()))


ALL = Rows(everything=True)
NONE = rows()
PUBLIC_EVENTS = rows(events="E F C E2")


def outcomes(line: str) -> dict[str, str]:
    """``"42501 ok …"`` in ACTORS order -> {actor: outcome}."""
    values = line.split()
    assert len(values) == len(ACTORS), line
    return dict(zip(ACTORS, values, strict=True))


# ===========================================================================================
# Tables: direct SELECT (which rows), INSERT, UPDATE, DELETE — as PostgREST would run them.
# A SELECT entry is the visible Rows, or the SQLSTATE when the table may not be read at all.
# ===========================================================================================
TABLE_SELECT: dict[str, dict[str, Rows | str]] = {
    "public.events": {
        "anon": PUBLIC_EVENTS, "A": PUBLIC_EVENTS, "B": PUBLIC_EVENTS,
        "O": rows(events="E F D C DC E2"), "O2": PUBLIC_EVENTS, "service": ALL,
    },
    "public.bookings": {
        "anon": DENIED, "A": rows(users="A"), "B": NONE,
        "O": rows(events="E F D C DC"), "O2": rows(events="E2"), "service": ALL,
    },
    "public.ledger": {
        "anon": DENIED, "A": rows(users="A"), "B": NONE,
        "O": rows(events="E F D C DC"), "O2": rows(events="E2"), "service": ALL,
    },
}  # fmt: skip

#                                          anon   A      B      O      O2     service
TABLE_WRITES: dict[str, dict[str, dict[str, str]]] = {
    "public.events": {  # never deleted, even by service_role: cancel_event instead
        "insert": outcomes("42501  42501  42501  42501  42501  ok"),
        "update": outcomes("42501  42501  42501  42501  42501  ok"),
        "delete": outcomes("42501  42501  42501  42501  42501  42501"),
    },
    "public.bookings": {
        "insert": outcomes("42501  42501  42501  42501  42501  ok"),
        "update": outcomes("42501  42501  42501  42501  42501  ok"),
        "delete": outcomes("42501  42501  42501  42501  42501  ok"),
    },
    "public.ledger": {  # append-only, even for service_role
        "insert": outcomes("42501  42501  42501  42501  42501  ok"),
        "update": outcomes("42501  42501  42501  42501  42501  42501"),
        "delete": outcomes("42501  42501  42501  42501  42501  42501"),
    },
}

# Per table: the key and scope columns a SELECT reads, and one statement per write, each
# touching exactly one row of the world (run in a transaction that is rolled back).
TABLE_SQL: dict[str, dict[str, str]] = {
    "public.events": {
        "select": "select id, id as event_id from public.events",
        "insert": """insert into public.events (organizer_id, title, starts_at, capacity,
                         sales_close_at)
                     values (%(O)s, 'Direct', now() + interval '2 days', 5,
                         now() + interval '1 day')""",
        "update": "update public.events set title = title || '!' where id = %(E)s",
        "delete": "delete from public.events where id = %(D)s",
    },
    "public.bookings": {
        "select": "select id, event_id, user_id from public.bookings",
        "insert": """insert into public.bookings (event_id, user_id, seats, status, confirmed_at)
                     values (%(E2)s, %(B)s, 1, 'confirmed', now())""",
        "update": "update public.bookings set seats = seats where id = %(bA)s",
        "delete": "delete from public.bookings where id = %(bX)s",
    },
    "public.ledger": {
        "select": "select seq as id, event_id, user_id from public.ledger",
        "insert": """insert into public.ledger (seq, event_id, kind, seats_available,
                         waitlist_count, event_status)
                     values (9223372036854775000, %(E)s, 'booked', 0, 0, 'published')""",
        "update": """update public.ledger set detail = detail
                     where seq = (select min(seq) from public.ledger where event_id = %(E)s)""",
        "delete": """delete from public.ledger
                     where seq = (select min(seq) from public.ledger where event_id = %(E)s)""",
    },
}


# ===========================================================================================
# Functions in public: each case calls one function with arguments valid for the case.
# ===========================================================================================
@dataclass(frozen=True)
class Case:
    """One call of ``function`` with ``args(world)``, and what each actor must get."""

    function: str
    label: str
    args: Callable[[World], dict[str, Any]]
    expected: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.function}[{self.label}]"


def _case(function: str, label: str, args: Callable[[World], dict[str, Any]], line: str) -> Case:
    return Case(function, label, args, outcomes(line))


def _event(name: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"event_id": w.events[name]}


def _booking(name: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"booking_id": w.bookings[name]}


def _no_args(world: World) -> dict[str, Any]:
    return {}


def _new_event(world: World) -> dict[str, Any]:
    return {"title": "Talk", "capacity": 10, "starts_at": TOMORROW}


def _book(name: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"event_id": w.events[name], "seats": 1}


def _capacity(name: str, capacity: int) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"event_id": w.events[name], "capacity": capacity}


def _update(name: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"event_id": w.events[name], "venue": "Another hall"}


FUNCTION_CASES: list[Case] = [
    #                                                      anon  A     B     O     O2    service
    _case("create_event", "new event", _new_event,        "42501 ok    ok    ok    ok    42501"),
    _case("book_event", "E2", _book("E2"),                "42501 ok    ok    ok    ok    42501"),
    _case("book_event", "draft D", _book("D"),            "42501 TS001 TS001 TS003 TS001 42501"),
    _case("book_event", "discarded DC", _book("DC"),      "42501 TS001 TS001 TS003 TS001 42501"),
    _case("cancel_booking", "bA", _booking("bA"),         "42501 ok    TS002 TS002 TS002 ok"),
    _case("claim_offer", "bAF", _booking("bAF"),          "42501 ok    TS002 TS002 TS002 42501"),
    _case("expire_offers", "none due", _no_args,          "42501 42501 42501 42501 42501 ok"),
    _case("event_availability", "E", _event("E"),         "ok    ok    ok    ok    ok    ok"),
    _case("event_availability", "draft D", _event("D"),   "TS001 TS001 TS001 ok    TS001 ok"),
    _case("event_availability", "discarded DC", _event("DC"), "TS001 TS001 TS001 ok  TS001 ok"),
    _case("waitlist_position", "bW", _booking("bW"),      "42501 TS002 TS002 ok    TS002 ok"),
    _case("waitlist_position", "bA", _booking("bA"),      "42501 ok    TS002 ok    TS002 ok"),
    _case("set_event_capacity", "E", _capacity("E", 3),   "42501 42501 42501 ok    42501 ok"),
    _case("update_event", "E", _update("E"),              "42501 42501 42501 ok    42501 ok"),
    _case("update_event", "draft D", _update("D"),        "42501 TS001 TS001 ok    TS001 ok"),
    _case("update_event", "cancelled C", _update("C"),    "42501 42501 42501 TS007 42501 TS007"),
    _case("publish_event", "draft D", _event("D"),        "42501 TS001 TS001 ok    TS001 ok"),
    _case("publish_event", "discarded DC", _event("DC"),  "42501 TS001 TS001 TS007 TS001 TS007"),
    _case("cancel_event", "E", _event("E"),               "42501 42501 42501 ok    42501 ok"),
    _case("event_changes", "E", _event("E"),              "ok    ok    ok    ok    ok    ok"),
    _case("event_changes", "draft D", _event("D"),        "TS001 TS001 TS001 ok    TS001 ok"),
    _case("event_changes", "discarded DC", _event("DC"),  "TS001 TS001 TS001 ok    TS001 ok"),
    _case("event_attendees", "E", _event("E"),            "42501 42501 42501 ok    42501 ok"),
    _case("event_attendees", "draft D", _event("D"),      "42501 TS001 TS001 ok    TS001 ok"),
    _case("event_waitlist", "E", _event("E"),             "42501 42501 42501 ok    42501 ok"),
    _case("event_waitlist", "draft D", _event("D"),       "42501 TS001 TS001 ok    TS001 ok"),
    _case("my_bookings", "own", _no_args,                 "42501 ok    ok    ok    ok    42501"),
    _case("check_invariants", "all events", _no_args,     "42501 42501 42501 42501 42501 ok"),
    _case("ledger_feed", "everything", _no_args,          "42501 42501 42501 42501 42501 ok"),
    _case("ledger_position", "now", _no_args,             "ok    ok    ok    ok    ok    ok"),
    _case("tessera_schema_version", "now", _no_args,      "ok    ok    ok    ok    ok    ok"),
    _case("my_changes", "own", _no_args,                  "42501 ok    ok    ok    ok    42501"),
]  # fmt: skip

# Functions in public that are not RPCs (e.g. trigger functions): nobody may call them.
NOT_CALLABLE: set[str] = set()


# ===========================================================================================
# Realtime: which actors may receive broadcasts on which topic (private channel join check)
# ===========================================================================================
#                                               anon   A      B      O      O2     service
REALTIME_TOPICS: dict[str, dict[str, str]] = {
    "user:A": outcomes(                         "no     yes    no     no     no     yes"),
    "user:B": outcomes(                         "no     no     yes    no     no     yes"),
    "event:E": outcomes(                        "yes    yes    yes    yes    yes    yes"),
    "event:C": outcomes(                        "yes    yes    yes    yes    yes    yes"),
    "event:D": outcomes(                        "no     no     no     yes    no     yes"),
    "event:DC": outcomes(                       "no     no     no     yes    no     yes"),
    "event:missing": outcomes(                  "no     no     no     no     no     yes"),
    "event:not-a-uuid": outcomes(               "no     no     no     no     no     yes"),
    "room:lobby": outcomes(                     "no     no     no     no     no     yes"),
}  # fmt: skip


# ===========================================================================================
# The world
# ===========================================================================================
@dataclass
class World:
    """Ids of the users, events and bookings above, and one Actor per actor name."""

    users: dict[str, uuid.UUID] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    events: dict[str, uuid.UUID] = field(default_factory=dict)
    bookings: dict[str, uuid.UUID] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)

    def ids(self) -> dict[str, uuid.UUID]:
        """Every named id, for statement parameters such as ``%(E)s``."""
        return {**self.users, **self.events, **self.bookings}

    def topic(self, name: str) -> str:
        """``user:A`` -> ``user:<A's id>``; ``event:E`` -> ``event:<E's id>``; else as is."""
        kind, _, ref = name.partition(":")
        if kind == "user" and ref in self.users:
            return f"user:{self.users[ref]}"
        if kind == "event" and ref in self.events:
            return f"event:{self.events[ref]}"
        if name == "event:missing":
            return f"event:{uuid.UUID(int=7)}"
        return name


def build_world(db: TestDatabase) -> World:
    """Create the world described in the module docstring through the RPCs."""
    w = World()
    for name in USERS:
        email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.test"
        w.users[name] = db.create_user(email)
        w.emails[name] = email
    people = {name: db.actor(w.users[name]) for name in USERS}
    w.actors = {name: people[name] for name in ("A", "B", "O", "O2")}
    w.actors["anon"] = db.actor()
    w.actors["service"] = db.service()

    def create(owner: str, title: str, **options: Any) -> uuid.UUID:
        row = people[owner].call("create_event", title=title, starts_at=TOMORROW, **options)
        return uuid.UUID(str(row["id"]))

    def book(user: str, event: str) -> uuid.UUID:
        row = people[user].call("book_event", event_id=w.events[event])
        return uuid.UUID(str(row["booking_id"]))

    w.events["E"] = create("O", "Evening", capacity=1)
    w.events["F"] = create("O", "Festival", capacity=1, promotion_mode="offer")
    w.events["D"] = create("O", "Draft", capacity=4, publish=False)
    w.events["C"] = create("O", "Called off", capacity=4)
    people["O"].call("cancel_event", event_id=w.events["C"])
    w.events["DC"] = create("O", "Discarded draft", capacity=4, publish=False)
    people["O"].call("cancel_event", event_id=w.events["DC"])
    w.events["E2"] = create("O2", "Elsewhere", capacity=5)

    w.bookings["bA"] = book("A", "E")
    w.bookings["bW"] = book("W", "E")
    w.bookings["bWF"] = book("W", "F")
    w.bookings["bAF"] = book("A", "F")
    people["W"].call("cancel_booking", booking_id=w.bookings["bWF"])  # A now holds an offer
    w.bookings["bW2"] = book("W", "E2")
    w.bookings["bX"] = db.sql(
        """insert into public.bookings (event_id, user_id, seats, status, cancelled_at)
           values (%s, %s, 1, 'cancelled', now()) returning id""",
        (w.events["E2"], w.users["W"]),
    )[0]["id"]
    return w
