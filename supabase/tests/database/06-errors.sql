-- Every documented error code (README's SQLSTATE table), raised where the table says.
-- Tests assert on the code only, never on the message.
begin;
set local search_path = public, extensions;
select plan(99);

select tests.create_cast(3);

-- ------------------------------------------------------------------------------------------
-- Events in every state the errors need
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event) values
('open', public.create_event(title => 'Open', capacity => 1, starts_at => now() + interval '30 days')),
(
    'pairs',
    public.create_event(
        title => 'Pairs only', capacity => 10, starts_at => now() + interval '30 days',
        max_seats_per_booking => 2
    )
),
(
    'draft',
    public.create_event(title => 'Draft', capacity => 5, starts_at => now() + interval '30 days', publish => false)
),
('cancelled', public.create_event(title => 'Cancelled', capacity => 5, starts_at => now() + interval '30 days')),
(
    'not yet',
    public.create_event(
        title => 'Not yet on sale', capacity => 5, starts_at => now() + interval '30 days',
        sales_open_at => now() + interval '1 day'
    )
),
(
    'closed',
    public.create_event(
        title => 'Sales over', capacity => 5, starts_at => now() + interval '1 day',
        sales_open_at => now() - interval '10 days', sales_close_at => now() - interval '1 day'
    )
),
(
    'no waitlist',
    public.create_event(
        title => 'No waitlist', capacity => 1, starts_at => now() + interval '30 days',
        waitlist_enabled => false
    )
),
(
    'zero list',
    public.create_event(
        title => 'Waitlist of 0', capacity => 1, starts_at => now() + interval '30 days', waitlist_limit => 0
    )
),
(
    'offers',
    public.create_event(
        title => 'Offers', capacity => 1, starts_at => now() + interval '30 days', promotion_mode => 'offer'
    )
);
select lives_ok($$select public.cancel_event(tests.event_id('cancelled'))$$, 'setup: cancel an event');

-- u1 holds the seat of every small event; u2 waits for 'open' and 'offers'.
select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking) values
('open u1', public.book_event(tests.event_id('open'))),
('no waitlist u1', public.book_event(tests.event_id('no waitlist'))),
('zero list u1', public.book_event(tests.event_id('zero list'))),
('offers u1', public.book_event(tests.event_id('offers')));
select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values
('open u2', public.book_event(tests.event_id('open'))),
('offers u2', public.book_event(tests.event_id('offers')));

-- u1 gives up the 'offers' seat: u2 gets an offer, whose deadline then passes.
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('offers u1'))$$,
    'setup: cancel a booking'
);
reset role;
update public.bookings set offer_expires_at = now() - interval '1 minute'
where id = tests.booking_id('offers u2');

-- ------------------------------------------------------------------------------------------
-- TS001 event_not_found: no such event, or not visible to the caller
-- ------------------------------------------------------------------------------------------
select tests.sign_in('22222222-2222-2222-2222-222222222222');
select throws_ok(
    $$select public.book_event(gen_random_uuid())$$, 'TS001', null, 'TS001: book_event, unknown event'
);
select throws_ok($$select public.book_event(null)$$, 'TS001', null, 'TS001: book_event, null event');
select throws_ok(
    $$select public.event_availability(gen_random_uuid())$$, 'TS001', null,
    'TS001: event_availability, unknown event'
);
select throws_ok(
    $$select public.event_changes(gen_random_uuid())$$, 'TS001', null, 'TS001: event_changes, unknown event'
);
select throws_ok(
    $$select public.book_event(tests.event_id('draft'))$$, 'TS001', null,
    'TS001: book_event, somebody else''s draft'
);
select throws_ok(
    $$select public.event_availability(tests.event_id('draft'))$$, 'TS001', null,
    'TS001: event_availability, somebody else''s draft'
);
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('draft'), 10)$$, 'TS001', null,
    'TS001: set_event_capacity, somebody else''s draft (invisible, so not 42501)'
);

