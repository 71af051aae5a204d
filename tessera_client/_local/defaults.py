"""Where the local stack listens and how it is logged in to, without starting anything."""

from __future__ import annotations

import os

DEFAULT_PORT = 54322  # like `supabase start`
LOCAL_PASSWORD = "postgres"  # every local login's password, like `supabase start`


def local_db_url(role: str = "postgres", *, database: str = "postgres") -> str:
    """The local stack's database URL for a login role (local stack only).

    The port is ``TESSERA_PORT`` when set (the stack honours it on every start), else 54322.

    Args:
        role: ``postgres`` (may create users), ``authenticator`` (logs in as PostgREST
            does) or ``supabase_admin`` (the superuser).
        database: The database.

    Example:
        >>> local_db_url("authenticator")
        'postgresql://authenticator:postgres@127.0.0.1:54322/postgres'
    """
    port = os.environ.get("TESSERA_PORT", "").strip() or str(DEFAULT_PORT)
    return f"postgresql://{role}:{LOCAL_PASSWORD}@127.0.0.1:{port}/{database}"
