-- Events: what create_event stores, drafts invisible to everyone but their organizer,
-- publishing, and cancel_event cancelling every booking.
begin;
set local search_path = public, extensions;
select plan(30);

select tests.create_cast(4);

-- ------------------------------------------------------------------------------------------
-- create_event
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event) values
(
    'plain',
    public.create_event(title => 'Plain', capacity => 50, starts_at => '2030-06-01 19:00+00')
),
(
    'draft',
    public.create_event(title => 'Draft', capacity => 5, starts_at => now() + interval '30 days', publish => false)
),
(
    'gig',
    public.create_event(
        title => 'Gig', capacity => 2, starts_at => now() + interval '30 days', promotion_mode => 'offer'
    )
),
(
    'injection',
    public.create_event(
        title => $t$'); drop table public.events; --$t$, capacity => 1, starts_at => now() + interval '30 days',
        description => $t$1; delete from public.bookings$t$, venue => $t$" or 1=1 --$t$
    )
);

select results_eq(
    $$
    select
        (event).organizer_id, (event).status, (event).capacity, (event).max_seats_per_booking,
        (event).waitlist_enabled, (event).waitlist_limit, (event).waitlist_policy, (event).promotion_mode,
        (event).offer_ttl, (event).sales_open_at, (event).sales_close_at, (event).published_at
    from tests.fixture where label = 'plain'
    $$,
    $$values (
        '11111111-1111-1111-1111-111111111111'::uuid, 'published', 50, 10, true, null::integer, 'strict',
        'auto', interval '24 hours', now(), '2030-06-01 19:00+00'::timestamptz, now()
    )$$,
    'create_event: the caller organizes it; published by default; documented defaults; sales close at the start'
);

select results_eq(
    $$select (event).status, (event).published_at from tests.fixture where label = 'draft'$$,
    $$values ('draft', null::timestamptz)$$,
    'create_event with publish => false makes a draft'
);

select results_eq(
    $$select (event).title, (event).description, (event).venue from tests.fixture where label = 'injection'$$,
    $$values ($t$'); drop table public.events; --$t$, $t$1; delete from public.bookings$t$, $t$" or 1=1 --$t$)$$,
    'SQL in text fields is stored as text'
);

-- ------------------------------------------------------------------------------------------
-- Drafts are invisible to everyone but their organizer (and operators)
-- ------------------------------------------------------------------------------------------
select tests.sign_in('22222222-2222-2222-2222-222222222222');
select throws_ok(
    $$select public.book_event(tests.event_id('draft'))$$, 'TS001', null,
    'draft: a stranger cannot book it'
);
select throws_ok(
    $$select public.event_availability(tests.event_id('draft'))$$, 'TS001', null,
    'draft: a stranger cannot see its availability'
);
select throws_ok(
    $$select public.event_changes(tests.event_id('draft'))$$, 'TS001', null,
    'draft: a stranger cannot read its changes'
);
select throws_ok(
    $$select public.publish_event(tests.event_id('draft'))$$, 'TS001', null,
    'draft: a stranger cannot publish it'
);
select is_empty(
    $$select id from public.events where id = tests.event_id('draft')$$,
    'draft: a stranger cannot read its row'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$select status, capacity, seats_available from public.event_availability(tests.event_id('draft'))$$,
    $$values ('draft', 5, 0)$$,
    'draft: its organizer sees it, with no seats on sale'
);
select throws_ok(
    $$select public.book_event(tests.event_id('draft'))$$, 'TS003', null,
    'draft: not even its organizer can book it'
);
select results_eq(
    $$select capacity from public.set_event_capacity(tests.event_id('draft'), 8)$$,
    $$values (8)$$,
    'draft: its organizer may resize it'
);

select tests.sign_in_as_service();
select results_eq(
    $$select status, capacity from public.event_availability(tests.event_id('draft'))$$,
    $$values ('draft', 8)$$,
    'draft: operators (service_role) see it'
);

-- ------------------------------------------------------------------------------------------
-- Publishing
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$select status, published_at from public.publish_event(tests.event_id('draft'))$$,
    $$values ('published', now())$$,
    'publish_event publishes a draft'
);
select results_eq(
    $$select status from public.publish_event(tests.event_id('draft'))$$,
    $$values ('published')$$,
    'publishing a published event changes nothing'
);

