"""The role x object matrix: every table and every function in ``public``, for every actor.

Generated from tests/security_expectations.py. Every statement runs the way PostgREST runs a
request (login ``authenticator``, then per transaction ``role`` and ``request.jwt.claims``)
inside a transaction that is rolled back, so one world serves the whole module. A table or a
function in ``public`` without an entry in the expectations fails the first test.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import psycopg
import pytest

from . import security_expectations as expect
from .security_expectations import ACTORS, DENIED, OK, Case, Rows, World
from .support import Actor, TestDatabase, act_as, claims_for

MIGRATION = (
    Path(__file__).resolve().parents[1]
    / "supabase"
    / "migrations"
    / "20261129000400_tessera_access.sql"
)


# ===========================================================================================
# Fixtures: one world for the module (tests/conftest.py; every check below rolls back)
# ===========================================================================================
@pytest.fixture(scope="module")
def signatures(world_db: TestDatabase) -> dict[str, list[tuple[str, str]]]:
    return public_functions(world_db)


def run_as(
    actor: Actor, query: str, params: Any = None, settings: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Run one statement as PostgREST would for ``actor``, then roll back.

    Returns the rows (if any) and the row count; raises the statement's error.
    """
    with actor.conn.transaction(force_rollback=True), actor.conn.cursor() as cur:
        act_as(cur, actor.role, claims_for(actor.role, actor.user_id), **(settings or {}))
        cur.execute(query, params)
        return (cur.fetchall() if cur.description else []), cur.rowcount


def outcome_of(error: psycopg.Error) -> str:
    return error.sqlstate or "?"


# ===========================================================================================
# Catalog: what exists in public
# ===========================================================================================
def public_tables(db: TestDatabase) -> set[str]:
    found = db.sql(
        """select n.nspname || '.' || c.relname as name
           from pg_catalog.pg_class as c
           join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')
             and not exists (select from pg_catalog.pg_depend as d
                             where d.objid = c.oid and d.deptype = 'e')"""
    )
    return {row["name"] for row in found}


def public_functions(db: TestDatabase) -> dict[str, list[tuple[str, str]]]:
    """name -> [(argument, type)] of every function in public not owned by an extension."""
    found = db.sql(
        """select p.proname as name,
                  pg_catalog.pg_get_function_identity_arguments(p.oid) as args,
                  p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype as is_trigger
           from pg_catalog.pg_proc as p
           join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
           where n.nspname = 'public' and p.prokind = 'f'
             and not exists (select from pg_catalog.pg_depend as d
                             where d.objid = p.oid and d.deptype = 'e')"""
    )
    functions: dict[str, list[tuple[str, str]]] = {}
    for row in found:
        assert row["name"] not in functions, f"{row['name']} is overloaded: ambiguous over RPC"
        args = [a.split(" ", 1) for a in row["args"].split(", ") if a]
        functions[row["name"]] = [] if row["is_trigger"] else [(n, t) for n, t in args]
    return functions


def call_sql(function: str, signature: list[tuple[str, str]], args: dict[str, Any]) -> str:
    """``select * from public.fn(a => %(a)s::text::type, …)``: JSON-like text arguments,
    converted to the declared types the way PostgREST converts a request body."""
    types = dict(signature)
    unknown = set(args) - set(types)
    assert not unknown, f"{function} has no argument(s) {unknown}"
    rendered = ", ".join(f"{name} => %({name})s::text::{types[name]}" for name in args)
    return f"select * from public.{function}({rendered})"


def as_text(args: dict[str, Any]) -> dict[str, str | None]:
    return {k: None if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
            for k, v in args.items()}  # fmt: skip


# ===========================================================================================
# Completeness: every table and function has an entry
# ===========================================================================================
def test_every_public_table_and_function_has_expectations(world_db: TestDatabase) -> None:
    tables = public_tables(world_db)
    assert tables - set(expect.TABLE_SELECT) == set(), "tables without SELECT expectations"
    assert tables - set(expect.TABLE_WRITES) == set(), "tables without write expectations"
    assert set(expect.TABLE_SELECT) - tables == set(), "expectations for tables that are gone"
    functions = public_functions(world_db)
    covered = {case.function for case in expect.FUNCTION_CASES} | expect.NOT_CALLABLE
    assert set(functions) - covered == set(), "functions without expectations"
    assert covered - set(functions) == set(), "expectations for functions that are gone"
    for case in expect.FUNCTION_CASES:
        assert set(case.expected) == set(ACTORS), case.id