-- anon has no user id: a draft is not its own, so it does not exist for anon.
select tests.sign_in_as_anon();
select throws_ok(
    $$select public.event_availability(tests.event_id('draft'))$$, 'TS001', null,
    'TS001: event_availability, a draft seen by anon'
);
select throws_ok(
    $$select public.event_changes(tests.event_id('draft'))$$, 'TS001', null,
    'TS001: event_changes, a draft seen by anon'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.set_event_capacity(gen_random_uuid(), 10)$$, 'TS001', null,
    'TS001: set_event_capacity, unknown event'
);
select throws_ok(
    $$select public.publish_event(gen_random_uuid())$$, 'TS001', null, 'TS001: publish_event, unknown event'
);
select throws_ok(
    $$select public.cancel_event(gen_random_uuid())$$, 'TS001', null, 'TS001: cancel_event, unknown event'
);

-- ------------------------------------------------------------------------------------------
-- TS002 booking_not_found: no such booking, or not the caller's
-- ------------------------------------------------------------------------------------------
select tests.sign_in('22222222-2222-2222-2222-222222222222');
select throws_ok(
    $$select public.cancel_booking(gen_random_uuid())$$, 'TS002', null, 'TS002: cancel_booking, unknown booking'
);
select throws_ok($$select public.cancel_booking(null)$$, 'TS002', null, 'TS002: cancel_booking, null booking');
select throws_ok(
    $$select public.cancel_booking(tests.booking_id('open u1'))$$, 'TS002', null,
    'TS002: cancel_booking, somebody else''s booking'
);
select throws_ok(
    $$select public.claim_offer(gen_random_uuid())$$, 'TS002', null, 'TS002: claim_offer, unknown booking'
);
select throws_ok(
    $$select public.claim_offer(tests.booking_id('offers u2'))$$, 'TS002', null,
    'TS002: claim_offer, somebody else''s offer'
);
select throws_ok(
    $$select public.waitlist_position(gen_random_uuid())$$, 'TS002', null,
    'TS002: waitlist_position, unknown booking'
);
select throws_ok(
    $$select public.waitlist_position(tests.booking_id('open u2'))$$, 'TS002', null,
    'TS002: waitlist_position, somebody else''s booking'
);

-- ------------------------------------------------------------------------------------------
-- TS003 sales_closed: not published, cancelled, or outside the sales window
-- ------------------------------------------------------------------------------------------
select throws_ok(
    $$select public.book_event(tests.event_id('cancelled'))$$, 'TS003', null, 'TS003: a cancelled event'
);
select throws_ok(
    $$select public.book_event(tests.event_id('not yet'))$$, 'TS003', null, 'TS003: before sales open'
);
select throws_ok(
    $$select public.book_event(tests.event_id('closed'))$$, 'TS003', null, 'TS003: after sales close'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.book_event(tests.event_id('draft'))$$, 'TS003', null,
    'TS003: the organizer''s own draft is visible but not on sale'
);

-- ------------------------------------------------------------------------------------------
-- TS004 invalid_seats: seats < 1 or > max_seats_per_booking
-- ------------------------------------------------------------------------------------------
select tests.sign_in('22222222-2222-2222-2222-222222222222');
select throws_ok($$select public.book_event(tests.event_id('pairs'), 0)$$, 'TS004', null, 'TS004: 0 seats');
select throws_ok($$select public.book_event(tests.event_id('pairs'), -1)$$, 'TS004', null, 'TS004: -1 seats');
select throws_ok(
    $$select public.book_event(tests.event_id('pairs'), null)$$, 'TS004', null, 'TS004: null seats'
);
select throws_ok(
    $$select public.book_event(tests.event_id('pairs'), 3)$$, 'TS004', null,
    'TS004: more than max_seats_per_booking'
);
select throws_ok(
    $$select public.book_event(tests.event_id('pairs'), 2147483647)$$, 'TS004', null, 'TS004: huge seats'
);
select throws_ok(
    $$select public.book_event(tests.event_id('open'), 11)$$, 'TS004', null,
    'TS004: more than the default maximum of 10'
);

