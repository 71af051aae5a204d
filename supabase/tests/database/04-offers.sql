-- Offers (promotion_mode 'offer'): the next in line gets the seats held for offer_ttl and
-- must claim them; an unclaimed offer expires through expire_offers() and passes on.
begin;
set local search_path = public, extensions;
select plan(29);

insert into auth.users (id, email) values
('11111111-1111-1111-1111-111111111111', 'organizer@example.test'),
('00000000-0000-0000-0000-000000000001', 'u1@example.test'),
('00000000-0000-0000-0000-000000000002', 'u2@example.test'),
('00000000-0000-0000-0000-000000000003', 'u3@example.test'),
('00000000-0000-0000-0000-000000000004', 'u4@example.test'),
('00000000-0000-0000-0000-000000000005', 'u5@example.test'),
('00000000-0000-0000-0000-000000000006', 'u6@example.test');

-- What the calls below returned, by label, readable by every role the test acts as.
create temporary table fixture (
    label text primary key,
    event public.events,
    booking public.booking_result
);
grant select, insert on fixture to public;

create function pg_temp.event_id(p_label text) returns uuid
language sql stable
as $$
    select (f.event).id from fixture as f where f.label = p_label
$$;

create function pg_temp.booking_id(p_label text) returns uuid
language sql stable
as $$
    select (f.booking).booking_id from fixture as f where f.label = p_label
$$;

-- The active bookings of the event by user, with the position waitlist_position reports.
-- Call it as the superuser: it reads past row level security.
create function pg_temp.queue()
returns table (who text, status text, waitlist_position integer)
language sql stable
as $$
    select split_part(u.email, '@', 1), b.status, public.waitlist_position(b.id)
    from public.bookings as b inner join auth.users as u on b.user_id = u.id
    where b.event_id = pg_temp.event_id('offers') and b.status <> 'cancelled'
    order by u.email, b.status
$$;

-- ------------------------------------------------------------------------------------------
-- 2 seats, offers held for 2 hours: u1, u2 confirmed; u3, u4, u5 wait
-- ------------------------------------------------------------------------------------------
select
    set_config('role', 'authenticated', true) as api_role,
    set_config(
        'request.jwt.claims',
        '{"sub": "11111111-1111-1111-1111-111111111111", "role": "authenticated"}',
        true
    ) as jwt_claims;
insert into fixture (label, event) values (
    'offers',
    public.create_event(
        title => 'Offers', capacity => 2, starts_at => now() + interval '30 days',
        promotion_mode => 'offer', offer_ttl => interval '2 hours'
    )
);

select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000001", "role": "authenticated"}', true
);
insert into fixture (label, booking) values ('u1', public.book_event(pg_temp.event_id('offers')));
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000002", "role": "authenticated"}', true
);
insert into fixture (label, booking) values ('u2', public.book_event(pg_temp.event_id('offers')));
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000003", "role": "authenticated"}', true
);
insert into fixture (label, booking) values ('u3', public.book_event(pg_temp.event_id('offers')));
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000004", "role": "authenticated"}', true
);
insert into fixture (label, booking) values ('u4', public.book_event(pg_temp.event_id('offers')));
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000005", "role": "authenticated"}', true
);
insert into fixture (label, booking) values ('u5', public.book_event(pg_temp.event_id('offers')));

select throws_ok(
    $$select public.claim_offer(pg_temp.booking_id('u5'))$$,
    'TS007', null,
    'a waitlisted booking has no offer to claim'
);

-- ------------------------------------------------------------------------------------------
-- A cancellation makes an offer to the head of the line
-- ------------------------------------------------------------------------------------------
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000001", "role": "authenticated"}', true
);
select lives_ok(
    $$select public.cancel_booking(pg_temp.booking_id('u1'))$$,
    'u1 cancels'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u2', 'confirmed', null::integer), ('u3', 'offered', null), ('u4', 'waitlisted', 1),
        ('u5', 'waitlisted', 2)$$,
    'the freed seat is offered to u3, the head of the line'
);

select results_eq(
    $$select offered_at, offer_expires_at from public.bookings where id = pg_temp.booking_id('u3')$$,
    $$values (now(), now() + interval '2 hours')$$,
    'the offer is held for the event''s offer_ttl'
);

select
    set_config('role', 'authenticated', true) as api_role,
    set_config(
        'request.jwt.claims',
        '{"sub": "00000000-0000-0000-0000-000000000006", "role": "authenticated"}',
        true
    ) as jwt_claims;
