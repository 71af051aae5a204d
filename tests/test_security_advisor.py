"""Supabase's security advisor, as SQL over the catalogs: every check must report nothing.

The queries follow the advisor's lints (supabase/splinter) by name; a few Tessera rules
(grants, FORCE RLS, a pinned search_path) sit next to them. Each returns offending objects.
"""

from __future__ import annotations

import psycopg
import pytest

from .support import TestDatabase

# Schemas that hold Tessera's objects. `public` is exposed through the API; `tessera` is not.
OURS = "('public', 'tessera')"
EXTENSION_MEMBER = """exists (select from pg_catalog.pg_depend as d
                              where d.objid = {oid} and d.deptype = 'e')"""

CHECKS: dict[str, str] = {
    # 0011: functions whose search_path a caller could change.
    "function_search_path_mutable": f"""
        select p.oid::regprocedure::text
        from pg_catalog.pg_proc as p
        join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in {OURS}
          and not {EXTENSION_MEMBER.format(oid="p.oid")}
          and not exists (select from unnest(coalesce(p.proconfig, '{{}}')) as c
                          where c like 'search_path=%')""",
    # 0013: tables in an exposed schema without RLS.
    "rls_disabled_in_public": """
        select c.oid::regclass::text
        from pg_catalog.pg_class as c
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity""",
    # 0007: policies that do nothing because RLS is off (any schema).
    "policy_exists_rls_disabled": """
        select distinct c.oid::regclass::text
        from pg_catalog.pg_policy as p
        join pg_catalog.pg_class as c on c.oid = p.polrelid
        where not c.relrowsecurity""",
    # 0010: views that run as their owner, bypassing the caller's RLS.
    "security_definer_view": """
        select c.oid::regclass::text
        from pg_catalog.pg_class as c
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'v'
          and not (lower(coalesce(c.reloptions::text, '{}'))::text[]
                   && array['security_invoker=1', 'security_invoker=true',
                            'security_invoker=yes', 'security_invoker=on'])""",
    # 0008: RLS on but no policy: nobody can read it, usually a mistake.
    "rls_enabled_no_policy": """
        select c.oid::regclass::text
        from pg_catalog.pg_class as c
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relrowsecurity
          and not exists (select from pg_catalog.pg_policy as p where p.polrelid = c.oid)""",
    # 0003: auth.<fn>() evaluated per row instead of once per statement.
    "auth_rls_initplan": """
        select format('%s: %s', p.tablename, p.policyname)
        from pg_catalog.pg_policies as p
        where p.schemaname in ('public', 'realtime')
          and (
              (p.qual ~ 'auth\\.(uid|jwt|role|email)\\(\\)'
               and lower(p.qual) !~ 'select\\s+auth\\.(uid|jwt|role|email)\\(\\)')
              or (p.with_check ~ 'auth\\.(uid|jwt|role|email)\\(\\)'
                  and lower(p.with_check) !~ 'select\\s+auth\\.(uid|jwt|role|email)\\(\\)')
          )""",
    # 0006: several permissive policies for one role and command: all run on every row.
    "multiple_permissive_policies": """
        select format('%s %s %s', c.oid::regclass, r.rolname, p.polcmd)
        from pg_catalog.pg_policy as p
        join pg_catalog.pg_class as c on c.oid = p.polrelid
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        join pg_catalog.pg_roles as r on r.oid = any(p.polroles) or p.polroles = '{0}'
        where n.nspname = 'public' and p.polpermissive and not r.rolbypassrls
          and r.rolname !~ '^pg_'
        group by c.oid, r.rolname, p.polcmd
        having count(*) > 1""",
    # 0002: auth.users reachable through a view in an exposed schema.
    "auth_users_exposed": """
        select distinct v.oid::regclass::text
        from pg_catalog.pg_class as v
        join pg_catalog.pg_namespace as n on n.oid = v.relnamespace
        join pg_catalog.pg_rewrite as rw on rw.ev_class = v.oid
        join pg_catalog.pg_depend as d on d.objid = rw.oid
        where n.nspname = 'public' and v.relkind in ('v', 'm')
          and d.refobjid = 'auth.users'::regclass""",
    # 0001: foreign keys without an index to follow them (policies and joins filter on them).
    "unindexed_foreign_keys": f"""
        select format('%s %s', c.conrelid::regclass, c.conname)
        from pg_catalog.pg_constraint as c
        join pg_catalog.pg_class as t on t.oid = c.conrelid
        join pg_catalog.pg_namespace as n on n.oid = t.relnamespace
        where c.contype = 'f' and n.nspname in {OURS}
          and not exists (
              select from pg_catalog.pg_index as i
              where i.indrelid = c.conrelid
                and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
          )""",
    # Tessera: no function may be executable by PUBLIC (a NULL ACL means it is).
    "function_executable_by_public": f"""
        select p.oid::regprocedure::text
        from pg_catalog.pg_proc as p
        join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in {OURS}
          and not {EXTENSION_MEMBER.format(oid="p.oid")}
          and (p.proacl is null
               or exists (select from aclexplode(p.proacl) as a
                          where a.grantee = 0 and a.privilege_type = 'EXECUTE'))""",
    # Tessera: internals are out of reach of API roles (schema, tables, functions).
    "tessera_reachable_by_api_roles": """
        select format('%s %s', r, obj)
        from unnest(array['anon', 'authenticated']) as r,
        lateral (
            select 'schema tessera' as obj
            where pg_catalog.has_schema_privilege(r, 'tessera', 'usage')
            union all
            select c.oid::regclass::text from pg_catalog.pg_class as c
            where c.relnamespace = 'tessera'::regnamespace
              and pg_catalog.has_table_privilege(r, c.oid, 'select, insert, update, delete')
            union all
            select p.oid::regprocedure::text from pg_catalog.pg_proc as p
            where p.pronamespace = 'tessera'::regnamespace
              and pg_catalog.has_function_privilege(r, p.oid, 'execute')
        ) as reachable""",
    # Tessera: every table in public has RLS forced, so even its owner goes through it.
    "rls_not_forced_in_public": """
        select c.oid::regclass::text
        from pg_catalog.pg_class as c
        where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
          and not c.relforcerowsecurity""",
    # Tessera: every function, definer or not, pins search_path to pg_catalog, pg_temp (an
    # empty path still searches a caller's pg_temp first for types and tables) and qualifies
    # every name.
    "search_path_not_pinned": f"""
        select p.oid::regprocedure::text
        from pg_catalog.pg_proc as p
        join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in {OURS}
          and not {EXTENSION_MEMBER.format(oid="p.oid")}
          and not coalesce(p.proconfig, '{{}}') @> array['search_path=pg_catalog, pg_temp']""",
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_advisor_check_reports_nothing(db: TestDatabase, check: str) -> None:
    found = [next(iter(row.values())) for row in db.sql(CHECKS[check])]
    assert found == [], f"{check}: {found}"


def test_checks_would_catch_a_mistake(db: TestDatabase) -> None:
    """The checks are not vacuous: make one mistake of each kind and see each reported."""
    db.sql(
        """set role postgres;
           create table public.careless (id int primary key, event uuid references public.events);
           create policy "Ignored" on public.careless for select to anon using (true);
           create view public.careless_view as select id from auth.users;
           create function public.careless_fn() returns int language sql as 'select 1';
           grant execute on function public.careless_fn() to public;
           create function tessera.careless_definer() returns int language sql security definer
               set search_path = public as 'select 1';
           grant execute on function tessera.careless_definer() to authenticated;
           create table public.no_policies (id int primary key);
           alter table public.no_policies enable row level security;
           create table public.two_policies (id int primary key, owner uuid);
           alter table public.two_policies enable row level security;
           alter table public.two_policies force row level security;
           create policy "One" on public.two_policies for select to authenticated
               using (owner = auth.uid());
           create policy "Two" on public.two_policies for select to authenticated using (false);"""
    )
    caught = {name for name in CHECKS if db.sql(CHECKS[name])}
    assert caught == set(CHECKS)


def test_defaults_protect_objects_created_later(db: TestDatabase) -> None:
    """Tables and functions a later migration creates start closed to API roles."""
    db.sql(
        """set role postgres;
           create table public.later (id int primary key);
           create function public.later_fn() returns int language sql
               set search_path = '' as 'select 1';"""
    )
    assert db.sql(
        """select pg_catalog.has_table_privilege('anon', 'public.later', 'insert') as i,
                  pg_catalog.has_table_privilege('authenticated', 'public.later', 'delete') as d,
                  pg_catalog.has_function_privilege('anon', 'public.later_fn()', 'execute') as a,
                  pg_catalog.has_function_privilege('authenticated', 'public.later_fn()',
                                                    'execute') as u"""
    ) == [{"i": False, "d": False, "a": False, "u": False}]
    # Supabase's default privileges grant SELECT too: a later table must not be readable.
    db.sql("insert into public.later values (1)")
    for actor in (db.actor(), db.actor(db.create_user())):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            actor.sql("select id from public.later")
