-- Tessera foundation: privileges, the internal schema, the constants every rule uses, the
-- caller's identity and the schema version.
--
-- THE CANONICAL CURRENT SCHEMA (supabase/schemas/, see its README.md): what applying every
-- file of supabase/migrations/ builds, written by area. Change it together with each delta
-- migration; tests/test_supabase_compat.py checks that both build the same catalog.
--
-- FUNCTION CONVENTIONS (every function in every Tessera migration)
--   * `set search_path = pg_catalog, pg_temp`: pg_catalog first, so no object in a caller's
--     temporary schema can shadow a built-in type, function or operator; pg_temp last and
--     never needed, because every Tessera object is written schema-qualified.
--   * explicit `security definer` or `security invoker`.
--   * EXECUTE is granted right after the function; helpers in schema tessera get no grant.
--   * every public RPC has a `comment on function` (PostgREST's OpenAPI shows it).

-- ===========================================================================================
-- Privileges, once for every later migration: nothing postgres creates is executable or
-- writable by the API roles unless granted by name.
-- ===========================================================================================
-- PUBLIC's EXECUTE on new functions is a global default; only a global ALTER DEFAULT
-- PRIVILEGES takes it away.
alter default privileges for role postgres revoke execute on functions from public;
-- Supabase grants anon and authenticated everything in public by default.
alter default privileges for role postgres in schema public
revoke execute on functions from anon, authenticated;
alter default privileges for role postgres in schema public
revoke all on tables from anon, authenticated;
alter default privileges for role postgres in schema public
revoke all on sequences from anon, authenticated;

create schema if not exists tessera;
comment on schema tessera is
'Tessera internals: helpers and bookkeeping. Not exposed through the API.';
revoke all on schema tessera from public;
grant usage on schema tessera to service_role;
alter default privileges for role postgres in schema tessera
revoke all on tables from public, anon, authenticated;
alter default privileges for role postgres in schema tessera
revoke all on sequences from public, anon, authenticated;

-- ===========================================================================================
-- Constants: the one home of every limit and default. Table checks, functions and the
-- docs refer to these; immutable, so PostgreSQL folds each call to a constant once per
-- statement plan. service_role may read them (it may write the tables directly).
-- The RPC signatures repeat some defaults literally, because PostgREST's OpenAPI shows
-- them; supabase/tests/database/01-schema.sql checks that each copy equals its constant.
-- ===========================================================================================
create function tessera.max_capacity() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 1000000 $$;

create function tessera.max_title_length() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 200 $$;

create function tessera.max_description_length() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 10000 $$;

create function tessera.max_venue_length() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 500 $$;

-- Upper bound of an event's max_seats_per_booking, and so of any party.
create function tessera.max_party_size() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 1000 $$;

create function tessera.default_max_seats_per_booking() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 10 $$;

create function tessera.max_waitlist_limit() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 10000000 $$;

create function tessera.min_offer_ttl() returns interval
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select interval '1 minute' $$;

create function tessera.max_offer_ttl() returns interval
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select interval '30 days' $$;

create function tessera.default_offer_ttl() returns interval
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select interval '24 hours' $$;

create function tessera.max_idempotency_key_length() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 200 $$;

-- Most seat blocks per event: enough to spread 100+ concurrent bookers over rows (a booker
-- holds its block from the seat it takes until its commit).
create function tessera.max_seat_blocks() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 64 $$;

-- Fewest seats a block holds, so that a block still seats a typical party.
create function tessera.min_seats_per_block() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 8 $$;

-- Page size bounds of the ledger readers (event_changes, my_changes, ledger_feed).
create function tessera.default_page_size() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 1000 $$;

create function tessera.max_page_size() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 10000 $$;

-- Rate limit used when tessera.rate_limits has no row for an action.
create function tessera.default_rate_limit_calls() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 30 $$;

create function tessera.default_rate_limit_window_seconds() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 60 $$;

-- Ledger numbering: seq = (transaction id << 24) + n-th entry of the transaction.
create function tessera.ledger_entries_per_transaction() returns bigint
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 16777216::bigint $$;  -- 2^24

-- The largest transaction id whose entries still fit a bigint seq (2^39 - 1), less a margin
-- of 2^32 transactions: past it every ledger write fails with a clear error (54000) long
-- before seq could overflow, instead of numbering entries out of order.
create function tessera.max_ledger_transaction_id() returns bigint
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 549755813887::bigint - 4294967296 $$;

-- Waiting bookings are counted in a tree of buckets: level 1 counts 2^6 consecutive queue
-- tickets, each level above counts 2^6 buckets of the level below (tessera.waitlist_levels()
-- levels). A position is a few sums of at most 2^6 rows, never a count over the whole queue.
create function tessera.waitlist_bucket_bits() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 6 $$;

-- Levels of waitlist buckets: level L counts the tickets t with the same t >> (L * bits).
create function tessera.waitlist_levels() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 4 $$;

grant execute on function
tessera.max_capacity(), tessera.max_title_length(), tessera.max_description_length(),
tessera.max_venue_length(), tessera.max_party_size(), tessera.default_max_seats_per_booking(),
tessera.max_waitlist_limit(), tessera.min_offer_ttl(), tessera.max_offer_ttl(),
tessera.default_offer_ttl(), tessera.max_idempotency_key_length(), tessera.max_seat_blocks(),
tessera.min_seats_per_block(), tessera.default_page_size(), tessera.max_page_size(),
tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds(),
tessera.ledger_entries_per_transaction(), tessera.max_ledger_transaction_id(),
tessera.waitlist_bucket_bits(), tessera.waitlist_levels()
to service_role;

-- offer_ttl: a fixed length between min_offer_ttl() and max_offer_ttl(). PostgreSQL compares
-- intervals as if a month were 30 days ('1000 months -29970 days' would pass as 30 days), so
-- an interval with a month part or a negative part, which has no fixed length, is refused.
create function tessera.offer_ttl_is_valid(p_ttl interval) returns boolean
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$
    select p_ttl is not null
        and extract(year from p_ttl) = 0
        and extract(month from p_ttl) = 0
        and extract(day from p_ttl) >= 0
        and p_ttl - pg_catalog.make_interval(days => extract(day from p_ttl)::integer) >= interval '0'
        and p_ttl between tessera.min_offer_ttl() and tessera.max_offer_ttl()
$$;

grant execute on function tessera.offer_ttl_is_valid(interval) to service_role;

-- ===========================================================================================
-- The caller's identity
-- ===========================================================================================

-- The API role of the caller: the role PostgREST switched to, or the login role.
-- (current_user is the function owner inside SECURITY DEFINER functions.)
create function tessera.caller_role() returns pg_catalog.text
language plpgsql stable security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return coalesce(
        nullif(pg_catalog.current_setting('role', true), 'none'), pg_catalog.session_user()::pg_catalog.text
    );
end
$$;

-- Operators: service_role, or a direct database login that is not an API role.
create function tessera.is_service() returns boolean
language plpgsql stable security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return coalesce(
        nullif(pg_catalog.current_setting('role', true), 'none'), pg_catalog.session_user()::pg_catalog.text
    ) not in ('anon', 'authenticated', 'authenticator');
end
$$;

-- The user id in the request's JWT (sub), or null when absent, anon, or not a uuid. Read
-- without casting errors, so no exception block (a subtransaction) is needed on the hot path.
create function tessera.current_user_id() returns uuid
language plpgsql stable security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub pg_catalog.text;
begin
    if tessera.caller_role() = 'anon' then
        return null;
    end if;
    v_sub := coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb ->> 'sub'
    );
    if v_sub ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
        return v_sub::pg_catalog.uuid;
    end if;
    return null;
