"""Errors: every SQLSTATE the migrations raise has a class, and each class arrives intact
over each transport, whether raised by a booking rule or by PostgreSQL itself."""

from __future__ import annotations

import pickle
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tessera_client
from tessera_client import (
    AlreadyBooked,
    AsyncTessera,
    AuthenticationFailed,
    BookingNotFound,
    CapacityConflict,
    EventNotFound,
    InvalidParameter,
    InvalidSeats,
    InvalidTransition,
    PermissionDenied,
    RateLimited,
    SalesClosed,
    SoldOut,
    TesseraError,
    TransportError,
)
from tessera_client import _errors as errors_module
from tessera_client._errors import error_class_for, error_for

from .conftest import NO_RETRY, TOMORROW, Backend

MIGRATIONS = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
ERRCODE = re.compile(r"errcode\s*=\s*'([0-9A-Z]{5})'", re.IGNORECASE)


def raised_sqlstates() -> set[str]:
    return {
        code.upper()
        for path in sorted(MIGRATIONS.glob("*.sql"))
        for code in ERRCODE.findall(path.read_text())
    }


def test_every_sqlstate_raised_in_the_migrations_has_a_class() -> None:
    codes = raised_sqlstates()
    assert {"TS001", "TS006", "22023", "42501"} <= codes  # the parser finds them
    missing = sorted(code for code in codes if error_class_for(code) is TesseraError)
    assert not missing, f"SQLSTATEs without an error class in tessera_client._errors: {missing}"


def test_documented_codes_map_to_their_classes() -> None:
    expected = {
        "TS001": "EventNotFound",
        "TS002": "BookingNotFound",
        "TS003": "SalesClosed",
        "TS004": "InvalidSeats",
        "TS005": "AlreadyBooked",
        "TS006": "SoldOut",
        "TS007": "InvalidTransition",
        "TS008": "CapacityConflict",
        "TS009": "RateLimited",
        "22023": "InvalidParameter",
        "42501": "PermissionDenied",
        "40001": "TransactionConflict",
        "40P01": "TransactionConflict",
        "XX000": "InternalError",
        "54000": "LimitExceeded",
        "08006": "Unavailable",
        "57P01": "Unavailable",
        "28P01": "AuthenticationFailed",
        "PGRST301": "AuthenticationFailed",
        "PGRST003": "Unavailable",
        "22P02": "InvalidParameter",
        "99999": "TesseraError",
    }
    assert {code: error_class_for(code).__name__ for code in expected} == expected


def test_the_module_docstring_draws_every_class() -> None:
    doc = errors_module.__doc__ or ""
    classes = [
        obj
        for obj in vars(errors_module).values()
        if isinstance(obj, type) and issubclass(obj, TesseraError)
    ]
    assert len(classes) >= 18
    for cls in classes:
        assert re.search(rf"\b{cls.__name__}\b", doc), f"{cls.__name__} missing from the tree"
        assert cls.__doc__, f"{cls.__name__} needs a docstring (its default message)"
        assert getattr(tessera_client, cls.__name__) is cls  # re-exported