-- ------------------------------------------------------------------------------------------
-- TS005 already_booked
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select throws_ok(
    $$select public.book_event(tests.event_id('open'))$$, 'TS005', null, 'TS005: already confirmed'
);
select tests.sign_in('00000000-0000-0000-0000-000000000002');
select throws_ok(
    $$select public.book_event(tests.event_id('open'))$$, 'TS005', null, 'TS005: already waiting'
);
select throws_ok(
    $$select public.book_event(tests.event_id('offers'))$$, 'TS005', null, 'TS005: already offered'
);

-- ------------------------------------------------------------------------------------------
-- TS006 sold_out: no seats and the waitlist is disabled or full
-- ------------------------------------------------------------------------------------------
select throws_ok(
    $$select public.book_event(tests.event_id('no waitlist'))$$, 'TS006', null, 'TS006: waitlist disabled'
);
select throws_ok(
    $$select public.book_event(tests.event_id('zero list'))$$, 'TS006', null, 'TS006: waitlist full'
);

-- ------------------------------------------------------------------------------------------
-- TS007 invalid_transition
-- ------------------------------------------------------------------------------------------
select throws_ok(
    $$select public.claim_offer(tests.booking_id('open u2'))$$, 'TS007', null,
    'TS007: claiming while waitlisted (no offer)'
);
select throws_ok(
    $$select public.claim_offer(tests.booking_id('offers u2'))$$, 'TS007', null,
    'TS007: claiming an offer past its deadline'
);

select tests.sign_in('00000000-0000-0000-0000-000000000001');
select throws_ok(
    $$select public.claim_offer(tests.booking_id('open u1'))$$, 'TS007', null,
    'TS007: claiming a confirmed booking'
);
select throws_ok(
    $$select public.cancel_booking(tests.booking_id('offers u1'))$$, 'TS007', null,
    'TS007: cancelling a cancelled booking'
);
select throws_ok(
    $$select public.claim_offer(tests.booking_id('offers u1'))$$, 'TS007', null,
    'TS007: claiming a cancelled booking'
);

select tests.sign_in_as_service();
select is(public.expire_offers(), 1, 'setup: the overdue offer expires');

select tests.sign_in('00000000-0000-0000-0000-000000000002');
select throws_ok(
    $$select public.claim_offer(tests.booking_id('offers u2'))$$, 'TS007', null,
    'TS007: claiming an expired offer'
);
select throws_ok(
    $$select public.cancel_booking(tests.booking_id('offers u2'))$$, 'TS007', null,
    'TS007: cancelling an expired booking'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.publish_event(tests.event_id('cancelled'))$$, 'TS007', null,
    'TS007: publishing a cancelled event'
);
select throws_ok(
    $$select public.cancel_event(tests.event_id('cancelled'))$$, 'TS007', null,
    'TS007: cancelling a cancelled event'
);
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('cancelled'), 10)$$, 'TS007', null,
    'TS007: resizing a cancelled event'
);

-- ------------------------------------------------------------------------------------------
-- TS008 capacity_conflict
-- ------------------------------------------------------------------------------------------
select lives_ok(
    $$select public.set_event_capacity(tests.event_id('pairs'), 1)$$,
    'setup: an empty event may shrink to 1 seat'
);
select tests.sign_in('22222222-2222-2222-2222-222222222222');
select lives_ok($$select public.book_event(tests.event_id('pairs'))$$, 'setup: its seat is taken');
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('open'), 0)$$, '22023', null,
    '22023 before TS008: capacity 0 is malformed, whatever is held'
);
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('pairs'), 0)$$, '22023', null,
    '22023: set_event_capacity to 0'
);
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('zero list'), null)$$, '22023', null,
    '22023: set_event_capacity to null'
);
select lives_ok(
    $$select public.set_event_capacity(tests.event_id('pairs'), 2)$$,
    'setup: it grows to 2 seats'
);
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok($$select public.book_event(tests.event_id('pairs'))$$, 'setup: both seats are taken');
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('pairs'), 1)$$, 'TS008', null,
    'TS008: capacity below confirmed + offered seats'
);

