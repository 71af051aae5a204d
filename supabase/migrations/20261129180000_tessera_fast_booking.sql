-- Tessera fast booking: a seat block is held only from the seat it gives to the commit.
--
-- On the fast path (nobody waits, one block has room) book_event used to take the seat
-- block first and then write the booking, its ledger entry and two realtime messages while
-- holding it; with more bookers than blocks, every booker waited on blocks for all that
-- work. Now the confirmed booking and its ledger entry are written first and the block is
-- taken last, inside one subtransaction that is rolled back (booking, entry, messages and
-- any row lock) when no single block can seat the party; the slow path then decides with
-- every block held, as before. The public API is unchanged.

-- ===========================================================================================
-- Ledger: the availability snapshot may leave out seats about to be taken
-- ===========================================================================================
drop function tessera.record(text, uuid, public.bookings, integer, jsonb, integer, uuid, text);

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
-- book_event step 4a, the fast path
-- ===========================================================================================
drop function tessera.take_seat_fast(uuid, integer);

-- The confirmed booking of a party one seat block can hold while nobody waits, or null
-- (nothing written) when no single block has room: the slow path decides then.
--
-- Order inside one subtransaction: the booking, its ledger entry (and so its realtime
-- messages), then lock (4) on one block. The block is chosen among those with room in this
-- statement's snapshot: first any of them no one holds right now (SKIP LOCKED, locked by
-- primary key so that exactly the returned row is locked), else it waits for the first of
-- them. It waits only while holding no other block, so it never holds one block while
-- waiting for another (which could deadlock with a booker locking every block in order).
-- A block that turns out full once locked (a concurrent booker took its last seats) ends
-- the attempt: the subtransaction is rolled back, releasing that lock with everything else.
create function tessera.book_fast(
    p_event public.events, p_user uuid, p_seats integer, p_key text
) returns public.booking_result
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_blocks constant pg_catalog.int4 := tessera.max_seat_blocks();
    v_start pg_catalog.int4 := pg_catalog.floor(pg_catalog.random() * v_blocks)::pg_catalog.int4;
    v_candidates pg_catalog.int4[];
    v_booking public.bookings;
    v_block pg_catalog.int4;
    v_fits boolean;
begin
    v_candidates := array(
        select sb.block from tessera.seat_blocks as sb
        where sb.event_id = p_event.id and not sb.waitlist_open and sb.capacity - sb.taken >= p_seats
        order by (sb.block + v_start) % v_blocks
    );
    if pg_catalog.cardinality(v_candidates) = 0 then
        return null;
    end if;
    begin
        insert into public.bookings as b (
            event_id, user_id, seats, status, idempotency_key, confirmed_at
        ) values (p_event.id, p_user, p_seats, 'confirmed', p_key, pg_catalog.now())
        returning * into v_booking;
        perform tessera.record(
            'booked', p_event.id, v_booking, null, '{}'::pg_catalog.jsonb, 0, p_user, p_event.status,
            p_seats
        );

        select sb.block, sb.capacity - sb.taken >= p_seats and not sb.waitlist_open
        into v_block, v_fits
        from tessera.seat_blocks as sb
        where sb.event_id = p_event.id and sb.block = any(v_candidates)
        order by (sb.block + v_start) % v_blocks
        limit 1
        for update skip locked;
        if v_block is null then  -- every candidate is busy: wait for the first one
            select sb.block, sb.capacity - sb.taken >= p_seats and not sb.waitlist_open
            into v_block, v_fits
            from tessera.seat_blocks as sb
            where sb.event_id = p_event.id and sb.block = v_candidates[1]
            for update;
        end if;
        if not coalesce(v_fits, false) then
            raise no_data_found;  -- roll back the booking, its entry and the block's lock
        end if;
        update tessera.seat_blocks as sb set taken = sb.taken + p_seats
        where sb.event_id = p_event.id and sb.block = v_block;
    exception when no_data_found then
        return null;
    end;
    return tessera.to_result(v_booking);
end
$$;

-- ===========================================================================================
-- RPC: book_event (as in 20261129100100_tessera_input_rules.sql, with the fast path above)
-- ===========================================================================================
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
    v_result public.booking_result;
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

    v_result := tessera.book_fast(v_event, v_user, seats, idempotency_key);
    if v_result.booking_id is not null then
        return v_result;
    end if;
    v_slow := tessera.take_seats_holding_every_block(v_event, seats);
    if v_slow.seated then
        return tessera.seat_booking(v_event, v_user, seats, idempotency_key, v_slow.waiting);
    end if;
    return tessera.join_waitlist(v_event, v_user, seats, idempotency_key, v_slow.waiting);
end
$$;
