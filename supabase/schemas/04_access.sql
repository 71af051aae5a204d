-- Tessera access control: who may read what, the organizer read functions, abuse limits and
-- Realtime authorization. Safe to expose through PostgREST with the anon key.
--
--   anon           events that were ever published (no organizer id) and their availability;
--                  the public change feed through event_changes. No bookings, no ledger rows.
--   authenticated  the same, plus their own bookings and ledger entries and their own drafts;
--                  organizers also read every booking and ledger entry of their events, and
--                  attendee emails through event_attendees / event_waitlist.
--   service_role   everything (BYPASSRLS).
--
-- No API role has INSERT / UPDATE / DELETE on any table: every change goes through a function.

-- Bookings and the ledger hold user ids: anon has no business reading either table, so it
-- gets a permission error rather than an empty result. Events: every column but the
-- organizer's user id (anon clients must name the columns they select).
revoke select on public.bookings, public.ledger from anon;
revoke select on public.events from anon;
grant select (
    id, title, description, venue, starts_at, ends_at, capacity, max_seats_per_booking, status,
    sales_open_at, sales_close_at, waitlist_enabled, waitlist_limit, waitlist_policy,
    promotion_mode, offer_ttl, created_at, updated_at, published_at, cancelled_at
) on public.events to anon;
-- A ledger row's actor may be another user (whoever's cancellation promoted you): signed-in
-- users read every column but actor_id; organizers get it through event_changes.
revoke select on public.ledger from authenticated;
grant select (
    seq, event_id, booking_id, user_id, kind, status, seats, waitlist_position,
    offer_expires_at, seats_available, waitlist_count, event_status, detail, created_at
) on public.ledger to authenticated;
-- Idempotency keys may be order ids: only the booking's own user reads them (my_bookings).
revoke select on public.bookings from authenticated;
grant select (
    id, event_id, user_id, seats, status, queue_ticket, created_at, confirmed_at, waitlisted_at,
    offered_at, offer_expires_at, cancelled_at, expired_at, updated_at
) on public.bookings to authenticated;

-- ===========================================================================================
-- Row Level Security policies. One permissive policy per role and command, auth.uid()
-- wrapped in a sub-select so it is evaluated once per statement, not once per row.
-- "event_id = any(array(…))" rather than "in (…)": the organizer's event ids become one
-- array computed up front, so both arms of the OR are index scans (a BitmapOr) instead of
-- a filter over every row. Indexes behind them: events_organizer_id_idx,
-- bookings_user_id_idx, bookings_event_status_idx, ledger_user_seq_idx, ledger_event_seq_idx.
-- ===========================================================================================
create policy "Anyone can read events that were published"  -- noqa: RF05
on public.events
for select
to anon
using (published_at is not null);

create policy "Signed-in users can read events that were published and their own"  -- noqa: RF05
on public.events
for select
to authenticated
using (published_at is not null or organizer_id = (select auth.uid()));

create policy "Users read their own bookings and the bookings of their events"  -- noqa: RF05
on public.bookings
for select
to authenticated
using (
    user_id = (select auth.uid())
    or event_id = any(array(
        select e.id from public.events as e
        where e.organizer_id = (select auth.uid())
    ))
);

create policy "Users read their own ledger entries and those of their events"  -- noqa: RF05
on public.ledger
for select
to authenticated
using (
    user_id = (select auth.uid())
    or event_id = any(array(
        select e.id from public.events as e
        where e.organizer_id = (select auth.uid())
    ))
);

-- ===========================================================================================
-- RPC: organizer views with attendee emails, and the caller's own bookings
-- ===========================================================================================

