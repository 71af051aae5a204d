-- Tessera lean booking: the common booking in few statements and no nested calls.
--
-- Measured before this change (pgbench, PostgREST-style calls, one hot event): a booking spent
-- most of its CPU on statement overhead rather than on the rows it writes: ~16 nested PL/pgSQL
-- calls (each saving and restoring search_path), statements re-planned on every call (custom
-- plans), the availability snapshot summed over every seat block in the ledger insert, and the
-- rate-limit check's configuration read even on a user's first call. Now:
--   * public.book_event runs the common path itself, in named steps: identity, key, rate limit,
--     event, lock (3), then the fast path; the step helpers run only to raise their precise error
--     or for the slow path, so every rule, error and lock of the LOCK ORDER is unchanged;
--   * statements use generic plans (plan_cache_mode = force_generic_plan): planned once per
--     session, not once per call;
--   * one read of the event's seat blocks gives both the candidate blocks and the free seats of
--     the ledger's availability snapshot;
--   * up to 64 seat blocks per event (was 32): a block is held from the seat it gives until the
--     commit, so at high concurrency more blocks means fewer bookers waiting for one.

-- ===========================================================================================
-- Seat blocks: up to 64 per event (events created before keep their layout until their
-- capacity changes)
-- ===========================================================================================
create or replace function tessera.max_seat_blocks() returns integer
language sql immutable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 64 $$;

-- ===========================================================================================
-- RPC: book_event
-- ===========================================================================================
drop function tessera.book_fast(public.events, uuid, integer, text);

create or replace function public.book_event(
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

-- The other calls on a booking's way: planned once per session too.
alter function public.cancel_booking(uuid) set plan_cache_mode = force_generic_plan;
alter function public.claim_offer(uuid) set plan_cache_mode = force_generic_plan;
alter function public.waitlist_position(uuid) set plan_cache_mode = force_generic_plan;