select results_eq(
    $$
    select seats_confirmed, seats_offered, seats_available, waitlist_count
    from public.event_availability(pg_temp.event_id('offers'))
    $$,
    $$values (1, 1, 0, 2)$$,
    'an offered seat is held: not available to anyone else'
);

insert into fixture (label, booking) values ('u6', public.book_event(pg_temp.event_id('offers')));
select results_eq(
    $$select (booking).status, (booking).waitlist_position from fixture where label = 'u6'$$,
    $$values ('waitlisted', 3)$$,
    'a newcomer queues behind the others while the offer is open'
);

-- ------------------------------------------------------------------------------------------
-- Claiming
-- ------------------------------------------------------------------------------------------
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000004", "role": "authenticated"}', true
);
select throws_ok(
    $$select public.claim_offer(pg_temp.booking_id('u3'))$$,
    'TS002', null,
    'nobody can claim another user''s offer'
);

select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000003", "role": "authenticated"}', true
);
select results_eq(
    $$select booking_id, status, seats from public.claim_offer(pg_temp.booking_id('u3'))$$,
    $$values (pg_temp.booking_id('u3'), 'confirmed', 1)$$,
    'u3 claims the offer and is confirmed'
);

select throws_ok(
    $$select public.claim_offer(pg_temp.booking_id('u3'))$$,
    'TS007', null,
    'a claimed offer cannot be claimed again'
);

select results_eq(
    $$
    select seats_confirmed, seats_offered, seats_available, waitlist_count
    from public.event_availability(pg_temp.event_id('offers'))
    $$,
    $$values (2, 0, 0, 3)$$,
    'after the claim: 2 confirmed, no offer open'
);

-- ------------------------------------------------------------------------------------------
-- An offer that is not claimed in time expires and passes on
-- ------------------------------------------------------------------------------------------
select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000002", "role": "authenticated"}', true
);
select lives_ok(
    $$select public.cancel_booking(pg_temp.booking_id('u2'))$$,
    'u2 cancels'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'offered', null), ('u5', 'waitlisted', 1),
        ('u6', 'waitlisted', 2)$$,
    'the seat is offered to u4'
);

-- The clock cannot move inside one transaction: move the deadline instead.
update public.bookings set offer_expires_at = now() - interval '1 minute'
where id = pg_temp.booking_id('u4');

select
    set_config('role', 'authenticated', true) as api_role,
    set_config(
        'request.jwt.claims',
        '{"sub": "00000000-0000-0000-0000-000000000004", "role": "authenticated"}',
        true
    ) as jwt_claims;
select throws_ok(
    $$select public.claim_offer(pg_temp.booking_id('u4'))$$,
    'TS007', null,
    'an offer past its deadline cannot be claimed'
);

select results_eq(
    $$select seats_offered, seats_available from public.event_availability(pg_temp.event_id('offers'))$$,
    $$values (1, 0)$$,
    'the seat stays held until the offer is expired'
);

select throws_ok(
    $$select public.expire_offers()$$,
    '42501', null,
    'a signed-in user cannot run expire_offers'
);

select
    set_config('role', 'service_role', true) as api_role,
    set_config('request.jwt.claims', '{"role": "service_role"}', true) as jwt_claims;
select is(public.expire_offers(), 1, 'expire_offers (service_role) expires the one overdue offer');

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'expired', null), ('u5', 'offered', null),
        ('u6', 'waitlisted', 1)$$,
    'u4''s offer expired and passed on to u5'
);

select
    set_config('role', 'service_role', true) as api_role,
    set_config('request.jwt.claims', '{"role": "service_role"}', true) as jwt_claims;
select is(public.expire_offers(), 0, 'expire_offers again expires nothing');

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'expired', null), ('u5', 'offered', null),
        ('u6', 'waitlisted', 1)$$,
    'and changes nothing (idempotent)'
);

-- ------------------------------------------------------------------------------------------
-- Declining (cancelling) an offer passes it on; an expired booking no longer counts as active
-- ------------------------------------------------------------------------------------------
select
    set_config('role', 'authenticated', true) as api_role,
    set_config(
        'request.jwt.claims',
        '{"sub": "00000000-0000-0000-0000-000000000005", "role": "authenticated"}',
        true
    ) as jwt_claims;
select results_eq(
    $$select status from public.cancel_booking(pg_temp.booking_id('u5'))$$,
    $$values ('cancelled')$$,
    'u5 declines the offer by cancelling'
);

