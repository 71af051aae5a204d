-- Tessera access control: who may read what, the organizer read functions, abuse limits and
-- Realtime authorization. Safe to expose through PostgREST with the anon key.
--
--   anon           published and cancelled events (no organizer id) and their availability;
--                  the public change feed through event_changes. No bookings, no ledger rows.
--   authenticated  the same, plus their own bookings and ledger entries and their own drafts;
--                  organizers also read every booking and ledger entry of their events, and
--                  attendee emails through event_attendees / event_waitlist.
--   service_role   everything (BYPASSRLS).
--
-- No API role has INSERT / UPDATE / DELETE on any table: every change goes through a function.

-- ===========================================================================================
-- Privileges: tables created later in public give API roles nothing but what is granted
-- ===========================================================================================
alter default privileges for role postgres in schema public
revoke insert, update, delete, truncate, references, trigger on tables from anon, authenticated;
alter default privileges for role postgres in schema public
revoke all on sequences from anon, authenticated;
alter default privileges for role postgres in schema tessera
revoke all on tables from public, anon, authenticated;

-- PUBLIC's EXECUTE on new functions is a global default: a per-schema ALTER DEFAULT
-- PRIVILEGES cannot take it away, so the earlier migrations' functions still carry it.
-- Revoke it globally for what postgres creates from now on, and from every function already
-- in public and tessera (extension members excepted: their extension manages them). Each
-- function keeps the roles granted to it by name.
alter default privileges for role postgres revoke execute on functions from public;
do $revoke$
declare
    v_function regprocedure;
begin
    for v_function in
        select p.oid::regprocedure from pg_catalog.pg_proc as p
        where p.pronamespace in ('public'::regnamespace, 'tessera'::regnamespace)
          and not exists (
              select from pg_catalog.pg_depend as d
              where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
          )
    loop
        execute format('revoke execute on function %s from public', v_function);
    end loop;
end
$revoke$;

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

-- ===========================================================================================
-- Row Level Security policies. One permissive policy per role and command, auth.uid()
-- wrapped in a sub-select so it is evaluated once per statement, not once per row.
-- "event_id = any(array(…))" rather than "in (…)": the organizer's event ids become one
-- array computed up front, so both arms of the OR are index scans (a BitmapOr) instead of
-- a filter over every row. Indexes behind them: events_organizer_id_idx,
-- bookings_user_id_idx, bookings_event_status_idx, ledger_user_seq_idx, ledger_event_seq_idx.
-- ===========================================================================================
create policy "Anyone can read published and cancelled events"  -- noqa: RF05
on public.events
for select
to anon
using (status in ('published', 'cancelled'));

create policy "Signed-in users can read published events and their own drafts"  -- noqa: RF05
on public.events
for select
to authenticated
using (status in ('published', 'cancelled') or organizer_id = (select auth.uid()));

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
set search_path = ''
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
set search_path = ''
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

-- Every booking of the signed-in user, newest first. SECURITY INVOKER: RLS already allows
-- exactly these rows (and the organizer's view of other people's, which the filter drops).
create function public.my_bookings()
returns setof public.bookings
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
    v_user uuid;
begin
    if current_user <> 'anon' then
        begin
            v_user := auth.uid();
        exception when invalid_text_representation then
            v_user := null;
        end;
    end if;
    if v_user is null then
        raise exception using
            errcode = '42501',
            message = 'not signed in',
            hint = 'Call this as a signed-in user (a JWT with a sub claim).';
    end if;
    return query
    select * from public.bookings as b
    where b.user_id = v_user
    order by b.created_at desc, b.id;
end
$$;

