-- Tessera booking core, part 1: tables, constraints and indexes.
--
-- public.events      what can be booked
-- public.bookings    one row per booking request, waitlisted ones included
-- public.ledger      append-only log of every state change; the realtime source
-- tessera.*          internal state PostgREST does not expose (seat blocks, queue counters)
--
-- All writes go through the functions in the next migration; no API role gets table writes.

-- ===========================================================================================
-- Privileges: functions are not executable by PUBLIC unless granted one by one
-- ===========================================================================================
alter default privileges for role postgres in schema public
revoke execute on functions from public;
alter default privileges for role postgres in schema public
revoke execute on functions from anon, authenticated;

create schema if not exists tessera;
comment on schema tessera is
'Tessera internals: helpers and bookkeeping. Not exposed through the API.';
revoke all on schema tessera from public;
alter default privileges for role postgres in schema tessera
revoke execute on functions from public;

-- ===========================================================================================
-- Events
-- ===========================================================================================
create table public.events (
    id uuid primary key default gen_random_uuid(),
    organizer_id uuid not null references auth.users (id),
    title text not null,
    description text,
    venue text,
    starts_at timestamptz not null,
    ends_at timestamptz,
    capacity integer not null,
    max_seats_per_booking integer not null default 10,
    status text not null default 'published',
    sales_open_at timestamptz not null default now(),
    sales_close_at timestamptz not null,
    waitlist_enabled boolean not null default true,
    waitlist_limit integer,
    waitlist_policy text not null default 'strict',
    promotion_mode text not null default 'auto',
    offer_ttl interval not null default interval '24 hours',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    published_at timestamptz,
    cancelled_at timestamptz,
    constraint events_title_length check (char_length(title) between 1 and 200),
    constraint events_description_length check (char_length(description) <= 10000),
    constraint events_venue_length check (char_length(venue) <= 500),
    constraint events_capacity_range check (capacity between 1 and 1000000),
    constraint events_max_seats_range check (max_seats_per_booking between 1 and 1000),
    constraint events_status_known check (status in ('draft', 'published', 'cancelled')),
    constraint events_ends_after_start check (ends_at is null or ends_at >= starts_at),
    constraint events_sales_window check (sales_close_at > sales_open_at),
    constraint events_waitlist_limit_range check (waitlist_limit between 0 and 10000000),
    constraint events_waitlist_policy_known check (waitlist_policy in ('strict', 'first_fit')),
    constraint events_promotion_mode_known check (promotion_mode in ('auto', 'offer')),
    constraint events_offer_ttl_range
    check (offer_ttl between interval '1 minute' and interval '30 days')
);
create index events_organizer_id_idx on public.events (organizer_id);
create index events_starts_at_idx on public.events (starts_at) where status = 'published';

comment on table public.events is 'Bookable events. Written only through Tessera''s functions.';

-- ===========================================================================================
-- Bookings: one row per request. Waiting order is queue_ticket, never renumbered; a
-- position is the number of waiting bookings of the event with a ticket <= this one.
-- ===========================================================================================
-- bookings.event_id and ledger.event_id deliberately carry no foreign key: a foreign key
-- check takes FOR KEY SHARE on the event row in every booking transaction, and hundreds of
-- concurrent sharers of one hot row serialise on its multixact. Events are never deleted
-- (trigger events_are_never_deleted), so the reference cannot dangle; `tessera doctor`
-- checks it.
create table public.bookings (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null,
    user_id uuid not null references auth.users (id),
    seats integer not null,
    status text not null,
    queue_ticket bigint,
    idempotency_key text,
    created_at timestamptz not null default now(),
    confirmed_at timestamptz,
    waitlisted_at timestamptz,
    offered_at timestamptz,
    offer_expires_at timestamptz,
    cancelled_at timestamptz,
    expired_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint bookings_seats_range check (seats between 1 and 1000),
    constraint bookings_status_known
    check (status in ('confirmed', 'waitlisted', 'offered', 'cancelled', 'expired')),
    constraint bookings_waitlisted_has_ticket
    check (status <> 'waitlisted' or queue_ticket is not null),
    constraint bookings_offer_has_expiry check (status <> 'offered' or offer_expires_at is not null),
    constraint bookings_idempotency_key_length check (char_length(idempotency_key) between 1 and 200)
);

-- Rule 5: at most one active booking per user per event (the loud guard behind the check
-- book_event makes under a lock).
create unique index bookings_one_active_per_user_idx on public.bookings (event_id, user_id)
where status in ('confirmed', 'waitlisted', 'offered');
-- Rule 6: an idempotency key names one booking of its user, forever.
create unique index bookings_idempotency_key_idx on public.bookings (user_id, idempotency_key)
where idempotency_key is not null;
-- FIFO head, positions and counts of the waitlist.
create index bookings_waiting_queue_idx on public.bookings (event_id, queue_ticket)
where status = 'waitlisted';
-- first_fit: the oldest waiting party of each size.
create index bookings_waiting_size_idx on public.bookings (event_id, seats, queue_ticket)
where status = 'waitlisted';
create index bookings_offer_expiry_idx on public.bookings (offer_expires_at)
where status = 'offered';
create index bookings_user_id_idx on public.bookings (user_id);
create index bookings_event_status_idx on public.bookings (event_id, status);

