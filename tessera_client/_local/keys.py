"""JWTs signed with the local stack's secret, shaped like Supabase's API keys and sessions."""

from __future__ import annotations

import uuid
from typing import Any

from tessera_client._identity import Identity, sign_token, verify_token

TEN_YEARS = 10 * 365 * 24 * 3600


def api_key(secret: str, role: str) -> str:
    """An ``anon`` or ``service_role`` key, as Supabase issues them (long-lived, no ``sub``)."""
    return sign_token(secret, {"iss": "supabase-demo", "role": role}, ttl=TEN_YEARS)


def user_token(
    secret: str, user_id: uuid.UUID | str, email: str | None = None, ttl: int = 3600
) -> str:
    """An access token for a signed-in user (role ``authenticated``), like supabase-auth's."""
    return sign_token(secret, Identity.user(user_id, email=email).claims, ttl=ttl)


def decode(secret: str, token: str) -> dict[str, Any]:
    """Verify a token signed with ``secret`` and return its claims."""
    return verify_token(secret, token)