-- ===========================================================================================
-- Rate limit on book_event and cancel_booking
--
-- Configuration: one row per action in tessera.rate_limits (max_calls per window_seconds;
-- default 30 per 60 s, also used when the row is missing). Operators and service_role
-- change it with plain SQL, e.g.
--     update tessera.rate_limits set max_calls = 60 where action = 'book_event';
-- A table rather than a GUC: service_role can change it without ALTER DATABASE, the value
-- is transactional, and the hot path reads it with one primary key look-up.
--
-- Algorithm: a fixed window per user and action that opens at the first call, counted in
-- one upsert on the (user, action) row. Each user has their own row, so users never wait
-- on one another; a user's own concurrent calls queue on it briefly. It promises exactly
-- "at most max_calls per window from the first call" with an exact retry time; the price
-- against a token bucket is that a user may spend two windows back to back (2 x max_calls
-- around a boundary), which is acceptable for an abuse guard.
--
-- Only calls that commit are counted: a call that fails (TS009 included) rolls its
-- increment back with everything else, so a refused call changes nothing. Failing calls
-- are bounded by the API gateway and the roles' statement_timeout instead.
-- LOCK ORDER: book_event takes its usage row after the idempotency key lock (1) and before
-- the event lock (2); cancel_booking takes its own after the exclusive event lock, since its
-- first write must follow that lock (LEDGER ORDER). Each action has its own row and nothing
-- else locks them, so the two orders never meet.
-- ===========================================================================================
create table tessera.rate_limits (
    action text primary key,
    max_calls integer not null,
    window_seconds integer not null default 60,
    updated_at timestamptz not null default now(),
    constraint rate_limits_action_known check (action in ('book_event', 'cancel_booking')),
    constraint rate_limits_max_calls_range check (max_calls between 1 and 1000000),
    constraint rate_limits_window_range check (window_seconds between 1 and 86400)
);
comment on table tessera.rate_limits is
'Per-user call limits of book_event and cancel_booking: max_calls per window_seconds.';
insert into tessera.rate_limits (action, max_calls, window_seconds)
values ('book_event', 30, 60), ('cancel_booking', 30, 60);

create table tessera.rate_limit_usage (
    user_id uuid not null,
    action text not null,
    window_started_at timestamptz not null,
    calls integer not null,
    primary key (user_id, action)
) with (fillfactor = 70);  -- room for HOT updates: the counter changes on every call
comment on table tessera.rate_limit_usage is
'Calls of each user in their current rate limit window; one row per user and action.';

revoke all on tessera.rate_limits, tessera.rate_limit_usage from public, anon, authenticated;
grant select, insert, update, delete on tessera.rate_limits to service_role;
grant select, delete on tessera.rate_limit_usage to service_role;

-- Count one call of p_action for the signed-in caller, or raise TS009. Operators are not
-- limited. Called by book_event (after its idempotency check) and cancel_booking.
create function tessera.enforce_rate_limit(p_action text) returns void
language plpgsql
set search_path = ''
as $$
declare
    v_user uuid;
    v_max integer;
    v_seconds integer;
    v_window interval;
    v_retry integer;
begin
    if tessera.is_service() then
        return;
    end if;
    v_user := tessera.current_user_id();
    if v_user is null then
        return;  -- the caller refuses anonymous calls itself
    end if;
    select rl.max_calls, rl.window_seconds into v_max, v_seconds
    from tessera.rate_limits as rl where rl.action = p_action;
    if not found then
        v_max := 30;
        v_seconds := 60;
    end if;
    v_window := pg_catalog.make_interval(secs => v_seconds);

    insert into tessera.rate_limit_usage as u (user_id, action, window_started_at, calls)
    values (v_user, p_action, now(), 1)
    on conflict (user_id, action) do update set
        window_started_at = case
            when u.window_started_at + v_window <= now() then now() else u.window_started_at
        end,
        calls = case when u.window_started_at + v_window <= now() then 1 else u.calls + 1 end
    where u.window_started_at + v_window <= now() or u.calls < v_max;
    if found then  -- a row was inserted or updated: the call is within the limit
        return;
    end if;

    select pg_catalog.ceil(extract(epoch from u.window_started_at + v_window - now()))::integer
    into v_retry
    from tessera.rate_limit_usage as u
    where u.user_id = v_user and u.action = p_action;
    v_retry := greatest(coalesce(v_retry, 1), 1);
    raise exception using
        errcode = 'TS009',
        message = format('too many %s calls', p_action),
        detail = format('action=%s limit=%s window_seconds=%s retry_after_seconds=%s',
            p_action, v_max, v_seconds, v_retry),
        hint = format('Retry in %s seconds.', v_retry);
end
$$;

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
revoke execute on function public.event_attendees(uuid) from public, anon;
revoke execute on function public.event_waitlist(uuid) from public, anon;
revoke execute on function public.my_bookings() from public, anon;
revoke execute on function tessera.enforce_rate_limit(text) from public, anon, authenticated;
grant execute on function public.event_attendees(uuid) to authenticated, service_role;
grant execute on function public.event_waitlist(uuid) to authenticated, service_role;
grant execute on function public.my_bookings() to authenticated, service_role;
