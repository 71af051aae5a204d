-- The waitlist: freed seats go to it before any newcomer (rule 2); FIFO promotion, strict or
-- first_fit (rule 3); positions 1..n without gaps, derived from queue tickets (rule 4);
-- capacity changes promote or are refused (TS008); sold out when the waitlist is off or full.
begin;
set local search_path = public, extensions;
select plan(38);

select tests.create_cast(6);

-- The active bookings of an event by user, with the position waitlist_position reports.
-- Call it as the superuser: it reads past row level security.
create function pg_temp.queue(p_event text)
returns table (who text, status text, waitlist_position integer)
language sql stable
as $$
    select split_part(u.email, '@', 1), b.status, public.waitlist_position(b.id)
    from public.bookings as b inner join auth.users as u on b.user_id = u.id
    where b.event_id = tests.event_id(p_event) and b.status <> 'cancelled'
    order by u.email
$$;

-- ------------------------------------------------------------------------------------------
-- Events
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
insert into tests.fixture (label, event) values
('strict', public.create_event(title => 'Strict', capacity => 2, starts_at => now() + interval '30 days')),
(
    'fit',
    public.create_event(
        title => 'First fit', capacity => 2, starts_at => now() + interval '30 days',
        waitlist_policy => 'first_fit'
    )
),
(
    'fit on join',
    public.create_event(
        title => 'First fit on join', capacity => 3, starts_at => now() + interval '30 days',
        waitlist_policy => 'first_fit'
    )
),
('queue', public.create_event(title => 'Queue', capacity => 1, starts_at => now() + interval '30 days')),
('grow', public.create_event(title => 'Grow', capacity => 2, starts_at => now() + interval '30 days')),
(
    'no waitlist',
    public.create_event(
        title => 'No waitlist', capacity => 1, starts_at => now() + interval '30 days',
        waitlist_enabled => false
    )
),
(
    'short list',
    public.create_event(
        title => 'Short list', capacity => 1, starts_at => now() + interval '30 days', waitlist_limit => 1
    )
),
('tiny', public.create_event(title => 'Tiny', capacity => 2, starts_at => now() + interval '30 days'));

-- ------------------------------------------------------------------------------------------
-- strict: u1 (1), u2 (1) confirmed; u3 (2), u4 (1) wait
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
insert into tests.fixture (label, booking) values
('strict u1', public.book_event(tests.event_id('strict'), 1)),
('fit u1', public.book_event(tests.event_id('fit'), 1)),
('fit on join u1', public.book_event(tests.event_id('fit on join'), 2)),
('queue u1', public.book_event(tests.event_id('queue'), 1)),
('grow u1', public.book_event(tests.event_id('grow'), 2)),
('no waitlist u1', public.book_event(tests.event_id('no waitlist'), 1)),
('short list u1', public.book_event(tests.event_id('short list'), 1));

select tests.sign_in('00000000-0000-0000-0000-000000000002');
insert into tests.fixture (label, booking) values
('strict u2', public.book_event(tests.event_id('strict'), 1)),
('fit u2', public.book_event(tests.event_id('fit'), 1)),
('queue u2', public.book_event(tests.event_id('queue'), 1)),
('grow u2', public.book_event(tests.event_id('grow'), 1)),
('short list u2', public.book_event(tests.event_id('short list'), 1));

select throws_ok(
    $$select public.book_event(tests.event_id('no waitlist'))$$,
    'TS006', null,
    'a full event without a waitlist is sold out'
);

select tests.sign_in('00000000-0000-0000-0000-000000000003');
insert into tests.fixture (label, booking) values
('strict u3', public.book_event(tests.event_id('strict'), 2)),
('fit u3', public.book_event(tests.event_id('fit'), 2)),
('fit on join u3', public.book_event(tests.event_id('fit on join'), 2)),
('queue u3', public.book_event(tests.event_id('queue'), 1)),
('grow u3', public.book_event(tests.event_id('grow'), 2));

