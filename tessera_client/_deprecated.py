"""Names of earlier releases of ``tessera_client``, kept importable for a while.

Each resolves to its replacement and warns (``DeprecationWarning``) with the new name. They
are not in ``tessera_client.__all__``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["deprecated_name"]

# Names of earlier releases: still importable, with a DeprecationWarning naming the new one.
_DEPRECATED: dict[str, tuple[str, str]] = {
    "connect": ("AsyncTessera.connect", "tessera_client._client:AsyncTessera.connect"),
    "from_supabase": (
        "AsyncTessera.from_supabase",
        "tessera_client._client:AsyncTessera.from_supabase",
    ),
    "connect_sync": ("Tessera.connect", "tessera_client._sync:Tessera.connect"),
    "from_supabase_sync": ("Tessera.from_supabase", "tessera_client._sync:Tessera.from_supabase"),
    "LocalUser": ("tessera_client.local.LocalUser", "tessera_client.local:LocalUser"),
    "create_local_user": (
        "tessera_client.local.create_local_user",
        "tessera_client.local:create_local_user",
    ),
    "local_api_key": ("tessera_client.local.local_api_key", "tessera_client.local:local_api_key"),
    "local_user_token": (
        "tessera_client.local.local_user_token",
        "tessera_client.local:local_user_token",
    ),
}


def deprecated_name(name: str) -> Any:
    """``tessera_client.<name>`` for a name of an earlier release, with a DeprecationWarning.

    Installed as the package's module ``__getattr__`` (PEP 562).
    """
    try:
        replacement, target = _DEPRECATED[name]
    except KeyError:
        raise AttributeError(f"module 'tessera_client' has no attribute {name!r}") from None
    warnings.warn(
        f"tessera_client.{name} is deprecated; use {replacement}",
        DeprecationWarning,
        stacklevel=2,
    )
    module_name, _, path = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in path.split("."):
        value = getattr(value, part)
    return value