def test_functions_that_are_not_rpcs_are_not_executable(world_db: TestDatabase) -> None:
    for name in expect.NOT_CALLABLE:
        executable = world_db.sql(
            """select pg_catalog.has_function_privilege(r, p.oid, 'execute') as can
               from pg_catalog.pg_proc as p, unnest(array['anon', 'authenticated']) as r
               where p.pronamespace = 'public'::regnamespace and p.proname = %s""",
            (name,),
        )
        assert not any(row["can"] for row in executable), name


# ===========================================================================================
# Tables
# ===========================================================================================
SELECT_CASES = [(t, a) for t in expect.TABLE_SELECT for a in ACTORS]
WRITE_CASES = [(t, op, a) for t, ops in expect.TABLE_WRITES.items() for op in ops for a in ACTORS]


@pytest.mark.parametrize(
    ("table", "actor"), SELECT_CASES, ids=[f"{t}-{a}" for t, a in SELECT_CASES]
)
def test_direct_select(world: World, world_db: TestDatabase, table: str, actor: str) -> None:
    expected = expect.TABLE_SELECT[table][actor]
    query = expect.TABLE_SQL[table]["select"]
    if isinstance(expected, str):
        with pytest.raises(psycopg.Error) as excinfo:
            run_as(world.actors[actor], query)
        assert outcome_of(excinfo.value) == expected
        return
    seen, _ = run_as(world.actors[actor], query)
    everything = world_db.sql(query)
    assert isinstance(expected, Rows)
    want = {row["id"] for row in everything if expected.matches(world, row)}
    assert {row["id"] for row in seen} == want
    assert want or expected == expect.NONE, "the world should make this check meaningful"


@pytest.mark.parametrize(
    ("table", "operation", "actor"), WRITE_CASES, ids=[f"{t}-{o}-{a}" for t, o, a in WRITE_CASES]
)
def test_direct_write(world: World, table: str, operation: str, actor: str) -> None:
    expected = expect.TABLE_WRITES[table][operation][actor]
    query = expect.TABLE_SQL[table][operation]
    try:
        _, count = run_as(world.actors[actor], query, world.ids())
        got = OK if count == 1 else f"{count} rows"
    except psycopg.Error as error:
        got = outcome_of(error)
    assert got == expected


def test_anon_never_sees_organizer_ids(world: World) -> None:
    anon = world.actors["anon"]
    for query in ("select organizer_id from public.events", "select * from public.events"):
        with pytest.raises(psycopg.Error) as excinfo:
            run_as(anon, query)
        assert outcome_of(excinfo.value) == DENIED
    listed, _ = run_as(anon, "select id, title, status, capacity from public.events")
    assert {row["id"] for row in listed} == {world.events[n] for n in ("E", "F", "C", "E2")}


def test_api_roles_have_no_table_writes_anywhere(world_db: TestDatabase) -> None:
    granted = world_db.sql(
        """select c.oid::regclass::text as tbl, r as role, p as privilege
           from pg_catalog.pg_class as c
           join pg_catalog.pg_namespace as n on n.oid = c.relnamespace,
                unnest(array['anon', 'authenticated']) as r,
                unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as p
           where n.nspname in ('public', 'tessera') and c.relkind in ('r', 'p', 'v', 'm')
             and pg_catalog.has_table_privilege(r, c.oid, p)"""
    )
    assert granted == []


# ===========================================================================================
# Functions
# ===========================================================================================
FUNCTION_RUNS = [(case, a) for case in expect.FUNCTION_CASES for a in ACTORS]


def forbidden_values(world: World, actor: str) -> set[str]:
    """Ids and emails ``actor`` must never receive: any attendee's but their own; for anon,
    every user id. Organizers and service_role may see attendees of their events."""
    if actor in ("O", "service"):
        return set()
    users = set(expect.USERS) - {actor}
    ids = users if actor == "anon" else users & {"A", "B", "W"}
    return {str(world.users[u]) for u in ids} | {world.emails[u] for u in users}


