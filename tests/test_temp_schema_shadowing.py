"""Temporary-schema shadowing: no caller can make Tessera's functions run their code.

Every API role may create temporary objects (TEMP is granted to PUBLIC, as on hosted
Supabase), and PostgreSQL looks in the session's ``pg_temp`` schema first for relation and
type names unless a function's ``search_path`` names ``pg_temp`` explicitly, last. A caller
who creates ``pg_temp.text`` as a domain whose CHECK calls their own function would then run
that function inside every SECURITY DEFINER function that mentions ``text``, as the owner.

Each check below runs as PostgREST runs a request (login ``authenticator``, then ``role`` and
``request.jwt.claims`` for the transaction), on a fresh connection (PL/pgSQL compiles a
function once per connection, and it must compile with the shadows in place), then:

1. shadows every built-in type name the functions use and Tessera's table names in
   ``pg_temp``: domains whose CHECK calls a probe, and views that call it;
2. calls one RPC of the role x object matrix (tests/security_expectations.py);
3. checks that the probe never ran as anyone but the caller (it counts such runs in a
   sequence, which no rollback undoes) and that the call's outcome is the matrix's.

A second kind of shadow, ``pg_temp.text`` as ``varchar(12)``, truncated ``'authenticated'``
to ``'authenticate'`` in the caller-role check, which then took a signed-in user for an
operator: the outcomes must still be the matrix's (e.g. O2 may not cancel O's event).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from .security_expectations import FUNCTION_CASES, OK, Case, World
from .support import TestDatabase, claims_for

# Actors that reach the database through the API with a role of their own.
API_ACTORS = ("anon", "A", "B", "O", "O2")

# Type names the functions mention, each shadowed by a domain over the real type.
SHADOWED_TYPES: dict[str, str] = {
    "text": "text",
    "varchar": "varchar",
    "name": "name",
    "uuid": "uuid",
    "int": "int4",
    "integer": "int4",
    "int4": "int4",
    "smallint": "int2",
    "int2": "int2",
    "bigint": "int8",
    "int8": "int8",
    "numeric": "numeric",
    "boolean": "bool",
    "bool": "bool",
    "json": "json",
    "jsonb": "jsonb",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "interval": "interval",
    "regclass": "regclass",
}
# Tessera's (and Supabase's) table names, each shadowed by a view that calls the probe.
SHADOWED_TABLES = (
    "events",
    "bookings",
    "ledger",
    "seat_blocks",
    "event_queues",
    "rate_limits",
    "rate_limit_usage",
    "users",
    "messages",
)

PROBE = """
create sequence pg_temp.shadow_hits;
grant usage, select on sequence pg_temp.shadow_hits to public;
create function pg_temp.shadow_probe(value pg_catalog.anyelement) returns pg_catalog.bool
language plpgsql
set search_path = pg_catalog, pg_temp
as $probe$
begin
    if current_user <> '{role}' then
        perform pg_catalog.nextval('pg_temp.shadow_hits');
        raise exception using errcode = 'XSHAD', message = 'shadow ran as ' || current_user;
    end if;
    return true;
