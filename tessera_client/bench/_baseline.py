"""The baseline: the classic booking design, installed in a scratch schema for one run.

One PL/pgSQL function locks the event row (``SELECT … FOR UPDATE``), checks capacity,
inserts the booking and bumps a counter. Every booking of an event therefore queues on that
one row lock: this is the design Tessera's hot-event figures are compared with.

The baseline does strictly less work per booking than Tessera's ``book_event`` (no
idempotency key, rate limit, one-active-booking check, ledger entry or realtime message),
so a ratio against it understates Tessera rather than flatters it.

The schema also holds ``do_nothing()``: called through the same pool and call path, it
measures what the client side alone can sustain (the client ceiling); and ``refused_claim``,
the abuse scenario's attack as pgbench makes it.
"""

from __future__ import annotations

import uuid

from tessera_client.bench._driver import Admin

__all__ = ["SCHEMA", "create_baseline_event", "drop_baseline", "install_baseline"]

SCHEMA = "tessera_bench_baseline"

_INSTALL = f"""
drop schema if exists {SCHEMA} cascade;
create schema {SCHEMA};
comment on schema {SCHEMA} is
    'Scratch schema of tessera bench: the classic booking design. Dropped after the run.';
revoke all on schema {SCHEMA} from public;
grant usage on schema {SCHEMA} to authenticated;

create table {SCHEMA}.events (
    id uuid primary key default gen_random_uuid(),
    capacity integer not null,
    booked integer not null default 0,
    constraint events_never_oversold check (booked between 0 and capacity)
);

create table {SCHEMA}.bookings (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references {SCHEMA}.events (id),
    user_id uuid not null,
    seats integer not null,
    status text not null default 'confirmed',
    created_at timestamptz not null default now()
);
create index bookings_event_id_idx on {SCHEMA}.bookings (event_id);

create function {SCHEMA}.book_event(event_id uuid, seats integer default 1)
returns table (booking_id uuid, status text)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_variable
declare
    v_user uuid := auth.uid();
    v_event {SCHEMA}.events;
    v_booking uuid;
begin
    if v_user is null then
        raise exception using errcode = '42501', message = 'not signed in';
    end if;
    -- The one lock every booking of the event queues on.
    select * into v_event from {SCHEMA}.events as e where e.id = event_id for update;
    if not found then
        raise exception using errcode = 'TS001', message = 'event not found';
    end if;
    if v_event.booked + seats > v_event.capacity then
        raise exception using errcode = 'TS006', message = 'sold out';
    end if;
    insert into {SCHEMA}.bookings (event_id, user_id, seats)
    values (event_id, v_user, seats)
    returning id into v_booking;
    update {SCHEMA}.events as e set booked = e.booked + seats where e.id = event_id;
    return query select v_booking, 'confirmed'::text;
end
$$;

create function {SCHEMA}.do_nothing() returns integer
language sql
stable
set search_path = ''
as $$ select 1 $$;

-- The abuse scenario's attack, one pgbench transaction per call: claim_offer as the caller
-- (security invoker: the caller's role and claims, as a direct call), which must be refused.
-- pgbench ends a client at its first error, so the refusal's SQLSTATE is returned instead of
-- raised (the subtransaction this needs is the attack's only extra cost); anything else,
-- success included, raises and so fails the run.
create function {SCHEMA}.refused_claim(booking_id uuid) returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
    v_state text;
begin
    perform public.claim_offer(booking_id);
    raise exception using errcode = 'P0001', message = 'an attack call was not refused';
exception when others then
    get stacked diagnostics v_state = returned_sqlstate;
    if v_state not in ('TS007', 'TS009') then
        raise;
    end if;
    return v_state;
end
$$;

revoke execute on all functions in schema {SCHEMA} from public;
grant execute on all functions in schema {SCHEMA} to authenticated;
"""


async def install_baseline(admin: Admin) -> None:
    """Create the scratch schema (replacing one a crashed run left behind)."""
    await admin.execute(_INSTALL)


async def drop_baseline(admin: Admin) -> None:
    await admin.execute(f"drop schema if exists {SCHEMA} cascade")


async def create_baseline_event(admin: Admin, capacity: int) -> uuid.UUID:
    event_id: uuid.UUID = await admin.value(
        f"insert into {SCHEMA}.events (capacity) values (%s) returning id",
        (capacity,),
    )
    return event_id
