"""Users and tokens for Tessera's local stack (development, demos and tests only).

Example:
    >>> from tessera_client.local import create_local_user, local_db_url, local_user_token
    >>> alice = create_local_user(local_db_url(), "alice@example.test", "s3cret")
    >>> token = local_user_token(stack.jwt_secret(), alice.id, email=alice.email)
"""

from __future__ import annotations

from tessera_client._local.defaults import local_db_url
from tessera_client._local.users import (
    LocalUser,
    create_local_user,
    create_local_users,
    local_api_key,
    local_user_token,
)

__all__ = [
    "LocalUser",
    "create_local_user",
    "create_local_users",
    "local_api_key",
    "local_db_url",
    "local_user_token",
]