reset role;
select is(
    (
        select count(*)::integer from public.ledger
        where event_id = tests.event_id('draft') and kind = 'event_published'
    ),
    1,
    'and records nothing the second time'
);

select tests.sign_in('22222222-2222-2222-2222-222222222222');
select results_eq(
    $$select status from public.book_event(tests.event_id('draft'))$$,
    $$values ('confirmed')$$,
    'once published, anyone may book it'
);

-- ------------------------------------------------------------------------------------------
-- cancel_event cancels every active booking: confirmed, offered and waitlisted
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking) values ('gig u1', public.book_event(tests.event_id('gig')));
select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values ('gig u2', public.book_event(tests.event_id('gig')));
select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values ('gig u3', public.book_event(tests.event_id('gig')));
select tests.sign_in('00000000-0000-0000-0000-000000000004');
insert into tests.fixture (label, booking) values ('gig u4', public.book_event(tests.event_id('gig')));
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok($$select public.cancel_booking(tests.booking_id('gig u1'))$$, 'gig: u1 cancels');

reset role;
select results_eq(
    $$
    select status, count(*)::integer from public.bookings
    where event_id = tests.event_id('gig') group by status order by status
    $$,
    $$values ('cancelled', 1), ('confirmed', 1), ('offered', 1), ('waitlisted', 1)$$,
    'gig: one confirmed, one offered, one waiting'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$select status, cancelled_at from public.cancel_event(tests.event_id('gig'))$$,
    $$values ('cancelled', now())$$,
    'gig: the organizer cancels the event'
);

select results_eq(
    $$
    select status, seats_confirmed, seats_offered, seats_available, waitlist_count, waitlist_seats
    from public.event_availability(tests.event_id('gig'))
    $$,
    $$values ('cancelled', 0, 0, 0, 0, 0)$$,
    'gig: nothing is held, nothing is on sale, nobody waits'
);

reset role;
select results_eq(
    $$
    select status, count(*)::integer, bool_and(cancelled_at is not null) from public.bookings
    where event_id = tests.event_id('gig') group by status
    $$,
    $$values ('cancelled', 4, true)$$,
    'gig: every booking is cancelled, none promoted'
);

select is(
    (
        select sum(sb.taken)::integer from tessera.seat_blocks as sb
        where sb.event_id = tests.event_id('gig')
    ),
    0,
    'gig: the seat blocks are empty'
);

select tests.sign_in('00000000-0000-0000-0000-000000000003');
select throws_ok(
    $$select public.claim_offer(tests.booking_id('gig u3'))$$, 'TS007', null,
    'gig: the cancelled offer cannot be claimed'
);
select throws_ok(
    $$select public.book_event(tests.event_id('gig'))$$, 'TS003', null,
    'gig: nobody can book a cancelled event'
);
select tests.sign_in('00000000-0000-0000-0000-000000000002');
select throws_ok(
    $$select public.cancel_booking(tests.booking_id('gig u2'))$$, 'TS007', null,
    'gig: a booking the event cancelled cannot be cancelled again'
);

reset role;
update public.bookings set offer_expires_at = now() - interval '1 minute'
where id = tests.booking_id('gig u3');
select tests.sign_in_as_service();
select is(public.expire_offers(), 0, 'gig: expire_offers finds no offer left to expire');

-- ------------------------------------------------------------------------------------------
-- Operators may manage any event
-- ------------------------------------------------------------------------------------------
select results_eq(
    $$select capacity from public.set_event_capacity(tests.event_id('plain'), 60)$$,
    $$values (60)$$,
    'service_role may resize any event'
);
select results_eq(
    $$select status from public.cancel_event(tests.event_id('plain'))$$,
    $$values ('cancelled')$$,
    'service_role may cancel any event'
);

reset role;
select throws_ok(
    $$delete from public.events where id = tests.event_id('plain')$$, '42501', null,
    'events are never deleted, not even by the superuser'
);
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