select throws_ok(
    $$select public.book_event(tests.event_id('short list'))$$,
    'TS006', null,
    'a full event whose waitlist is full is sold out'
);

select tests.sign_in('00000000-0000-0000-0000-000000000004');
insert into tests.fixture (label, booking) values
('strict u4', public.book_event(tests.event_id('strict'), 1)),
('fit u4', public.book_event(tests.event_id('fit'), 1)),
('fit on join u4', public.book_event(tests.event_id('fit on join'), 1)),
('queue u4', public.book_event(tests.event_id('queue'), 1)),
('grow u4', public.book_event(tests.event_id('grow'), 1));

select tests.sign_in('00000000-0000-0000-0000-000000000005');
insert into tests.fixture (label, booking) values
('queue u5', public.book_event(tests.event_id('queue'), 1));

select tests.sign_in('00000000-0000-0000-0000-000000000006');
insert into tests.fixture (label, booking) values
('queue u6', public.book_event(tests.event_id('queue'), 1));

select results_eq(
    $$
    select label, (booking).status, (booking).waitlist_position from tests.fixture
    where label in ('strict u1', 'strict u2', 'strict u3', 'strict u4')
    order by label
    $$,
    $$values ('strict u1', 'confirmed', null::integer), ('strict u2', 'confirmed', null),
        ('strict u3', 'waitlisted', 1), ('strict u4', 'waitlisted', 2)$$,
    'book_event reports the waitlist position of each new waiting booking'
);

select results_eq(
    $$select label, (booking).waitlist_position from tests.fixture where label like 'queue u%' order by label$$,
    $$values ('queue u1', null::integer), ('queue u2', 1), ('queue u3', 2), ('queue u4', 3),
        ('queue u5', 4), ('queue u6', 5)$$,
    'waiting bookings are numbered 1..n in the order they arrived'
);

-- ------------------------------------------------------------------------------------------
-- Rules 2 and 3 under strict: a freed seat the head cannot use stays free for the waitlist
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select results_eq(
    $$select status from public.cancel_booking(tests.booking_id('strict u1'))$$,
    $$values ('cancelled')$$,
    'strict: u1 cancels one seat'
);

select results_eq(
    $$select seats_available, waitlist_count, waitlist_seats from public.event_availability(tests.event_id('strict'))$$,
    $$values (1, 2, 3)$$,
    'strict: the seat stays free because the head of the line needs two'
);

select tests.sign_in('00000000-0000-0000-0000-000000000005');
select results_eq(
    $$select status, waitlist_position from public.book_event(tests.event_id('strict'), 1)$$,
    $$values ('waitlisted', 3)$$,
    'strict: a newcomer does not get the free seat while others wait (rule 2)'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('strict')$$,
    $$values ('u2', 'confirmed', null::integer), ('u3', 'waitlisted', 1), ('u4', 'waitlisted', 2),
        ('u5', 'waitlisted', 3)$$,
    'strict: the one-seat parties behind the head do not overtake it (rule 3)'
);

select tests.sign_in('00000000-0000-0000-0000-000000000002');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('strict u2'))$$,
    'strict: u2 cancels'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('strict')$$,
    $$values ('u3', 'confirmed', null::integer), ('u4', 'waitlisted', 1), ('u5', 'waitlisted', 2)$$,
    'strict: two free seats promote the head; the others move up without gaps'
);

-- ------------------------------------------------------------------------------------------
-- first_fit: the oldest party that fits goes first
-- ------------------------------------------------------------------------------------------
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('fit u1'))$$,
    'first_fit: u1 cancels one seat'
);

select tests.sign_in('00000000-0000-0000-0000-000000000005');
select results_eq(
    $$select status, waitlist_position from public.book_event(tests.event_id('fit'), 1)$$,
    $$values ('waitlisted', 2)$$,
    'first_fit: a newcomer still queues when no seat is free'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('fit')$$,
    $$values ('u2', 'confirmed', null::integer), ('u3', 'waitlisted', 1), ('u4', 'confirmed', null),
        ('u5', 'waitlisted', 2)$$,
    'first_fit: the freed seat went to u4, the oldest party that fits, past u3 who needs two'
);

