-- Schema: the tables, functions, types and privileges the booking core promises.
begin;
set local search_path = public, extensions;
select plan(49);

-- ------------------------------------------------------------------------------------------
-- Tables and keys
-- ------------------------------------------------------------------------------------------
select has_schema('tessera', 'internal schema tessera exists');

select has_table('public', 'events', 'table public.events exists');
select has_table('public', 'bookings', 'table public.bookings exists');
select has_table('public', 'ledger', 'table public.ledger exists');
select has_table('tessera', 'seat_blocks', 'table tessera.seat_blocks exists');
select has_table('tessera', 'event_queues', 'table tessera.event_queues exists');

select col_is_pk('public', 'events', 'id', 'events are keyed by id');
select col_is_pk('public', 'bookings', 'id', 'bookings are keyed by id');
select col_is_pk('public', 'ledger', 'seq', 'ledger entries are keyed by their position');
select col_is_pk('tessera', 'seat_blocks', array['event_id', 'block'], 'seat blocks are keyed by event and block');
select col_is_pk('tessera', 'event_queues', 'event_id', 'one queue row per event');

select has_table('tessera', 'waitlist_buckets', 'table tessera.waitlist_buckets exists');

select set_has(
    $$
    select attname::text from pg_catalog.pg_attribute
    where attrelid = 'public.ledger'::regclass and attnum > 0 and not attisdropped
    $$,
    $$values ('seq'), ('event_id'), ('kind'), ('booking_id'), ('status'), ('created_at')$$,
    'ledger entries have seq, event_id, kind, booking_id, status, created_at'
);

-- ------------------------------------------------------------------------------------------
-- The guards behind rules 1, 5 and 6, and the append-only ledger
-- ------------------------------------------------------------------------------------------
select ok(
    exists (
        select from pg_catalog.pg_constraint
        where conrelid = 'tessera.seat_blocks'::regclass and conname = 'seat_blocks_never_oversold'
    ),
    'rule 1: seat blocks carry the never-oversold check'
);
select index_is_unique(
    'public', 'bookings', 'bookings_one_active_per_user_idx',
    'rule 5: a unique index allows one active booking per user per event'
);
select index_is_unique(
    'public', 'bookings', 'bookings_idempotency_key_idx',
    'rule 6: a unique index ties each idempotency key to one booking of its user'
);
select has_trigger(
    'public', 'ledger', 'ledger_is_append_only', 'the ledger refuses updates and deletes'
);
select has_trigger(
    'public', 'ledger', 'ledger_is_append_only_truncate', 'the ledger refuses truncation'
);
select has_trigger(
    'public', 'events', 'events_are_never_deleted', 'events are cancelled, never deleted'
);

-- ------------------------------------------------------------------------------------------
-- RPCs
-- ------------------------------------------------------------------------------------------
select has_function(
    'public', 'create_event',
    array[
        'text', 'integer', 'timestamp with time zone', 'timestamp with time zone', 'text', 'text', 'integer',
        'boolean', 'integer', 'text', 'text', 'interval', 'timestamp with time zone',
        'timestamp with time zone', 'boolean'
    ],
    'create_event(title, capacity, starts_at, ends_at, description, venue, max_seats_per_booking, ...)'
);
select has_function(
    'public', 'book_event', array['uuid', 'integer', 'text'], 'book_event(event_id, seats, idempotency_key)'
);
select has_function('public', 'cancel_booking', array['uuid'], 'cancel_booking(booking_id)');
select has_function('public', 'claim_offer', array['uuid'], 'claim_offer(booking_id)');
select has_function('public', 'expire_offers', array[]::text[], 'expire_offers()');
select has_function('public', 'event_availability', array['uuid'], 'event_availability(event_id)');
select has_function('public', 'waitlist_position', array['uuid'], 'waitlist_position(booking_id)');
select has_function(
    'public', 'set_event_capacity', array['uuid', 'integer'], 'set_event_capacity(event_id, capacity)'
);
select has_function('public', 'publish_event', array['uuid'], 'publish_event(event_id)');
select has_function('public', 'cancel_event', array['uuid'], 'cancel_event(event_id)');
select has_function(
    'public', 'event_changes', array['uuid', 'bigint', 'integer'], 'event_changes(event_id, after_seq, max_rows)'
);

