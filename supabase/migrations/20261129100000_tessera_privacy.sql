-- Tessera privacy fixes (security review, round 2).
--
--   * An event that was never published stays its organizer's: published_at, not status,
--     decides who else may see it. A draft cancelled before publication (cancelling is the
--     only way to discard a draft) no longer becomes readable by anyone: not in the table,
--     not through the RPCs (TS001), not in its change feed, not on its Realtime topic (whose
--     policy reads public.events under the caller's RLS).
--   * Tables created later in public give anon and authenticated nothing, SELECT included
--     (Supabase's default privileges grant them everything).
--   * Idempotency keys may be order ids: only the booking's own user reads them (through
--     my_bookings); organizers read every other column of their events' bookings.

-- ===========================================================================================
-- Default privileges: nothing, not even SELECT, on tables created later in public
-- ===========================================================================================
alter default privileges for role postgres in schema public
revoke all on tables from anon, authenticated;

-- ===========================================================================================
-- Never-published events are their organizer's only
-- ===========================================================================================

-- An event the caller may see (ever published: anyone; never published: its organizer), or
-- TS001.
create or replace function tessera.visible_event(p_event_id uuid) returns public.events
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_event public.events;
begin
    select * into v_event from public.events as e where e.id = p_event_id;
    if not found or (v_event.published_at is null and not tessera.can_manage_event(v_event)) then
        raise exception using
            errcode = 'TS001',
            message = 'event not found',
            detail = format('event_id=%s', coalesce(p_event_id::text, 'null'));
    end if;
    return v_event;
end
$$;

-- Policy names are sentences (quoted identifiers).
-- noqa: disable=RF05
alter policy "Anyone can read published and cancelled events" on public.events
rename to "Anyone can read events that were published";
alter policy "Anyone can read events that were published" on public.events
using (published_at is not null);

alter policy "Signed-in users can read published events and their own drafts" on public.events
rename to "Signed-in users can read events that were published and their own";
alter policy "Signed-in users can read events that were published and their own" on public.events
using (published_at is not null or organizer_id = (select auth.uid()));
-- noqa: enable=RF05

-- ===========================================================================================
-- Idempotency keys: the booking's own user only
-- ===========================================================================================
revoke select on public.bookings from authenticated;
grant select (
    id, event_id, user_id, seats, status, queue_ticket, created_at, confirmed_at, waitlisted_at,
    offered_at, offer_expires_at, cancelled_at, expired_at, updated_at
) on public.bookings to authenticated;

-- Every booking of the signed-in user, newest first, idempotency keys included. SECURITY
-- DEFINER: signed-in users may not select bookings.idempotency_key themselves (organizers
-- would read their attendees' keys), so this reads the caller's own rows for them.
create or replace function public.my_bookings()
returns setof public.bookings
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user uuid := tessera.require_user();
begin
    return query
    select * from public.bookings as b
    where b.user_id = v_user
    order by b.created_at desc, b.id;
end
$$;

comment on function public.my_bookings() is
'Every booking of the signed-in user, newest first, with its idempotency key.';

create or replace function public.tessera_schema_version() returns integer
language sql stable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 2 $$;
