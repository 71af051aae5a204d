-- Tessera: update_event is limited like every other write (security review, round 2).
--
-- public.update_event came after the rate-limit migration: it gets the same treatment as
-- set_event_capacity, publish_event and cancel_event there. A per-user rate limit
-- (tessera.rate_limits, action 'update_event') decided before the event's exclusive lock with
-- a plain read and counted right after it (LEDGER ORDER), and a cancelled event refused from
-- the plain read too, so a refused update never waits for the event.

alter table tessera.rate_limits drop constraint rate_limits_action_known;
alter table tessera.rate_limits add constraint rate_limits_action_known check (
    action in (
        'book_event', 'cancel_booking', 'claim_offer', 'create_event', 'set_event_capacity',
        'publish_event', 'cancel_event', 'update_event'
    )
);
insert into tessera.rate_limits (action, max_calls, window_seconds)
values
('update_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds());

create or replace function public.update_event(
    event_id uuid,
    title text default null,
    description text default null,
    venue text default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    sales_open_at timestamptz default null,
    sales_close_at timestamptz default null,
    max_seats_per_booking integer default null,
    waitlist_limit integer default null,
    offer_ttl interval default null
) returns public.events
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_event public.events := tessera.managed_event(event_id);
    v_new public.events;
    v_changes jsonb := '{}'::jsonb;
    v_field text;
    v_problem text;
begin
    -- LOCK ORDER (see the booking migration): the event exclusively (2), then its row, as
    -- every change of an event does, so a booking in flight sees it wholly before or after.
    if v_event.status = 'cancelled' then  -- final: refused without waiting for the lock
        raise exception using errcode = 'TS007', message = 'a cancelled event cannot be changed',
            detail = format('event_id=%s', event_id);
    end if;
    -- TS009 before the exclusive lock (a read: a refused call never waits for the event);
    -- the count's write right after it (LEDGER ORDER).
    perform tessera.check_rate_limit('update_event');
    perform tessera.lock_event_exclusive(event_id);
    perform tessera.enforce_rate_limit('update_event');
    select * into v_event from public.events as e where e.id = event_id for update;
    if v_event.status = 'cancelled' then
        raise exception using errcode = 'TS007', message = 'a cancelled event cannot be changed',
            detail = format('event_id=%s', event_id);
    end if;

    -- Null means "keep": only the given fields change.
    v_new := v_event;
    v_new.title := coalesce(title, v_event.title);
    v_new.description := coalesce(description, v_event.description);
    v_new.venue := coalesce(venue, v_event.venue);
    v_new.starts_at := coalesce(starts_at, v_event.starts_at);
    v_new.ends_at := coalesce(ends_at, v_event.ends_at);
    v_new.sales_open_at := coalesce(sales_open_at, v_event.sales_open_at);
    v_new.sales_close_at := coalesce(sales_close_at, v_event.sales_close_at);
    v_new.max_seats_per_booking := coalesce(max_seats_per_booking, v_event.max_seats_per_booking);
    v_new.waitlist_limit := coalesce(waitlist_limit, v_event.waitlist_limit);
    v_new.offer_ttl := coalesce(offer_ttl, v_event.offer_ttl);

    -- The same checks as create_event, on the event as it would be.
    v_problem := case
        when char_length(v_new.title) not between 1 and tessera.max_title_length()
            then pg_catalog.format('title must be 1 to %s characters', tessera.max_title_length())
        when char_length(v_new.description) > tessera.max_description_length()
            then pg_catalog.format(
                'description must be at most %s characters', tessera.max_description_length()
            )
        when char_length(v_new.venue) > tessera.max_venue_length()
            then pg_catalog.format(
                'venue must be at most %s characters', tessera.max_venue_length()
            )
        when not isfinite(v_new.starts_at) or not isfinite(v_new.ends_at)
            or not isfinite(v_new.sales_open_at) or not isfinite(v_new.sales_close_at)
            then 'times must be finite'
        -- As at creation, a new start lies ahead (a past start is kept when unchanged).
        when v_new.starts_at is distinct from v_event.starts_at and v_new.starts_at <= now()
            then 'starts_at must be in the future'
        when v_new.ends_at < v_new.starts_at then 'ends_at must not be before starts_at'
        when v_new.max_seats_per_booking not between 1 and tessera.max_party_size()
            then pg_catalog.format(
                'max_seats_per_booking must be between 1 and %s', tessera.max_party_size()
            )
        when v_new.waitlist_limit not between 0 and tessera.max_waitlist_limit()
            then pg_catalog.format(
                'waitlist_limit must be between 0 and %s', tessera.max_waitlist_limit()
            )
        when not tessera.offer_ttl_is_valid(v_new.offer_ttl)
            then pg_catalog.format(
                'offer_ttl must be between %s and %s, without months or negative parts',
                tessera.min_offer_ttl(), tessera.max_offer_ttl()
            )
        when v_new.sales_close_at <= v_new.sales_open_at
            then 'the sales window must close after it opens'
    end;
    if v_problem is not null then
        raise exception using errcode = '22023', message = v_problem,
            detail = format('event_id=%s', event_id);
    end if;

    foreach v_field in array array[
        'title', 'description', 'venue', 'starts_at', 'ends_at', 'sales_open_at',
        'sales_close_at', 'max_seats_per_booking', 'waitlist_limit', 'offer_ttl'
    ] loop
        if (pg_catalog.to_jsonb(v_new) -> v_field) is distinct from
            (pg_catalog.to_jsonb(v_event) -> v_field) then
            v_changes := v_changes || pg_catalog.jsonb_build_object(v_field,
                pg_catalog.jsonb_build_object(
                    'old', pg_catalog.to_jsonb(v_event) -> v_field,
                    'new', pg_catalog.to_jsonb(v_new) -> v_field
                ));
        end if;
    end loop;
    if v_changes = '{}'::jsonb then
        return v_event;  -- nothing changes: no ledger entry
    end if;

    update public.events as e
    set title = v_new.title,
        description = v_new.description,
        venue = v_new.venue,
        starts_at = v_new.starts_at,
        ends_at = v_new.ends_at,
        sales_open_at = v_new.sales_open_at,
        sales_close_at = v_new.sales_close_at,
        max_seats_per_booking = v_new.max_seats_per_booking,
        waitlist_limit = v_new.waitlist_limit,
        offer_ttl = v_new.offer_ttl,
        updated_at = pg_catalog.now()
    where e.id = event_id
    returning * into v_event;
    perform tessera.record(
        p_kind => 'event_updated', p_event_id => event_id,
        p_detail => pg_catalog.jsonb_build_object('changes', v_changes)
    );
    return v_event;
end
$$;

create or replace function public.tessera_schema_version() returns integer
language sql stable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 7 $$;
