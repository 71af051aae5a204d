"""Hostile input: every RPC, generated garbage, several identities.

The RPCs are read from the catalog (every function in ``public`` an API role may execute),
so a new one is covered without touching this file. Each is called through a connection
that behaves like PostgREST, as anonymous, as an attendee, as the organizer and with forged
tokens (a ``sub`` that is not a UUID, none at all, or a user who no longer exists), with
arguments drawn by hypothesis: extreme and negative integers, nulls, long, unicode and
SQL-looking strings, random and real ids, extreme timestamps including ±infinity, huge
intervals; trailing optional arguments are sometimes left out as PostgREST would.

Values are sent as text and cast to the parameter's type, like PostgREST's JSON; a value
the type itself rejects (not a number, not a UUID) never reaches the function and is the
API layer's error, so only values the signatures accept are generated.

A call passes when it succeeds, or fails with a documented SQLSTATE (TS001 to TS010, 22023,
42501); any other class (XX000, 42883, 22P02, 22008, 23xxx, …) is a problem. A failed call
must change nothing, nor may a read-only one; after a call that changed something,
``check_invariants`` must stay empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from tests.reliability.suite._harness import DOCUMENTED_SQLSTATES, Caller, Database
from tests.reliability.suite._results import PartResult

__all__ = [
    "DELETED_USER",
    "IDENTITIES",
    "Rpc",
    "api_functions",
    "deleted_user_outcomes",
    "run_hostile",
]


@dataclass(frozen=True)
class Rpc:
    """A function of the API: its arguments (name, type) and how many trailing ones default."""

    name: str
    arguments: tuple[tuple[str, str], ...]
    defaults: int
    read_only: bool


def api_functions(database: Database) -> list[Rpc]:
    """Every function in ``public`` that ``anon``, ``authenticated`` or ``service_role`` may run."""
    rows = database.sql(
        """
        select p.proname as name, p.pronargs as nargs, p.pronargdefaults as ndefaults,
               coalesce(p.proargnames, '{}') as names,
               array(select format_type(t, null) from unnest(p.proargtypes) as t) as types,
               p.provolatile <> 'v' as read_only
        from pg_catalog.pg_proc as p
        where p.pronamespace = 'public'::regnamespace
          and p.prorettype <> 'trigger'::regtype
          and (has_function_privilege('anon', p.oid, 'execute')
               or has_function_privilege('authenticated', p.oid, 'execute')
               or has_function_privilege('service_role', p.oid, 'execute'))
        order by p.proname
        """
    )
    return [
        Rpc(
            r["name"],
            tuple(zip(r["names"][: r["nargs"]], r["types"], strict=True)),
            int(r["ndefaults"]),
            bool(r["read_only"]),
        )
        for r in rows
    ]


# -- values ----------------------------------------------------------------------------------

INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
SQL_FRAGMENTS = [
    "'); drop table public.bookings; --",
    "' or '1'='1",
    "1; select pg_sleep(10)",
    "$$; raise exception 'x'; $$",
    "%s %(x)s {} \\x00",
    "strict' or waitlist_policy = 'first_fit",
]
HOSTILE_STRINGS = [
    "",
    " ",
    "a",
    "strict",
    "first_fit",
    "auto",
    "offer",
    "STRICT",
    "Strict ",
    "x" * 200,
    "x" * 201,
    "y" * 10_000,
    "y" * 10_001,
    "z" * 100_000,
    "🎟️" * 60,
    "\u202eevil\u202c",
    "e\u0301" * 150,
    "\u200b",
    "\ufeffBOM",
    "null",
    "NaN",
    "-infinity",
    *SQL_FRAGMENTS,
]
TIMESTAMPS = [
    "infinity",
    "-infinity",
    "4713-01-01 00:00:00+00 BC",
    "294276-12-31 23:59:59+00",
    "1970-01-01 00:00:00+00",
    "2000-02-29 12:00:00-12",
]
INTERVALS = [
    "0",
    "1 microsecond",
    "-1 second",
    "59 seconds",
    "1 minute",
    "1 day",
    "30 days",
    "30 days 00:00:01",
    "178000000 years",
    "-178000000 years",
    "2147483647 days",
]
# Ids are drawn as roles in the scene and resolved when the call is made.
ID_ROLES = [
    "published event",
    "draft event",
    "attendee's booking",
    "someone else's booking",
    "nil",
    "max",
]


@dataclass(frozen=True)
class Ref:
    """A value that depends on the current scene: a real id, or a time relative to now."""

    kind: str


def values_for(type_name: str, name: str = "") -> st.SearchStrategy[Any]:
    """Hostile values of a PostgreSQL type, as text (or :class:`Ref`, or None for null).

    Ids lean towards real ones of the kind the argument's name asks for, so calls get past
    the look-up into the code behind it.
    """
    if type_name == "uuid":
        kind = "event" if "event" in name else "booking" if "booking" in name else ""
        fitting = [Ref(role) for role in ID_ROLES if kind and kind in role]
        every = [Ref(role) for role in ID_ROLES]
        return st.sampled_from([*fitting, *fitting, *fitting, *every, Ref("random"), None])
    if type_name in ("integer", "smallint", "bigint"):
        low, high = INT8 if type_name == "bigint" else INT4
        edges = [0, 1, -1, 2, 10, 11, 200, 201, 1000, 1001, 10_000, 10_001, 10**6, 10**6 + 1]
        return st.one_of(
            st.sampled_from([low, high, *edges]).map(str),
            st.integers(low, high).map(str),
            st.none(),
        )
    if type_name == "text":
        return st.one_of(
            st.sampled_from(HOSTILE_STRINGS),
            st.text(
                alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                max_size=300,
            ),
            st.none(),
        )
    if type_name.startswith("timestamp"):
        return st.one_of(
            st.sampled_from(TIMESTAMPS),
            st.sampled_from([Ref("now"), Ref("tomorrow"), Ref("yesterday"), Ref("next year")]),
            st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
            st.none(),
        )
    if type_name == "interval":
        return st.one_of(st.sampled_from(INTERVALS), st.none())
    if type_name == "boolean":
        return st.sampled_from(["true", "false", None])
    return st.none()


def arguments_for(rpc: Rpc) -> st.SearchStrategy[dict[str, Any]]:
    """Every required argument, and each optional one sometimes left out."""
    required = len(rpc.arguments) - rpc.defaults
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for index, (name, type_name) in enumerate(rpc.arguments):
        value = values_for(type_name, name)
        if index >= required:
            value = st.one_of(st.just(OMITTED), st.just(OMITTED), value)
        parts[name] = value
    return st.fixed_dictionaries(parts).map(
        lambda drawn: {k: v for k, v in drawn.items() if v is not OMITTED}
    )


OMITTED = Ref("omitted")

# Who calls: role plus which claims (resolved against the scene).
IDENTITIES = (
    "anon",
    "attendee",
    "organizer",
    "token without sub",
    "token with a non-uuid sub",
)
# A valid token outlives its user (supabase-auth tokens stay valid until they expire).
DELETED_USER = "token of a user who no longer exists"


# -- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    """Users, events and bookings the generated ids point at."""

    organizer: uuid.UUID
    attendee: uuid.UUID
    other: uuid.UUID
    ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, database: Database) -> Scene:
        organizer, attendee, other = database.create_users(3)
        scene = cls(organizer, attendee, other)
        setup = database.caller(organizer)
        starts_at = datetime.now(UTC) + timedelta(days=30)
        published = setup.call("create_event", title="Hostile", capacity=1, starts_at=starts_at)
        draft = setup.call(
            "create_event", title="Hostile draft", capacity=5, starts_at=starts_at, publish=False
        )
        own = setup.as_user(attendee).call("book_event", event_id=published["id"])
        others = setup.as_user(other).call("book_event", event_id=published["id"])
        setup.close()
        scene.ids = {
            "published event": str(published["id"]),
            "draft event": str(draft["id"]),
            "attendee's booking": str(own["booking_id"]),
            "someone else's booking": str(others["booking_id"]),
            "nil": str(uuid.UUID(int=0)),
            "max": str(uuid.UUID(int=2**128 - 1)),
        }
        return scene

    def resolve(self, value: Any) -> str | None:
        if not isinstance(value, Ref):
            return None if value is None else str(value)
        now = datetime.now(UTC)
        relative = {
            "now": now,
            "tomorrow": now + timedelta(days=1),
            "yesterday": now - timedelta(days=1),
            "next year": now + timedelta(days=365),
        }
        if value.kind in relative:
            return relative[value.kind].isoformat()
        if value.kind == "random":
            return str(uuid.uuid4())
        return self.ids[value.kind]

    def claims(self, identity: str) -> tuple[str, Mapping[str, Any]]:
        if identity == "anon":
            return "anon", {"role": "anon"}
        if identity in ("attendee", "organizer"):
            user = self.attendee if identity == "attendee" else self.organizer
            return "authenticated", {"role": "authenticated", "sub": str(user)}
        if identity == "token without sub":
            return "authenticated", {"role": "authenticated"}
        if identity == "token with a non-uuid sub":
            return "authenticated", {"role": "authenticated", "sub": "'; drop table x; --"}
        return "authenticated", {"role": "authenticated", "sub": str(uuid.uuid4())}


# -- the run ---------------------------------------------------------------------------------


class _Runner:
    def __init__(self, database: Database, result: PartResult) -> None:
        self.database = database
        self.result = result
        self.link = database.caller(application_name="tessera-reliability-hostile")
        self.scene = Scene.build(database)

    def call(self, rpc: Rpc, identity: str, drawn: dict[str, Any]) -> None:
        """One hostile call; raises AssertionError on a violation."""
        role, claims = self.scene.claims(identity)
        caller: Caller = self.link.as_role(role, claims)
        arguments = {name: self.scene.resolve(value) for name, value in drawn.items()}
        types = dict(rpc.arguments)
        query = sql.SQL("select * from public.{}({})").format(
            sql.Identifier(rpc.name),
            sql.SQL(", ").join(
                sql.SQL("{} => {}::{}").format(
                    sql.Identifier(name), sql.Placeholder(name), sql.SQL(types[name])
                )
                for name in arguments
            ),
        )
        before = self.database.digest()
        self.result.hostile[rpc.name] += 1
        self.result.operations[f"{rpc.name} as {identity}"] += 1
        try:
            caller.sql(query, arguments)
        except psycopg.Error as exc:
            code = exc.sqlstate or "none"
            self.result.outcomes[f"{rpc.name} → {code}"] += 1
            shown = {
                k: (v if v is None or len(v) < 80 else v[:60] + "…") for k, v in arguments.items()
            }
            if code not in DOCUMENTED_SQLSTATES:
                raise AssertionError(
                    f"{rpc.name} as {identity} with {shown}: undocumented {code}: "
                    f"{(exc.diag.message_primary or str(exc)).strip()[:200]}"
                ) from None
            if self.database.digest() != before:
                raise AssertionError(
                    f"{rpc.name} as {identity} with {shown} failed with {code} "
                    "but changed the database"
                ) from None
            return
        self.result.outcomes[f"{rpc.name} → ok"] += 1
        after = self.database.digest()
        if after == before:
            return
        if rpc.read_only:
            changed = [t for t in before if before[t] != after[t]]
            raise AssertionError(f"read-only {rpc.name} as {identity} changed {changed}")
        problems = self.database.invariant_problems()
        self.result.checks["check_invariants after an accepted call"] += 1
        if problems:
            raise AssertionError(f"{rpc.name} as {identity} with {arguments}: {problems}")
        self.scene = Scene.build(self.database)  # start the next call from a known scene

    def close(self) -> None:
        self.link.close()


def _attempts(runner: _Runner, rpc: Rpc, identity: str, config: settings) -> Any:
    """A hypothesis test calling ``rpc`` as ``identity`` with generated arguments."""

    @config
    @given(drawn=arguments_for(rpc))
    def attempt(drawn: dict[str, Any]) -> None:
        runner.call(rpc, identity, drawn)

    return attempt


def run_hostile(
    database: Database,
    result: PartResult,
    *,
    examples: int,
    identities: tuple[str, ...] = IDENTITIES,
    only: tuple[str, ...] = (),
) -> PartResult:
    """Call every RPC with ``examples`` generated argument sets per identity.

    Args:
        database: A migrated database (rate limits are lifted).
        result: Where calls, outcomes and problems are counted; one problem per RPC and
            identity at most (the shrunk, simplest failing call).
        examples: Argument sets per RPC and identity.
        identities: Who calls (see :data:`IDENTITIES`).
        only: Restrict to these RPCs.
    """
    database.relax_rate_limits()
    runner = _Runner(database, result)
    rpcs = [rpc for rpc in api_functions(database) if not only or rpc.name in only]
    result.settings.update(
        examples_per_rpc_and_identity=examples, rpcs=len(rpcs), identities=len(identities)
    )
    config = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    with result.timed():
        try:
            for rpc in rpcs:
                for identity in identities:
                    try:
                        _attempts(runner, rpc, identity, config)()
                    except AssertionError as exc:
                        result.problem(str(exc).splitlines()[0])
        finally:
            runner.close()
    return result


def deleted_user_outcomes(database: Database) -> dict[str, str]:
    """What ``book_event`` and ``create_event`` answer a token whose user was deleted.

    Returns:
        RPC name -> ``"ok"`` or the SQLSTATE.
    """
    database.relax_rate_limits()
    scene = Scene.build(database)
    role, claims = scene.claims(DELETED_USER)
    caller = database.caller(application_name="tessera-reliability-hostile").as_role(role, claims)
    calls: dict[str, dict[str, Any]] = {
        "book_event": {"event_id": scene.ids["published event"]},
        "create_event": {
            "title": "Ghost",
            "capacity": 1,
            "starts_at": datetime.now(UTC) + timedelta(days=1),
        },
    }
    outcomes: dict[str, str] = {}
    for name, arguments in calls.items():
        try:
            caller.call(name, **arguments)
            outcomes[name] = "ok"
        except psycopg.Error as exc:
            outcomes[name] = exc.sqlstate or "none"
    caller.close()
    return outcomes
