-- Tessera abuse limits on every write an API role can call (security review, round 2).
--
-- Measured before: one connection created 2,515 events in 10 s (47.6 MB, about 17 GB an
-- hour), and 16 loops of refused claim_offer calls on a dead booking cut a hot event's
-- bookings from 547/s to 292/s, because every refused call still took the event's
-- exclusive lock.
--
--   * Per-user rate limits (TS009) on create_event, set_event_capacity, publish_event,
--     cancel_event, claim_offer, cancel_booking and book_event, configured per action in
--     tessera.rate_limits (max_calls per window_seconds), e.g.
--         update tessera.rate_limits set max_calls = 5 where action = 'create_event';
--   * A quota on open events per organizer (TS011): events not cancelled whose end (or
--     start) is still ahead, drafts included; tessera.quotas, e.g.
--         update tessera.quotas set value = 500 where quota = 'open_events_per_organizer';
--   * Decided before any exclusive event lock. A function that takes the event's exclusive
--     lock first checks the caller's budget with a plain read (tessera.check_rate_limit) and
--     refuses what a plain read already decides (a booking with no open offer, a cancelled
--     booking or event) before it; the count itself is written right after the lock, since
--     that function's first write must follow the lock (LEDGER ORDER in the booking
--     migration). book_event and create_event count first, as before (no exclusive lock).
--   * Refused calls. A refused call raises, and its transaction rolls back every write it
--     made: PostgreSQL has no autonomous transactions, so a count written by a refused call
--     cannot survive it (dblink could, at the price of a connection per refusal, which is
--     worse than the refusal). Tessera makes refused calls cheap instead: a refusal costs
--     one or two index reads and no lock, so refused calls hurt nobody else, and their rate
--     is bounded like any read's, by the API gateway, PostgREST's connection pool and the
--     roles' statement_timeout. The benchmark scenario `abuse` measures it: 16 loops of
--     refused claim_offer calls against a hot event.

