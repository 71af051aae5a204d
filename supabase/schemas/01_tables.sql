-- Tessera booking core, part 1: tables, constraints and indexes.
--
-- public.events      what can be booked
-- public.bookings    one row per booking request, waitlisted ones included
-- public.ledger      append-only log of every state change; the realtime source
-- tessera.*          internal state PostgREST does not expose (seat blocks, queue counters,
--                    rate limits)
--
-- All writes go through Tessera's functions; no API role gets table writes. Limits come from
-- the constants in the foundation migration.

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
    max_seats_per_booking integer not null default tessera.default_max_seats_per_booking(),
    status text not null default 'published',
    sales_open_at timestamptz not null default now(),
    sales_close_at timestamptz not null,
    waitlist_enabled boolean not null default true,
    waitlist_limit integer,
    waitlist_policy text not null default 'strict',
    promotion_mode text not null default 'auto',
    offer_ttl interval not null default tessera.default_offer_ttl(),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    published_at timestamptz,
    cancelled_at timestamptz,
    constraint events_title_length check (char_length(title) between 1 and tessera.max_title_length()),
    constraint events_description_length check (char_length(description) <= tessera.max_description_length()),
    constraint events_venue_length check (char_length(venue) <= tessera.max_venue_length()),
    constraint events_capacity_range check (capacity between 1 and tessera.max_capacity()),
    constraint events_max_seats_range check (max_seats_per_booking between 1 and tessera.max_party_size()),
    constraint events_status_known check (status in ('draft', 'published', 'cancelled')),
    constraint events_ends_after_start check (ends_at is null or ends_at >= starts_at),
    constraint events_sales_window check (sales_close_at > sales_open_at),
    constraint events_waitlist_limit_range check (waitlist_limit between 0 and tessera.max_waitlist_limit()),
    constraint events_waitlist_policy_known check (waitlist_policy in ('strict', 'first_fit')),
    constraint events_promotion_mode_known check (promotion_mode in ('auto', 'offer')),
    constraint events_offer_ttl_range check (tessera.offer_ttl_is_valid(offer_ttl))
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
    -- Literal bounds on this table: a constraint is re-prepared by every statement that writes
    -- a booking, and calling a function there costs each booking. They equal
    -- tessera.max_party_size() and tessera.max_idempotency_key_length(); 01-schema.sql checks it.
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

-- ===========================================================================================
-- Seat blocks: an event's capacity split over up to tessera.max_seat_blocks() rows, so concurrent bookings of one
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
-- tickets_issued numbers the event's queue: each join takes the next ticket, so an event's
-- tickets are dense (1, 2, 3, ...) and fall into few waitlist buckets.
create table tessera.event_queues (
    event_id uuid primary key references public.events (id) on delete cascade,
    waiting_count integer not null default 0,
    waiting_seats integer not null default 0,
    offered_count integer not null default 0,
    offered_seats integer not null default 0,
    tickets_issued bigint not null default 0,
    constraint event_queues_counts_non_negative
    check (least(waiting_count, waiting_seats, offered_count, offered_seats, tickets_issued) >= 0)
) with (fillfactor = 50);

-- Waiting bookings per bucket of queue tickets, at every level: the bucket of ticket t at
-- level L is t >> (L * tessera.waitlist_bucket_bits()). Written under the same locks as
-- event_queues (every writer holds its event_queues row), one row per level.
create table tessera.waitlist_buckets (
    event_id uuid not null references public.events (id) on delete cascade,
    level smallint not null,
    bucket bigint not null,
    waiting integer not null,
    primary key (event_id, level, bucket),
    constraint waitlist_buckets_level_known check (level between 1 and 4),
    constraint waitlist_buckets_waiting_non_negative check (waiting >= 0)
) with (fillfactor = 70);

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
            'cancelled', 'capacity_changed', 'event_published', 'event_cancelled', 'event_updated'
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
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    raise exception using
        errcode = '42501',
        message = 'the ledger is append-only',
        hint = 'Record a new entry instead of changing or deleting one.';
end
$$;

-- Every time of an event a caller may set lies within years 1..9999 (0001-01-02 to
-- 9999-12-30, a day inside them in every time zone), so every client can read it back.
create function tessera.event_times_in_range() returns trigger
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if not (
        new.starts_at between '0001-01-02 00:00:00+00' and '9999-12-30 00:00:00+00'
        and new.sales_open_at between '0001-01-02 00:00:00+00' and '9999-12-30 00:00:00+00'
        and new.sales_close_at between '0001-01-02 00:00:00+00' and '9999-12-30 00:00:00+00'
        and coalesce(new.ends_at between '0001-01-02 00:00:00+00' and '9999-12-30 00:00:00+00', true)
    ) then
        raise exception using
            errcode = '22023',
            message = 'times must lie between 0001-01-02 and 9999-12-30',
            detail = pg_catalog.format(
                'starts_at=%s ends_at=%s sales_open_at=%s sales_close_at=%s',
                new.starts_at, new.ends_at, new.sales_open_at, new.sales_close_at
            );
    end if;
    return new;
