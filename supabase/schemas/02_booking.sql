-- Tessera booking core: the rules, as functions.
--
-- LOCK ORDER (every function below takes locks in this order, never the reverse, so
-- concurrent book / cancel / claim / capacity changes / expiry cannot deadlock):
--   1. idempotency key      pg_advisory_xact_lock(idempotency key of the user)
--   2. event                pg_advisory_xact_lock_shared(event)  -- book_event only
--                           pg_advisory_xact_lock(event)         -- everything that frees seats
--                                                                   or changes the event
--   3. user on the event    pg_advisory_xact_lock(user, event)   -- book_event only
--      rate-limit usage row (tessera.enforce_rate_limit): book_event after (1);
--                              cancel_booking after (2)
--   4. seat blocks          one block FOR UPDATE SKIP LOCKED, or all blocks in block order
--   5. tessera.event_queues row of the event, then its tessera.waitlist_buckets rows
--      (bucket rows are written only while holding the event_queues row)
--   6. booking rows
-- Several events (expire_offers) are locked in event id order.
--
-- LEDGER ORDER: an entry's seq starts with its transaction id (tessera.next_ledger_seq), which PostgreSQL assigns at
-- the transaction's first write. So a function that changes existing bookings writes nothing
-- before it holds the lock that orders those changes (the exclusive event lock, or every
-- seat block for a waitlist join). Then later changes of a booking always get larger seqs,
-- and promotions appear in the ledger in the order they happened. (book_event only ever
-- writes its own new booking, so it may write before its locks.)
--
-- Why a shared event lock: bookings that find a free seat only ever TAKE seats, so any
-- number of them may run at once, each on its own seat block. Freeing seats (cancel,
-- expiry, capacity change) must not interleave with a booker deciding the event is full
-- and joining the waitlist, so those take the lock exclusively. Joining the waitlist holds
-- every seat block, which serialises joins with each other and with takers of the last seats.
--
-- Errors: see the SQLSTATE table in README.md (TS001..TS009, 22023, 42501).

-- ===========================================================================================
-- Result type shared by book_event, cancel_booking and claim_offer
-- ===========================================================================================
create type public.booking_result as (
    booking_id uuid,
    event_id uuid,
    user_id uuid,
    status text,
    seats integer,
    waitlist_position integer,
    offer_expires_at timestamptz,
    created_at timestamptz
);

create type public.event_availability_result as (
    event_id uuid,
    capacity integer,
    seats_confirmed integer,
    seats_offered integer,
    seats_available integer,
    waitlist_count integer,
    waitlist_seats integer,
    status text,
    last_seq bigint
);

-- ===========================================================================================
-- Who may see and manage an event (identity helpers: foundation migration)
-- ===========================================================================================
create function tessera.can_manage_event(p_event public.events) returns boolean
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    -- coalesce: without a signed-in user the comparison is null, which must mean no.
    return tessera.is_service()
        or coalesce(p_event.organizer_id = tessera.current_user_id(), false);
end
$$;

-- An event the caller may see (ever published: anyone; never published: its organizer), or
-- TS001.
create function tessera.visible_event(p_event_id uuid) returns public.events
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

-- An event the caller organizes (or any, for service), or TS001 / 42501.
create function tessera.managed_event(p_event_id uuid) returns public.events
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_event public.events := tessera.visible_event(p_event_id);
begin
    if not tessera.can_manage_event(v_event) then
        raise exception using
            errcode = '42501',
            message = 'only the organizer may change this event',
            detail = format('event_id=%s', p_event_id);
    end if;
    return v_event;
end
$$;

-- ===========================================================================================
-- Locks (see LOCK ORDER above)
-- ===========================================================================================
create function tessera.event_lock_key(p_event_id uuid) returns bigint
language plpgsql immutable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return (select pg_catalog.hashtextextended('tessera.event:' || p_event_id::text, 0));
end
$$;

create function tessera.lock_event_shared(p_event_id uuid) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pg_catalog.pg_advisory_xact_lock_shared(tessera.event_lock_key(p_event_id));
end
$$;

create function tessera.lock_event_exclusive(p_event_id uuid) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pg_catalog.pg_advisory_xact_lock(tessera.event_lock_key(p_event_id));
end
$$;

create function tessera.lock_all_blocks(p_event_id uuid) returns void
language sql
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select null::void from (
        select 1 from tessera.seat_blocks as sb
        where sb.event_id = p_event_id
        order by sb.block
        for update
    ) as locked
$$;

-- ===========================================================================================
-- Seat blocks
-- ===========================================================================================

-- How many blocks an event of this capacity gets: enough to spread 100+ concurrent bookers,
-- few enough that a block still holds a typical party.
create function tessera.block_count(p_capacity integer) returns integer
language plpgsql immutable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return greatest(1, least(tessera.max_seat_blocks(), p_capacity / tessera.min_seats_per_block()));
end
$$;

-- (Re)distribute capacity and already taken seats evenly over the blocks.
-- Caller holds the event's exclusive lock (or has just created the event).
create function tessera.layout_blocks(p_event_id uuid, p_capacity integer, p_taken integer)
returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_blocks integer := tessera.block_count(p_capacity);
begin
    delete from tessera.seat_blocks as sb where sb.event_id = p_event_id;
    insert into tessera.seat_blocks (event_id, block, capacity, taken)
    select
        p_event_id,
        i,
        p_capacity / v_blocks + (i < p_capacity % v_blocks)::integer,
        p_taken / v_blocks + (i < p_taken % v_blocks)::integer
    from generate_series(0, v_blocks - 1) as i;
    perform tessera.sync_waitlist_flag(p_event_id);