select tests.sign_in('00000000-0000-0000-0000-000000000002');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('fit u2'))$$,
    'first_fit: u2 cancels one seat'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('fit')$$,
    $$values ('u3', 'waitlisted', 1), ('u4', 'confirmed', null::integer), ('u5', 'confirmed', null)$$,
    'first_fit: the next freed seat goes to u5; u3 keeps the head of the line'
);

select results_eq(
    $$
    select label, (booking).status, (booking).waitlist_position from tests.fixture
    where label like 'fit on join u%' order by label
    $$,
    $$values ('fit on join u1', 'confirmed', null::integer), ('fit on join u3', 'waitlisted', 1),
        ('fit on join u4', 'confirmed', null)$$,
    'first_fit: a newcomer whose party fits the free seat is seated at once, behind a waiting party that does not'
);

-- ------------------------------------------------------------------------------------------
-- Rule 4: positions are derived from queue tickets; leaving the line renumbers nothing
-- ------------------------------------------------------------------------------------------
create temporary table tickets_before as
select
    b.id,
    b.queue_ticket
from public.bookings as b
where b.event_id = tests.event_id('queue') and b.status = 'waitlisted';

select tests.sign_in('00000000-0000-0000-0000-000000000004');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('queue u4'))$$,
    'queue: u4 (position 3) leaves the line'
);

select tests.sign_in('00000000-0000-0000-0000-000000000005');
select is(
    public.waitlist_position(tests.booking_id('queue u5')),
    3,
    'queue: u5 moves up from 4 to 3'
);

-- The organizer may read the position of any booking of the event.
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$
    select label, public.waitlist_position((booking).booking_id) from tests.fixture
    where label like 'queue u%' and label <> 'queue u4'
    order by label
    $$,
    $$values ('queue u1', null::integer), ('queue u2', 1), ('queue u3', 2), ('queue u5', 3), ('queue u6', 4)$$,
    'queue: positions are 1..4 without a gap'
);

reset role;
select is_empty(
    $$
    select b.id from tickets_before as b
    inner join public.bookings as now_ on b.id = now_.id
    where b.queue_ticket is distinct from now_.queue_ticket
    $$,
    'queue: no queue ticket was rewritten'
);

select tests.sign_in('00000000-0000-0000-0000-000000000001');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('queue u1'))$$,
    'queue: u1 gives up the only seat'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('queue')$$,
    $$values ('u2', 'confirmed', null::integer), ('u3', 'waitlisted', 1), ('u5', 'waitlisted', 2),
        ('u6', 'waitlisted', 3)$$,
    'queue: the head is promoted and the others are 1..3'
);

-- ------------------------------------------------------------------------------------------
-- Capacity: raising promotes (FIFO, strict); lowering below held seats is refused (TS008)
-- ------------------------------------------------------------------------------------------
select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$select capacity from public.set_event_capacity(tests.event_id('grow'), 3)$$,
    $$values (3)$$,
    'grow: the organizer raises the capacity from 2 to 3'
);

select lives_ok(
    $$select public.set_event_capacity(tests.event_id('grow'), 4)$$,
    'grow: and then to 4'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('grow')$$,
    $$values ('u1', 'confirmed', null::integer), ('u2', 'confirmed', null), ('u3', 'waitlisted', 1),
        ('u4', 'waitlisted', 2)$$,
    'grow: the first new seat seated u2; the second waits for u3, who needs two (strict)'
);

