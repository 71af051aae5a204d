"""JWTs signed with the local stack's secret, shaped like Supabase's API keys and sessions."""

from __future__ import annotations

import time
import uuid

import jwt

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
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user_id),
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + ttl,
    }
    if email is not None:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm="HS256")


def decode(secret: str, token: str) -> dict[str, object]:
    """Verify a token signed with ``secret`` and return its claims."""
    claims: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], options={"verify_aud": False}
    )
    return claims