end
$$;

create function tessera.free_seats(p_event_id uuid) returns integer
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return (select coalesce(sum(sb.capacity - sb.taken), 0)::integer
        from tessera.seat_blocks as sb where sb.event_id = p_event_id);
end
$$;

-- Keep seat_blocks.waitlist_open equal to "somebody waits". Bookers on the fast path only
-- take blocks whose flag is false, so setting it (while holding every block) closes the
-- fast path at once: a row lock plus re-check on the newest row version does the rest.
-- Caller holds the event's exclusive lock, or every seat block.
create function tessera.sync_waitlist_flag(p_event_id uuid) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_open boolean;
begin
    select q.waiting_count > 0 into v_open from tessera.event_queues as q
    where q.event_id = p_event_id;
    update tessera.seat_blocks as sb set waitlist_open = v_open
    where sb.event_id = p_event_id and sb.waitlist_open <> v_open;
end
$$;

-- Take p_seats from blocks in block order. Caller holds every block lock and has checked
-- that enough seats are free.
create function tessera.take_seats_spanning(p_event_id uuid, p_seats integer) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_left integer := p_seats;
    v_block record;
    v_take integer;
begin
    for v_block in
        select sb.block, sb.capacity - sb.taken as room from tessera.seat_blocks as sb
        where sb.event_id = p_event_id and sb.taken < sb.capacity
        order by sb.block
    loop
        exit when v_left = 0;
        v_take := least(v_left, v_block.room);
        update tessera.seat_blocks as sb set taken = sb.taken + v_take
        where sb.event_id = p_event_id and sb.block = v_block.block;
        v_left := v_left - v_take;
    end loop;
    if v_left > 0 then
        raise exception using errcode = 'XX000', message = 'tessera: seat accounting broken';
    end if;
end
$$;

-- Give p_seats back. Caller holds the event's exclusive lock.
create function tessera.release_seats(p_event_id uuid, p_seats integer) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_left integer := p_seats;
    v_block record;
    v_give integer;
begin
    for v_block in
        select sb.block, sb.taken from tessera.seat_blocks as sb
        where sb.event_id = p_event_id and sb.taken > 0
        order by sb.block
        for update
    loop
        exit when v_left = 0;
        v_give := least(v_left, v_block.taken);
        update tessera.seat_blocks as sb set taken = sb.taken - v_give
        where sb.event_id = p_event_id and sb.block = v_block.block;
        v_left := v_left - v_give;
    end loop;
    if v_left > 0 then
        raise exception using errcode = 'XX000', message = 'tessera: seat accounting broken';
    end if;
end
$$;

-- ===========================================================================================
-- Ledger
-- ===========================================================================================

-- Entries with seq below this are final: every transaction that could still add one with
-- a smaller seq has ended. Readers never look at or above it.
create function tessera.ledger_horizon() returns bigint
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    return (select (pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint) << 24);
end
$$;

