"""Who a call acts as, and helpers for identities on the local stack.

An :class:`Identity` is what PostgREST derives from a request's JWT: an API role (``anon``,
``authenticated`` or ``service_role``), the JWT claims (``auth.uid()`` reads ``sub``) and,
for HTTP transports, the bearer token itself.

The local helpers create users in ``auth.users`` and mint tokens signed with the local
stack's JWT secret (like the keys ``supabase start`` prints). They are for development and
tests only: on a real Supabase project users sign up through supabase-auth.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
import psycopg

from tessera_client._local import keys

__all__ = [
    "API_ROLES",
    "Identity",
    "LocalUser",
    "create_local_user",
    "hash_password",
    "local_api_key",
    "local_user_token",
    "verify_password",
]

ApiRole = Literal["anon", "authenticated", "service_role"]
API_ROLES: tuple[ApiRole, ...] = ("anon", "authenticated", "service_role")


@dataclass(frozen=True, slots=True)
class Identity:
    """The role, claims and (optionally) bearer token a call is made with.

    Attributes:
        role: The API role PostgreSQL switches to for the call.
        claims: What ``request.jwt.claims`` holds for the call.
        token: The bearer token, when there is one (required by HTTP transports, except for
            ``anon`` and ``service_role``, which use the transport's API keys).
        refresh: For signed-in sessions: returns a current access token, refreshing it
            when it is about to expire.
    """

    role: ApiRole
    claims: Mapping[str, Any] = field(default_factory=dict, hash=False)
    token: str | None = None
    refresh: Callable[[], Awaitable[str]] | None = field(default=None, compare=False)

    @property
    def user_id(self) -> uuid.UUID | None:
        """The ``sub`` claim as a UUID, or ``None`` when it is missing or not a UUID."""
        sub = self.claims.get("sub")
        try:
            return uuid.UUID(str(sub)) if sub is not None else None
        except ValueError:
            return None

    @classmethod
    def anonymous(cls) -> Identity:
        """No user: role ``anon``."""
        return cls(role="anon", claims={"role": "anon"})

    @classmethod
    def service(cls) -> Identity:
        """An operator: role ``service_role``, which bypasses row level security."""
        return cls(role="service_role", claims={"role": "service_role"})

    @classmethod
    def user(
        cls, user_id: uuid.UUID | str, *, email: str | None = None, token: str | None = None
    ) -> Identity:
        """A signed-in user (role ``authenticated``), by id."""
        claims: dict[str, Any] = {
            "sub": str(uuid.UUID(str(user_id))),
            "role": "authenticated",
            "aud": "authenticated",
        }
        if email is not None:
            claims["email"] = email
        return cls(role="authenticated", claims=claims, token=token)

    @classmethod
    def from_jwt(cls, token: str, secret: str | None = None) -> Identity:
        """The identity a JWT carries, verified with ``secret`` (HS256) when one is given.

        Without a secret the claims are read as they are: do that only with tokens that
        something you trust has verified already.

        Raises:
            jwt.InvalidTokenError: The token is malformed, expired or wrongly signed.
            ValueError: The token's role is not one of the API roles.
        """
        if secret is not None:
            claims = keys.decode(secret, token)
        else:
            claims = jwt.decode(token, options={"verify_signature": False})
        role = claims.get("role", "anon")
        if role not in API_ROLES:
            raise ValueError(f"token role {role!r} is not one of {', '.join(API_ROLES)}")
        return cls(role=role, claims=claims, token=token)


# -- local stack ----------------------------------------------------------------------------

_HASH_SCHEME = "pbkdf2-sha256"
_HASH_ITERATIONS = 100_000


def hash_password(password: str) -> str:
    """Hash a password for ``auth.users.encrypted_password`` on the local stack.

    The format is ``pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`` (stdlib only: the
    local stack has no pgcrypto). The supabase-auth stand-in used by the tests checks it;
    supabase-auth itself would not.
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _HASH_ITERATIONS)
    return f"{_HASH_SCHEME}${_HASH_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_password(password: str, hashed: str | None) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password`."""
    if not hashed:
        return False
    try:
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != _HASH_SCHEME:
            return False
        candidate = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), bytes.fromhex(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


@dataclass(frozen=True, slots=True)
class LocalUser:
    """A user created in the local stack's ``auth.users``."""

    id: uuid.UUID
    email: str


def create_local_user(
    dsn: str,
    email: str | None = None,
    password: str | None = None,
    *,
    user_id: uuid.UUID | None = None,
) -> LocalUser:
    """Create a user in ``auth.users`` of the local stack (development and tests only).

    Args:
        dsn: A connection string for a role that may write ``auth.users`` (``postgres``).
        email: The user's email; a unique ``<id>@example.test`` when omitted.
        password: Stored with :func:`hash_password`, for password sign-in through the
            supabase-auth stand-in. Without one the user can only act through tokens.
        user_id: The id to use; a random UUID when omitted.

    Returns:
        The new user.

    Example:
        >>> alice = create_local_user(stack.db_url, "alice@example.test", "s3cret")
        >>> token = local_user_token(stack.jwt_secret(), alice.id, email=alice.email)
    """
    new_id = user_id or uuid.uuid4()
    address = email or f"{new_id.hex[:12]}@example.test"
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(
            "insert into auth.users (id, email, encrypted_password) values (%s, %s, %s)",
            (new_id, address, hash_password(password) if password is not None else None),
        )
    return LocalUser(id=new_id, email=address)


def create_local_users(dsn: str, count: int, *, prefix: str = "user") -> list[uuid.UUID]:
    """Create ``count`` users in ``auth.users`` in one statement (demos, benchmarks, tests).

    Emails are ``<prefix>-<12 hex digits of the id>@example.test``; no passwords.

    Example:
        >>> crowd = create_local_users(stack.db_url, 200, prefix="demo")
    """
    ids = [uuid.uuid4() for _ in range(count)]
    if ids:
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute(
                "insert into auth.users (id, email)"
                " select id, %s || '-' || left(replace(id::text, '-', ''), 12) || '@example.test'"
                " from unnest(%s::uuid[]) as id",
                (prefix, ids),
            )
    return ids


def local_user_token(
    jwt_secret: str, user_id: uuid.UUID | str, *, email: str | None = None, ttl: int = 3600
) -> str:
    """An access token for a user, signed with the local JWT secret like supabase-auth's.

    Example:
        >>> token = local_user_token(stack.jwt_secret(), alice.id)
        >>> alice_client = tessera.as_user(token)
    """
    return keys.user_token(jwt_secret, user_id, email=email, ttl=ttl)


def local_api_key(jwt_secret: str, role: Literal["anon", "service_role"] = "anon") -> str:
    """An ``anon`` or ``service_role`` API key signed with the local JWT secret."""
    return keys.api_key(jwt_secret, role)
