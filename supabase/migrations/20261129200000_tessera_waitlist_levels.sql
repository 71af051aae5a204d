-- Tessera waitlist positions in logarithmic time.
--
-- A position was the count of waiting bookings in the buckets of 2^8 tickets before the
-- booking's own, one row per bucket: a sum over (queue length / 256) rows, so linear in the
-- length of the queue. Now the buckets form a tree of counts: level 1 counts 2^6 tickets, and
-- each level above counts 2^6 buckets of the level below. A position adds up, at each level,
-- the buckets before the booking's own inside their common parent (fewer than 2^6 rows), the
-- top level's buckets before its own (fewer than 2^6 up to 2^30 tickets), and the waiting
-- bookings of its own level-1 bucket up to its ticket: a few index range scans of at most 64
-- rows each, at any queue length. Joining or leaving the queue updates one bucket per level.
--
-- The counts are derived data: this migration rebuilds them from the waiting bookings.

create or replace function tessera.waitlist_bucket_bits() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 6 $$;

-- Levels of waitlist buckets: level L counts the tickets t with the same t >> (L * bits).
create function tessera.waitlist_levels() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 4 $$;

grant execute on function tessera.waitlist_levels() to service_role;

drop table tessera.waitlist_buckets;

-- Waiting bookings per bucket of queue tickets, at every level: the bucket of ticket t at
-- level L is t >> (L * tessera.waitlist_bucket_bits()). Written under the same locks as
-- event_queues (every writer holds its event_queues row), one row per level.
create table tessera.waitlist_buckets (
    event_id uuid not null references public.events (id) on delete cascade,
    level smallint not null,
    bucket bigint not null,
    waiting integer not null,
    primary key (event_id, level, bucket),
    constraint waitlist_buckets_level_known check (level between 1 and 4),
    constraint waitlist_buckets_waiting_non_negative check (waiting >= 0)
) with (fillfactor = 70);

insert into tessera.waitlist_buckets (event_id, level, bucket, waiting)
select
    b.event_id,
    lvl.level,
    b.queue_ticket >> (tessera.waitlist_bucket_bits() * lvl.level) as bucket,
    count(*) as waiting
from public.bookings as b
cross join generate_series(1, tessera.waitlist_levels()) as lvl (level)
where b.status = 'waitlisted'
group by 1, 2, 3;

-- 1-based position of a waiting booking (null for any other): the waiting bookings of its own
-- level-1 bucket up to its ticket, plus at each level the buckets before its own inside their
-- parent, plus the top level's buckets before its own.
create or replace function tessera.position_of(p_booking public.bookings) returns integer
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_ticket constant pg_catalog.int8 := p_booking.queue_ticket;
begin
    if p_booking.status is distinct from 'waitlisted' then
        return null;
    end if;
    -- The constants stay calls, folded when the plan is made: the planner then sees 4 levels
    -- (an index scan per level) and at most 64 tickets (the queue-order index), also in the
    -- generic plan.
    return (
        select count(*)::pg_catalog.int4 from (
            select from public.bookings as b
            where b.event_id = p_booking.event_id and b.status = 'waitlisted'
              and b.queue_ticket
              >= (v_ticket >> tessera.waitlist_bucket_bits()) << tessera.waitlist_bucket_bits()
              and b.queue_ticket <= v_ticket
            order by b.queue_ticket
            limit 64  -- 2 ^ tessera.waitlist_bucket_bits(): one bucket's tickets
        ) as own_bucket
    ) + (
        select coalesce(sum(w.waiting), 0)::pg_catalog.int4
        from generate_series(1, tessera.waitlist_levels()) as lvl (level)
        join tessera.waitlist_buckets as w
            on w.event_id = p_booking.event_id
           and w.level = lvl.level
           and w.bucket < v_ticket >> (tessera.waitlist_bucket_bits() * lvl.level)
           and w.bucket >= case
               when lvl.level < tessera.waitlist_levels()
                   then (v_ticket >> (tessera.waitlist_bucket_bits() * (lvl.level + 1)))
                   << tessera.waitlist_bucket_bits()
               else 0
           end
    );
end
$$;

