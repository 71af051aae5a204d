-- Booking: seats are confirmed while they last and never oversold (rule 1); one active
-- booking per user per event (rule 5); cancelling frees the seats.
begin;
set local search_path = public, extensions;
select plan(20);

select tests.create_cast(4);

-- ------------------------------------------------------------------------------------------
-- A 3-seat hall
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event)
values ('hall', public.create_event(title => 'Small hall', capacity => 3, starts_at => now() + interval '30 days'));

select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking)
values ('u1', public.book_event(event_id => tests.event_id('hall'), seats => 2));

select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values ('u2', public.book_event(event_id => tests.event_id('hall')));

select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values ('u3', public.book_event(event_id => tests.event_id('hall')));

select results_eq(
    $$
    select label, (booking).status, (booking).seats, (booking).waitlist_position
    from tests.fixture where label like 'u%' order by label
    $$,
    $$values ('u1', 'confirmed', 2, null::integer), ('u2', 'confirmed', 1, null), ('u3', 'waitlisted', 1, 1)$$,
    'seats are confirmed while they last, then bookers join the waitlist'
);

select results_eq(
    $$
    select capacity, seats_confirmed, seats_offered, seats_available, waitlist_count, waitlist_seats, status
    from public.event_availability(tests.event_id('hall'))
    $$,
    $$values (3, 3, 0, 0, 1, 1, 'published')$$,
    'availability shows a full hall and one waiting booking'
);

-- Rule 5: one active booking per user per event, waitlisted ones included.
select throws_ok(
    $$select public.book_event(tests.event_id('hall'))$$,
    'TS005', null,
    'a waitlisted user cannot book the same event again'
);

select tests.sign_in('00000000-0000-0000-0000-000000000001');
select throws_ok(
    $$select public.book_event(tests.event_id('hall'), 1)$$,
    'TS005', null,
    'a confirmed user cannot book the same event again'
);

-- ------------------------------------------------------------------------------------------
-- What the rows say (as the superuser, past row level security)
-- ------------------------------------------------------------------------------------------
reset role;

select results_eq(
    $$
    select u.email::text, b.seats, b.status
    from public.bookings as b inner join auth.users as u on b.user_id = u.id
    where b.event_id = tests.event_id('hall')
    order by u.email
    $$,
    $$values
        ('u1@example.test', 2, 'confirmed'),
        ('u2@example.test', 1, 'confirmed'),
        ('u3@example.test', 1, 'waitlisted')$$,
    'each booking belongs to the signed-in caller, with its party size'
);

select is(
    (
        select count(*)::integer from public.bookings
        where event_id = tests.event_id('hall')
    ),
    3,
    'refused second bookings left no rows behind'
);

-- Rule 1, first guard: confirmed + offered seats never exceed capacity.
select is_empty(
    $$
    select e.id from public.events as e
    where e.capacity < (
        select coalesce(sum(b.seats), 0) from public.bookings as b
        where b.event_id = e.id and b.status in ('confirmed', 'offered')
    )
    $$,
    'no event holds more confirmed or offered seats than its capacity'
);

select results_eq(
    $$
    select sum(sb.taken)::integer, sum(sb.capacity)::integer from tessera.seat_blocks as sb
    where sb.event_id = tests.event_id('hall')
    $$,
    $$values (3, 3)$$,
    'the seat blocks of the hall hold 3 of 3 seats'
);

-- Rule 1, second guard: even a broken locking protocol could not oversell.
select throws_ok(
    $$update tessera.seat_blocks set taken = capacity + 1 where event_id = tests.event_id('hall')$$,
    '23514', null,
    'a seat block refuses to hold more seats than its capacity'
);

-- ------------------------------------------------------------------------------------------
-- Cancelling frees the seats; a cancelled booking no longer counts as active
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000002');

select results_eq(
    $$select booking_id, status, seats from public.cancel_booking(tests.booking_id('u2'))$$,
    $$values (tests.booking_id('u2'), 'cancelled', 1)$$,
    'cancel_booking returns the cancelled booking'
);

select throws_ok(
    $$select public.cancel_booking(tests.booking_id('u2'))$$,
    'TS007', null,
    'a cancelled booking cannot be cancelled again'
);

select results_eq(
    $$select status, waitlist_position from public.book_event(tests.event_id('hall'))$$,
    $$values ('waitlisted', 1)$$,
    'after cancelling, the same user may book again (the freed seat went to the waitlist)'
);

select results_eq(
    $$select seats_confirmed, seats_available, waitlist_count from public.event_availability(tests.event_id('hall'))$$,
    $$values (3, 0, 1)$$,
    'the hall is still exactly full after the cancellation and the new booking'
);

-- ------------------------------------------------------------------------------------------
-- A 16-seat arena spreads over two seat blocks; a party may span them
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event)
values ('arena', public.create_event(title => 'Arena', capacity => 16, starts_at => now() + interval '30 days'));

select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking) values ('arena u1', public.book_event(tests.event_id('arena'), 7));

select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values ('arena u2', public.book_event(tests.event_id('arena'), 7));

select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values ('arena u3', public.book_event(tests.event_id('arena'), 2));

select tests.sign_in('00000000-0000-0000-0000-000000000004');
insert into tests.fixture (label, booking) values ('arena u4', public.book_event(tests.event_id('arena'), 1));

select results_eq(
    $$select label, (booking).status from tests.fixture where label like 'arena u%' order by label$$,
    $$values ('arena u1', 'confirmed'), ('arena u2', 'confirmed'), ('arena u3', 'confirmed'),
        ('arena u4', 'waitlisted')$$,
    'the last two seats are sold even when they sit in different blocks; then the waitlist starts'
);

select results_eq(
    $$select seats_confirmed, seats_available, waitlist_count from public.event_availability(tests.event_id('arena'))$$,
    $$values (16, 0, 1)$$,
    'the arena is exactly full'
);

reset role;

select results_eq(
    $$
    select count(*)::integer, sum(sb.taken)::integer, bool_and(sb.taken <= sb.capacity)
    from tessera.seat_blocks as sb
    where sb.event_id = tests.event_id('arena')
    $$,
    $$values (2, 16, true)$$,
    'two blocks, all 16 seats taken, none over its own capacity'
);

-- ------------------------------------------------------------------------------------------
-- Leaving the waitlist frees no seats
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000004');

select results_eq(
    $$select status from public.cancel_booking(tests.booking_id('arena u4'))$$,
    $$values ('cancelled')$$,
    'a waitlisted booking can be cancelled'
);

select results_eq(
    $$
    select seats_confirmed, seats_available, waitlist_count, waitlist_seats
    from public.event_availability(tests.event_id('arena'))
    $$,
    $$values (16, 0, 0, 0)$$,
    'leaving the waitlist frees no seats'
);

select results_eq(
    $$select status, waitlist_position from public.book_event(tests.event_id('arena'))$$,
    $$values ('waitlisted', 1)$$,
    'a user who left the waitlist may join it again'
);

reset role;

select is_empty(
    $$
    select b.event_id, b.user_id from public.bookings as b
    where b.status in ('confirmed', 'waitlisted', 'offered')
    group by b.event_id, b.user_id
    having count(*) > 1
    $$,
    'no user holds two active bookings for one event'
);

select * from finish();
rollback;
