"""Who a call acts as.

An :class:`Identity` is what PostgREST derives from a request's JWT: an API role (``anon``,
``authenticated`` or ``service_role``), the JWT claims (``auth.uid()`` reads ``sub``) and,
for HTTP transports, the bearer token itself. :func:`sign_token` and :func:`verify_token`
are the one place that signs and checks HS256 tokens the way Supabase does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

__all__ = ["API_ROLES", "Identity", "sign_token", "verify_token"]

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
            claims = verify_token(secret, token)
        else:
            claims = jwt.decode(token, options={"verify_signature": False})
        role = claims.get("role", "anon")
        if role not in API_ROLES:
            raise ValueError(f"token role {role!r} is not one of {', '.join(API_ROLES)}")
        return cls(role=role, claims=claims, token=token)


def sign_token(secret: str, claims: Mapping[str, Any], *, ttl: int = 3600) -> str:
    """An HS256 token carrying ``claims``, issued now and valid for ``ttl`` seconds."""
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> dict[str, Any]:
    """The claims of a token signed with ``secret`` (HS256; the audience is not checked).

    Raises:
        jwt.InvalidTokenError: The token is malformed, expired or wrongly signed.
    """
    claims: dict[str, Any] = jwt.decode(
        token, secret, algorithms=["HS256"], options={"verify_aud": False}
    )
    return claims