-- ------------------------------------------------------------------------------------------
-- TS009 rate_limited: too many book_event calls in the window
-- ------------------------------------------------------------------------------------------
reset role;
update tessera.rate_limits set max_calls = 1
where action = 'book_event';
select tests.sign_in('00000000-0000-0000-0000-000000000003');
select lives_ok($$select public.book_event(tests.event_id('open'))$$, 'setup: one call within the limit');
select throws_ok(
    $$select public.book_event(tests.event_id('pairs'))$$, 'TS009', null,
    'TS009: the next call in the window'
);
reset role;
update tessera.rate_limits set max_calls = 30
where action = 'book_event';
select tests.sign_in('11111111-1111-1111-1111-111111111111');

-- ------------------------------------------------------------------------------------------
-- 22023 invalid_parameter_value: other malformed input
-- ------------------------------------------------------------------------------------------
select throws_ok(
    $$select public.create_event(title => '', capacity => 5, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: empty title'
);
select throws_ok(
    $$select public.create_event(title => repeat('t', 201), capacity => 5, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: title over 200 characters'
);
select throws_ok(
    $$select public.create_event(title => repeat('t', 10240), capacity => 5, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: a 10 kB title'
);
select throws_ok(
    $$select public.create_event(title => null, capacity => 5, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: null title'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '1 day', description => repeat('d', 10001)
    )
    $$,
    '22023', null, '22023: description over 10000 characters'
);
select throws_ok(
    $$select public.create_event(title => 'x', capacity => 0, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: capacity 0'
);
select throws_ok(
    $$select public.create_event(title => 'x', capacity => 1000001, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: capacity over 1,000,000'
);
select throws_ok(
    $$select public.create_event(title => 'x', capacity => null, starts_at => now() + interval '1 day')$$,
    '22023', null, '22023: null capacity'
);
select throws_ok(
    $$select public.create_event(title => 'x', capacity => 5, starts_at => null)$$,
    '22023', null, '22023: null starts_at'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '2 days', ends_at => now() + interval '1 day'
    )
    $$,
    '22023', null, '22023: ends before it starts'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '1 day', waitlist_policy => 'random'
    )
    $$,
    '22023', null, '22023: unknown waitlist_policy'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '1 day', promotion_mode => 'manual'
    )
    $$,
    '22023', null, '22023: unknown promotion_mode'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '1 day', offer_ttl => interval '30 seconds'
    )
    $$,
    '22023', null, '22023: offer_ttl under a minute'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '1 day', max_seats_per_booking => 0
    )
    $$,
    '22023', null, '22023: max_seats_per_booking 0'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '1 day', waitlist_limit => -1
    )
    $$,
    '22023', null, '22023: negative waitlist_limit'
);
select throws_ok(
    $$
    select public.create_event(
        title => 'x', capacity => 5, starts_at => now() + interval '10 days',
        sales_open_at => now() + interval '2 days', sales_close_at => now() + interval '1 day'
    )
    $$,
    '22023', null, '22023: sales close before they open'
);
select throws_ok(
    $$select public.book_event(tests.event_id('open'), 1, '')$$, '22023', null, '22023: empty idempotency_key'
);
select throws_ok(
    $$select public.event_changes(tests.event_id('open'), 0, 0)$$, '22023', null, '22023: max_rows 0'
);
select throws_ok(
    $$select public.event_changes(tests.event_id('open'), 0, 10001)$$, '22023', null,
    '22023: max_rows over 10000'
);