@pytest.mark.parametrize(
    ("case", "actor"), FUNCTION_RUNS, ids=[f"{c.id}-{a}" for c, a in FUNCTION_RUNS]
)
def test_function_call(
    world: World, signatures: dict[str, list[tuple[str, str]]], case: Case, actor: str
) -> None:
    signature = signatures[case.function]
    args = case.args(world)
    query = call_sql(case.function, signature, args)
    try:
        result, _ = run_as(world.actors[actor], query, as_text(args))
        got, text = OK, json.dumps(result, default=str)
    except psycopg.Error as error:
        got = outcome_of(error)
        diag = error.diag
        text = " ".join(
            filter(None, (diag.message_primary, diag.message_detail, diag.message_hint))
        )
    assert got == case.expected[actor]
    given = {str(v) for v in args.values()}
    leaked = {v for v in forbidden_values(world, actor) - given if v in text}
    assert not leaked, f"{case.id} as {actor} exposes {leaked}"


def test_event_changes_redact_people_for_everyone_but_the_organizer(world: World) -> None:
    query = "select * from public.event_changes(event_id => %s)"
    full, _ = run_as(world.actors["O"], query, (world.events["E"],))
    assert {r["user_id"] for r in full} >= {world.users["A"], world.users["W"]}
    for actor in ("anon", "A", "B", "O2"):
        feed, _ = run_as(world.actors[actor], query, (world.events["E"],))
        assert [r["seq"] for r in feed] == [r["seq"] for r in full]  # every position, always
        own = world.users.get(actor)
        for row in feed:
            assert row["actor_id"] is None
            assert row["user_id"] in (None, own)
            if row["user_id"] is None:
                assert row["booking_id"] is None and row["waitlist_position"] is None


def test_organizer_views_list_attendees_and_waitlist_with_emails(world: World) -> None:
    organizer = world.actors["O"]
    attendees, _ = run_as(
        organizer, "select * from public.event_attendees(%s)", (world.events["E"],)
    )
    assert [(r["booking_id"], r["email"], r["status"]) for r in attendees] == [
        (world.bookings["bA"], world.emails["A"], "confirmed")
    ]
    offered, _ = run_as(organizer, "select * from public.event_attendees(%s)", (world.events["F"],))
    assert [(r["user_id"], r["status"]) for r in offered] == [(world.users["A"], "offered")]
    assert offered[0]["offer_expires_at"] is not None
    waiting, _ = run_as(organizer, "select * from public.event_waitlist(%s)", (world.events["E"],))
    assert [(r["booking_id"], r["email"], r["position"]) for r in waiting] == [
        (world.bookings["bW"], world.emails["W"], 1)
    ]
    assert list(waiting[0]) == ["booking_id", "user_id", "email", "seats", "position",
                                "waitlisted_at"]  # fmt: skip
    assert list(attendees[0]) == ["booking_id", "user_id", "email", "seats", "status",
                                  "confirmed_at", "offer_expires_at"]  # fmt: skip


def test_my_bookings_lists_only_the_callers_own(world: World) -> None:
    mine, _ = run_as(world.actors["A"], "select * from public.my_bookings()")
    assert {r["id"] for r in mine} == {world.bookings["bA"], world.bookings["bAF"]}
    organizers, _ = run_as(world.actors["O"], "select * from public.my_bookings()")
    assert organizers == []  # organizers see their events' bookings elsewhere, not here


# ===========================================================================================
# Realtime authorization
# ===========================================================================================
def _realtime_block() -> str:
    found = re.search(r"do \$realtime\$.*?\$realtime\$;", MIGRATION.read_text(), re.S)
    assert found, "the realtime block of the access migration"
    return found.group(0)


@pytest.fixture(scope="module")
def realtime(world: World, world_db: TestDatabase) -> World:
    """The world, with the realtime policies in place.

    On hosted Supabase postgres is a member of the role owning realtime.messages, so the
    migration creates the policies. A local stack whose bootstrap leaves the table to the
    superuser skips them (with a warning); here we then hand the table to postgres in this
    database only and run the migration's own block, so the policies under test are the
    migration's.
    """
    present = world_db.sql(
        "select count(*) as n from pg_catalog.pg_policies where schemaname = 'realtime'"
    )[0]["n"]
    if not present:
        warnings.warn(
            "bootstrap: postgres cannot create policies on realtime.messages; "
            "tested by handing the table to postgres in this database",
            stacklevel=1,
        )
        world_db.sql("alter table realtime.messages owner to postgres")
        with psycopg.connect(world_db.url("postgres"), autocommit=True) as conn:
            conn.execute(_realtime_block())
    return world


REALTIME_RUNS = [(t, a) for t in expect.REALTIME_TOPICS for a in ACTORS]


