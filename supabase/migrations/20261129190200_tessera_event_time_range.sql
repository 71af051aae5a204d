-- Tessera event times within years 1 to 9999.
--
-- create_event and update_event refused infinite times but accepted any finite one, such as
-- sales_open_at => '4713-01-01 BC'. PostgreSQL stores it; most clients cannot represent it
-- (Python's datetime stops at year 1, JavaScript's Date at ±275,760), so the event could be
-- written and then not be read back. Every time of an event a caller may set now lies
-- between 0001-01-02 and 9999-12-30 (a day inside the years 1..9999 in every time zone), for
-- every writer (the RPCs, and service_role writing the table directly): 22023 otherwise,
-- and nothing is written.

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

create trigger event_times_in_range
before insert or update of starts_at, ends_at, sales_open_at, sales_close_at on public.events
for each row execute function tessera.event_times_in_range();
