-- Idempotency (rule 6): the same (user, idempotency_key) returns the original booking, in its
-- current state, and does nothing else; keys belong to their user.
begin;
set local search_path = public, extensions;
select plan(18);

select tests.create_cast(2);

-- Everything a retry must leave alone, as the superuser sees it.
create function pg_temp.footprint()
returns table (bookings bigint, ledger_entries bigint, tickets_used bigint)
language sql stable
as $$
    select
        (select count(*) from public.bookings),
        (select count(*) from public.ledger),
        (select sum(q.tickets_issued)::bigint from tessera.event_queues as q)
$$;

select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event) values
('hall', public.create_event(title => 'Hall', capacity => 1, starts_at => now() + interval '30 days')),
('other', public.create_event(title => 'Other', capacity => 10, starts_at => now() + interval '30 days'));

select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking)
values ('u1', public.book_event(tests.event_id('hall'), 1, 'checkout-1'));

-- ------------------------------------------------------------------------------------------
-- Retries return the original booking and do nothing else
-- ------------------------------------------------------------------------------------------
reset role;
create temporary table footprint_before as
select * from pg_temp.footprint();

select tests.sign_in('00000000-0000-0000-0000-000000000001');

select results_eq(
    $$select * from public.book_event(tests.event_id('hall'), 1, 'checkout-1')$$,
    $$select (booking).* from tests.fixture where label = 'u1'$$,
    'a retry with the same key returns the original booking'
);

select throws_ok(
    $$select public.book_event(tests.event_id('hall'), 2, 'checkout-1')$$,
    'TS010', null,
    'a retry with another party size is an idempotency conflict'
);

select throws_ok(
    $$select public.book_event(tests.event_id('other'), 1, 'checkout-1')$$,
    'TS010', null,
    'a key names one booking forever: a retry naming another event is a conflict'
);

reset role;
select results_eq(
    $$select * from pg_temp.footprint()$$,
    $$select * from footprint_before$$,
    'the retries added no booking, no ledger entry and used no queue ticket'
);

-- Without a key, a second call is a second request.
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select throws_ok(
    $$select public.book_event(tests.event_id('hall'))$$,
    'TS005', null,
    'without a key, booking again is refused as a second booking'
);

select throws_ok(
    $$select public.book_event(tests.event_id('hall'), 1, 'checkout-2')$$,
    'TS005', null,
    'a new key is a new request, refused as a second booking'
);

-- ------------------------------------------------------------------------------------------
-- Keys belong to their user; a waiting booking is returned with its position
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking)
values ('u2', public.book_event(tests.event_id('hall'), 1, 'checkout-1'));

select results_eq(
    $$select (booking).user_id, (booking).status, (booking).waitlist_position from tests.fixture where label = 'u2'$$,
    $$values ('00000000-0000-0000-0000-000000000002'::uuid, 'waitlisted', 1)$$,
    'another user''s identical key makes that user''s own booking'
);

select results_eq(
    $$select booking_id, status, waitlist_position from public.book_event(tests.event_id('hall'), 1, 'checkout-1')$$,
    $$values (tests.booking_id('u2'), 'waitlisted', 1)$$,
    'a retry of a waiting booking returns it with its position'
);

select results_eq(
    $$select waitlist_count, waitlist_seats from public.event_availability(tests.event_id('hall'))$$,
    $$values (1, 1)$$,
    'the retry did not join the line twice'
);

-- ------------------------------------------------------------------------------------------
-- A retry returns the booking as it is now
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('u1'))$$,
    'u1 cancels; u2 is promoted'
);

select results_eq(
    $$select booking_id, status from public.book_event(tests.event_id('hall'), 1, 'checkout-1')$$,
    $$values (tests.booking_id('u1'), 'cancelled')$$,
    'a retry after cancelling returns the cancelled booking and does not book again'
);

select tests.sign_in('00000000-0000-0000-0000-000000000002');
select results_eq(
    $$select booking_id, status, waitlist_position from public.book_event(tests.event_id('hall'), 1, 'checkout-1')$$,
    $$values (tests.booking_id('u2'), 'confirmed', null::integer)$$,
    'a retry after a promotion returns the booking, now confirmed'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select lives_ok(
    $$select public.cancel_event(tests.event_id('hall'))$$,
    'the organizer cancels the event'
);

select tests.sign_in('00000000-0000-0000-0000-000000000002');
select results_eq(
    $$select booking_id, status from public.book_event(tests.event_id('hall'), 1, 'checkout-1')$$,
    $$values (tests.booking_id('u2'), 'cancelled')$$,
    'a retry is answered with the booking even once sales have closed'
);

-- ------------------------------------------------------------------------------------------
-- Key validation and the unique index behind the rule
-- ------------------------------------------------------------------------------------------
select throws_ok(
    $$select public.book_event(tests.event_id('other'), 1, '')$$,
    '22023', null,
    'an empty key is refused'
);

select throws_ok(
    $$select public.book_event(tests.event_id('other'), 1, repeat('k', 201))$$,
    '22023', null,
    'a key longer than 200 characters is refused'
);

select results_eq(
    $$select status from public.book_event(tests.event_id('other'), 1, repeat('k', 200))$$,
    $$values ('confirmed')$$,
    'a key of 200 characters is accepted'
);

reset role;
select throws_ok(
    $$
    insert into public.bookings (event_id, user_id, seats, status, idempotency_key)
    values (tests.event_id('other'), '00000000-0000-0000-0000-000000000001', 1, 'cancelled', 'checkout-1')
    $$,
    '23505', null,
    'the database itself refuses a second booking with the same user and key'
);

select * from finish();
rollback;
