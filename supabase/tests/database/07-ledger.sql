-- The ledger: one entry per state change, in the order the changes happened, append-only;
-- event_changes reads it after a position and never shows an entry that a transaction still
-- running could be followed by (entries at or above tessera.ledger_horizon()).
begin;
set local search_path = public, extensions;
select plan(25);

select tests.create_cast(3);

-- The kinds of an event's entries in ledger order (as the superuser).
create function pg_temp.kinds(p_event text) returns text[]
language sql stable
as $$
    select coalesce(array_agg(l.kind order by l.seq), '{}')
    from public.ledger as l where l.event_id = tests.event_id(p_event)
$$;

-- ------------------------------------------------------------------------------------------
-- A story in four events
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event) values
('hall', public.create_event(title => 'Hall', capacity => 1, starts_at => now() + interval '30 days')),
(
    'offers',
    public.create_event(
        title => 'Offers', capacity => 1, starts_at => now() + interval '30 days', promotion_mode => 'offer'
    )
),
(
    'draft',
    public.create_event(title => 'Draft', capacity => 5, starts_at => now() + interval '30 days', publish => false)
),
('doomed', public.create_event(title => 'Doomed', capacity => 1, starts_at => now() + interval '30 days'));

select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking) values
('hall u1', public.book_event(tests.event_id('hall'))),
('offers u1', public.book_event(tests.event_id('offers'))),
('doomed u1', public.book_event(tests.event_id('doomed')));

select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values
('hall u2', public.book_event(tests.event_id('hall'))),
('offers u2', public.book_event(tests.event_id('offers'))),
('doomed u2', public.book_event(tests.event_id('doomed')));

-- hall: u1 cancels, u2 is promoted; the organizer adds a seat; u3 takes it.
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select public.cancel_booking(tests.booking_id('hall u1')) is not null;
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select public.set_event_capacity(tests.event_id('hall'), 2) is not null;
select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values ('hall u3', public.book_event(tests.event_id('hall')));

-- offers: u1 cancels, u2 is offered the seat and claims it; u3 queues; u2 cancels, u3 is
-- offered the seat and lets the offer expire.
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select public.cancel_booking(tests.booking_id('offers u1')) is not null;
select tests.sign_in('00000000-0000-0000-0000-000000000002');
select public.claim_offer(tests.booking_id('offers u2')) is not null;
select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values ('offers u3', public.book_event(tests.event_id('offers')));
select tests.sign_in('00000000-0000-0000-0000-000000000002');
select public.cancel_booking(tests.booking_id('offers u2')) is not null;
reset role;
update public.bookings set offer_expires_at = now() - interval '1 minute'
where id = tests.booking_id('offers u3');
select tests.sign_in_as_service();
select public.expire_offers();

-- draft: nothing to record until it is published. doomed: cancelled with two bookings.
reset role;
select is(pg_temp.kinds('draft'), '{}', 'a draft has no entries');

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select public.publish_event(tests.event_id('draft')) is not null;
select public.cancel_event(tests.event_id('doomed')) is not null;

-- ------------------------------------------------------------------------------------------
-- Every change is recorded, in order
-- ------------------------------------------------------------------------------------------
reset role;

select is(
    pg_temp.kinds('hall'),
    array['event_published', 'booked', 'waitlisted', 'cancelled', 'promoted', 'capacity_changed', 'booked'],
    'hall: every change, in the order it happened'
);

select is(
    pg_temp.kinds('offers'),
    array[
        'event_published', 'booked', 'waitlisted', 'cancelled', 'offered', 'claimed', 'waitlisted',
        'cancelled', 'offered', 'offer_expired'
    ],
    'offers: offers, claims and expiries are recorded'
);

select is(pg_temp.kinds('draft'), array['event_published'], 'draft: publishing is recorded');

select is(
    pg_temp.kinds('doomed'),
    array['event_published', 'booked', 'waitlisted', 'cancelled', 'cancelled', 'event_cancelled'],
    'doomed: cancelling the event records each cancelled booking, then the event'
);