-- ===========================================================================================
-- Configuration
-- ===========================================================================================
alter table tessera.rate_limits drop constraint rate_limits_action_known;
alter table tessera.rate_limits add constraint rate_limits_action_known check (
    action in (
        'book_event', 'cancel_booking', 'claim_offer', 'create_event', 'set_event_capacity',
        'publish_event', 'cancel_event'
    )
);
comment on table tessera.rate_limits is
'Per-user call limits of every write an API role can call: max_calls per window_seconds.';
insert into tessera.rate_limits (action, max_calls, window_seconds)
values
('claim_offer', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('set_event_capacity', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('publish_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('cancel_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('create_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds());

create table tessera.quotas (
    quota text primary key,
    value integer not null,
    updated_at timestamptz not null default now(),
    constraint quotas_quota_known check (quota in ('open_events_per_organizer')),
    constraint quotas_value_range check (value between 1 and 1000000)
);
comment on table tessera.quotas is
'Per-user quotas: open_events_per_organizer, the events not cancelled and not over one organizer may have.';
insert into tessera.quotas (quota, value) values ('open_events_per_organizer', 100);

revoke all on tessera.quotas from public, anon, authenticated;
grant select, insert, update, delete on tessera.quotas to service_role;

-- ===========================================================================================
-- Helpers
-- ===========================================================================================
-- TS009 when the signed-in caller (p_user, when known) has no calls of p_action left in
-- their window; writes nothing, so it may run before any lock. Operators are not limited.
create function tessera.check_rate_limit(p_action text, p_user uuid default null) returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user pg_catalog.uuid := p_user;
    v_started pg_catalog.timestamptz;
    v_calls pg_catalog.int4;
    v_max pg_catalog.int4;
    v_seconds pg_catalog.int4;
    v_retry pg_catalog.int4;
begin
    if tessera.is_service() then
        return;
    end if;
    v_user := coalesce(v_user, tessera.current_user_id());
    select u.window_started_at, u.calls into v_started, v_calls
    from tessera.rate_limit_usage as u
    where u.user_id = v_user and u.action = p_action;
    if not found then
        return;  -- no call in any window yet (or no user: the caller refuses that itself)
    end if;
    select rl.max_calls, rl.window_seconds into v_max, v_seconds
    from tessera.rate_limits as rl where rl.action = p_action;
    if not found then
        v_max := tessera.default_rate_limit_calls();
        v_seconds := tessera.default_rate_limit_window_seconds();
    end if;
    if v_calls < v_max or v_started + pg_catalog.make_interval(secs => v_seconds) <= now() then
        return;
    end if;
    v_retry := greatest(
        pg_catalog.ceil(
            extract(epoch from v_started + pg_catalog.make_interval(secs => v_seconds) - now())
        )::pg_catalog.int4,
        1
    );
    raise exception using
        errcode = 'TS009',
        message = format('too many %s calls', p_action),
        detail = format('action=%s limit=%s window_seconds=%s retry_after_seconds=%s',
            p_action, v_max, v_seconds, v_retry),
        hint = format('Retry in %s seconds.', v_retry);
end
$$;

-- TS011 when the organizer already has as many open events (not cancelled, not over;
-- drafts included) as tessera.quotas allows.
create function tessera.enforce_open_events_quota(p_user uuid) returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_max pg_catalog.int4;
    v_open pg_catalog.int4;
begin
    if tessera.is_service() then
        return;
    end if;
    select q.value into v_max from tessera.quotas as q where q.quota = 'open_events_per_organizer';
    v_max := coalesce(v_max, 100);
    select count(*)::pg_catalog.int4 into v_open
    from (
        select from public.events as e
        where e.organizer_id = p_user and e.status <> 'cancelled'
          and coalesce(e.ends_at, e.starts_at) > now()
        limit v_max
    ) as open_events;
    if v_open >= v_max then
        raise exception using
            errcode = 'TS011',
            message = 'too many open events',
            detail = format('quota=open_events_per_organizer limit=%s', v_max),
            hint = 'Cancel an event you no longer need, or wait until one is over.';
    end if;
end
$$;

-- TS007 unless the booking holds an offer that has not expired.
create function tessera.offer_is_open(p_booking public.bookings) returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if p_booking.status <> 'offered' or p_booking.offer_expires_at <= now() then
        raise exception using
            errcode = 'TS007',
            message = case when p_booking.status = 'offered' then 'the offer has expired'
                else format('a %s booking has no offer to claim', p_booking.status) end,
            detail = format('booking_id=%s status=%s', p_booking.id, p_booking.status);
    end if;
end
$$;

-- ===========================================================================================
-- The writes, each with its limit
-- ===========================================================================================
create or replace function public.create_event(
    title text,
    capacity integer,
    starts_at timestamptz,
    ends_at timestamptz default null,
    description text default null,
    venue text default null,
    max_seats_per_booking integer default 10,
    waitlist_enabled boolean default true,
    waitlist_limit integer default null,
    waitlist_policy text default 'strict',
    promotion_mode text default 'auto',
    offer_ttl interval default interval '24 hours',
    sales_open_at timestamptz default null,
    sales_close_at timestamptz default null,
    publish boolean default true
) returns public.events
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_user uuid := tessera.require_user();
    v_event public.events;
    v_problem text;
begin
    if tessera.caller_is_anonymous() then
        raise exception using
            errcode = '42501',
            message = 'anonymous users cannot create events',
            hint = 'Sign in with a permanent account (link an email or identity to this user).';
    end if;
    v_problem := case
        when title is null or char_length(title) not between 1 and tessera.max_title_length()
            then format('title must be 1 to %s characters', tessera.max_title_length())
        when char_length(description) > tessera.max_description_length()
            then format('description must be at most %s characters', tessera.max_description_length())
        when char_length(venue) > tessera.max_venue_length()
            then format('venue must be at most %s characters', tessera.max_venue_length())
        when capacity is null or capacity not between 1 and tessera.max_capacity()
            then format('capacity must be between 1 and %s', tessera.max_capacity())
        when starts_at is null then 'starts_at is required'
        when not isfinite(starts_at) or not isfinite(ends_at) or not isfinite(sales_open_at)
            or not isfinite(sales_close_at) then 'times must be finite'
        when ends_at < starts_at then 'ends_at must not be before starts_at'
        when max_seats_per_booking is null
            or max_seats_per_booking not between 1 and tessera.max_party_size()
            then format('max_seats_per_booking must be between 1 and %s', tessera.max_party_size())
        when waitlist_limit not between 0 and tessera.max_waitlist_limit()
            then format('waitlist_limit must be between 0 and %s', tessera.max_waitlist_limit())
        when waitlist_policy is null or waitlist_policy not in ('strict', 'first_fit')
            then 'waitlist_policy must be strict or first_fit'
        when promotion_mode is null or promotion_mode not in ('auto', 'offer')
            then 'promotion_mode must be auto or offer'
        when not tessera.offer_ttl_is_valid(offer_ttl)
            then format('offer_ttl must be between %s and %s, without months or negative parts',
                tessera.min_offer_ttl(), tessera.max_offer_ttl())
        when coalesce(sales_close_at, starts_at) <= coalesce(sales_open_at, now())
            then 'the sales window must close after it opens'
    end;
    if v_problem is not null then
        raise exception using errcode = '22023', message = v_problem;
    end if;
    -- TS009 and TS011. No lock is taken here: the counts' writes may come first.
    perform tessera.enforce_rate_limit('create_event', v_user);
    perform tessera.enforce_open_events_quota(v_user);

    insert into public.events as e (
        organizer_id, title, description, venue, starts_at, ends_at, capacity,
        max_seats_per_booking, status, sales_open_at, sales_close_at, waitlist_enabled,
        waitlist_limit, waitlist_policy, promotion_mode, offer_ttl, published_at
    ) values (
        v_user, title, description, venue, starts_at, ends_at, capacity,
        max_seats_per_booking, case when coalesce(publish, true) then 'published' else 'draft' end,
        coalesce(sales_open_at, now()), coalesce(sales_close_at, starts_at),
        coalesce(waitlist_enabled, true), waitlist_limit, waitlist_policy, promotion_mode,
        offer_ttl, case when coalesce(publish, true) then now() end
    ) returning * into v_event;

    insert into tessera.event_queues (event_id) values (v_event.id);
    perform tessera.layout_blocks(v_event.id, v_event.capacity, 0);
    if v_event.status = 'published' then
        perform tessera.record('event_published', v_event.id);
    end if;
    return v_event;
end
$$;

create or replace function public.set_event_capacity(event_id uuid, capacity integer)
returns public.events
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_event public.events := tessera.managed_event(event_id);
    v_taken integer;
    v_old integer;
begin
    if capacity is null or capacity not between 1 and tessera.max_capacity() then
        raise exception using errcode = '22023',
            message = format('capacity must be between 1 and %s', tessera.max_capacity());
    end if;
    if v_event.status = 'cancelled' then  -- final: refused without waiting for the lock
        raise exception using errcode = 'TS007', message = 'the event is cancelled',
            detail = format('event_id=%s', event_id);
    end if;
    -- TS009 before the exclusive lock (a read: a refused call never waits for the event);
    -- the count's write right after it (LEDGER ORDER).
    perform tessera.check_rate_limit('set_event_capacity');
    perform tessera.lock_event_exclusive(event_id);
    perform tessera.enforce_rate_limit('set_event_capacity');
    select * into v_event from public.events as e where e.id = event_id for update;
    if v_event.status = 'cancelled' then
        raise exception using errcode = 'TS007', message = 'the event is cancelled',
            detail = format('event_id=%s', event_id);
    end if;
    perform tessera.lock_all_blocks(event_id);
    select coalesce(sum(sb.taken), 0)::integer into v_taken
    from tessera.seat_blocks as sb where sb.event_id = event_id;
    if capacity < v_taken then
        raise exception using
            errcode = 'TS008',
            message = 'capacity is below the seats already confirmed or offered',
            detail = format('event_id=%s requested=%s held=%s', event_id, capacity, v_taken),
            hint = format('Choose a capacity of at least %s, or cancel bookings first.', v_taken);
    end if;
    if exists (
        select 1 from public.bookings as b
        where b.event_id = set_event_capacity.event_id and b.status = 'waitlisted'
          and b.seats > capacity
    ) then
        raise exception using
            errcode = 'TS008',
            message = 'a waiting party is larger than the requested capacity',
            detail = format('event_id=%s requested=%s', event_id, capacity),
            hint = 'Choose a capacity at least as large as every waiting party.';
    end if;
    v_old := v_event.capacity;
    update public.events as e set capacity = set_event_capacity.capacity, updated_at = now()
    where e.id = event_id
    returning * into v_event;
    perform tessera.layout_blocks(event_id, capacity, v_taken);
    perform tessera.record('capacity_changed', event_id, null, null,
        jsonb_build_object('old_capacity', v_old, 'new_capacity', capacity));
    perform tessera.promote_waiting(event_id);
    return v_event;
end
$$;

create or replace function public.publish_event(event_id uuid) returns public.events
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_event public.events := tessera.managed_event(event_id);
begin
    if v_event.status = 'cancelled' then  -- final: refused without waiting for the lock
        raise exception using errcode = 'TS007', message = 'a cancelled event cannot be published',
            detail = format('event_id=%s', event_id);
    end if;
    -- TS009 before the exclusive lock (a read: a refused call never waits for the event);
    -- the count's write right after it (LEDGER ORDER).
    perform tessera.check_rate_limit('publish_event');
    perform tessera.lock_event_exclusive(event_id);
    perform tessera.enforce_rate_limit('publish_event');
    select * into v_event from public.events as e where e.id = event_id for update;
    if v_event.status = 'cancelled' then
        raise exception using errcode = 'TS007', message = 'a cancelled event cannot be published',
            detail = format('event_id=%s', event_id);
    end if;
    if v_event.status = 'draft' then
        update public.events as e
        set status = 'published', published_at = now(), updated_at = now()
        where e.id = event_id
        returning * into v_event;
        perform tessera.record('event_published', event_id);
    end if;
    return v_event;
end
$$;

create or replace function public.cancel_event(event_id uuid) returns public.events
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_event public.events := tessera.managed_event(event_id);
    v_booking public.bookings;
begin
    if v_event.status = 'cancelled' then  -- final: refused without waiting for the lock
        raise exception using errcode = 'TS007', message = 'the event is already cancelled',
            detail = format('event_id=%s', event_id);
    end if;
    -- TS009 before the exclusive lock (a read: a refused call never waits for the event);
    -- the count's write right after it (LEDGER ORDER).
    perform tessera.check_rate_limit('cancel_event');
    perform tessera.lock_event_exclusive(event_id);
    perform tessera.enforce_rate_limit('cancel_event');
    select * into v_event from public.events as e where e.id = event_id for update;
    if v_event.status = 'cancelled' then
        raise exception using errcode = 'TS007', message = 'the event is already cancelled',
            detail = format('event_id=%s', event_id);
    end if;
    perform tessera.lock_all_blocks(event_id);
    update tessera.seat_blocks as sb set taken = 0 where sb.event_id = event_id;
    update tessera.event_queues as q
    set waiting_count = 0, waiting_seats = 0, offered_count = 0, offered_seats = 0
    where q.event_id = event_id;
    delete from tessera.waitlist_buckets as w where w.event_id = event_id;
    perform tessera.sync_waitlist_flag(event_id);
    update public.events as e
    set status = 'cancelled', cancelled_at = now(), updated_at = now()
    where e.id = event_id
    returning * into v_event;
    for v_booking in
        update public.bookings as b
        set status = 'cancelled', cancelled_at = now(), updated_at = now()
        where b.event_id = event_id and b.status in ('confirmed', 'waitlisted', 'offered')
        returning *
    loop
        perform tessera.record('cancelled', event_id, v_booking, null,
            jsonb_build_object('reason', 'event_cancelled'));
    end loop;
    perform tessera.record('event_cancelled', event_id);
    return v_event;
end
$$;

create or replace function public.claim_offer(booking_id uuid) returns public.booking_result
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_booking public.bookings;
begin
    perform tessera.require_user();
    v_booking := tessera.own_booking(booking_id);
    -- A booking with no open offer is refused from a plain read, before the budget check
    -- and the event lock: a refused claim costs what a read costs and never holds up the
    -- event (the status is re-checked under the lock below).
    perform tessera.offer_is_open(v_booking);
    -- TS009 before the exclusive lock (a read: a refused call never waits for the event);
    -- the count's write right after it (LEDGER ORDER).
    perform tessera.check_rate_limit('claim_offer');
    perform tessera.lock_event_exclusive(v_booking.event_id);
    perform tessera.enforce_rate_limit('claim_offer');
    select * into v_booking from public.bookings as b where b.id = booking_id for update;
    perform tessera.offer_is_open(v_booking);
    update public.bookings as b
    set status = 'confirmed', confirmed_at = now(), updated_at = now()
    where b.id = booking_id
    returning * into v_booking;
    update tessera.event_queues as q
    set offered_count = q.offered_count - 1, offered_seats = q.offered_seats - v_booking.seats
    where q.event_id = v_booking.event_id;
    perform tessera.record('claimed', v_booking.event_id, v_booking);
    return tessera.to_result(v_booking);
end
$$;

create or replace function public.cancel_booking(booking_id uuid) returns public.booking_result
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_booking public.bookings;
    v_before text;
begin
    if not tessera.is_service() then
        perform tessera.require_user();
    end if;
    v_booking := tessera.own_booking(booking_id);
    if v_booking.status in ('cancelled', 'expired') then  -- final: refused from a plain read
        raise exception using
            errcode = 'TS007',
            message = format('a %s booking cannot be cancelled', v_booking.status),
            detail = format('booking_id=%s status=%s', booking_id, v_booking.status);
    end if;
    -- TS009 before the exclusive lock (a read); the count's write after it (LEDGER ORDER).
    perform tessera.check_rate_limit('cancel_booking');
    perform tessera.lock_event_exclusive(v_booking.event_id);
    perform tessera.enforce_rate_limit('cancel_booking');
    select * into v_booking from public.bookings as b where b.id = booking_id for update;
    v_before := v_booking.status;
    if v_before not in ('confirmed', 'waitlisted', 'offered') then
        raise exception using
            errcode = 'TS007',
            message = format('a %s booking cannot be cancelled', v_before),
            detail = format('booking_id=%s status=%s', booking_id, v_before);
    end if;

    if v_before in ('confirmed', 'offered') then
        perform tessera.release_seats(v_booking.event_id, v_booking.seats);
    end if;
    update tessera.event_queues as q set
        waiting_count = q.waiting_count - (v_before = 'waitlisted')::integer,
        waiting_seats = q.waiting_seats - case when v_before = 'waitlisted' then v_booking.seats else 0 end,
        offered_count = q.offered_count - (v_before = 'offered')::integer,
        offered_seats = q.offered_seats - case when v_before = 'offered' then v_booking.seats else 0 end
    where q.event_id = v_booking.event_id;
    if v_before = 'waitlisted' then
        perform tessera.count_in_waitlist(v_booking.event_id, v_booking.queue_ticket, -1);
    end if;
    update public.bookings as b
    set status = 'cancelled', cancelled_at = now(), updated_at = now()
    where b.id = booking_id
    returning * into v_booking;
    perform tessera.record('cancelled', v_booking.event_id, v_booking, null,
        jsonb_build_object('previous_status', v_before));
    perform tessera.promote_waiting(v_booking.event_id);
    return tessera.to_result(v_booking);
end
$$;

create or replace function public.tessera_schema_version() returns integer
language sql stable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 5 $$;