select set_config(
    'request.jwt.claims', '{"sub": "00000000-0000-0000-0000-000000000004", "role": "authenticated"}', true
);
select results_eq(
    $$select status, waitlist_position from public.book_event(pg_temp.event_id('offers'))$$,
    $$values ('waitlisted', 1)$$,
    'u4, whose offer expired, may join the line again'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'expired', null), ('u4', 'waitlisted', 1),
        ('u6', 'offered', null)$$,
    'the declined seat is offered to u6'
);

-- ------------------------------------------------------------------------------------------
-- Capacity changes count offered seats as held
-- ------------------------------------------------------------------------------------------
select
    set_config('role', 'authenticated', true) as api_role,
    set_config(
        'request.jwt.claims',
        '{"sub": "11111111-1111-1111-1111-111111111111", "role": "authenticated"}',
        true
    ) as jwt_claims;
select lives_ok(
    $$select public.set_event_capacity(pg_temp.event_id('offers'), 3)$$,
    'the organizer raises the capacity to 3'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'expired', null), ('u4', 'offered', null),
        ('u6', 'offered', null)$$,
    'in offer mode a capacity raise makes an offer rather than a booking'
);

select
    set_config('role', 'authenticated', true) as api_role,
    set_config(
        'request.jwt.claims',
        '{"sub": "11111111-1111-1111-1111-111111111111", "role": "authenticated"}',
        true
    ) as jwt_claims;
select throws_ok(
    $$select public.set_event_capacity(pg_temp.event_id('offers'), 2)$$,
    'TS008', null,
    'the capacity cannot drop below confirmed + offered seats'
);

-- ------------------------------------------------------------------------------------------
-- Several overdue offers expire at once; with nobody waiting the seats become free
-- ------------------------------------------------------------------------------------------
reset role;
update public.bookings set offer_expires_at = now() - interval '1 minute'
where event_id = pg_temp.event_id('offers') and status = 'offered';

select
    set_config('role', 'service_role', true) as api_role,
    set_config('request.jwt.claims', '{"role": "service_role"}', true) as jwt_claims;
select is(public.expire_offers(), 2, 'both overdue offers expire in one run');

select results_eq(
    $$
    select seats_confirmed, seats_offered, seats_available, waitlist_count
    from public.event_availability(pg_temp.event_id('offers'))
    $$,
    $$values (1, 0, 2, 0)$$,
    'with nobody left in line, the two seats are free'
);

reset role;
select results_eq(
    $$
    select sum(sb.taken)::integer from tessera.seat_blocks as sb
    where sb.event_id = pg_temp.event_id('offers')
    $$,
    $$
    select sum(b.seats)::integer from public.bookings as b
    where b.event_id = pg_temp.event_id('offers') and b.status in ('confirmed', 'offered')
    $$,
    'the seat blocks hold exactly the confirmed and offered seats'
);

reset role;
-- ------------------------------------------------------------------------------------------
-- The bookkeeping agrees with the bookings: seat blocks hold exactly the confirmed and offered
-- seats, the queue counters match, and the fast path is closed exactly while someone waits.
-- ------------------------------------------------------------------------------------------
select is_empty(
    $$
    select q.event_id
    from tessera.event_queues as q
    cross join lateral (
        select
            count(*) filter (where b.status = 'waitlisted')::integer as waiting_count,
            coalesce(sum(b.seats) filter (where b.status = 'waitlisted'), 0)::integer as waiting_seats,
            count(*) filter (where b.status = 'offered')::integer as offered_count,
            coalesce(sum(b.seats) filter (where b.status = 'offered'), 0)::integer as offered_seats,
            coalesce(sum(b.seats) filter (where b.status in ('confirmed', 'offered')), 0)::integer as held
        from public.bookings as b where b.event_id = q.event_id
    ) as actual
    cross join lateral (
        select
            sum(sb.taken)::integer as taken,
            bool_or(sb.waitlist_open) as any_open,
            bool_and(sb.waitlist_open) as all_open
        from tessera.seat_blocks as sb where sb.event_id = q.event_id
    ) as blocks
    where (q.waiting_count, q.waiting_seats, q.offered_count, q.offered_seats)
        is distinct from (actual.waiting_count, actual.waiting_seats, actual.offered_count, actual.offered_seats)
        or blocks.taken is distinct from actual.held
        or blocks.any_open is distinct from (q.waiting_count > 0)
        or blocks.all_open is distinct from (q.waiting_count > 0)
    $$,
    'seat blocks, queue counters and the waitlist flag agree with the bookings'
);

select * from finish();
rollback;