select results_eq(
    $$
    select l.detail ->> 'reason', count(*)::integer from public.ledger as l
    where l.event_id = tests.event_id('doomed') and l.kind = 'cancelled'
    group by 1
    $$,
    $$values ('event_cancelled', 2)$$,
    'doomed: the booking entries say why they were cancelled'
);

-- ------------------------------------------------------------------------------------------
-- What an entry says
-- ------------------------------------------------------------------------------------------
select results_eq(
    $$
    select booking_id, user_id, actor_id, status, seats, waitlist_position, seats_available, waitlist_count,
        event_status
    from public.ledger
    where event_id = tests.event_id('hall') and kind in ('booked', 'waitlisted', 'promoted')
    order by seq
    $$,
    $$values
        (
            tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001'::uuid,
            '00000000-0000-0000-0000-000000000001'::uuid, 'confirmed', 1, null::integer, 0, 0, 'published'
        ),
        (
            tests.booking_id('hall u2'), '00000000-0000-0000-0000-000000000002'::uuid,
            '00000000-0000-0000-0000-000000000002'::uuid, 'waitlisted', 1, 1, 0, 1, 'published'
        ),
        (
            tests.booking_id('hall u2'), '00000000-0000-0000-0000-000000000002'::uuid,
            '00000000-0000-0000-0000-000000000001'::uuid, 'confirmed', 1, null, 0, 0, 'published'
        ),
        (
            tests.booking_id('hall u3'), '00000000-0000-0000-0000-000000000003'::uuid,
            '00000000-0000-0000-0000-000000000003'::uuid, 'confirmed', 1, null, 0, 0, 'published'
        )$$,
    'entries name the booking, its user, who acted, and the availability right after the change'
);

select results_eq(
    $$
    select detail from public.ledger
    where event_id = tests.event_id('hall') and kind in ('cancelled', 'capacity_changed')
    order by seq
    $$,
    $$values
        ('{"previous_status": "confirmed"}'::jsonb),
        ('{"old_capacity": 1, "new_capacity": 2}'::jsonb)$$,
    'entries carry the details of the change'
);

select is(
    (
        select offer_expires_at from public.ledger
        where booking_id = tests.booking_id('offers u2') and kind = 'offered'
    ),
    now() + interval '24 hours',
    'an offered entry carries the offer deadline'
);

-- ------------------------------------------------------------------------------------------
-- Positions: (transaction id << 24) + n, increasing within a transaction
-- ------------------------------------------------------------------------------------------
select is(
    (select count(distinct l.seq >> 24)::integer from public.ledger as l),
    1,
    'every entry written by one transaction shares its transaction id prefix'
);

select is(
    (select min(l.seq) >> 24 from public.ledger as l),
    pg_current_xact_id()::text::bigint,
    'the prefix is the id of the writing transaction'
);

select is(
    (select array_agg(l.seq & 16777215 order by l.seq) from public.ledger as l),
    (select array_agg(n::bigint order by n) from generate_series(1, (select count(*) from public.ledger)::integer) as n),
    'within the transaction, entries are numbered 1..n without gaps'
);