end
$$;

-- The signed-in user, or 42501. On every write path, so it reads the role and the claims
-- once, inline, rather than through the helpers above.
create function tessera.require_user() returns uuid
language plpgsql stable security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub pg_catalog.text;
    v_user pg_catalog.uuid;
begin
    if coalesce(nullif(pg_catalog.current_setting('role', true), 'none'), '') <> 'anon' then
        v_sub := coalesce(
            nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
            nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb ->> 'sub'
        );
        if v_sub ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
            v_user := v_sub::pg_catalog.uuid;
        end if;
    end if;
    if v_user is null then
        raise exception using
            errcode = '42501',
            message = 'not signed in',
            hint = 'Call this as a signed-in user (a JWT with a sub claim).';
    end if;
    -- A token outlives its user (deleted users keep valid JWTs until they expire).
    if not exists (select from auth.users as u where u.id = v_user) then
        raise exception using
            errcode = '42501',
            message = 'unknown user',
            hint = 'The signed-in user no longer exists; sign in again.';
    end if;
    return v_user;
end
$$;

-- Whether the request's JWT is a Supabase anonymous sign-in (claim is_anonymous = true).
create function tessera.caller_is_anonymous() returns boolean
language plpgsql stable security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb
        ->> 'is_anonymous' = 'true',
        false
    );
end
$$;

-- ===========================================================================================
-- RPC: tessera_schema_version
-- ===========================================================================================
create function public.tessera_schema_version() returns integer
language sql stable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 7 $$;

grant execute on function public.tessera_schema_version() to anon, authenticated, service_role;
comment on function public.tessera_schema_version() is
'Version of Tessera''s public API here; a client built for another version refuses to run.';
