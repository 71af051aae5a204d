-- Tessera rate limits: one function states an action's limit, one raises TS009, one counts a
-- call of a user who already called.
--
-- tessera.enforce_rate_limit (count, then refuse) and tessera.check_rate_limit (a plain read
-- before an exclusive lock) each looked the limit up and built the TS009 error themselves.
-- tessera.count_limited_call is enforce_rate_limit's second step on its own, so that
-- book_event (next migration), which counts a user's first call itself, goes on from there
-- without repeating that insert. Behaviour, errors and their details are unchanged.

-- The limit of p_action: its row in tessera.rate_limits, else the defaults.
create function tessera.rate_limit_of(
    p_action text, out max_calls integer, out window_seconds integer
)
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
    select rl.max_calls, rl.window_seconds into max_calls, window_seconds
    from tessera.rate_limits as rl where rl.action = p_action;
    if not found then
        max_calls := tessera.default_rate_limit_calls();
        window_seconds := tessera.default_rate_limit_window_seconds();
    end if;
end
$$;

-- TS009 for p_action, whose window (of p_seconds, allowing p_max calls) started at
-- p_window_started_at: the detail and hint say when to retry (at least 1 second).
create function tessera.raise_rate_limited(
    p_action text, p_max integer, p_seconds integer, p_window_started_at timestamptz
) returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_retry pg_catalog.int4 := greatest(
        coalesce(
            pg_catalog.ceil(extract(epoch from
                p_window_started_at + pg_catalog.make_interval(secs => p_seconds) - pg_catalog.now()
            ))::pg_catalog.int4,
            1
        ),
        1
    );
begin
    raise exception using
        errcode = 'TS009',
        message = pg_catalog.format('too many %s calls', p_action),
        detail = pg_catalog.format('action=%s limit=%s window_seconds=%s retry_after_seconds=%s',
            p_action, p_max, p_seconds, v_retry),
        hint = pg_catalog.format('Retry in %s seconds.', v_retry);
end
$$;

-- Count one more call of p_action by p_user, who already has a usage row (a call before
-- this one), or raise TS009: a new window when the last one is over, else one more call
-- while the limit allows it.
create function tessera.count_limited_call(p_action text, p_user uuid) returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_limit record := tessera.rate_limit_of(p_action);
    v_window pg_catalog.interval := pg_catalog.make_interval(secs => v_limit.window_seconds);
    v_started pg_catalog.timestamptz;
begin
    insert into tessera.rate_limit_usage as u (user_id, action, window_started_at, calls)
    values (p_user, p_action, now(), 1)
    on conflict (user_id, action) do update set
        window_started_at = case
            when u.window_started_at + v_window <= now() then now() else u.window_started_at
        end,
        calls = case when u.window_started_at + v_window <= now() then 1 else u.calls + 1 end
    where u.window_started_at + v_window <= now() or u.calls < v_limit.max_calls;
    if found then  -- a row was inserted or updated: the call is within the limit
        return;
    end if;

    select u.window_started_at into v_started
    from tessera.rate_limit_usage as u
    where u.user_id = p_user and u.action = p_action;
    perform tessera.raise_rate_limited(
        p_action, v_limit.max_calls, v_limit.window_seconds, v_started
    );
end
$$;

-- Count one call of p_action for the signed-in caller (p_user, when the caller already
-- knows it), or raise TS009 (max_calls >= 1, so a user's first call is always within it). Operators are not limited. Called by book_event (after its
-- idempotency check) and cancel_booking.
create or replace function tessera.enforce_rate_limit(p_action text, p_user uuid default null)
returns void
language plpgsql
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user pg_catalog.uuid := p_user;
begin
    if tessera.is_service() then
        return;
    end if;
    v_user := coalesce(v_user, tessera.current_user_id());
    if v_user is null then
        return;  -- the caller refuses anonymous calls itself
    end if;
    -- The first call of a user opens their window: one insert, no configuration needed.
    insert into tessera.rate_limit_usage as u (user_id, action, window_started_at, calls)
    values (v_user, p_action, now(), 1)
    on conflict (user_id, action) do nothing;
    if not found then
        perform tessera.count_limited_call(p_action, v_user);
    end if;
end
$$;

-- TS009 if the caller's budget for p_action is already spent, read without writing (the
-- count is written after the exclusive lock, by enforce_rate_limit). Operators pass.
create or replace function tessera.check_rate_limit(p_action text, p_user uuid default null)
returns void
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user pg_catalog.uuid := p_user;
    v_started pg_catalog.timestamptz;
    v_calls pg_catalog.int4;
    v_limit record;
begin
    if tessera.is_service() then
        return;
    end if;
    v_user := coalesce(v_user, tessera.current_user_id());
    select u.window_started_at, u.calls into v_started, v_calls
    from tessera.rate_limit_usage as u
    where u.user_id = v_user and u.action = p_action;
    if not found then
        return;  -- no call in any window yet (or no user: the caller refuses that itself)
    end if;
    v_limit := tessera.rate_limit_of(p_action);
    if v_calls < v_limit.max_calls
        or v_started + pg_catalog.make_interval(secs => v_limit.window_seconds) <= now() then
        return;
    end if;
    perform tessera.raise_rate_limited(
        p_action, v_limit.max_calls, v_limit.window_seconds, v_started
    );
end
$$;
