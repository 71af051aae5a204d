"""JWTs signed with the local stack's secret, shaped like Supabase's API keys and sessions."""

from __future__ import annotations

import uuid
from typing import Any

import jwt

from tessera_client._identity import Identity, sign_token, verify_token

# Fixed times make the keys stable: the same secret gives the same keys on every `status`.
KEYS_ISSUED_AT = 1704067200  # 2024-01-01T00:00:00Z
KEYS_EXPIRE_AT = KEYS_ISSUED_AT + 20 * 365 * 24 * 3600


def api_key(secret: str, role: str) -> str:
    """An ``anon`` or ``service_role`` key, as Supabase issues them (long-lived, no ``sub``).

    The key depends only on the secret and the role, like a project's keys on hosted Supabase.
    """
    claims = {"iss": "supabase-demo", "role": role, "iat": KEYS_ISSUED_AT, "exp": KEYS_EXPIRE_AT}
    return jwt.encode(claims, secret, algorithm="HS256")


def user_token(
    secret: str, user_id: uuid.UUID | str, email: str | None = None, ttl: int = 3600
) -> str:
    """An access token for a signed-in user (role ``authenticated``), like supabase-auth's."""
    return sign_token(secret, Identity.user(user_id, email=email).claims, ttl=ttl)


def decode(secret: str, token: str) -> dict[str, Any]:
    """Verify a token signed with ``secret`` and return its claims."""
    return verify_token(secret, token)
