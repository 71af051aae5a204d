-- Shared helpers of the pgTAP files, in schema `tests`. pg_prove runs the files in name
-- order, so this one installs them (committed) before the others use them; each later file
-- runs in a transaction it rolls back, so what it writes through them disappears with it.
--
--   tests.sign_in(user_id)      act as that user, exactly as PostgREST does: role
--                               authenticated and request.jwt.claims, transaction-local
--   tests.sign_in_as_anon()     act as the anon key
--   tests.sign_in_as_service()  act as the service role
--   tests.create_cast(n)        the organizer, a stranger and attendees u1..un
--   tests.fixture               what the calls returned, by label (readable by every role)
--   tests.event_id(label), tests.booking_id(label)
--   tests.make_event(label, capacity, ...)  create_event as the signed-in user, remembered
begin;
set local search_path = public, extensions;
select plan(1);

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

create or replace function tests.act_as(p_role text, p_claims jsonb) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    perform pg_catalog.set_config('role', p_role, true);
    perform pg_catalog.set_config('request.jwt.claims', p_claims::text, true);
end
$$;

create or replace function tests.sign_in(p_user uuid) returns void
language sql
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select tests.act_as('authenticated', jsonb_build_object('sub', p_user, 'role', 'authenticated'))
$$;

create or replace function tests.sign_in_as_anon() returns void
language sql
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select tests.act_as('anon', '{"role": "anon"}')
$$;

create or replace function tests.sign_in_as_service() returns void
language sql
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select tests.act_as('service_role', '{"role": "service_role"}')
$$;

-- The cast every file uses: the organizer 11111111-…, a stranger 22222222-… and attendees
-- u1..uN with ids 00000000-0000-0000-0000-00000000000N, emails <name>@example.test.
create or replace function tests.create_cast(p_attendees integer) returns void
language sql
security invoker
set search_path = pg_catalog, pg_temp
as $$
    insert into auth.users (id, email)
    values
    ('11111111-1111-1111-1111-111111111111', 'organizer@example.test'),
    ('22222222-2222-2222-2222-222222222222', 'stranger@example.test');
    insert into auth.users (id, email)
    select format('00000000-0000-0000-0000-%s', lpad(n::text, 12, '0'))::uuid, format('u%s@example.test', n)
    from generate_series(1, p_attendees) as n
$$;

create table if not exists tests.fixture (
    label text primary key,
    event public.events,
    booking public.booking_result
);
grant select, insert, update on tests.fixture to anon, authenticated, service_role;

create or replace function tests.event_id(p_label text) returns uuid
language sql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select (f.event).id from tests.fixture as f where f.label = p_label
$$;

create or replace function tests.booking_id(p_label text) returns uuid
language sql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select (f.booking).booking_id from tests.fixture as f where f.label = p_label
$$;

-- An event organised by the signed-in user, starting in 30 days, remembered as p_label.
create or replace function tests.make_event(
    p_label text,
    p_capacity integer,
    p_waitlist_policy text default 'strict',
    p_promotion_mode text default 'auto',
    p_publish boolean default true
) returns uuid
language sql
security invoker
set search_path = pg_catalog, pg_temp
as $$
    insert into tests.fixture (label, event)
    values (
        p_label,
        public.create_event(
            title => p_label, capacity => p_capacity, starts_at => now() + interval '30 days',
            waitlist_policy => p_waitlist_policy, promotion_mode => p_promotion_mode,
            publish => p_publish
        )
    )
    returning (event).id
$$;

-- Events whose seat blocks, queue counters or waitlist flag disagree with their bookings:
-- an independent re-derivation of what check_invariants() calls counters_agree.
create or replace function tests.bookkeeping_disagreements() returns setof uuid
language sql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
select q.event_id
from tessera.event_queues as q
cross join lateral (
    select
        count(*) filter (where b.status = 'waitlisted')::integer as waiting_count,
        coalesce(sum(b.seats) filter (where b.status = 'waitlisted'), 0)::integer as waiting_seats,
        count(*) filter (where b.status = 'offered')::integer as offered_count,
        coalesce(sum(b.seats) filter (where b.status = 'offered'), 0)::integer as offered_seats,
        coalesce(sum(b.seats) filter (where b.status in ('confirmed', 'offered')), 0)::integer as held
    from public.bookings as b where b.event_id = q.event_id
) as actual
cross join lateral (
    select
        sum(sb.taken)::integer as taken,
        bool_or(sb.waitlist_open) as any_open,
        bool_and(sb.waitlist_open) as all_open
    from tessera.seat_blocks as sb where sb.event_id = q.event_id
) as blocks
where (q.waiting_count, q.waiting_seats, q.offered_count, q.offered_seats)
    is distinct from (actual.waiting_count, actual.waiting_seats, actual.offered_count, actual.offered_seats)
    or blocks.taken is distinct from actual.held
    or blocks.any_open is distinct from (q.waiting_count > 0)
    or blocks.all_open is distinct from (q.waiting_count > 0)
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

select pass('pgTAP helpers installed in schema tests');
select * from finish();
commit;