@pytest.mark.parametrize(
    ("topic", "actor"), REALTIME_RUNS, ids=[f"{t}-{a}" for t, a in REALTIME_RUNS]
)
def test_realtime_join_check(
    realtime: World, world_db: TestDatabase, topic: str, actor: str
) -> None:
    """Replays Realtime's check for a private channel: insert a probe message on the topic,
    then select it as the client with ``realtime.topic`` set."""
    name = realtime.topic(topic)
    probe = world_db.sql(
        """insert into realtime.messages (topic, extension, private)
           values (%s, 'broadcast', true) returning id""",
        (name,),
    )[0]["id"]
    seen, _ = run_as(
        realtime.actors[actor],
        "select id from realtime.messages where id = %s",
        (probe,),
        settings={"realtime.topic": name},
    )
    assert ("yes" if seen else "no") == expect.REALTIME_TOPICS[topic][actor]


def test_realtime_topic_setting_does_not_open_other_topics(
    realtime: World, world_db: TestDatabase
) -> None:
    """A client that sets realtime.topic itself still reads only its own user topic."""
    other = f"user:{realtime.users['B']}"
    probe = world_db.sql(
        "insert into realtime.messages (topic, extension) values (%s, 'broadcast') returning id",
        (other,),
    )[0]["id"]
    seen, _ = run_as(
        realtime.actors["A"],
        "select id from realtime.messages where id = %s",
        (probe,),
        settings={"realtime.topic": other},
    )
    assert seen == []


@pytest.mark.parametrize("actor", ["anon", "A", "O"])
def test_clients_cannot_broadcast(realtime: World, actor: str) -> None:
    topic = realtime.topic("user:A" if actor == "A" else "event:E")
    with pytest.raises(psycopg.Error) as excinfo:
        run_as(
            realtime.actors[actor],
            "insert into realtime.messages (topic, extension, payload)"
            " values (%s, 'broadcast', '{}')",
            (topic,),
            settings={"realtime.topic": topic},
        )
    assert outcome_of(excinfo.value) == DENIED


def test_realtime_policies_wrap_auth_uid(realtime: World, world_db: TestDatabase) -> None:
    policies = world_db.sql(
        """select policyname, qual from pg_catalog.pg_policies
           where schemaname = 'realtime' and tablename = 'messages'"""
    )
    assert len(policies) == 2
    for policy in policies:
        assert "auth.uid()" not in policy["qual"].replace("( SELECT auth.uid() AS uid)", "")


# ===========================================================================================
# Hostile input through every RPC, as anon and as an attendee
# ===========================================================================================
# Documented outcomes of a call that reaches a function (README: SQLSTATE table).
DOCUMENTED = {f"TS00{i}" for i in range(1, 10)} | {"22023", DENIED}
SQL_FRAGMENT = "'); drop table public.bookings; --"
TEN_KB = "x" * 10_240
HOSTILE: dict[str, list[str | None]] = {
    "uuid": [None, str(uuid.UUID(int=0)), str(uuid.uuid4()), "not-a-uuid", SQL_FRAGMENT, TEN_KB],
    "integer": [None, "0", "-1", "-2147483648", "2147483647", "99999999999", "1.5", SQL_FRAGMENT],
    "bigint": [None, "-1", "0", "9223372036854775807", "-9223372036854775808", "1e30"],
    "text": [None, "", TEN_KB, SQL_FRAGMENT, "$$; select pg_sleep(5); $$", "%s%n\\", "🎫 ü"],
    "timestamp with time zone": [
        None,
        "infinity",
        "-infinity",
        "294276-12-31 23:59:59+00",
        "4713-01-01 00:00:00+00 BC",
        "1970-01-01",
        "tomorrow",
        SQL_FRAGMENT,
    ],
    "interval": [None, "-1 day", "0", "1 microsecond", "178000000 years", "P1000Y", SQL_FRAGMENT],
    "boolean": [None, "true", "false", "maybe"],
}


def table_counts(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, int]:
    query = " union all ".join(f"select '{t}', count(*) from {t}" for t in tables)
    return {name: n for name, n in conn.execute(query).fetchall()}


