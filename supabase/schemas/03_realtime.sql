-- Tessera realtime: every ledger entry is published.
--
-- Path 1, Supabase Realtime "broadcast from the database": a trigger on the ledger calls
-- realtime.send(), which only inserts a row into realtime.messages; Supabase Realtime fans it
-- out to subscribed clients after commit. Topics:
--   event:<event_id>  private (RLS: whoever may see the event), no personal data: the
--                     event's availability after the change
--   user:<user_id>    private (RLS on realtime.messages, see the access migration): that
--                     user's booking change
--
-- Path 2, direct connections and the local stack: no NOTIFY (a NOTIFY in every booking
-- transaction serialises all commits on the notification queue lock). Instead one poller per
-- process reads public.ledger_feed(after_seq), which only returns entries below the ledger
-- horizon, so a poller never skips an entry that commits late.

-- Broadcasting costs two inserts into realtime.messages per ledger entry. A database with no
-- Supabase Realtime server reading them (the local stack) turns it off with
--   alter database <db> set tessera.realtime_broadcast = 'off';
-- Entries still reach direct subscribers through public.ledger_feed. Only the database's own
-- setting switches publishing off: a session that reads 'off' (which a caller can set with
-- set_config) is checked against the catalog, so no API role can suppress publishing; the
-- common case, publishing on, costs no catalog read. (A caller who sets 'on' where the
-- database says 'off' only adds its own messages to a table nobody reads.)
create function tessera.realtime_broadcast_enabled() returns boolean
language plpgsql stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if pg_catalog.current_setting('tessera.realtime_broadcast', true) is distinct from 'off' then
        return true;
    end if;
    return not exists (
        select from pg_catalog.pg_db_role_setting as s
        cross join lateral pg_catalog.unnest(s.setconfig) as c (setting)
        where s.setdatabase = (
            select d.oid from pg_catalog.pg_database as d where d.datname = pg_catalog.current_database()
        )
          and s.setrole = 0
          and c.setting = 'tessera.realtime_broadcast=off'
    );
end
$$;

-- service_role may write the ledger directly; its inserts publish too.
grant execute on function tessera.realtime_broadcast_enabled() to service_role;

create function tessera.publish_ledger_entry() returns trigger
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if not tessera.realtime_broadcast_enabled() then
        return null;
    end if;
    perform realtime.send(
        jsonb_build_object(
            'event_id', new.event_id,
            'seq', new.seq,
            'kind', new.kind,
            'seats_available', new.seats_available,
            'waitlist_count', new.waitlist_count,
            'status', new.event_status
        ),
        'availability',
        'event:' || new.event_id::text,
        true
    );
    if new.user_id is not null then
        perform realtime.send(
            jsonb_strip_nulls(jsonb_build_object(
                'booking_id', new.booking_id,
                'event_id', new.event_id,
                'seq', new.seq,
                'kind', new.kind,
                'status', new.status,
                'seats', new.seats,
                'waitlist_position', new.waitlist_position,
                'offer_expires_at', new.offer_expires_at
            )),
            'booking',
            'user:' || new.user_id::text,
            true
        );
    end if;
    return null;
end
$$;

create trigger publish_ledger_entry
after insert on public.ledger
for each row execute function tessera.publish_ledger_entry();
