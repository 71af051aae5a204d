-- Tessera realtime: every ledger entry is published.
--
-- Path 1, Supabase Realtime "broadcast from the database": a trigger on the ledger calls
-- realtime.send(), which only inserts a row into realtime.messages; Supabase Realtime fans it
-- out to subscribed clients after commit. Topics:
--   event:<event_id>  public, no personal data: the event's availability after the change
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
-- Entries still reach direct subscribers through public.ledger_feed.
create function tessera.publish_ledger_entry() returns trigger
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    if current_setting('tessera.realtime_broadcast', true) = 'off' then
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
        false
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