comment on table public.bookings is
'One row per booking request, waitlisted ones included. Written only through Tessera''s functions.';

create sequence tessera.queue_tickets as bigint;

-- ===========================================================================================
-- Seat blocks: an event's capacity split over up to 32 rows, so concurrent bookings of one
-- hot event lock different rows (FOR UPDATE SKIP LOCKED) instead of queueing on one.
-- The check below is the second guard of rule 1: even a wrong locking protocol could not
-- make taken exceed capacity without this statement failing.
-- ===========================================================================================
create table tessera.seat_blocks (
    event_id uuid not null references public.events (id) on delete cascade,
    block integer not null,
    capacity integer not null,
    taken integer not null default 0,
    -- true while anybody waits for this event: the fast booking path then stays closed.
    waitlist_open boolean not null default false,
    primary key (event_id, block),
    constraint seat_blocks_never_oversold check (taken between 0 and capacity)
) with (fillfactor = 50);

-- Per-event queue counters. Only written while holding every seat block of the event, or
-- the event's exclusive lock, so these updates never contend with the fast booking path.
create table tessera.event_queues (
    event_id uuid primary key references public.events (id) on delete cascade,
    waiting_count integer not null default 0,
    waiting_seats integer not null default 0,
    offered_count integer not null default 0,
    offered_seats integer not null default 0,
    constraint event_queues_counts_non_negative
    check (least(waiting_count, waiting_seats, offered_count, offered_seats) >= 0)
) with (fillfactor = 50);

-- ===========================================================================================
-- Ledger: append-only. seq = (transaction id << 24) + n-th entry of that transaction, so
-- every entry a reader can ever see later has a larger seq than the ones it has seen, as
-- long as readers stop below the oldest running transaction (tessera.ledger_horizon()).
-- No per-event counter is bumped, so bookings of one event do not serialize on it.
-- ===========================================================================================
create table public.ledger (
    seq bigint primary key,
    event_id uuid not null,
    booking_id uuid references public.bookings (id),
    user_id uuid,
    actor_id uuid,
    kind text not null,
    status text,
    seats integer,
    waitlist_position integer,
    offer_expires_at timestamptz,
    seats_available integer not null,
    waitlist_count integer not null,
    event_status text not null,
    detail jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    constraint ledger_kind_known check (
        kind in (
            'booked', 'waitlisted', 'promoted', 'offered', 'claimed', 'offer_expired',
            'cancelled', 'capacity_changed', 'event_published', 'event_cancelled'
        )
    )
);
create index ledger_event_seq_idx on public.ledger (event_id, seq);
create index ledger_user_seq_idx on public.ledger (user_id, seq) where user_id is not null;
create index ledger_booking_seq_idx on public.ledger (booking_id, seq)
where booking_id is not null;

comment on table public.ledger is
'Append-only log of every booking and event state change, ordered by seq.';

create function tessera.ledger_is_append_only() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception using
        errcode = '42501',
        message = 'the ledger is append-only',
        hint = 'Record a new entry instead of changing or deleting one.';
end
$$;

create function tessera.events_are_never_deleted() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception using
        errcode = '42501',
        message = 'events are never deleted',
        hint = 'Cancel the event instead (cancel_event).';
end
$$;

create trigger events_are_never_deleted
before delete on public.events
for each row execute function tessera.events_are_never_deleted();

create trigger ledger_is_append_only
before update or delete on public.ledger
for each row execute function tessera.ledger_is_append_only();
create trigger ledger_is_append_only_truncate
before truncate on public.ledger
for each statement execute function tessera.ledger_is_append_only();

-- ===========================================================================================
-- Row Level Security: on for every table; policies come with the security migration.
-- No table writes for API roles: every change goes through a function.
-- ===========================================================================================
alter table public.events enable row level security;
alter table public.bookings enable row level security;
alter table public.ledger enable row level security;
alter table public.events force row level security;
alter table public.bookings force row level security;
alter table public.ledger force row level security;

revoke all on public.events, public.bookings, public.ledger from anon, authenticated;
grant select on public.events, public.bookings, public.ledger to anon, authenticated;
grant all on public.events, public.bookings, public.ledger to service_role;
revoke all on all tables in schema tessera from public, anon, authenticated;
revoke all on all sequences in schema tessera from public, anon, authenticated;
