"""Users and tokens for the local stack (development, demos and tests only).

These helpers write ``auth.users`` directly and mint tokens signed with the local stack's JWT
secret (like the keys ``supabase start`` prints). On a real Supabase project users sign up
through supabase-auth instead. Only psycopg and pyjwt are needed: they work without the
``[local]`` extra, against any Supabase-shaped database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

import psycopg

from tessera_client._local import keys

__all__ = [
    "LocalUser",
    "create_local_user",
    "create_local_users",
    "hash_password",
    "local_api_key",
    "local_user_token",
    "verify_password",
]

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
