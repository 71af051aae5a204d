-- Tessera input rules (security review, round 2).
--
--   * offer_ttl is compared as a fixed length. PostgreSQL compares intervals as if a month
--     were 30 days, so '1000 months -29970 days' passed the 1 minute..30 days check as
--     30 days and gave 465-day offers (and the reverse sign, offers expired when made).
--     An interval with a month part or a negative part has no fixed length: refused, by
--     create_event (22023) and by the events table itself.
--   * An idempotency key reused with other parameters (another event, another party size)
--     is refused with TS010 idempotency_conflict instead of silently returning the first
--     booking; the same key with the same request still returns the original booking.
--   * Anonymous sign-ins (a JWT with is_anonymous: true) may book, under the same per-user
--     limits as everybody, but may not create events (42501): an organizer is a person who
--     can be reached.

-- ===========================================================================================
-- offer_ttl: a fixed length between tessera.min_offer_ttl() and tessera.max_offer_ttl()
-- ===========================================================================================
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

alter table public.events drop constraint events_offer_ttl_range;
alter table public.events add constraint events_offer_ttl_range
check (tessera.offer_ttl_is_valid(offer_ttl));

-- ===========================================================================================
-- Anonymous sign-ins
-- ===========================================================================================
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
-- RPC: create_event (offer_ttl as a fixed length; no anonymous organizers)
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

-- ===========================================================================================
-- Idempotency conflicts
-- ===========================================================================================
drop function tessera.booking_by_key(uuid, text);

-- Step 1 of book_event: the booking an idempotency key already names, or null; TS010 when
-- that booking was made for another event or party size. Takes lock (1), so a concurrent
-- retry with the same key waits here and then finds the first call's booking.
create function tessera.booking_by_key(
    p_user uuid, p_key text, p_event_id uuid, p_seats integer
) returns public.bookings
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_booking public.bookings;
begin
    if p_key is null then
        return null;
    end if;
    if pg_catalog.char_length(p_key) not between 1 and tessera.max_idempotency_key_length() then
        raise exception using
            errcode = '22023',
            message = pg_catalog.format(
                'idempotency_key must be 1 to %s characters', tessera.max_idempotency_key_length()
            );
    end if;
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('tessera.idem:' || p_user::pg_catalog.text || ':' || p_key, 0)
    );
    select * into v_booking from public.bookings as b
    where b.user_id = p_user and b.idempotency_key = p_key;
    if found and (v_booking.event_id is distinct from p_event_id
        or v_booking.seats is distinct from p_seats) then
        raise exception using
            errcode = 'TS010',
            message = 'the idempotency key already names another booking request',
            detail = pg_catalog.format(
                'booking_id=%s event_id=%s seats=%s', v_booking.id, v_booking.event_id, v_booking.seats
            ),
            hint = 'Use a new idempotency key for a new request.';
    end if;
    return v_booking;
end
$$;

create or replace function public.book_event(
    event_id uuid, seats integer default 1, idempotency_key text default null
) returns public.booking_result
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_user pg_catalog.uuid := tessera.require_user();
    v_event public.events;
    v_booking public.bookings;
    v_slow record;
begin
    if idempotency_key is not null then
        v_booking := tessera.booking_by_key(v_user, idempotency_key, event_id, seats);
        if v_booking.id is not null then
            return tessera.to_result(v_booking);  -- a retry: the original booking, nothing else
        end if;
    end if;
    -- TS009 after the key check, so a retry answered from its key costs nothing.
    perform tessera.enforce_rate_limit('book_event', v_user);
    v_event := tessera.open_event_for_booking(event_id, seats);
    perform tessera.ensure_no_active_booking(event_id, v_user);

    if tessera.take_seat_fast(event_id, seats) is not null then
        -- The block was open, so nobody waits until this transaction commits.
        return tessera.seat_booking(v_event, v_user, seats, idempotency_key, 0);
    end if;
    v_slow := tessera.take_seats_holding_every_block(v_event, seats);
    if v_slow.seated then
        return tessera.seat_booking(v_event, v_user, seats, idempotency_key, v_slow.waiting);
    end if;
    return tessera.join_waitlist(v_event, v_user, seats, idempotency_key, v_slow.waiting);
end
$$;

create or replace function public.tessera_schema_version() returns integer
language sql stable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 3 $$;