-- The next seq of this transaction: (transaction id << 24) + 1 + the entries it already
-- wrote, read from the ledger itself (one index probe in the transaction's own range).
-- Nothing a caller can set takes part, so no API role can number entries below what
-- readers have already seen, nor into another transaction's range.
create function tessera.next_ledger_seq() returns bigint
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_base pg_catalog.int8 := tessera.ledger_seq_base(pg_catalog.pg_current_xact_id()::pg_catalog.text::pg_catalog.int8);
    v_seq pg_catalog.int8;
begin
    select coalesce(max(l.seq), v_base) + 1 into v_seq from public.ledger as l
    where l.seq > v_base and l.seq < v_base + tessera.ledger_entries_per_transaction();
    if v_seq >= v_base + tessera.ledger_entries_per_transaction() then
        raise exception using errcode = '54000', message = 'too many ledger entries in one transaction';
    end if;
    return v_seq;
end
$$;

-- The first seq of a transaction's range, or 54000 once transaction ids come near the end of
-- what a bigint seq can hold (tessera.max_ledger_transaction_id()).
create function tessera.ledger_seq_base(p_transaction_id bigint) returns bigint
language plpgsql immutable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if p_transaction_id > tessera.max_ledger_transaction_id() then
        raise exception using
            errcode = '54000',
            message = 'the ledger has run out of sequence numbers',
            detail = pg_catalog.format('transaction_id=%s limit=%s',
                p_transaction_id, tessera.max_ledger_transaction_id()),
            hint = 'Ledger seq is (transaction id << 24) + n; renumber the ledger before going on.';
    end if;
    return p_transaction_id << 24;
end
$$;

-- Append one entry describing the state right after a change, and return its seq.
-- Callers that already know the waiting count, the actor or the event's status pass them
-- (the hot path); the rest is read here. The availability snapshot is one sum over the
-- event's seat blocks, in the same statement as the insert, less p_seats_taking: seats the
-- caller takes right after writing the entry (the fast path).
create function tessera.record(
    p_kind text,
    p_event_id uuid,
    p_booking public.bookings default null,
    p_waitlist_position integer default null,
    p_detail jsonb default '{}'::jsonb,
    p_waiting integer default null,
    p_actor uuid default null,
    p_event_status text default null,
    p_seats_taking integer default 0
) returns bigint
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_seq pg_catalog.int8 := tessera.next_ledger_seq();
    v_waiting pg_catalog.int4 := p_waiting;
    v_status pg_catalog.text := p_event_status;
begin
    if v_waiting is null then
        select q.waiting_count into v_waiting from tessera.event_queues as q
        where q.event_id = p_event_id;
    end if;
    if v_status is null then
        select e.status into v_status from public.events as e where e.id = p_event_id;
    end if;
    insert into public.ledger (
        seq, event_id, booking_id, user_id, actor_id, kind, status, seats,
        waitlist_position, offer_expires_at, seats_available, waitlist_count, event_status, detail
    )
    select
        v_seq, p_event_id, p_booking.id, p_booking.user_id,
        coalesce(p_actor, tessera.current_user_id()), p_kind,
        p_booking.status, p_booking.seats, p_waitlist_position, p_booking.offer_expires_at,
        case
            when v_status = 'published'
                then greatest(coalesce(sum(sb.capacity - sb.taken), 0) - p_seats_taking, 0)::pg_catalog.int4
            else 0
        end,
        coalesce(v_waiting, 0), v_status, p_detail
    from tessera.seat_blocks as sb
    where sb.event_id = p_event_id;
    return v_seq;
end
$$;

-- ===========================================================================================
-- Waitlist
-- ===========================================================================================
-- 1-based position of a waiting booking (null for any other): the waiting bookings of its own
-- level-1 bucket up to its ticket, plus at each level the buckets before its own inside their
-- parent, plus the top level's buckets before its own.
create function tessera.position_of(p_booking public.bookings) returns integer
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
create function tessera.count_in_waitlist(
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

create function tessera.to_result(p_booking public.bookings, p_position integer default null)
returns public.booking_result
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_position pg_catalog.int4 := p_position;
begin
    if v_position is null and p_booking.status = 'waitlisted' then
        v_position := tessera.position_of(p_booking);
    end if;
    return row(
        p_booking.id, p_booking.event_id, p_booking.user_id, p_booking.status, p_booking.seats,
        v_position, p_booking.offer_expires_at, p_booking.created_at
    )::public.booking_result;
end
$$;

-- The next waiting booking that may be promoted into p_free seats, or null.
-- strict: only the head of the queue; first_fit: the oldest party that fits.
create function tessera.next_to_promote(p_event public.events, p_free integer)
returns public.bookings
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_next public.bookings;
begin
    if p_event.waitlist_policy = 'strict' then
        select * into v_next from public.bookings as b
        where b.event_id = p_event.id and b.status = 'waitlisted'
        order by b.queue_ticket limit 1;
        if found and v_next.seats <= p_free then
            return v_next;
        end if;
        return null;
    end if;
    -- first_fit: the oldest of each party size (a loose index scan over seat counts).
    with recursive sizes as (
        select min(b.seats) as s from public.bookings as b
        where b.event_id = p_event.id and b.status = 'waitlisted'
        union all
        select (
            select min(b.seats) from public.bookings as b
            where b.event_id = p_event.id and b.status = 'waitlisted' and b.seats > sizes.s
        ) from sizes where sizes.s < p_free
    )
    select oldest.* into v_next
    from sizes
    cross join lateral (
        select * from public.bookings as b
        where b.event_id = p_event.id and b.status = 'waitlisted' and b.seats = sizes.s
        order by b.queue_ticket limit 1
    ) as oldest
    where sizes.s <= p_free
    order by oldest.queue_ticket
    limit 1;
    if found then
        return v_next;
    end if;
    return null;
end
$$;

-- Hand free seats to the waitlist until nobody else fits (rule 2, rule 3).
-- Caller holds the event's exclusive lock, or its shared lock plus every seat block.
create function tessera.promote_waiting(p_event_id uuid) returns integer
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_event public.events;
    v_next public.bookings;
    v_free integer;
    v_promoted integer := 0;
begin
    select * into v_event from public.events as e where e.id = p_event_id;
    perform tessera.lock_all_blocks(p_event_id);
    loop
        exit when v_event.status <> 'published';
        v_free := tessera.free_seats(p_event_id);
        exit when v_free <= 0;
        v_next := tessera.next_to_promote(v_event, v_free);
        exit when v_next.id is null;

        perform tessera.take_seats_spanning(p_event_id, v_next.seats);
        if v_event.promotion_mode = 'auto' then
            update public.bookings as b
            set status = 'confirmed', confirmed_at = now(), updated_at = now()
            where b.id = v_next.id
            returning * into v_next;
            update tessera.event_queues as q
            set waiting_count = q.waiting_count - 1, waiting_seats = q.waiting_seats - v_next.seats
            where q.event_id = p_event_id;
            perform tessera.count_in_waitlist(p_event_id, v_next.queue_ticket, -1);
            perform tessera.record('promoted', p_event_id, v_next);
        else
            update public.bookings as b
            set status = 'offered', offered_at = now(),
                offer_expires_at = now() + v_event.offer_ttl, updated_at = now()
            where b.id = v_next.id
            returning * into v_next;
            update tessera.event_queues as q
            set waiting_count = q.waiting_count - 1,
                waiting_seats = q.waiting_seats - v_next.seats,
                offered_count = q.offered_count + 1,
                offered_seats = q.offered_seats + v_next.seats
            where q.event_id = p_event_id;
            perform tessera.count_in_waitlist(p_event_id, v_next.queue_ticket, -1);
            perform tessera.record('offered', p_event_id, v_next);
        end if;
        v_promoted := v_promoted + 1;
    end loop;
    perform tessera.sync_waitlist_flag(p_event_id);
    return v_promoted;
end
$$;

-- ===========================================================================================
-- RPC: create_event
-- ===========================================================================================
create function public.create_event(
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

grant execute on function public.create_event(
    text, integer, timestamptz, timestamptz, text, text, integer, boolean, integer, text, text,
    interval, timestamptz, timestamptz, boolean
) to authenticated, service_role;
comment on function public.create_event(
    text, integer, timestamptz, timestamptz, text, text, integer, boolean, integer, text, text,
    interval, timestamptz, timestamptz, boolean
) is
'Create an event as the signed-in organizer (published unless publish => false). Limits: the tessera.max_* constants.';

-- ===========================================================================================
-- Rate limit (configuration and algorithm: tessera.rate_limits in the tables migration)
-- ===========================================================================================
-- The limit of p_action: its row in tessera.rate_limits, else the defaults.
create function tessera.rate_limit_of(
    p_action text, out max_calls integer, out window_seconds integer
)
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    select rl.max_calls, rl.window_seconds into max_calls, window_seconds
    from tessera.rate_limits as rl where rl.action = p_action;
    if not found then
        max_calls := tessera.default_rate_limit_calls();
        window_seconds := tessera.default_rate_limit_window_seconds();
    end if;
end
$$;

-- TS009 for p_action, whose window (of p_seconds, allowing p_max calls) started at
-- p_window_started_at: the detail and hint say when to retry (at least 1 second).
create function tessera.raise_rate_limited(
    p_action text, p_max integer, p_seconds integer, p_window_started_at timestamptz
) returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_retry pg_catalog.int4 := greatest(
        coalesce(
            pg_catalog.ceil(extract(epoch from
                p_window_started_at + pg_catalog.make_interval(secs => p_seconds) - pg_catalog.now()
            ))::pg_catalog.int4,
            1
        ),
        1
    );
begin
    raise exception using
        errcode = 'TS009',
        message = pg_catalog.format('too many %s calls', p_action),
        detail = pg_catalog.format('action=%s limit=%s window_seconds=%s retry_after_seconds=%s',
            p_action, p_max, p_seconds, v_retry),
        hint = pg_catalog.format('Retry in %s seconds.', v_retry);
end
$$;

-- Count one more call of p_action by p_user, who already has a usage row (a call before
-- this one), or raise TS009: a new window when the last one is over, else one more call
-- while the limit allows it.
create function tessera.count_limited_call(p_action text, p_user uuid) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_limit record := tessera.rate_limit_of(p_action);
    v_window pg_catalog.interval := pg_catalog.make_interval(secs => v_limit.window_seconds);
    v_started pg_catalog.timestamptz;
begin
    insert into tessera.rate_limit_usage as u (user_id, action, window_started_at, calls)
    values (p_user, p_action, now(), 1)
    on conflict (user_id, action) do update set
        window_started_at = case
            when u.window_started_at + v_window <= now() then now() else u.window_started_at
        end,
        calls = case when u.window_started_at + v_window <= now() then 1 else u.calls + 1 end
    where u.window_started_at + v_window <= now() or u.calls < v_limit.max_calls;
    if found then  -- a row was inserted or updated: the call is within the limit
        return;
    end if;

    select u.window_started_at into v_started
    from tessera.rate_limit_usage as u
    where u.user_id = p_user and u.action = p_action;
    perform tessera.raise_rate_limited(
        p_action, v_limit.max_calls, v_limit.window_seconds, v_started
    );
end
$$;

-- Count one call of p_action for the signed-in caller (p_user, when the caller already
-- knows it), or raise TS009 (max_calls >= 1, so a user's first call is always within it). Operators are not limited. Called by book_event (after its
-- idempotency check) and cancel_booking.
create function tessera.enforce_rate_limit(p_action text, p_user uuid default null)
returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user pg_catalog.uuid := p_user;
begin
    if tessera.is_service() then
        return;
    end if;
    v_user := coalesce(v_user, tessera.current_user_id());
    if v_user is null then
        return;  -- the caller refuses anonymous calls itself
    end if;
    -- The first call of a user opens their window: one insert, no configuration needed.
    insert into tessera.rate_limit_usage as u (user_id, action, window_started_at, calls)
    values (v_user, p_action, now(), 1)
    on conflict (user_id, action) do nothing;
    if not found then
        perform tessera.count_limited_call(p_action, v_user);
    end if;
end
$$;

-- TS009 when the signed-in caller (p_user, when known) has no calls of p_action left in
-- their window; writes nothing, so it may run before any lock. Operators are not limited.
create function tessera.check_rate_limit(p_action text, p_user uuid default null)
returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user pg_catalog.uuid := p_user;
    v_started pg_catalog.timestamptz;
    v_calls pg_catalog.int4;
    v_limit record;
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
    v_limit := tessera.rate_limit_of(p_action);
    if v_calls < v_limit.max_calls
        or v_started + pg_catalog.make_interval(secs => v_limit.window_seconds) <= now() then
        return;
    end if;
    perform tessera.raise_rate_limited(
        p_action, v_limit.max_calls, v_limit.window_seconds, v_started
    );
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
-- RPC: book_event, in named steps. Each step takes the next lock of the LOCK ORDER above:
--   key (1) -> rate-limit usage row -> event (2, shared) -> user on the event (3) ->
--   fast path (4, one block, last) or take_seats_holding_every_block (4, all blocks) ->
--   seat_booking / join_waitlist (5, queue row).
-- book_event runs the common path itself (20261129190000_tessera_lean_booking.sql); the
-- step functions below raise the precise error of a step (TS001/TS003/TS004, TS005, TS009,
-- TS010) and make up the slow path.
-- ===========================================================================================

-- Step 1: the booking an idempotency key already names, or null; TS010 when
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

-- Step 2: the event, visible to the caller, selling now, and a party size it can seat
-- (TS001, TS003, TS004). Takes lock (2) shared: many bookers at once; cancellations and
-- capacity changes wait. (Locking an id that names no event is harmless.)
create function tessera.open_event_for_booking(p_event_id uuid, p_seats integer)
returns public.events
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_event public.events;
    v_largest pg_catalog.int4;
begin
    perform pg_catalog.pg_advisory_xact_lock_shared(tessera.event_lock_key(p_event_id));
    select * into v_event from public.events as e where e.id = p_event_id;
    if v_event.id is null or v_event.published_at is null then
        v_event := tessera.visible_event(p_event_id);  -- TS001 unless the caller may see it
    end if;
    if v_event.status <> 'published' or pg_catalog.now() < v_event.sales_open_at
        or pg_catalog.now() >= v_event.sales_close_at then
        raise exception using
            errcode = 'TS003',
            message = 'sales are closed for this event',
            detail = pg_catalog.format('event_id=%s status=%s', p_event_id, v_event.status),
            hint = case
                when v_event.status = 'published' and pg_catalog.now() < v_event.sales_open_at
                    then pg_catalog.format('Sales open at %s.', v_event.sales_open_at)
                when v_event.status = 'draft' then 'The event is not published yet.'
                else 'Sales for this event have ended.'
            end;
    end if;
    -- A party larger than the event could never be seated and would block a strict queue.
    v_largest := least(v_event.max_seats_per_booking, v_event.capacity);
    if p_seats is null or p_seats < 1 or p_seats > v_largest then
        raise exception using
            errcode = 'TS004',
            message = pg_catalog.format('seats must be between 1 and %s', v_largest),
            detail = pg_catalog.format('seats=%s', coalesce(p_seats::pg_catalog.text, 'null'));
    end if;
    return v_event;
end
$$;

-- Step 3: at most one active booking per user per event (TS005). Takes lock (3).
create function tessera.ensure_no_active_booking(p_event_id uuid, p_user uuid) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_booking public.bookings;
begin
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended(
            'tessera.user:' || p_user::pg_catalog.text || ':' || p_event_id::pg_catalog.text, 0
        )
    );
    select * into v_booking from public.bookings as b
    where b.event_id = p_event_id and b.user_id = p_user
      and b.status in ('confirmed', 'waitlisted', 'offered');
    if found then
        raise exception using
            errcode = 'TS005',
            message = 'you already have an active booking for this event',
            detail = pg_catalog.format('booking_id=%s status=%s', v_booking.id, v_booking.status),
            hint = 'Cancel the existing booking first.';
    end if;
end
$$;

-- Step 4b, the slow path: hold every block (lock 4, in block order), then decide with the
-- whole event in view. Returns whether p_seats were taken, and how many bookings wait.
-- first_fit lets a party that fits go ahead of waiting parties that do not (and none that
-- fits is waiting: promotion always runs until nobody else fits).
create function tessera.take_seats_holding_every_block(
    p_event public.events, p_seats integer, out seated boolean, out waiting integer
)
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    perform tessera.lock_all_blocks(p_event.id);
    select q.waiting_count into waiting from tessera.event_queues as q
    where q.event_id = p_event.id;
    seated := (waiting = 0 or p_event.waitlist_policy = 'first_fit')
        and tessera.free_seats(p_event.id) >= p_seats;
    if seated then
        perform tessera.take_seats_spanning(p_event.id, p_seats);
    end if;
end
$$;

-- Step 5a: the booking of seats already taken. Confirmed; or, when it was seated past a
-- waiting queue under the offer mode, held as an offer like any promotion.
create function tessera.seat_booking(
    p_event public.events, p_user uuid, p_seats integer, p_key text, p_waiting integer
) returns public.booking_result
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_booking public.bookings;
begin
    if p_waiting > 0 and p_event.promotion_mode = 'offer' then
        insert into public.bookings as b (
            event_id, user_id, seats, status, idempotency_key, offered_at, offer_expires_at
        ) values (
            p_event.id, p_user, p_seats, 'offered', p_key, pg_catalog.now(),
            pg_catalog.now() + p_event.offer_ttl
        ) returning * into v_booking;
        update tessera.event_queues as q
        set offered_count = q.offered_count + 1, offered_seats = q.offered_seats + p_seats
        where q.event_id = p_event.id;
        perform tessera.record(
            'offered', p_event.id, v_booking, null, '{}'::pg_catalog.jsonb, p_waiting, p_user, p_event.status
        );
        return tessera.to_result(v_booking);
    end if;
    insert into public.bookings as b (
        event_id, user_id, seats, status, idempotency_key, confirmed_at
    ) values (p_event.id, p_user, p_seats, 'confirmed', p_key, pg_catalog.now())
    returning * into v_booking;
    perform tessera.record(
        'booked', p_event.id, v_booking, null, '{}'::pg_catalog.jsonb, p_waiting, p_user, p_event.status
    );
    return tessera.to_result(v_booking);
end
$$;

-- Step 5b: full (or people are waiting): join the waitlist (TS006 when it is off or full).
-- Caller holds every seat block, which serialises joins: the newest ticket is last in line.
create function tessera.join_waitlist(
    p_event public.events, p_user uuid, p_seats integer, p_key text, p_waiting integer
) returns public.booking_result
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_booking public.bookings;
    v_position pg_catalog.int4 := p_waiting + 1;
    v_ticket pg_catalog.int8;
begin
    if not p_event.waitlist_enabled or p_waiting >= p_event.waitlist_limit then
        raise exception using
            errcode = 'TS006',
            message = case when p_event.waitlist_enabled then 'sold out and the waitlist is full'
                else 'sold out' end,
            detail = pg_catalog.format('event_id=%s seats_available=%s waitlist_count=%s',
                p_event.id, tessera.free_seats(p_event.id), p_waiting);
    end if;
    update tessera.event_queues as q
    set waiting_count = q.waiting_count + 1, waiting_seats = q.waiting_seats + p_seats,
        tickets_issued = q.tickets_issued + 1
    where q.event_id = p_event.id
    returning q.tickets_issued into v_ticket;
    insert into public.bookings as b (
        event_id, user_id, seats, status, queue_ticket, idempotency_key, waitlisted_at
    ) values (
        p_event.id, p_user, p_seats, 'waitlisted', v_ticket, p_key, pg_catalog.now()
    ) returning * into v_booking;
    perform tessera.count_in_waitlist(p_event.id, v_ticket, 1);
    if p_waiting = 0 then
        perform tessera.sync_waitlist_flag(p_event.id);  -- closes the fast path
    end if;
    perform tessera.record(
        'waitlisted', p_event.id, v_booking, v_position, '{}'::pg_catalog.jsonb, p_waiting + 1, p_user,
        p_event.status
    );
    return tessera.to_result(v_booking, v_position);
end
$$;

create function public.book_event(
    event_id uuid, seats integer default 1, idempotency_key text default null
) returns public.booking_result
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_variable
declare
    v_role pg_catalog.text := coalesce(
        nullif(pg_catalog.current_setting('role', true), 'none'), pg_catalog.session_user()::pg_catalog.text
    );
    v_sub pg_catalog.text;
    v_user pg_catalog.uuid;
    v_event public.events;
    v_booking public.bookings;
    v_count pg_catalog.int4;
    v_start pg_catalog.int4;
    v_candidates pg_catalog.int4[];
    v_free pg_catalog.int4;
    v_tries pg_catalog.int4;
    v_block pg_catalog.int4;
    v_fits boolean;
    v_constraint pg_catalog.text;
    v_slow record;
begin
    -- Identity: the request's signed-in user, read as tessera.require_user reads it, which
    -- raises 42501 when there is none. That the user still exists (a token outlives its
    -- user) is checked by the booking's foreign key on the fast path, and by
    -- tessera.require_user on the slow path.
    if v_role <> 'anon' then
        v_sub := coalesce(
            nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
            nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb ->> 'sub'
        );
        if v_sub ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
            v_user := v_sub::pg_catalog.uuid;
        end if;
    end if;
    if v_user is null then
        v_user := tessera.require_user();
    end if;

    -- Step 1, lock (1): a retry is answered from its key and costs nothing else.
    if idempotency_key is not null then
        v_booking := tessera.booking_by_key(v_user, idempotency_key, event_id, seats);
        if v_booking.id is not null then
            return tessera.to_result(v_booking);
        end if;
    end if;

    -- Rate limit (the usage row), as tessera.enforce_rate_limit counts it: a user's first
    -- call only inserts the row; any other call is counted, or refused with TS009, by
    -- tessera.count_limited_call. Operators are not limited (tessera.is_service).
    if v_role in ('anon', 'authenticated', 'authenticator') then
        insert into tessera.rate_limit_usage as u (user_id, action, window_started_at, calls)
        values (v_user, 'book_event', pg_catalog.now(), 1)
        on conflict (user_id, action) do nothing;
        if not found then
            perform tessera.count_limited_call('book_event', v_user);
        end if;
    end if;

    -- Step 2, lock (2) shared: the event, selling now, for a party it can seat. Anything else
    -- is explained by tessera.open_event_for_booking, which raises TS001 / TS003 / TS004.
    perform pg_catalog.pg_advisory_xact_lock_shared(
        pg_catalog.hashtextextended('tessera.event:' || event_id::pg_catalog.text, 0)
    );
    select * into v_event from public.events as e where e.id = event_id;
    if v_event.published_at is null or v_event.status <> 'published'
        or pg_catalog.now() < v_event.sales_open_at or pg_catalog.now() >= v_event.sales_close_at
        or seats is null or seats < 1
        or seats > least(v_event.max_seats_per_booking, v_event.capacity) then
        v_event := tessera.open_event_for_booking(event_id, seats);
    end if;

    -- Step 3, lock (3): one booker per user and event at a time. The active booking a user
    -- may already hold is found by the unique index when the booking is inserted (below),
    -- and explained by tessera.ensure_no_active_booking on the slow path (TS005).
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended(
            'tessera.user:' || v_user::pg_catalog.text || ':' || event_id::pg_catalog.text, 0
        )
    );

    -- Step 4a, the fast path: nobody waits and one block can seat the party. One read of the
    -- event's blocks gives the candidates and the free seats for the availability snapshot.
    select
        pg_catalog.array_agg(sb.block) filter (where not sb.waitlist_open and sb.capacity - sb.taken >= seats),
        coalesce(sum(sb.capacity - sb.taken), 0)
    into v_candidates, v_free
    from tessera.seat_blocks as sb
    where sb.event_id = event_id;
    if v_candidates is not null then
        -- One subtransaction: the booking, its ledger entry (the ledger trigger publishes it),
        -- then lock (4) on one block, taken last so that a block is held only from the seat it
        -- gives until the commit. Each lock names one block by primary key, so exactly that
        -- block is held: the first few candidates are tried without waiting (SKIP LOCKED),
        -- then it waits for the next one while holding no other block (so it never waits for
        -- a block while holding one, which could deadlock with a booker locking every block
        -- in order). A block that is full once locked (a concurrent booker took its last
        -- seats) ends the attempt: the rollback releases the lock with everything else, and
        -- the slow path decides.
        begin
            insert into public.bookings as b (
                event_id, user_id, seats, status, idempotency_key, confirmed_at
            ) values (event_id, v_user, seats, 'confirmed', idempotency_key, pg_catalog.now())
            returning * into v_booking;

            -- tessera.record, for this one entry: the availability snapshot from the read
            -- above, less the seats taken here.
            insert into public.ledger (
                seq, event_id, booking_id, user_id, actor_id, kind, status, seats,
                waitlist_position, offer_expires_at, seats_available, waitlist_count, event_status, detail
            ) values (
                tessera.next_ledger_seq(), event_id, v_booking.id, v_user, v_user, 'booked',
                'confirmed', seats, null, null, greatest(v_free - seats, 0), 0, 'published',
                '{}'::pg_catalog.jsonb
            );

            -- Candidates are tried from a random one on, so that bookers spread over the blocks.
            v_count := pg_catalog.cardinality(v_candidates);
            v_start := pg_catalog.floor(pg_catalog.random() * v_count)::pg_catalog.int4;
            v_tries := least(v_count, 4);
            for i in 1 .. v_tries loop
                v_block := v_candidates[(v_start + i - 1) % v_count + 1];
                if i < v_tries then
                    select sb.capacity - sb.taken >= seats and not sb.waitlist_open into v_fits
                    from tessera.seat_blocks as sb
                    where sb.event_id = event_id and sb.block = v_block
                    for update skip locked;
                else
                    select sb.capacity - sb.taken >= seats and not sb.waitlist_open into v_fits
                    from tessera.seat_blocks as sb
                    where sb.event_id = event_id and sb.block = v_block
                    for update;
                end if;
                exit when found;
            end loop;
            if not coalesce(v_fits, false) then
                raise no_data_found;
            end if;
            update tessera.seat_blocks as sb set taken = sb.taken + seats
            where sb.event_id = event_id and sb.block = v_block;
            return row(
                v_booking.id, v_booking.event_id, v_booking.user_id, v_booking.status,
                v_booking.seats, null, v_booking.offer_expires_at, v_booking.created_at
            )::public.booking_result;
        exception
            when no_data_found then
                null;  -- no single block can seat the party now: the slow path decides
            when unique_violation then
                get stacked diagnostics v_constraint = constraint_name;
                if v_constraint is distinct from 'bookings_one_active_per_user_idx' then
                    raise;
                end if;  -- an active booking exists: the slow path raises TS005
            when foreign_key_violation then
                perform tessera.require_user();  -- 42501 for a deleted user's token
                raise;
        end;
    end if;

    -- Step 4b, the slow path: decide with every block held (lock 4, all blocks in order).
    perform tessera.require_user();  -- 42501 for a deleted user's token
    perform tessera.ensure_no_active_booking(event_id, v_user);
    v_slow := tessera.take_seats_holding_every_block(v_event, seats);
    if v_slow.seated then
        return tessera.seat_booking(v_event, v_user, seats, idempotency_key, v_slow.waiting);
    end if;
    return tessera.join_waitlist(v_event, v_user, seats, idempotency_key, v_slow.waiting);
end
$$;

grant execute on function public.book_event(uuid, integer, text) to authenticated, service_role;
comment on function public.book_event(uuid, integer, text) is
'Book seats for the signed-in user: confirmed while seats last, else waitlisted. Idempotent per key; rate limited.';

-- ===========================================================================================
-- RPC: cancel_booking
-- ===========================================================================================

-- The caller's own booking (any booking, for service), or TS002.
create function tessera.own_booking(p_booking_id uuid) returns public.bookings
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_booking public.bookings;
begin
    select * into v_booking from public.bookings as b where b.id = p_booking_id;
    if not found or not (tessera.is_service()
        or coalesce(v_booking.user_id = tessera.current_user_id(), false)) then
        raise exception using
            errcode = 'TS002',
            message = 'booking not found',
            detail = format('booking_id=%s', coalesce(p_booking_id::text, 'null'));
    end if;
    return v_booking;
end
$$;

create function public.cancel_booking(booking_id uuid) returns public.booking_result
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
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

grant execute on function public.cancel_booking(uuid) to authenticated, service_role;
comment on function public.cancel_booking(uuid) is
'Cancel a booking (your own; any, for service). Freed seats go to the waitlist first.';

-- ===========================================================================================
-- RPC: claim_offer
-- ===========================================================================================
create function public.claim_offer(booking_id uuid) returns public.booking_result
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
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

grant execute on function public.claim_offer(uuid) to authenticated, service_role;
comment on function public.claim_offer(uuid) is
'Turn your offered booking into a confirmed one before the offer expires.';

-- ===========================================================================================
-- RPC: expire_offers (service_role; scheduled by pg_cron where available)
-- ===========================================================================================
create function public.expire_offers() returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_events uuid[];
    v_event_id uuid;
    v_booking public.bookings;
    v_expired integer := 0;
begin
    if not tessera.is_service() then
        raise exception using errcode = '42501', message = 'only operators may expire offers';
    end if;
    -- Lock every affected event first (in id order), so this transaction's id, and with it
    -- the seq of every entry it writes, comes after all earlier changes of those events.
    v_events := array(
        select distinct b.event_id from public.bookings as b
        where b.status = 'offered' and b.offer_expires_at <= now()
        order by b.event_id
    );
    perform tessera.lock_event_exclusive(e) from unnest(v_events) as e;
    foreach v_event_id in array v_events
    loop
        for v_booking in
            select * from public.bookings as b
            where b.event_id = v_event_id and b.status = 'offered' and b.offer_expires_at <= now()
            order by b.offer_expires_at, b.queue_ticket
            for update
        loop
            perform tessera.release_seats(v_event_id, v_booking.seats);
            update tessera.event_queues as q
            set offered_count = q.offered_count - 1, offered_seats = q.offered_seats - v_booking.seats
            where q.event_id = v_event_id;
            update public.bookings as b
            set status = 'expired', expired_at = now(), updated_at = now()
            where b.id = v_booking.id
            returning * into v_booking;
            perform tessera.record('offer_expired', v_event_id, v_booking);
            v_expired := v_expired + 1;
        end loop;
        perform tessera.promote_waiting(v_event_id);
    end loop;
    return v_expired;
end
$$;

grant execute on function public.expire_offers() to service_role;
comment on function public.expire_offers() is
'Expire every offer past its time and pass the seats on; returns how many expired. Operators only.';

-- ===========================================================================================
-- RPC: event_availability, waitlist_position
-- ===========================================================================================
create function public.event_availability(event_id uuid)
returns public.event_availability_result
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_event public.events := tessera.visible_event(event_id);
    v_queue tessera.event_queues;
    v_taken integer;
    v_last bigint;
begin
    select * into v_queue from tessera.event_queues as q where q.event_id = event_id;
    select coalesce(sum(sb.taken), 0)::integer into v_taken
    from tessera.seat_blocks as sb where sb.event_id = event_id;
    select max(l.seq) into v_last from public.ledger as l
    where l.event_id = event_id and l.seq < tessera.ledger_horizon();
    return row(
        event_id, v_event.capacity, v_taken - v_queue.offered_seats, v_queue.offered_seats,
        case when v_event.status = 'published' then v_event.capacity - v_taken else 0 end,
        v_queue.waiting_count, v_queue.waiting_seats, v_event.status, coalesce(v_last, 0)
    )::public.event_availability_result;
end
$$;

grant execute on function public.event_availability(uuid) to anon, authenticated, service_role;
comment on function public.event_availability(uuid) is
'Capacity, seats confirmed, offered and available, waitlist size, status and last ledger seq of an event.';

create function public.waitlist_position(booking_id uuid) returns integer
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_variable
declare
    v_booking public.bookings;
    v_event public.events;
begin
    select * into v_booking from public.bookings as b where b.id = booking_id;
    if found and v_booking.user_id is distinct from tessera.current_user_id()
        and not tessera.is_service() then
        select * into v_event from public.events as e where e.id = v_booking.event_id;
        if not tessera.can_manage_event(v_event) then
            v_booking := null;
        end if;
    end if;
    if v_booking.id is null then
        raise exception using
            errcode = 'TS002',
            message = 'booking not found',
            detail = format('booking_id=%s', coalesce(booking_id::text, 'null'));
    end if;
    return tessera.position_of(v_booking);
end
$$;

grant execute on function public.waitlist_position(uuid) to authenticated, service_role;
comment on function public.waitlist_position(uuid) is
'1-based position of a waiting booking in its queue (null when not waiting). Own bookings, or your events''.';

-- ===========================================================================================
-- RPC: organizer actions
-- ===========================================================================================
create function public.set_event_capacity(event_id uuid, capacity integer)
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

grant execute on function public.set_event_capacity(uuid, integer) to authenticated, service_role;
comment on function public.set_event_capacity(uuid, integer) is
'Change an event''s capacity (organizer). Growing promotes from the waitlist; never below seats held.';

-- Change an event's details (capacity: set_event_capacity); one event_updated ledger entry.
create function public.update_event(
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

revoke execute on function public.update_event(
    uuid, text, text, text, timestamptz, timestamptz, timestamptz, timestamptz, integer, integer,
    interval
) from public, anon;
grant execute on function public.update_event(
    uuid, text, text, text, timestamptz, timestamptz, timestamptz, timestamptz, integer, integer,
    interval
) to authenticated, service_role;

comment on function public.update_event(
    uuid, text, text, text, timestamptz, timestamptz, timestamptz, timestamptz, integer, integer,
    interval
) is
'Change an event''s details (organizer or service_role); null arguments keep the current value. '
'Checked as create_event checks them; capacity is changed by set_event_capacity. Records one '
'event_updated ledger entry naming every changed field. Errors: TS001, TS007, 22023, 42501.';

create function public.publish_event(event_id uuid) returns public.events
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

grant execute on function public.publish_event(uuid) to authenticated, service_role;
comment on function public.publish_event(uuid) is
'Publish a draft event (organizer). Publishing a published event changes nothing.';

create function public.cancel_event(event_id uuid) returns public.events
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

grant execute on function public.cancel_event(uuid) to authenticated, service_role;
comment on function public.cancel_event(uuid) is
'Cancel an event and every active booking of it (organizer).';

-- ===========================================================================================
-- Offers expire every minute where pg_cron is available (hosted Supabase: enable it first)
-- ===========================================================================================
do $schedule$
begin
    if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
        perform cron.schedule(
            'tessera-expire-offers', '* * * * *', 'select public.expire_offers()'
        );
    end if;
end
$schedule$;
