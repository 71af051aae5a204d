-- Tessera local stack bootstrap: makes a plain PostgreSQL look like a hosted Supabase
-- database, so that supabase/migrations/ run unchanged on both.
--
-- NOT a migration. Never apply this to a real Supabase project: there, Supabase itself
-- provides every object below. Run it as the cluster superuser (supabase_admin) in each
-- database the local stack creates. It is idempotent: running it twice changes nothing.
--
-- Definitions follow supabase/postgres (roles, grants), supabase/auth (auth.* helpers) and
-- supabase/realtime (realtime.messages, realtime.send, realtime.topic), trimmed to what
-- Tessera's migrations and tests use.

-- ===========================================================================================
-- Roles (cluster-wide). Local-only password: 'postgres', like `supabase start`.
-- ===========================================================================================
do $roles$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'postgres') then
        create role postgres;
    end if;
    -- As on hosted Supabase: the role migrations run as is NOT a superuser.
    alter role postgres with login nosuperuser createdb createrole replication bypassrls
        password 'postgres';

    if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'authenticator') then
        create role authenticator;
    end if;
    alter role authenticator with login noinherit password 'postgres';

    grant anon, authenticated, service_role to authenticator;
    grant anon, authenticated, service_role to postgres;
    -- postgres may switch to authenticator too (Supabase grants it so SQL editors test RLS).
    grant authenticator to postgres;
end
$roles$;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

-- ===========================================================================================
-- Database-level grants and the public schema
-- ===========================================================================================
do $db$
begin
    execute format('grant all on database %I to postgres', current_database());
    execute format('alter database %I owner to postgres', current_database());
end
$db$;

alter schema public owner to postgres;
grant usage on schema public to anon, authenticated, service_role;
grant all on schema public to postgres;

-- Supabase's default privileges: objects postgres creates in public are granted to the API
-- roles; Tessera's first migration narrows this for functions.
alter default privileges for role postgres in schema public
grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
grant all on sequences to anon, authenticated, service_role;

-- ===========================================================================================
-- extensions schema
-- ===========================================================================================
create schema if not exists extensions;
alter schema extensions owner to postgres;
grant usage on schema extensions to anon, authenticated, service_role;

-- ===========================================================================================
-- auth schema: users and the JWT helpers PostgREST requests rely on
-- ===========================================================================================
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role, postgres;

create table if not exists auth.users (
    instance_id uuid,
    id uuid primary key default gen_random_uuid(),
    aud varchar(255) default 'authenticated',
    role varchar(255) default 'authenticated',
    email varchar(255) unique,
    encrypted_password varchar(255),
    email_confirmed_at timestamptz default now(),
    raw_app_meta_data jsonb default '{"provider": "email", "providers": ["email"]}'::jsonb,
    raw_user_meta_data jsonb default '{}'::jsonb,
    is_anonymous boolean not null default false,
    created_at timestamptz default now(),
    updated_at timestamptz default now()
);
grant select, insert, update, delete, references, trigger on auth.users to postgres;
grant all on auth.users to service_role;

create or replace function auth.uid() returns uuid
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;

create or replace function auth.email() returns text
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.email', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
    )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
to anon, authenticated, service_role, postgres;

-- ===========================================================================================
-- realtime schema: broadcast-from-database messages, authorised by RLS
-- ===========================================================================================
create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role, postgres;

-- As on hosted Supabase: partitioned by day on inserted_at, primary key (id, inserted_at).
-- There the Realtime server creates the coming days' partitions; here the bootstrap creates
-- them from yesterday to a week ahead (a message for a day without a partition is refused,
-- and realtime.send turns that into a warning, as on Supabase).
create table if not exists realtime.messages (
    id uuid not null default gen_random_uuid(),
    topic text not null,
    extension text not null,
    payload jsonb,
    event text,
    private boolean default false,
    updated_at timestamp not null default now(),
    inserted_at timestamp not null default now(),
    primary key (id, inserted_at)
) partition by range (inserted_at);
do $partitions$
declare
    v_day date;
begin
    for v_day in
        select d::date from generate_series(current_date - 1, current_date + 7, interval '1 day') as d
    loop
        execute format(
            'create table if not exists realtime.%I partition of realtime.messages '
            'for values from (%L) to (%L)',
            'messages_' || to_char(v_day, 'YYYY_MM_DD'), v_day, v_day + 1
        );
    end loop;
end
$partitions$;
-- As on Supabase: the table belongs to supabase_realtime_admin, and postgres, a member,
-- may create the RLS policies that authorise private channels.
do $realtime_admin$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'supabase_realtime_admin') then
        create role supabase_realtime_admin nologin noinherit;
    end if;
    grant supabase_realtime_admin to postgres;
end
$realtime_admin$;
alter table realtime.messages owner to supabase_realtime_admin;
create index if not exists messages_inserted_at_topic_index
on realtime.messages (inserted_at desc, topic);
alter table realtime.messages enable row level security;
grant select, insert, update, delete on realtime.messages to postgres;
grant select, insert on realtime.messages to anon, authenticated, service_role;

-- The topic a Realtime client is joining, set by the Realtime server while it checks the
-- client's right to read a private channel.
create or replace function realtime.topic() returns text
language sql stable
as $$
    select nullif(current_setting('realtime.topic', true), '')::text
$$;

-- As on hosted Supabase (supabase/realtime's tenant migrations): the message gets an id in
-- its payload, realtime.topic is set for the transaction (RLS policies read it), and the
-- insert runs in its own subtransaction, so a failed broadcast only warns and never fails
-- the transaction that sent it. The subtransaction is part of what every broadcast costs.
create or replace function realtime.send(
    payload jsonb, event text, topic text, private boolean default true
) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    generated_id uuid;
    final_payload jsonb;
begin
    begin
        generated_id := gen_random_uuid();
        if payload ? 'id' then
            final_payload := payload;
        else
            final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
        end if;
        perform set_config('realtime.topic', topic, true);
        insert into realtime.messages (id, payload, event, topic, private, extension)
        values (generated_id, final_payload, event, topic, private, 'broadcast');
    exception when others then
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end;
end
$$;

grant execute on function realtime.topic() to anon, authenticated, service_role, postgres;
grant execute on function realtime.send(jsonb, text, text, boolean)
to postgres, service_role;

do $publication$
begin
    if not exists (select from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
        create publication supabase_realtime;
    end if;
end
$publication$;

-- ===========================================================================================
-- pg_cron, where the server has it preloaded for this database (as Supabase does)
-- ===========================================================================================
do $cron$
begin
    if current_setting('shared_preload_libraries', true) like '%pg_cron%'
        and current_setting('cron.database_name', true) = current_database()
        and exists (select from pg_catalog.pg_available_extensions where name = 'pg_cron')
    then
        create extension if not exists pg_cron;
        grant usage on schema cron to postgres;
        grant all on all tables in schema cron to postgres;
    end if;
end
$cron$;