-- Confirmed and offered bookings of an event, with emails: organizer or service only.
create function public.event_attendees(event_id uuid)
returns table (
    booking_id uuid,
    user_id uuid,
    email text,
    seats integer,
    status text,
    confirmed_at timestamptz,
    offer_expires_at timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform tessera.managed_event(event_attendees.event_id);  -- TS001 unseen, 42501 not yours
    return query
    select b.id, b.user_id, u.email::text, b.seats, b.status, b.confirmed_at, b.offer_expires_at
    from public.bookings as b
    inner join auth.users as u on b.user_id = u.id
    where b.event_id = event_attendees.event_id and b.status in ('confirmed', 'offered')
    order by coalesce(b.confirmed_at, b.offered_at), b.id;
end
$$;

grant execute on function public.event_attendees(uuid) to authenticated, service_role;
comment on function public.event_attendees(uuid) is
'Confirmed and offered bookings of an event with attendee emails (organizer or service).';

-- The waitlist of an event in queue order, with emails: organizer or service only.
create function public.event_waitlist(event_id uuid)
returns table (
    booking_id uuid,
    user_id uuid,
    email text,
    seats integer,
    -- "position" is a keyword here and must stay quoted.
    "position" integer,  -- noqa: RF06
    waitlisted_at timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform tessera.managed_event(event_waitlist.event_id);
    return query
    select
        b.id, b.user_id, u.email::text, b.seats,
        (row_number() over (order by b.queue_ticket))::integer, b.waitlisted_at
    from public.bookings as b
    inner join auth.users as u on b.user_id = u.id
    where b.event_id = event_waitlist.event_id and b.status = 'waitlisted'
    order by b.queue_ticket;
end
$$;

grant execute on function public.event_waitlist(uuid) to authenticated, service_role;
comment on function public.event_waitlist(uuid) is
'The waitlist of an event in queue order with emails (organizer or service).';

-- Every booking of the signed-in user, newest first, idempotency keys included. SECURITY
-- DEFINER: signed-in users may not select bookings.idempotency_key themselves (organizers
-- would read their attendees' keys), so this reads the caller's own rows for them.
create function public.my_bookings()
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

grant execute on function public.my_bookings() to authenticated, service_role;
comment on function public.my_bookings() is
'Every booking of the signed-in user, newest first, with its idempotency key.';

-- ===========================================================================================
-- Realtime authorization (private channels). Tessera broadcasts from the database as the
-- function owner: `event:<event id>` topics are public and carry no personal data;
-- `user:<user id>` topics are private and readable only by that user. Clients cannot send
-- on either (no INSERT policy): only the database broadcasts.
--
-- Realtime checks a join by inserting a probe message for the topic and selecting it as the
-- client's role with realtime.topic() set; the policies below match the row's own topic, so
-- a direct SELECT cannot read other topics by setting realtime.topic either.
--
-- realtime.messages belongs to Supabase's realtime admin role, of which postgres is a member
-- on Supabase. Where the migrating role may not create policies on it, the policies are
-- skipped with a warning: private channels then refuse every client (closed, not open).
-- ===========================================================================================
do $realtime$
begin
    if not pg_catalog.pg_has_role(
        current_user,
        (select c.relowner from pg_catalog.pg_class as c where c.oid = 'realtime.messages'::regclass),
        'USAGE'
    ) then
        raise warning using
            message = 'tessera: cannot create policies on realtime.messages; private channels stay closed',
            hint = 'Run this migration as a member of the role that owns realtime.messages.';
        return;
    end if;

    drop policy if exists "Users can receive broadcasts on their own user topic" on realtime.messages;
    create policy "Users can receive broadcasts on their own user topic"
    on realtime.messages
    for select
    to authenticated
    using (
        realtime.messages.extension = 'broadcast'
        and realtime.messages.topic = 'user:' || (select auth.uid())::text
    );

    drop policy if exists "Anyone can receive broadcasts on visible event topics" on realtime.messages;
    create policy "Anyone can receive broadcasts on visible event topics"
    on realtime.messages
    for select
    to anon, authenticated
    using (
        realtime.messages.extension = 'broadcast'
        and realtime.messages.topic like 'event:%'
        and exists (
            -- Subject to the events policies: drafts only for their organizer.
            select 1 from public.events as e
            where e.id = case
                when realtime.messages.topic ~ '^event:[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                    then substr(realtime.messages.topic, 7)::uuid
            end
        )
    );
end
$realtime$;

-- ===========================================================================================
-- Grants: every function above explicitly, helpers internal
-- ===========================================================================================