def test_fields_and_default_messages() -> None:
    error = error_for("TS006", "sold out", "event_id=1", "try later")
    assert isinstance(error, SoldOut)
    assert (error.code, error.message, error.detail, error.hint) == (
        "TS006",
        "sold out",
        "event_id=1",
        "try later",
    )
    assert str(error) == "sold out [TS006]"
    assert SoldOut().message == "The event is sold out and its waitlist is closed or full."
    assert SoldOut().code == "TS006"
    assert isinstance(tessera_client.OutcomeUnknown(), TransportError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is SoldOut
    assert (copy.code, copy.detail, copy.hint) == ("TS006", "event_id=1", "try later")


# -- every class, raised by the rules, over each transport ---------------------------------


async def test_rule_errors_arrive_as_their_classes(backend: Backend) -> None:
    alice, bob = await backend.user(), await backend.user()
    event = await alice.create_event("Tiny", capacity=1, starts_at=TOMORROW, waitlist_enabled=False)

    with pytest.raises(EventNotFound) as event_missing:
        await bob.book(uuid.uuid4())
    assert event_missing.value.detail and event_missing.value.detail.startswith("event_id=")
    with pytest.raises(BookingNotFound):
        await bob.cancel(uuid.uuid4())
    with pytest.raises(InvalidSeats):
        await bob.book(event.id, seats=11)
    booking = await bob.book(event.id)
    with pytest.raises(AlreadyBooked) as already:
        await bob.book(event.id)
    assert already.value.hint == "Cancel the existing booking first."
    with pytest.raises(SoldOut):
        await (await backend.user()).book(event.id)
    busy = await alice.create_event("Busy", capacity=2, starts_at=TOMORROW)
    await bob.book(busy.id, seats=2)
    with pytest.raises(CapacityConflict) as conflict:
        await alice.set_capacity(busy.id, 1)
    assert conflict.value.hint and "at least 2" in conflict.value.hint
    await bob.cancel(booking.id)
    with pytest.raises(InvalidTransition):
        await bob.cancel(booking.id)
    with pytest.raises(InvalidTransition):
        await bob.claim_offer(booking.id)

    later = await alice.create_event(
        "Not yet",
        capacity=5,
        starts_at=TOMORROW,
        sales_open_at=datetime.now(UTC) + timedelta(hours=1),
    )
    with pytest.raises(SalesClosed) as closed:
        await bob.book(later.id)
    assert closed.value.hint and closed.value.hint.startswith("Sales open at")

    with pytest.raises(InvalidParameter) as invalid:
        await alice.create_event("Empty", capacity=0, starts_at=TOMORROW)
    assert invalid.value.code == "22023"
    with pytest.raises(InvalidParameter):
        await alice.changes(event.id, limit=0)

    with pytest.raises(PermissionDenied):
        await backend.client.create_event("Anonymous", capacity=1, starts_at=TOMORROW)
    with pytest.raises(PermissionDenied):
        await bob.set_capacity(event.id, 5)
    with pytest.raises(PermissionDenied):
        await bob.attendees(event.id)
    with pytest.raises(PermissionDenied):
        await alice.expire_offers()
    with pytest.raises(PermissionDenied):
        await backend.client.my_bookings()


async def test_rate_limit(backend: Backend) -> None:
    db = backend.db
    db.sql("update tessera.rate_limits set max_calls = 1 where action = 'book_event'")
    alice, bob = await backend.user(), await backend.user()
    first = await alice.create_event("One", capacity=5, starts_at=TOMORROW)
    second = await alice.create_event("Two", capacity=5, starts_at=TOMORROW)
    await bob.book(first.id)
    with pytest.raises(RateLimited) as limited:
        await bob.book(second.id)
    assert limited.value.code == "TS009"
    assert limited.value.hint and limited.value.hint.startswith("Retry in")
    # The wait, as a number, from the documented detail: the window is 60 s by default.
    assert limited.value.retry_after is not None and 1 <= limited.value.retry_after <= 60
    assert limited.value.hint == f"Retry in {limited.value.retry_after} seconds."


def test_retry_after_reads_the_detail_and_is_none_without_it() -> None:
    detail = "action=book_event limit=30 window_seconds=60 retry_after_seconds=42"
    assert RateLimited(detail=detail).retry_after == 42
    assert RateLimited().retry_after is None
    assert RateLimited(detail="action=book_event").retry_after is None


async def test_authentication_errors(backend: Backend) -> None:
    from tessera_client.local import local_user_token

    forged = local_user_token("not-the-secret-" + "x" * 32, uuid.uuid4())
    with pytest.raises(AuthenticationFailed):
        # Direct: rejected when verified locally. Supabase: rejected by the API.
        await backend.client.as_user(forged).my_bookings()
    if backend.name == "supabase":
        with pytest.raises(AuthenticationFailed) as bad_password:
            await backend.client.sign_in("nobody@example.test", "wrong")
        assert bad_password.value.code == "28P01"


# -- every SQLSTATE the migrations raise, injected into a real call ----------------------


@pytest.mark.parametrize("code", sorted(raised_sqlstates()))
async def test_each_sqlstate_keeps_its_class_and_fields(backend: Backend, code: str) -> None:
    """A trigger raises ``code`` inside book_event, so the error comes from PostgreSQL (and,
    over Supabase, through PostgREST's status and body) exactly as a rule's would."""
    db = backend.db
    alice, bob = await backend.user(), await backend.user()
    event = await alice.create_event("Injected", capacity=5, starts_at=TOMORROW)
    db.sql(
        f"""
        create function public.test_raise() returns trigger language plpgsql as $$
        begin
            raise exception using errcode = '{code}', message = 'injected {code}',
                detail = 'some detail', hint = 'some hint';
        end $$;
        create trigger test_raise before insert on public.bookings
        for each row execute function public.test_raise();
        """
    )
    no_retry = AsyncTessera(bob.transport, bob.identity, retry=NO_RETRY, owns_transport=False)
    with pytest.raises(TesseraError) as raised:
        await no_retry.book(event.id)
    error = raised.value
    assert type(error) is error_class_for(code)
    assert (error.code, error.message, error.detail, error.hint) == (
        code,
        f"injected {code}",
        "some detail",
        "some hint",
    )


def test_timeouts_have_their_own_class() -> None:
    from tessera_client import TimedOut
    from tessera_client._errors import error_class_for

    assert error_class_for("57014") is TimedOut  # statement_timeout
    assert error_class_for("55P03") is TimedOut  # lock_timeout