-- ------------------------------------------------------------------------------------------
-- Entries of a transaction still running are held back from readers
-- ------------------------------------------------------------------------------------------
select ok(
    (select min(l.seq) from public.ledger as l) >= tessera.ledger_horizon(),
    'every entry of this running transaction is at or above the horizon'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select is_empty(
    $$select * from public.event_changes(tests.event_id('hall'))$$,
    'event_changes does not show entries of a transaction that has not committed'
);

select is(
    (select last_seq from public.event_availability(tests.event_id('hall'))),
    0::bigint,
    'nor does event_availability.last_seq'
);

-- Entries of transactions that ended long ago: positions far below the horizon.
reset role;
insert into public.ledger (
    seq, event_id, booking_id, user_id, actor_id, kind, status, seats, seats_available, waitlist_count,
    event_status, detail
) values
(
    1, tests.event_id('hall'), tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001',
    '00000000-0000-0000-0000-000000000001', 'booked', 'confirmed', 1, 0, 0, 'published', '{}'
),
(
    2, tests.event_id('hall'), tests.booking_id('hall u2'), '00000000-0000-0000-0000-000000000002',
    '00000000-0000-0000-0000-000000000002', 'waitlisted', 'waitlisted', 1, 0, 1, 'published', '{}'
),
(
    3, tests.event_id('hall'), tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001',
    '00000000-0000-0000-0000-000000000001', 'cancelled', 'cancelled', 1, 1, 1, 'published',
    '{"previous_status": "confirmed"}'
),
(
    4, tests.event_id('hall'), tests.booking_id('hall u2'), '00000000-0000-0000-0000-000000000002',
    '00000000-0000-0000-0000-000000000001', 'promoted', 'confirmed', 1, 0, 0, 'published', '{}'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$select seq, kind, booking_id, actor_id from public.event_changes(tests.event_id('hall'))$$,
    $$values
        (1::bigint, 'booked', tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001'::uuid),
        (2, 'waitlisted', tests.booking_id('hall u2'), '00000000-0000-0000-0000-000000000002'),
        (3, 'cancelled', tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001'),
        (4, 'promoted', tests.booking_id('hall u2'), '00000000-0000-0000-0000-000000000001')$$,
    'the organizer reads every finished entry, in order, and nothing above the horizon'
);

select results_eq(
    $$select seq from public.event_changes(tests.event_id('hall'), after_seq => 2)$$,
    $$values (3::bigint), (4)$$,
    'a reader resumes after the last position it saw'
);

select results_eq(
    $$select seq from public.event_changes(tests.event_id('hall'), after_seq => 1, max_rows => 2)$$,
    $$values (2::bigint), (3)$$,
    'max_rows pages through the entries'
);

select is(
    (select last_seq from public.event_availability(tests.event_id('hall'))),
    4::bigint,
    'event_availability.last_seq is the last finished position'
);

select tests.sign_in('00000000-0000-0000-0000-000000000001');
select results_eq(
    $$select seq, booking_id, user_id, actor_id, detail from public.event_changes(tests.event_id('hall'))$$,
    $$values
        (
            1::bigint, tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001'::uuid,
            null::uuid, '{}'::jsonb
        ),
        (2, null, null, null, '{}'),
        (3, tests.booking_id('hall u1'), '00000000-0000-0000-0000-000000000001', null, '{}'),
        (4, null, null, null, '{}')$$,
    'an attendee sees every position but only their own bookings, and no actors or previous statuses'
);

select tests.sign_in_as_anon();
select results_eq(
    $$
    select seq, kind, booking_id, user_id, seats_available, waitlist_count
    from public.event_changes(tests.event_id('hall'))
    $$,
    $$values
        (1::bigint, 'booked', null::uuid, null::uuid, 0, 0),
        (2, 'waitlisted', null, null, 0, 1),
        (3, 'cancelled', null, null, 1, 1),
        (4, 'promoted', null, null, 0, 0)$$,
    'anon sees how availability moved, but not who moved it'
);

-- ------------------------------------------------------------------------------------------
-- Append-only, even for the superuser; API roles cannot write it at all
-- ------------------------------------------------------------------------------------------
reset role;
select throws_ok(
    $$update public.ledger set kind = 'booked' where seq = 1$$, '42501', null, 'ledger entries cannot be changed'
);
select throws_ok($$delete from public.ledger where seq = 1$$, '42501', null, 'ledger entries cannot be deleted');
select throws_ok($$truncate public.ledger$$, '42501', null, 'the ledger cannot be truncated');

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$
    insert into public.ledger (seq, event_id, kind, seats_available, waitlist_count, event_status)
    values (5, tests.event_id('hall'), 'booked', 0, 0, 'published')
    $$,
    '42501', null,
    'a user cannot write ledger entries'
);

select * from finish();
rollback;
