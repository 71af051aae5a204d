-- update_event: only the given fields change, checked as create_event checks them, one
-- event_updated ledger entry naming each change; organizer or service only; not cancelled.
begin;
set local search_path = public, extensions;
select plan(11);

select tests.create_cast(1);
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select tests.make_event('talk', 10);

select results_eq(
    $$
    select e.title, e.venue, e.capacity, e.max_seats_per_booking
    from public.update_event(tests.event_id('talk'), venue => 'Blue Hall', max_seats_per_booking => 2) as e
    $$,
    $$values ('talk', 'Blue Hall', 10, 2)$$,
    'update_event changes the given fields and keeps the others (capacity included)'
);

select results_eq(
    $$
    select l.kind, l.detail -> 'changes' -> 'venue' ->> 'new', l.detail -> 'changes' ? 'title'
    from public.ledger as l where l.event_id = tests.event_id('talk') order by l.seq desc limit 1
    $$,
    $$values ('event_updated', 'Blue Hall', false)$$,
    'one event_updated entry names each changed field with its new value'
);

select is(
    (
        select count(*)::integer
        from public.ledger as l
        where
            l.event_id = tests.event_id('talk')
            and l.kind = 'event_updated'
    ),
    1,
    'exactly one entry so far'
);

select public.update_event(tests.event_id('talk'), venue => 'Blue Hall');
select is(
    (
        select count(*)::integer
        from public.ledger as l
        where
            l.event_id = tests.event_id('talk')
            and l.kind = 'event_updated'
    ),
    1,
    'an update that changes nothing writes no entry'
);

select throws_ok(
    $$select public.update_event(tests.event_id('talk'), max_seats_per_booking => 0)$$,
    '22023', null, 'max_seats_per_booking is checked as create_event checks it'
);

select throws_ok(
    $$select public.update_event(tests.event_id('talk'), ends_at => now())$$,
    '22023', 'ends_at must not be before starts_at', 'ends_at may not come before starts_at'
);

select throws_ok(
    $$select public.update_event(tests.event_id('talk'), starts_at => '4713-01-01 00:00:00+00 BC')$$,
    '22023', 'starts_at must be in the future', 'a start cannot move into the past'
);

select lives_ok(
    $$select public.update_event(tests.event_id('talk'), title => 'Same start kept')$$,
    'an update that keeps the start needs no new one'
);

select tests.sign_in('22222222-2222-2222-2222-222222222222');
select throws_ok(
    $$select public.update_event(tests.event_id('talk'), title => 'Mine')$$,
    '42501', null, 'a stranger may not change the event'
);

select tests.sign_in_as_service();
select is(
    (select e.title from public.update_event(tests.event_id('talk'), title => 'Renamed') as e),
    'Renamed',
    'the service role may change any event'
);

select public.cancel_event(tests.event_id('talk'));
select throws_ok(
    $$select public.update_event(tests.event_id('talk'), title => 'Too late')$$,
    'TS007', null, 'a cancelled event cannot be changed'
);

select * from finish();
rollback;
