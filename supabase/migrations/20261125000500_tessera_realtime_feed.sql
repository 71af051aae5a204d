-- Tessera realtime feed: what a subscriber needs besides event_changes to follow the ledger
-- exactly once and in order.
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

create function public.ledger_position() returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    return tessera.ledger_horizon() - 1;
end
$$;

create function public.my_changes(after_seq bigint default 0, max_rows integer default 1000)
returns setof public.ledger
language plpgsql
stable
security definer
set search_path = ''
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
    if max_rows is null or max_rows not between 1 and 10000 then
        raise exception using errcode = '22023', message = 'max_rows must be between 1 and 10000';
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

revoke execute on function public.ledger_position() from public;
revoke execute on function public.my_changes(bigint, integer) from public, anon;
grant execute on function public.ledger_position() to anon, authenticated, service_role;
grant execute on function public.my_changes(bigint, integer) to authenticated, service_role;
