"""Identities: users by id or token, the service role, anonymous callers, sessions."""

from __future__ import annotations

import uuid

import jwt
import pytest

from tessera_client import (
    AsyncTessera,
    AuthenticationFailed,
    BookingStatus,
    Identity,
    PermissionDenied,
)
from tessera_client._local.users import hash_password, verify_password
from tessera_client.local import create_local_user, local_api_key, local_user_token

from ..standins import SupabaseStandIn
from ..support import TestDatabase
from .conftest import FAST_RETRY, JWT_SECRET, TOMORROW, Backend


def test_password_hashes_round_trip() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("pbkdf2-sha256$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)
    assert not verify_password("correct horse", None)
    assert not verify_password("correct horse", "$2a$10$bcrypt-is-not-this-format")


def test_identities_carry_role_and_claims() -> None:
    user_id = uuid.uuid4()
    user = Identity.user(user_id, email="a@example.test")
    assert (user.role, user.user_id) == ("authenticated", user_id)
    assert user.claims["email"] == "a@example.test"
    assert Identity.anonymous().user_id is None
    assert Identity.service().role == "service_role"

    token = local_user_token(JWT_SECRET, user_id, email="a@example.test")
    verified = Identity.from_jwt(token, JWT_SECRET)
    assert (verified.role, verified.user_id, verified.token) == ("authenticated", user_id, token)
    with pytest.raises(jwt.InvalidSignatureError):
        Identity.from_jwt(token, "another secret, long enough for HS256 keys")
    assert Identity.from_jwt(local_api_key(JWT_SECRET, "service_role")).role == "service_role"
    with pytest.raises(ValueError, match="not one of"):
        Identity.from_jwt(jwt.encode({"role": "postgres"}, JWT_SECRET, algorithm="HS256"))


async def test_direct_tokens_are_verified_with_the_secret(
    db: TestDatabase, direct: AsyncTessera
) -> None:
    alice = create_local_user(db.url(), "alice@example.test")
    token = local_user_token(JWT_SECRET, alice.id, email=alice.email)
    as_alice = direct.as_user(token)
    assert as_alice.identity.user_id == alice.id
    event = await as_alice.create_event("By token", capacity=1, starts_at=TOMORROW)
    assert event.organizer_id == alice.id

    expired = local_user_token(JWT_SECRET, alice.id, ttl=-60)
    with pytest.raises(AuthenticationFailed):
        direct.as_user(expired)
    with pytest.raises(AuthenticationFailed):
        direct.as_user("not-a-jwt")


async def test_direct_without_a_secret_trusts_token_claims(db: TestDatabase) -> None:
    alice = create_local_user(db.url())
    unchecked = local_user_token("whatever signed this, the app checked it" * 2, alice.id)
    async with AsyncTessera.connect(db.url("authenticator"), retry=FAST_RETRY) as client:
        event = await client.as_user(unchecked).create_event("Trusted", 1, TOMORROW)
    assert event.organizer_id == alice.id


async def test_the_postgres_login_works_too(db: TestDatabase) -> None:
    alice = create_local_user(db.url())
    async with AsyncTessera.connect(db.url("postgres"), retry=FAST_RETRY) as client:
        event = await client.as_user(alice.id).create_event("As postgres", 1, TOMORROW)
        with pytest.raises(PermissionDenied):  # anonymous, even though postgres could do more
            await client.create_event("Nobody", 1, TOMORROW)
    assert event.organizer_id == alice.id


async def test_direct_transport_has_no_password_sign_in(direct: AsyncTessera) -> None:
    with pytest.raises(NotImplementedError, match="Supabase transport"):
        await direct.sign_in("alice@example.test", "secret")


async def test_user_ids_are_uuids_and_strings_are_always_tokens(backend: Backend) -> None:
    alice = create_local_user(backend.db.url())
    by_uuid = backend.client.as_user(alice.id)
    assert by_uuid.identity.user_id == alice.id
    event = await by_uuid.create_event("Trusted id", 1, TOMORROW)
    assert event.organizer_id == alice.id
    # The id in string form is not a token: refused, whether or not a secret is configured.
    for text in (str(alice.id), alice.id.hex, ""):
        with pytest.raises(AuthenticationFailed):
            backend.client.as_user(text)
    with pytest.raises(TypeError):
        backend.client.as_user(alice.id.int)  # type: ignore[arg-type]


async def test_a_bearer_header_holding_someones_id_does_not_act_as_them(
    db: TestDatabase, direct: AsyncTessera
) -> None:
    # The README's web-backend pattern, attacked: the header carries the victim's user id
    # instead of a token. Before the fix any UUID-shaped string was a trusted user id.
    victim = create_local_user(db.url(), "victim@example.test")
    event = await direct.as_user(victim.id).create_event("Victim's", 5, TOMORROW)
    await direct.as_user(victim.id).book(event.id)
    authorization = f"Bearer {victim.id}"
    with pytest.raises(AuthenticationFailed):
        await direct.as_user(authorization.removeprefix("Bearer ")).my_bookings()
    # Without a configured secret too: a string is a token or nothing.
    async with AsyncTessera.connect(db.url("authenticator"), retry=FAST_RETRY) as unverified:
        with pytest.raises(AuthenticationFailed):
            unverified.as_user(str(victim.id))
    # A real token of the victim still works.
    token = local_user_token(JWT_SECRET, victim.id)
    assert len(await direct.as_user(token).my_bookings()) == 1


async def test_supabase_verifies_tokens_when_it_has_the_secret(standin: SupabaseStandIn) -> None:
    client = AsyncTessera.from_supabase(standin.url, standin.anon_key, jwt_secret=JWT_SECRET)
    forged = local_user_token("not-the-secret-" + "x" * 32, uuid.uuid4())
    with pytest.raises(AuthenticationFailed):
        client.as_user(forged)
    with pytest.raises(AuthenticationFailed):
        client.as_user(str(uuid.uuid4()))
    await client.close()


async def test_supabase_identities_need_credentials(standin: SupabaseStandIn) -> None:
    bare = AsyncTessera.from_supabase(standin.url, standin.anon_key)
    with pytest.raises(ValueError, match="jwt_secret"):
        bare.as_user(uuid.uuid4())
    with pytest.raises(ValueError, match="service_key"):
        bare.as_service()
    # The service key as the API key: the client acts as the service role by default.
    assert (
        AsyncTessera.from_supabase(standin.url, standin.service_key).identity.role == "service_role"
    )
    await bare.close()


async def test_supabase_access_token_and_session_refresh(
    db: TestDatabase, standin: SupabaseStandIn
) -> None:
    alice = create_local_user(db.url(), "alice@example.test", "alice-password")
    token = local_user_token(JWT_SECRET, alice.id, email=alice.email)
    async with AsyncTessera.from_supabase(
        standin.url, standin.anon_key, access_token=token
    ) as as_alice:
        assert as_alice.identity.user_id == alice.id
        event = await as_alice.create_event("From a session", capacity=3, starts_at=TOMORROW)

    # Tokens that expire within supabase-auth's margin are refreshed before every call.
    standin.access_token_ttl = 5
    async with AsyncTessera.from_supabase(standin.url, standin.anon_key) as client:
        session = await client.sign_in("alice@example.test", "alice-password")
        with standin.recording() as requests:
            booking = await session.book(event.id)
            assert (await session.my_bookings())[0].status is BookingStatus.CONFIRMED
    refreshes = [r for r in requests if r.query.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 2
    assert booking.user_id == alice.id


async def test_two_sessions_at_once(db: TestDatabase, standin: SupabaseStandIn) -> None:
    for name in ("alice", "bob"):
        create_local_user(db.url(), f"{name}@example.test", f"{name}-password")
    async with AsyncTessera.from_supabase(standin.url, standin.anon_key) as client:
        alice = await client.sign_in("alice@example.test", "alice-password")
        bob = await client.sign_in("bob@example.test", "bob-password")
        event = await alice.create_event("Two users", capacity=3, starts_at=TOMORROW)
        booking = await bob.book(event.id)
        assert booking.user_id == bob.identity.user_id != alice.identity.user_id
        assert await alice.my_bookings() == []


async def test_supabase_requests_are_wired_like_supabase_py(
    standin_backend: Backend,
) -> None:
    backend = standin_backend
    assert backend.standin is not None
    alice = await backend.user()
    with backend.standin.recording() as requests:
        event = await alice.create_event("Wiring", capacity=3, starts_at=TOMORROW)
        await backend.client.availability(event.id)
        await backend.service().list_events(limit=1)
    # The client's first call also checks the schema version, once, as anon.
    (version,) = [r for r in requests if r.path == "/rest/v1/rpc/tessera_schema_version"]
    assert version.headers["authorization"] == f"Bearer {backend.standin.anon_key}"
    create, availability, events = [r for r in requests if r is not version]
    assert (create.method, create.path) == ("POST", "/rest/v1/rpc/create_event")
    assert create.headers["apikey"] == backend.standin.anon_key
    assert create.headers["authorization"] == f"Bearer {alice.identity.token}"
    assert "supabase-py" in create.headers["x-client-info"]
    assert create.body["title"] == "Wiring" and "venue" not in create.body  # None: SQL default
    assert (availability.method, availability.query) == ("GET", {"event_id": str(event.id)})
    assert availability.headers["authorization"] == f"Bearer {backend.standin.anon_key}"
    assert events.path == "/rest/v1/events"
    assert events.headers["apikey"] == backend.standin.service_key
    assert events.query["order"] == "starts_at.asc,id.asc"
    assert events.query["limit"] == "1"
