-- Tessera private event channels (security review, round 2).
--
-- `event:<id>` broadcasts used to go out on public Realtime channels. Realtime Authorization
-- (RLS on realtime.messages) never applies to public channels: any holder of the anon key
-- could send forged broadcasts to every subscriber of an event, and join the topic of a
-- draft whose id they knew. Now every Tessera topic is private:
--   * the database publishes `event:<id>` with private => true, so only clients that join it
--     as a private channel receive it, and Realtime lets them join only when the policy
--     "Anyone can receive broadcasts on visible event topics" lets them read the event (an
--     event that was ever published, or their own);
--   * no policy lets anon or authenticated INSERT into realtime.messages, so on a private
--     channel nobody but the database sends.

create or replace function tessera.publish_ledger_entry() returns trigger
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

create or replace function public.tessera_schema_version() returns integer
language sql stable security invoker
set search_path = pg_catalog, pg_temp
as $$ select 4 $$;