def hostile_calls(
    world: World, signatures: dict[str, list[tuple[str, str]]]
) -> list[tuple[str, dict[str, Any]]]:
    """(function, text arguments): each function's first matrix case with one argument
    replaced by each hostile value of its type (and by every id of the world, for uuids),
    plus the call with every argument null."""
    base: dict[str, dict[str, Any]] = {}
    for case in expect.FUNCTION_CASES:
        base.setdefault(case.function, as_text(case.args(world)))
    wrong_ids = [str(v) for v in (*world.events.values(), *world.bookings.values())]
    calls: list[tuple[str, dict[str, Any]]] = []
    for function, signature in signatures.items():
        if function in expect.NOT_CALLABLE:
            continue
        args = base[function]
        calls.append((function, args))
        if signature:
            calls.append((function, dict.fromkeys((n for n, _ in signature), None)))
        for name, type_ in signature:
            values = HOSTILE[type_] + (wrong_ids if type_ == "uuid" else [])
            calls.extend((function, {**args, name: value}) for value in values)
    return calls


@pytest.mark.parametrize("actor", ["anon", "A"])
def test_hostile_input_gets_documented_errors_and_changes_nothing(
    db: TestDatabase, actor: str
) -> None:
    world = expect.build_world(db)
    signatures = public_functions(db)
    caller = world.actors[actor]
    forbidden = forbidden_values(world, actor)
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        tables = [
            row[0]
            for row in admin.execute(
                """select c.oid::regclass::text from pg_catalog.pg_class as c
                   where c.relnamespace in ('public'::regnamespace, 'tessera'::regnamespace)
                     and c.relkind in ('r', 'p') order by 1"""
            )
        ]
        problems: list[str] = []
        accepted = rejected_by_transport = 0
        for function, args in hostile_calls(world, signatures):
            types = dict(signatures[function])
            try:  # PostgREST converts the JSON arguments first; its errors are its own (400).
                for name, value in args.items():
                    admin.execute(f"select %s::text::{types[name]}", (value,))
            except psycopg.Error as error:
                assert (error.sqlstate or "").startswith("22"), (function, args, error)
                rejected_by_transport += 1
                continue
            before = table_counts(admin, tables)
            try:
                with caller.conn.transaction(), caller.conn.cursor() as cur:
                    act_as(cur, caller.role, claims_for(caller.role, caller.user_id))
                    # Rows as JSON text, as PostgREST returns them (no client-side parsing).
                    query = call_sql(function, signatures[function], args)
                    cur.execute(
                        f"select pg_catalog.row_to_json(r)::text as row from ({query}) as r", args
                    )
                    result = [json.loads(row["row"]) for row in cur.fetchall()]
                accepted += 1
                check_stored_as_given(admin, function, args, result, problems)
                continue
            except psycopg.Error as error:
                code = error.sqlstate or "?"
                diag = error.diag
                said = " ".join(
                    filter(None, (diag.message_primary, diag.message_detail, diag.message_hint))
                )
            shown = {str(v)[:40] for v in args.values()}
            if code not in DOCUMENTED:
                problems.append(f"{function}({shown}) -> {code} {said[:200]}")
            if table_counts(admin, tables) != before:
                problems.append(f"{function}({shown}) failed with {code} but changed state")
            given = {str(v) for v in args.values()}
            if leaked := {v for v in forbidden - given if v in said}:
                problems.append(f"{function}({shown}) error exposes {leaked}")
    assert problems == []
    assert rejected_by_transport and accepted, "the inputs should exercise both layers"


def check_stored_as_given(
    admin: psycopg.Connection[Any],
    function: str,
    args: dict[str, Any],
    result: list[Any],
    problems: list[str],
) -> None:
    """Text that was accepted is stored exactly as sent, never interpreted."""
    if function == "create_event":
        stored = admin.execute(
            "select title, description, venue from public.events where id = %s",
            (result[0]["id"],),
        ).fetchone()
        sent = (args["title"], args.get("description"), args.get("venue"))
        if stored != sent:
            problems.append(f"create_event stored {stored!r}, sent {sent!r}")
    if function == "book_event" and args.get("idempotency_key") is not None:
        stored = admin.execute(
            "select idempotency_key from public.bookings where id = %s",
            (result[0]["booking_id"],),
        ).fetchone()
        if stored != (args["idempotency_key"],):
            problems.append(f"book_event stored key {stored!r}, sent {args['idempotency_key']!r}")


def test_signed_in_users_cannot_read_who_caused_a_ledger_entry(world: World) -> None:
    # The actor of an entry on your booking may be another user (a cancellation promoted you).
    with pytest.raises(psycopg.Error) as excinfo:
        run_as(world.actors["A"], "select actor_id from public.ledger")
    assert excinfo.value.sqlstate == "42501"
    rows, _ = run_as(world.actors["A"], "select seq, user_id from public.ledger")
    assert rows and all(row["user_id"] == world.users["A"] for row in rows)