select has_type('public', 'booking_result', 'type public.booking_result exists');
select set_has(
    $$
    select attname::text from pg_catalog.pg_attribute
    where attrelid = 'public.booking_result'::regclass and attnum > 0 and not attisdropped
    $$,
    $$values ('booking_id'), ('event_id'), ('user_id'), ('status'), ('seats'), ('waitlist_position'),
        ('offer_expires_at')$$,
    'booking_result has the fields the issue lists'
);
select set_has(
    $$
    select attname::text from pg_catalog.pg_attribute
    where attrelid = 'public.event_availability_result'::regclass and attnum > 0 and not attisdropped
    $$,
    $$values ('event_id'), ('capacity'), ('seats_confirmed'), ('seats_offered'), ('seats_available'),
        ('waitlist_count'), ('waitlist_seats'), ('last_seq')$$,
    'event_availability_result has the fields the issue lists'
);

-- The RPCs run as their owner with a pinned search_path (house rule 3).
select is_empty(
    $$
    select p.proname from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace
      and p.proname in (
          'create_event', 'book_event', 'cancel_booking', 'claim_offer', 'expire_offers',
          'event_availability', 'waitlist_position', 'set_event_capacity', 'publish_event',
          'cancel_event', 'event_changes'
      )
      and not p.prosecdef
    $$,
    'every RPC is security definer'
);
select is_empty(
    $$
    select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where p.pronamespace in ('public'::regnamespace, 'tessera'::regnamespace)
      and not coalesce('search_path=pg_catalog, pg_temp' = any(p.proconfig), false)
    $$,
    'every function in public and tessera sets search_path = pg_catalog, pg_temp'
);
select is_empty(
    $$
    select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'
      and p.prorettype <> 'pg_catalog.trigger'::regtype
      and pg_catalog.obj_description(p.oid, 'pg_proc') is null
    $$,
    'every public RPC has a comment (PostgREST shows it in its API description)'
);
select is(public.tessera_schema_version(), 7, 'the schema version is that of the latest API-changing delta');