-- Count a booking into (p_delta = 1) or out of (-1) the bucket of its ticket at every level.
-- Caller holds the locks that order the queue (every seat block, or the exclusive event lock).
create or replace function tessera.count_in_waitlist(
    p_event_id uuid, p_ticket bigint, p_delta integer
)
returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if p_delta < 0 then  -- the buckets exist: the booking was counted in when it joined
        update tessera.waitlist_buckets as w set waiting = w.waiting + p_delta
        from generate_series(1, tessera.waitlist_levels()) as lvl (level)
        where w.event_id = p_event_id
          and w.level = lvl.level
          and w.bucket = p_ticket >> (tessera.waitlist_bucket_bits() * lvl.level);
        return;
    end if;
    insert into tessera.waitlist_buckets as w (event_id, level, bucket, waiting)
    select p_event_id, lvl.level, p_ticket >> (tessera.waitlist_bucket_bits() * lvl.level),
        p_delta
    from generate_series(1, tessera.waitlist_levels()) as lvl (level)
    order by lvl.level
    on conflict (event_id, level, bucket) do update set waiting = w.waiting + excluded.waiting;
end
$$;

-- The invariant check compares the bucket counts of every level with the waiting bookings.
create or replace function public.check_invariants(only_event uuid default null)
returns table (check_name text, event_id uuid, booking_id uuid, problem text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
    if not tessera.is_service() then
        raise exception using errcode = '42501', message = 'only operators may check invariants';
    end if;

    -- 1. Never oversold.
    return query
    select 'no_oversell', e.id, null::uuid,
        format('%s seats held for capacity %s', held.seats, e.capacity)
    from public.events as e
    cross join lateral (
        select coalesce(sum(b.seats), 0) as seats from public.bookings as b
        where b.event_id = e.id and b.status in ('confirmed', 'offered')
    ) as held
    where (only_event is null or e.id = only_event) and held.seats > e.capacity;

    -- 2. Counters agree with rows.
    return query
    select 'counters_agree', e.id, null::uuid, format(
        'blocks: capacity %s taken %s open %s; queue: waiting %s/%s seats, offered %s/%s seats; '
        || 'rows: capacity %s held %s waiting %s/%s offered %s/%s',
        blk.capacity, blk.taken, blk.open, q.waiting_count, q.waiting_seats, q.offered_count,
        q.offered_seats, e.capacity, r.held, r.waiting, r.waiting_seats, r.offered, r.offered_seats
    )
    from public.events as e
    join tessera.event_queues as q on q.event_id = e.id
    cross join lateral (
        select sum(sb.capacity) as capacity, sum(sb.taken) as taken,
            bool_or(sb.waitlist_open) as open, bool_and(sb.waitlist_open) as all_open
        from tessera.seat_blocks as sb where sb.event_id = e.id
    ) as blk
    cross join lateral (
        select
            coalesce(sum(b.seats) filter (where b.status in ('confirmed', 'offered')), 0) as held,
            count(*) filter (where b.status = 'waitlisted') as waiting,
            coalesce(sum(b.seats) filter (where b.status = 'waitlisted'), 0) as waiting_seats,
            count(*) filter (where b.status = 'offered') as offered,
            coalesce(sum(b.seats) filter (where b.status = 'offered'), 0) as offered_seats
        from public.bookings as b where b.event_id = e.id
    ) as r
    where (only_event is null or e.id = only_event)
      and (
          blk.capacity is distinct from e.capacity
          or blk.taken is distinct from r.held
          or q.waiting_count <> r.waiting or q.waiting_seats <> r.waiting_seats
          or q.offered_count <> r.offered or q.offered_seats <> r.offered_seats
          or blk.open <> blk.all_open
          or blk.open <> (r.waiting > 0)
      );

    -- 2b. At every level, the waitlist buckets count exactly the waiting bookings of their
    --     tickets.
    return query
    select 'counters_agree', coalesce(w.event_id, r.event_id), null::uuid, format(
        'waitlist level %s bucket %s counts %s waiting; rows: %s',
        coalesce(w.level, r.level), coalesce(w.bucket, r.bucket), coalesce(w.waiting, 0),
        coalesce(r.waiting, 0)
    )
    from (
        select wb.event_id, wb.level::integer as level, wb.bucket, wb.waiting
        from tessera.waitlist_buckets as wb
        where only_event is null or wb.event_id = only_event
    ) as w
    full join (
        select
            b.event_id, lvl.level,
            b.queue_ticket >> (tessera.waitlist_bucket_bits() * lvl.level) as bucket,
            count(*)::integer as waiting
        from public.bookings as b
        cross join generate_series(1, tessera.waitlist_levels()) as lvl (level)
        where b.status = 'waitlisted' and (only_event is null or b.event_id = only_event)
        group by 1, 2, 3
    ) as r on w.event_id = r.event_id and w.level = r.level and w.bucket = r.bucket
    where coalesce(w.waiting, 0) <> coalesce(r.waiting, 0);

    -- 3. One active booking per user per event.
    return query
    select 'one_active_booking', b.event_id, min(b.id::text)::uuid,
        format('user %s has %s active bookings', b.user_id, count(*))
    from public.bookings as b
    where b.status in ('confirmed', 'waitlisted', 'offered')
      and (only_event is null or b.event_id = only_event)
    group by b.event_id, b.user_id
    having count(*) > 1;

    -- 4. Waiting bookings have distinct tickets (positions 1..n derive from them), and under
    --    the strict policy nobody promoted from the queue is behind someone still waiting.
    return query
    select 'waitlist_positions', b.event_id, b.id, 'waiting booking without a unique ticket'
    from public.bookings as b
    where b.status = 'waitlisted' and (only_event is null or b.event_id = only_event)
      and (b.queue_ticket is null or (b.event_id, b.queue_ticket) in (
          select d.event_id, d.queue_ticket from public.bookings as d
          where d.queue_ticket is not null and (only_event is null or d.event_id = only_event)
          group by d.event_id, d.queue_ticket
          having count(*) > 1
      ));
    return query
    select 'waitlist_fifo', b.event_id, b.id,
        format('promoted with ticket %s while ticket %s still waits', b.queue_ticket, head.ticket)
    from public.bookings as b
    join public.events as e on e.id = b.event_id and e.waitlist_policy = 'strict'
    cross join lateral (
        select min(w.queue_ticket) as ticket from public.bookings as w
        where w.event_id = b.event_id and w.status = 'waitlisted'
    ) as head
    where (only_event is null or b.event_id = only_event)
      and b.queue_ticket is not null and b.status in ('confirmed', 'offered', 'expired')
      and b.queue_ticket > head.ticket;

    -- 5. Nobody waits while seats they fit are free (promotion ran to the end).
    return query
    select 'waitlist_served', e.id, w.id,
        format('%s seats free while a party of %s waits', free.seats, w.seats)
    from public.events as e
    cross join lateral (
        select coalesce(sum(sb.capacity - sb.taken), 0) as seats
        from tessera.seat_blocks as sb where sb.event_id = e.id
    ) as free
    cross join lateral (
        select b.id, b.seats from public.bookings as b
        where b.event_id = e.id and b.status = 'waitlisted'
          and (e.waitlist_policy = 'first_fit' or b.queue_ticket = (
              select min(h.queue_ticket) from public.bookings as h
              where h.event_id = e.id and h.status = 'waitlisted'
          ))
          and b.seats <= free.seats
        order by b.queue_ticket
        limit 1
    ) as w
    where e.status = 'published' and (only_event is null or e.id = only_event);

    -- 6. The ledger is complete: replaying a booking's entries gives its current status.
    return query
    select 'ledger_complete', b.event_id, b.id,
        format('status %s but last ledger entry says %s', b.status,
            coalesce(last_entry.status, 'nothing'))
    from public.bookings as b
    left join lateral (
        select l.status from public.ledger as l
        where l.booking_id = b.id order by l.seq desc limit 1
    ) as last_entry on true
    where (only_event is null or b.event_id = only_event)
      and last_entry.status is distinct from b.status;

    -- 7. Nothing refers to an event that does not exist.
    return query
    select 'no_orphans', b.event_id, b.id, 'booking of a missing event'
    from public.bookings as b
    where (only_event is null or b.event_id = only_event)
      and not exists (select 1 from public.events as e where e.id = b.event_id);
end
$$;

grant execute on function public.check_invariants(uuid) to service_role;
comment on function public.check_invariants(uuid) is
'Every broken invariant (oversell, counters, FIFO, ledger, orphans) with the ids involved; empty when healthy.';