end
$$;

create function tessera.events_are_never_deleted() returns trigger
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
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

create trigger event_times_in_range
before insert or update of starts_at, ends_at, sales_open_at, sales_close_at on public.events
for each row execute function tessera.event_times_in_range();

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

-- ===========================================================================================
-- Rate limit on book_event and cancel_booking
--
-- Configuration: one row per action in tessera.rate_limits (max_calls per window_seconds;
-- defaults: tessera.default_rate_limit_calls() per tessera.default_rate_limit_window_seconds(),
-- also used when the row is missing). Operators and service_role
-- change it with plain SQL, e.g.
--     update tessera.rate_limits set max_calls = 60 where action = 'book_event';
-- A table rather than a GUC: service_role can change it without ALTER DATABASE, the value
-- is transactional, and the hot path reads it with one primary key look-up.
--
-- Algorithm: a fixed window per user and action that opens at the first call, counted in
-- one upsert on the (user, action) row. Each user has their own row, so users never wait
-- on one another; a user's own concurrent calls queue on it briefly. It promises exactly
-- "at most max_calls per window from the first call" with an exact retry time; the price
-- against a token bucket is that a user may spend two windows back to back (2 x max_calls
-- around a boundary), which is acceptable for an abuse guard.
--
-- Only calls that commit are counted: a call that fails (TS009 included) rolls its
-- increment back with everything else, so a refused call changes nothing. Failing calls
-- are bounded by the API gateway and the roles' statement_timeout instead.
-- LOCK ORDER: book_event takes its usage row after the idempotency key lock (1) and before
-- the event lock (2); cancel_booking takes its own after the exclusive event lock, since its
-- first write must follow that lock (LEDGER ORDER). Each action has its own row and nothing
-- else locks them, so the two orders never meet.
-- ===========================================================================================
create table tessera.rate_limits (
    action text primary key,
    max_calls integer not null,
    window_seconds integer not null default tessera.default_rate_limit_window_seconds(),
    updated_at timestamptz not null default now(),
    constraint rate_limits_action_known check (
        action in (
            'book_event', 'cancel_booking', 'claim_offer', 'create_event', 'set_event_capacity',
            'publish_event', 'cancel_event', 'update_event'
        )
    ),
    constraint rate_limits_max_calls_range check (max_calls between 1 and 1000000),
    constraint rate_limits_window_range check (window_seconds between 1 and 86400)
);
comment on table tessera.rate_limits is
'Per-user call limits of every write an API role can call: max_calls per window_seconds.';
insert into tessera.rate_limits (action, max_calls, window_seconds)
values
('book_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('cancel_booking', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('claim_offer', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('set_event_capacity', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('publish_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('cancel_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('create_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds()),
('update_event', tessera.default_rate_limit_calls(), tessera.default_rate_limit_window_seconds());

create table tessera.rate_limit_usage (
    user_id uuid not null,
    action text not null,
    window_started_at timestamptz not null,
    calls integer not null,
    primary key (user_id, action)
) with (fillfactor = 70);  -- room for HOT updates: the counter changes on every call
comment on table tessera.rate_limit_usage is
'Calls of each user in their current rate limit window; one row per user and action.';

revoke all on tessera.rate_limits, tessera.rate_limit_usage from public, anon, authenticated;
grant select, insert, update, delete on tessera.rate_limits to service_role;
grant select, delete on tessera.rate_limit_usage to service_role;

-- Per-user quotas (the rate-limits migration explains them).
create table tessera.quotas (
    quota text primary key,
    value integer not null,
    updated_at timestamptz not null default now(),
    constraint quotas_quota_known check (quota in ('open_events_per_organizer')),
    constraint quotas_value_range check (value between 1 and 1000000)
);
comment on table tessera.quotas is
'Per-user quotas: open_events_per_organizer, the events not cancelled and not over one organizer may have.';
insert into tessera.quotas (quota, value) values ('open_events_per_organizer', 100);

revoke all on tessera.quotas from public, anon, authenticated;
grant select, insert, update, delete on tessera.quotas to service_role;