-- ------------------------------------------------------------------------------------------
-- 42501 insufficient_privilege: not the organizer; not signed in
-- ------------------------------------------------------------------------------------------
select tests.sign_in('22222222-2222-2222-2222-222222222222');
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('open'), 10)$$, '42501', null,
    '42501: set_event_capacity by someone other than the organizer'
);
select throws_ok(
    $$select public.publish_event(tests.event_id('open'))$$, '42501', null,
    '42501: publish_event by someone other than the organizer'
);
select throws_ok(
    $$select public.cancel_event(tests.event_id('open'))$$, '42501', null,
    '42501: cancel_event by someone other than the organizer'
);
select throws_ok($$select public.expire_offers()$$, '42501', null, '42501: expire_offers by a user');
select throws_ok(
    $$
    insert into public.events (organizer_id, title, starts_at, capacity, sales_close_at)
    values (auth.uid(), 'Direct', now() + interval '1 day', 5, now() + interval '1 day')
    $$,
    '42501', null,
    '42501: writing a table directly instead of calling a function'
);
select throws_ok(
    $$select tessera.free_seats(tests.event_id('open'))$$, '42501', null,
    '42501: the tessera helpers are out of reach'
);

-- A JWT without a usable sub claim is not a signed-in user, and manages nothing: "is the
-- caller the organizer?" must be false, not unknown, when there is no caller.
select set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok(
    $$select public.book_event(tests.event_id('open'))$$, '42501', null,
    '42501: book_event with no sub claim'
);
select throws_ok(
    $$select public.create_event(title => 'x', capacity => 5, starts_at => now() + interval '1 day')$$,
    '42501', null, '42501: create_event with no sub claim'
);
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('open'), 10)$$, '42501', null,
    '42501: set_event_capacity with no sub claim'
);
select throws_ok(
    $$select public.publish_event(tests.event_id('open'))$$, '42501', null,
    '42501: publish_event with no sub claim'
);
select throws_ok(
    $$select public.cancel_event(tests.event_id('no waitlist'))$$, '42501', null,
    '42501: cancel_event with no sub claim'
);
select throws_ok(
    $$select public.event_attendees(tests.event_id('open'))$$, '42501', null,
    '42501: event_attendees (attendee emails) with no sub claim'
);
select set_config('request.jwt.claims', '{"sub": "not-a-uuid", "role": "authenticated"}', true);
select throws_ok(
    $$select public.book_event(tests.event_id('open'))$$, '42501', null,
    '42501: book_event with a malformed sub claim'
);

select tests.sign_in_as_anon();
select throws_ok(
    $$select public.create_event(title => 'x', capacity => 5, starts_at => now() + interval '1 day')$$,
    '42501', null, '42501: create_event by anon'
);
select throws_ok(
    $$select public.book_event(tests.event_id('open'))$$, '42501', null, '42501: book_event by anon'
);
select throws_ok(
    $$select public.cancel_booking(tests.booking_id('open u1'))$$, '42501', null,
    '42501: cancel_booking by anon'
);
select throws_ok($$select public.expire_offers()$$, '42501', null, '42501: expire_offers by anon');
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('open'), 10)$$, '42501', null,
    '42501: set_event_capacity by anon'
);
select throws_ok(
    $$select public.publish_event(tests.event_id('open'))$$, '42501', null, '42501: publish_event by anon'
);
select throws_ok(
    $$select public.cancel_event(tests.event_id('zero list'))$$, '42501', null, '42501: cancel_event by anon'
);
select throws_ok(
    $$select public.claim_offer(tests.booking_id('open u2'))$$, '42501', null, '42501: claim_offer by anon'
);

select tests.sign_in_as_service();
select throws_ok(
    $$select public.book_event(tests.event_id('open'))$$, '42501', null,
    '42501: service_role has no user to book for'
);

reset role;
select throws_ok(
    $$update public.ledger set kind = 'booked'$$, '42501', null,
    '42501: the ledger refuses changes, even from the superuser'
);

select * from finish();
rollback;
