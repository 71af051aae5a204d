-- Offers (promotion_mode 'offer'): the next in line gets the seats held for offer_ttl and
-- must claim them; an unclaimed offer expires through expire_offers() and passes on.
begin;
set local search_path = public, extensions;
select plan(29);

select tests.create_cast(6);

-- The active bookings of the event by user, with the position waitlist_position reports.
-- Call it as the superuser: it reads past row level security.
create function pg_temp.queue()
returns table (who text, status text, waitlist_position integer)
language sql stable
as $$
    select split_part(u.email, '@', 1), b.status, public.waitlist_position(b.id)
    from public.bookings as b inner join auth.users as u on b.user_id = u.id
    where b.event_id = tests.event_id('offers') and b.status <> 'cancelled'
    order by u.email, b.status
$$;

-- ------------------------------------------------------------------------------------------
-- 2 seats, offers held for 2 hours: u1, u2 confirmed; u3, u4, u5 wait
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event) values (
    'offers',
    public.create_event(
        title => 'Offers', capacity => 2, starts_at => now() + interval '30 days',
        promotion_mode => 'offer', offer_ttl => interval '2 hours'
    )
);

select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking) values ('u1', public.book_event(tests.event_id('offers')));
select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values ('u2', public.book_event(tests.event_id('offers')));
select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values ('u3', public.book_event(tests.event_id('offers')));
select tests.sign_in('00000000-0000-0000-0000-000000000004');
insert into tests.fixture (label, booking) values ('u4', public.book_event(tests.event_id('offers')));
select tests.sign_in('00000000-0000-0000-0000-000000000005');
insert into tests.fixture (label, booking) values ('u5', public.book_event(tests.event_id('offers')));

select throws_ok(
    $$select public.claim_offer(tests.booking_id('u5'))$$,
    'TS007', null,
    'a waitlisted booking has no offer to claim'
);

-- ------------------------------------------------------------------------------------------
-- A cancellation makes an offer to the head of the line
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('u1'))$$,
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
    $$select offered_at, offer_expires_at from public.bookings where id = tests.booking_id('u3')$$,
    $$values (now(), now() + interval '2 hours')$$,
    'the offer is held for the event''s offer_ttl'
);

select tests.sign_in('00000000-0000-0000-0000-000000000006');
select results_eq(
    $$
    select seats_confirmed, seats_offered, seats_available, waitlist_count
    from public.event_availability(tests.event_id('offers'))
    $$,
    $$values (1, 1, 0, 2)$$,
    'an offered seat is held: not available to anyone else'
);

insert into tests.fixture (label, booking) values ('u6', public.book_event(tests.event_id('offers')));
select results_eq(
    $$select (booking).status, (booking).waitlist_position from tests.fixture where label = 'u6'$$,
    $$values ('waitlisted', 3)$$,
    'a newcomer queues behind the others while the offer is open'
);

-- ------------------------------------------------------------------------------------------
-- Claiming
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000004');
select throws_ok(
    $$select public.claim_offer(tests.booking_id('u3'))$$,
    'TS002', null,
    'nobody can claim another user''s offer'
);

select tests.sign_in('00000000-0000-0000-0000-000000000003');
select results_eq(
    $$select booking_id, status, seats from public.claim_offer(tests.booking_id('u3'))$$,
    $$values (tests.booking_id('u3'), 'confirmed', 1)$$,
    'u3 claims the offer and is confirmed'
);

select throws_ok(
    $$select public.claim_offer(tests.booking_id('u3'))$$,
    'TS007', null,
    'a claimed offer cannot be claimed again'
);

select results_eq(
    $$
    select seats_confirmed, seats_offered, seats_available, waitlist_count
    from public.event_availability(tests.event_id('offers'))
    $$,
    $$values (2, 0, 0, 3)$$,
    'after the claim: 2 confirmed, no offer open'
);

-- ------------------------------------------------------------------------------------------
-- An offer that is not claimed in time expires and passes on
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000002');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('u2'))$$,
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
where id = tests.booking_id('u4');

select tests.sign_in('00000000-0000-0000-0000-000000000004');
select throws_ok(
    $$select public.claim_offer(tests.booking_id('u4'))$$,
    'TS007', null,
    'an offer past its deadline cannot be claimed'
);

select results_eq(
    $$select seats_offered, seats_available from public.event_availability(tests.event_id('offers'))$$,
    $$values (1, 0)$$,
    'the seat stays held until the offer is expired'
);

select throws_ok(
    $$select public.expire_offers()$$,
    '42501', null,
    'a signed-in user cannot run expire_offers'
);

select tests.sign_in_as_service();
select is(public.expire_offers(), 1, 'expire_offers (service_role) expires the one overdue offer');

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'expired', null), ('u5', 'offered', null),
        ('u6', 'waitlisted', 1)$$,
    'u4''s offer expired and passed on to u5'
);

select tests.sign_in_as_service();
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
select tests.sign_in('00000000-0000-0000-0000-000000000005');
select results_eq(
    $$select status from public.cancel_booking(tests.booking_id('u5'))$$,
    $$values ('cancelled')$$,
    'u5 declines the offer by cancelling'
);

select tests.sign_in('00000000-0000-0000-0000-000000000004');
select results_eq(
    $$select status, waitlist_position from public.book_event(tests.event_id('offers'))$$,
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
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select lives_ok(
    $$select public.set_event_capacity(tests.event_id('offers'), 3)$$,
    'the organizer raises the capacity to 3'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue()$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'expired', null), ('u4', 'offered', null),
        ('u6', 'offered', null)$$,
    'in offer mode a capacity raise makes an offer rather than a booking'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('offers'), 2)$$,
    'TS008', null,
    'the capacity cannot drop below confirmed + offered seats'
);

-- ------------------------------------------------------------------------------------------
-- Several overdue offers expire at once; with nobody waiting the seats become free
-- ------------------------------------------------------------------------------------------
reset role;
update public.bookings set offer_expires_at = now() - interval '1 minute'
where event_id = tests.event_id('offers') and status = 'offered';

select tests.sign_in_as_service();
select is(public.expire_offers(), 2, 'both overdue offers expire in one run');

select results_eq(
    $$
    select seats_confirmed, seats_offered, seats_available, waitlist_count
    from public.event_availability(tests.event_id('offers'))
    $$,
    $$values (1, 0, 2, 0)$$,
    'with nobody left in line, the two seats are free'
);

reset role;
select results_eq(
    $$
    select sum(sb.taken)::integer from tessera.seat_blocks as sb
    where sb.event_id = tests.event_id('offers')
    $$,
    $$
    select sum(b.seats)::integer from public.bookings as b
    where b.event_id = tests.event_id('offers') and b.status in ('confirmed', 'offered')
    $$,
    'the seat blocks hold exactly the confirmed and offered seats'
);

reset role;
-- ------------------------------------------------------------------------------------------
-- The bookkeeping agrees with the bookings: seat blocks hold exactly the confirmed and offered
-- seats, the queue counters match, and the fast path is closed exactly while someone waits.
-- ------------------------------------------------------------------------------------------
select is_empty(
    'select * from tests.bookkeeping_disagreements()',
    'seat blocks, queue counters and the waitlist flag agree with the bookings'
);

select * from finish();
rollback;
