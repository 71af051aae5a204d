-- Tessera feeds: reading the ledger in order, exactly once.
--
--   event_changes(...) one event's entries after a position (anyone who may see the event).
--   ledger_feed(...)    the whole ledger, for one trusted poller per process (operators).
--
--   ledger_position()   the position every reader can start from: all entries at or below it
--                       are final (committed, or never will be). A subscription that starts
--                       here and reads forward misses nothing that commits later.
--   my_changes(...)     the caller's own ledger entries after a position, below the ledger
--                       horizon, redacted as event_changes redacts them. A plain SELECT on
--                       public.ledger (which RLS allows for one's own rows) cannot stop at
--                       the horizon: it may return an entry of a transaction that committed
--                       early while an older one, with a smaller seq, is still running; a
--                       reader that then remembered the larger seq would skip the smaller one
--                       when it commits.
--
-- Both read the ledger only below tessera.ledger_horizon(), like event_changes and
-- ledger_feed.

-- ===========================================================================================
-- RPC: event_changes — the ledger after a position, never skipping a late commit
-- ===========================================================================================
create function public.event_changes(
    event_id uuid, after_seq bigint default 0, max_rows integer default 1000
) returns setof public.ledger
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_event public.events := tessera.visible_event(event_id);
    v_full boolean := tessera.can_manage_event(v_event);
    v_user uuid := tessera.current_user_id();
begin
    if max_rows is null or max_rows not between 1 and tessera.max_page_size() then
        raise exception using errcode = '22023',
            message = format('max_rows must be between 1 and %s', tessera.max_page_size());
    end if;
    -- Everyone sees every position (availability moves with each); only the organizer and
    -- the booking's own user see who it is about.
    return query
    select
        l.seq, l.event_id,
        case when v_full or l.user_id = v_user then l.booking_id end,
        case when v_full or l.user_id = v_user then l.user_id end,
        case when v_full then l.actor_id end,
        l.kind, l.status, l.seats,
        case when v_full or l.user_id = v_user then l.waitlist_position end,
        case when v_full or l.user_id = v_user then l.offer_expires_at end,
        l.seats_available, l.waitlist_count, l.event_status,
        case when v_full then l.detail else l.detail - 'previous_status' end,
        l.created_at
    from public.ledger as l
    where l.event_id = event_id
      and l.seq > coalesce(after_seq, 0)
      and l.seq < tessera.ledger_horizon()
    order by l.seq
    limit max_rows;
end
$$;

grant execute on function public.event_changes(uuid, bigint, integer) to anon, authenticated, service_role;
comment on function public.event_changes(uuid, bigint, integer) is
'Ledger entries of an event after a seq, in order, never skipping a late commit; redacted for non-organizers.';

-- The whole ledger after a position, for one trusted poller per process (service_role).
create function public.ledger_feed(after_seq bigint default 0, max_rows integer default 1000)
returns setof public.ledger
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if not tessera.is_service() then
        raise exception using errcode = '42501', message = 'only operators may read the whole ledger';
    end if;
    if max_rows is null or max_rows not between 1 and tessera.max_page_size() then
        raise exception using errcode = '22023',
            message = format('max_rows must be between 1 and %s', tessera.max_page_size());
    end if;
    return query
    select * from public.ledger as l
    where l.seq > coalesce(after_seq, 0) and l.seq < tessera.ledger_horizon()
    order by l.seq
    limit max_rows;
end
$$;

grant execute on function public.ledger_feed(bigint, integer) to service_role;
comment on function public.ledger_feed(bigint, integer) is
'The whole ledger after a seq, below the ledger horizon. For one trusted poller per process (operators).';

create function public.ledger_position() returns bigint
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return tessera.ledger_horizon() - 1;
end
$$;

grant execute on function public.ledger_position() to anon, authenticated, service_role;
comment on function public.ledger_position() is
'A seq every reader can start from: every entry at or below it is final.';

create function public.my_changes(after_seq bigint default 0, max_rows integer default 1000)
returns setof public.ledger
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_user uuid := tessera.current_user_id();
begin
    if v_user is null then
        raise exception using
            errcode = '42501',
            message = 'not signed in',
            hint = 'Call this as a signed-in user (a JWT with a sub claim).';
    end if;
    if max_rows is null or max_rows not between 1 and tessera.max_page_size() then
        raise exception using errcode = '22023',
            message = format('max_rows must be between 1 and %s', tessera.max_page_size());
    end if;
    -- Each entry as event_changes shows it to the caller: who acted, and what the booking
    -- was before, only to the event's organizer (an offer made because another attendee
    -- cancelled names that attendee as its actor).
    return query
    select
        l.seq, l.event_id, l.booking_id, l.user_id,
        case when caller.managed then l.actor_id end,
        l.kind, l.status, l.seats, l.waitlist_position, l.offer_expires_at,
        l.seats_available, l.waitlist_count, l.event_status,
        case when caller.managed then l.detail else l.detail - 'previous_status' end,
        l.created_at
    from public.ledger as l
    left join lateral (
        select tessera.can_manage_event(e) as managed from public.events as e where e.id = l.event_id
    ) as caller on true
    where l.user_id = v_user
      and l.seq > coalesce(after_seq, 0)
      and l.seq < tessera.ledger_horizon()
    order by l.seq
    limit max_rows;
end
$$;

grant execute on function public.my_changes(bigint, integer) to authenticated, service_role;
comment on function public.my_changes(bigint, integer) is
'The signed-in user''s own ledger entries after a seq, below the ledger horizon.';