select tests.sign_in('00000000-0000-0000-0000-000000000005');
insert into tests.fixture (label, booking) values ('grow u5', public.book_event(tests.event_id('grow'), 1));
select results_eq(
    $$select (booking).status, (booking).waitlist_position from tests.fixture where label = 'grow u5'$$,
    $$values ('waitlisted', 3)$$,
    'grow: the free seat is not handed to a newcomer (rule 2)'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select lives_ok(
    $$select public.set_event_capacity(tests.event_id('grow'), 6)$$,
    'grow: the organizer raises the capacity to 6'
);

reset role;
select results_eq(
    $$select * from pg_temp.queue('grow')$$,
    $$values ('u1', 'confirmed', null::integer), ('u2', 'confirmed', null), ('u3', 'confirmed', null),
        ('u4', 'confirmed', null), ('u5', 'waitlisted', 1)$$,
    'grow: two more seats seat u3 (2 seats) and u4 (1 seat), in order'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select throws_ok(
    $$select public.set_event_capacity(tests.event_id('grow'), 5)$$,
    'TS008', null,
    'grow: the capacity cannot drop below the 6 seats held'
);

select tests.sign_in('00000000-0000-0000-0000-000000000004');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('grow u4'))$$,
    'grow: u4 cancels; the freed seat goes to u5'
);

select tests.sign_in('00000000-0000-0000-0000-000000000005');
select lives_ok(
    $$select public.cancel_booking(tests.booking_id('grow u5'))$$,
    'grow: u5 cancels; 5 seats are held now'
);

select tests.sign_in('11111111-1111-1111-1111-111111111111');
select results_eq(
    $$select capacity from public.set_event_capacity(tests.event_id('grow'), 5)$$,
    $$values (5)$$,
    'grow: the capacity may drop to exactly the seats held'
);

select results_eq(
    $$
    select capacity, seats_confirmed, seats_available, waitlist_count
    from public.event_availability(tests.event_id('grow'))
    $$,
    $$values (5, 5, 0, 0)$$,
    'grow: 5 of 5 seats confirmed'
);

reset role;
select results_eq(
    $$
    select sum(sb.capacity)::integer, sum(sb.taken)::integer from tessera.seat_blocks as sb
    where sb.event_id = tests.event_id('grow')
    $$,
    $$values (5, 5)$$,
    'grow: the seat blocks were laid out again for the new capacity'
);

-- ------------------------------------------------------------------------------------------
-- Every waiting booking of every event: position = rank by queue ticket (1..n, no gaps)
-- ------------------------------------------------------------------------------------------
select is_empty(
    $$
    select ranked.id from (
        select
            b.id,
            row_number() over (partition by b.event_id order by b.queue_ticket) as expected
        from public.bookings as b
        where b.status = 'waitlisted'
    ) as ranked
    where public.waitlist_position(ranked.id) is distinct from ranked.expected::integer
    $$,
    'every waiting booking sits at its rank by queue ticket'
);

-- ------------------------------------------------------------------------------------------
-- The bookkeeping agrees with the bookings: seat blocks hold exactly the confirmed and offered
-- seats, the queue counters match, and the fast path is closed exactly while someone waits.
-- ------------------------------------------------------------------------------------------
select is_empty(
    'select * from tests.bookkeeping_disagreements()',
    'seat blocks, queue counters and the waitlist flag agree with the bookings'
);

-- ------------------------------------------------------------------------------------------
-- A party larger than the event can ever seat must not block the line (strict)
-- ------------------------------------------------------------------------------------------
-- Waitlisted, such a party would head the line forever and, under strict, every later
-- booker would queue behind it while the seats stay empty. So it is invalid_seats.
select tests.sign_in('00000000-0000-0000-0000-000000000001');
select throws_ok(
    $$select public.book_event(tests.event_id('tiny'), 3)$$,
    'TS004', null,
    'tiny: a party of 3 is refused by an event of 2 seats'
);

select tests.sign_in('00000000-0000-0000-0000-000000000002');
select results_eq(
    $$select status from public.book_event(tests.event_id('tiny'), 1)$$,
    $$values ('confirmed')$$,
    'tiny: a party of 1 gets one of the two empty seats'
);

select * from finish();
rollback;