-- Constants have one home: the signature defaults PostgREST shows repeat them, and agree.
select results_eq(
    $$
    select
        pg_catalog.pg_get_function_arg_default('public.create_event'::regproc, 7),
        pg_catalog.pg_get_function_arg_default('public.create_event'::regproc, 12),
        pg_catalog.pg_get_function_arg_default('public.event_changes'::regproc, 3),
        pg_catalog.pg_get_function_arg_default('public.my_changes'::regproc, 2),
        pg_catalog.pg_get_function_arg_default('public.ledger_feed'::regproc, 2)
    $$,
    $$
    select
        tessera.default_max_seats_per_booking()::text,
        pg_catalog.format('''%s''::interval', tessera.default_offer_ttl()),
        tessera.default_page_size()::text,
        tessera.default_page_size()::text,
        tessera.default_page_size()::text
    $$,
    'RPC signature defaults equal the constants in tessera'
);
select results_eq(
    $$
    select pg_catalog.pg_get_constraintdef(c.oid) from pg_catalog.pg_constraint as c
    where c.conrelid = 'public.bookings'::regclass
      and c.conname in ('bookings_idempotency_key_length', 'bookings_seats_range')
    order by c.conname
    $$,
    $$
    values
    (pg_catalog.format(
        'CHECK (((char_length(idempotency_key) >= 1) AND (char_length(idempotency_key) <= %s)))',
        tessera.max_idempotency_key_length()
    )),
    (pg_catalog.format('CHECK (((seats >= 1) AND (seats <= %s)))', tessera.max_party_size()))
    $$,
    'the literal bounds of the bookings checks equal the constants in tessera'
);
select results_eq(
    $$
    select pg_catalog.pg_get_constraintdef(c.oid) from pg_catalog.pg_constraint as c
    where c.conrelid = 'tessera.waitlist_buckets'::regclass
      and c.conname = 'waitlist_buckets_level_known'
    $$,
    $$
    values (pg_catalog.format(
        'CHECK (((level >= 1) AND (level <= %s)))', tessera.waitlist_levels()
    ))
    $$,
    'the waitlist bucket levels checked equal tessera.waitlist_levels()'
);
select ok(
    pg_catalog.pg_get_functiondef('tessera.position_of(public.bookings)'::regprocedure)
    like pg_catalog.format(
        '%%limit %s  -- 2 ^ tessera.waitlist_bucket_bits()%%',
        1 << tessera.waitlist_bucket_bits()
    ),
    'position_of reads at most one level-1 bucket of tickets: 2 ^ tessera.waitlist_bucket_bits()'
);

-- Reads are STABLE so PostgREST may serve them with GET on a read-only transaction.
select results_eq(
    $$
    select p.oid::regproc::text, p.provolatile::text from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace
      and p.proname in ('event_availability', 'waitlist_position', 'event_changes', 'book_event')
    order by p.proname
    $$,
    $$values ('book_event', 'v'), ('event_availability', 's'), ('event_changes', 's'), ('waitlist_position', 's')$$,
    'reads are stable, writes volatile'
);

-- ------------------------------------------------------------------------------------------
-- Privileges and row level security
-- ------------------------------------------------------------------------------------------
select results_eq(
    $$
    select
        p.oid::regproc::text,
        has_function_privilege('anon', p.oid, 'execute'),
        has_function_privilege('authenticated', p.oid, 'execute'),
        has_function_privilege('service_role', p.oid, 'execute')
    from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace
      and p.proname in (
          'create_event', 'book_event', 'cancel_booking', 'claim_offer', 'expire_offers',
          'event_availability', 'waitlist_position', 'set_event_capacity', 'publish_event',
          'cancel_event', 'event_changes'
      )
    order by p.proname
    $$,
    $$values
        ('book_event', false, true, true),
        ('cancel_booking', false, true, true),
        ('cancel_event', false, true, true),
        ('claim_offer', false, true, true),
        ('create_event', false, true, true),
        ('event_availability', true, true, true),
        ('event_changes', true, true, true),
        ('expire_offers', false, false, true),
        ('publish_event', false, true, true),
        ('set_event_capacity', false, true, true),
        ('waitlist_position', false, true, true)$$,
    'each RPC is executable by exactly the API roles meant to call it'
);

select is_empty(
    $$
    select p.oid::regprocedure::text, r.rolname from pg_catalog.pg_proc as p
    cross join (values ('anon'), ('authenticated')) as r (rolname)
    where p.pronamespace = 'tessera'::regnamespace and has_function_privilege(r.rolname, p.oid, 'execute')
    $$,
    'no tessera helper is executable by anon or authenticated'
);

select schema_privs_are('tessera', 'anon', array[]::text[], 'anon cannot use schema tessera');
select schema_privs_are('tessera', 'authenticated', array[]::text[], 'authenticated cannot use schema tessera');

select is_empty(
    $$
    select c.relname from pg_catalog.pg_class as c
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relrowsecurity
    $$,
    'row level security is enabled on every table in public'
);

select results_eq(
    $$
    select c.oid::regclass::text, c.relforcerowsecurity from pg_catalog.pg_class as c
    where c.oid in ('public.events'::regclass, 'public.bookings'::regclass, 'public.ledger'::regclass)
    order by c.relname
    $$,
    $$values ('bookings', true), ('events', true), ('ledger', true)$$,
    'row level security is forced on events, bookings and ledger (it binds their owner too)'
);

select is_empty(
    $$
    select c.relname, r.rolname from pg_catalog.pg_class as c
    cross join (values ('anon'), ('authenticated')) as r (rolname)
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
      and has_table_privilege(r.rolname, c.oid, 'insert, update, delete, truncate')
    $$,
    'anon and authenticated cannot write any table in public: every change goes through a function'
);

select * from finish();
rollback;