end
$probe$;
"""


def probe_shadows(role: str) -> list[str]:
    """Statements that create the probe and every shadow calling it."""
    statements = [PROBE.format(role=role)]
    for name, base in SHADOWED_TYPES.items():
        statements.append(
            f'create domain pg_temp."{name}" as pg_catalog.{base}'
            " check (pg_temp.shadow_probe(value))"
        )
    for table in SHADOWED_TABLES:
        statements.append(
            f"create view pg_temp.{table} as select 1 as id where pg_temp.shadow_probe(1)"
        )
    return statements


def truncating_text() -> list[str]:
    """The caller-role attack: ``text`` that silently cuts values to 12 characters."""
    return [
        "create sequence pg_temp.shadow_hits",
        "create domain pg_temp.text as pg_catalog.varchar(12)",
    ]


SHADOWS = {"probe": probe_shadows, "truncating-text": lambda role: truncating_text()}


def qualified_signatures(db: TestDatabase) -> dict[str, dict[str, str]]:
    """function -> {argument: schema-qualified type}, for calls no shadow can redirect."""
    found = db.sql(
        """select p.proname as function, a.name as argument,
                  pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)
                      as type
           from pg_catalog.pg_proc as p
           cross join lateral unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[])
               as a (name, type_oid)
           join pg_catalog.pg_type as t on t.oid = a.type_oid
           join pg_catalog.pg_namespace as n on n.oid = t.typnamespace
           where p.pronamespace = 'public'::pg_catalog.regnamespace"""
    )
    signatures: dict[str, dict[str, str]] = {}
    for row in found:
        signatures.setdefault(row["function"], {})[row["argument"]] = row["type"]
    return signatures


def qualified_call(case: Case, types: dict[str, str], args: dict[str, Any]) -> str:
    rendered = ", ".join(f"{name} => %({name})s::pg_catalog.text::{types[name]}" for name in args)
    return f"select * from public.{case.function}({rendered})"


def as_text(args: dict[str, Any]) -> dict[str, str | None]:
    return {
        name: None if value is None else value.isoformat() if hasattr(value, "isoformat")
        else str(value)
        for name, value in args.items()
    }  # fmt: skip


def shadowed_call(
    db: TestDatabase, world: World, actor: str, case: Case, shadows: list[str], query: str
) -> tuple[str, int]:
    """(outcome, runs of the probe as someone else) of one call under the shadows."""
    caller = world.actors[actor]
    with (
        psycopg.connect(db.url("authenticator")) as conn,
        conn.transaction(force_rollback=True),
        conn.cursor() as cur,
    ):
        cur.execute(
            "select pg_catalog.set_config('role', %s, true),"
            " pg_catalog.set_config('request.jwt.claims', %s, true)",
            (caller.role, json.dumps(claims_for(caller.role, caller.user_id))),
        )
        for statement in shadows:
            cur.execute(statement)
        try:
            with conn.transaction():
                cur.execute(query, as_text(case.args(world)))
            outcome = OK
        except psycopg.Error as error:
            outcome = error.sqlstate or "?"
        cur.execute("select last_value, is_called from pg_temp.shadow_hits")
        row = cur.fetchone()
        assert row is not None
        hits = int(row[0]) if row[1] else 0
    return outcome, hits


@pytest.fixture(scope="module")
def types(world_db: TestDatabase) -> dict[str, dict[str, str]]:
    # TEMP for every role, as hosted Supabase grants it (and PostgreSQL does by default).
    world_db.sql(f'grant temporary on database "{world_db.name}" to public')
    return qualified_signatures(world_db)


# "anon" fits in 12 characters: the truncating shadow is an attack of signed-in users only.
SHADOW_CASES = [
    (actor, shadow)
    for shadow in sorted(SHADOWS)
    for actor in API_ACTORS
    if (actor, shadow) != ("anon", "truncating-text")
]


@pytest.mark.parametrize(("actor", "shadow"), SHADOW_CASES)
def test_shadowed_names_neither_run_as_the_owner_nor_change_outcomes(
    world_db: TestDatabase,
    world: World,
    types: dict[str, dict[str, str]],
    actor: str,
    shadow: str,
) -> None:
    role = world.actors[actor].role
    wrong: list[str] = []
    for case in FUNCTION_CASES:
        query = qualified_call(case, types.get(case.function, {}), case.args(world))
        outcome, hits = shadowed_call(world_db, world, actor, case, SHADOWS[shadow](role), query)
        expected = case.expected[actor]
        if hits or outcome != expected:
            wrong.append(f"{case.id}: got {outcome} (expected {expected}), owner-side runs {hits}")
    assert not wrong, "\n".join(wrong)


def test_a_signed_in_user_cannot_cancel_another_organizers_event(
    world_db: TestDatabase, world: World, types: dict[str, dict[str, str]]
) -> None:
    [case] = [c for c in FUNCTION_CASES if c.id == "cancel_event[E]"]
    query = qualified_call(case, types.get(case.function, {}), case.args(world))
    outcome, _ = shadowed_call(world_db, world, "O2", case, truncating_text(), query)
    assert outcome == "42501"
    status = world_db.sql("select status from public.events where id = %s", (world.events["E"],))
    assert status == [{"status": "published"}]
