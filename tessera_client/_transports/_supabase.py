"""Supabase transport: supabase-py (postgrest for RPCs and reads, supabase-auth for sign-in).

Each call sends the identity's bearer token (the anon key, the service key, a user's access
token or a signed-in session's token); PostgREST verifies it, then runs the function in one
transaction with the token's role and claims.

postgrest-py's own retries are turned off: the client retries every transport the same way.
postgrest's ``APIError`` (``code`` = SQLSTATE or ``PGRST…``), httpx errors and
supabase-auth's errors are translated here and only here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

import httpx
import jwt
from postgrest import APIError, AsyncPostgrestClient
from supabase_auth import AsyncGoTrueClient, AsyncMemoryStorage
from supabase_auth.errors import AuthApiError, AuthError, AuthRetryableError

from supabase import AsyncClient, AsyncClientOptions, acreate_client
from tessera_client._errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    TesseraError,
    Unavailable,
    error_for,
)
from tessera_client._identity import Identity, sign_token
from tessera_client._transports._base import Returns, Select
from tessera_client._transports._supabase_realtime import SupabaseRealtime

__all__ = ["SupabaseTransport"]

# Statuses with no PostgREST error body: the request did not reach PostgreSQL (503), or a
# gateway gave up on it and nobody knows whether it ran (the rest).
_NOT_RUN_STATUSES = frozenset({"503"})
_UNKNOWN_STATUSES = frozenset({"500", "502", "504", "520", "522", "524"})


def _keyset_after(columns: list[str], values: tuple[Any, ...]) -> str:
    """PostgREST's ``or`` filter for ``(c1, c2, …) > (v1, v2, …)``."""
    quoted = [f'"{_wire(value)}"' for value in values]
    branches = []
    for i in range(len(values)):
        equal = [f"{columns[j]}.eq.{quoted[j]}" for j in range(i)]
        greater = f"{columns[i]}.gt.{quoted[i]}"
        branches.append(f"and({','.join([*equal, greater])})" if equal else greater)
    return ",".join(branches)


def _wire(value: Any) -> Any:
    """A value as PostgREST reads it (JSON, or text in a query string)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} seconds"
    return value


def _api_key_role(key: str) -> str:
    """The role an API key acts as: its ``role`` claim, or by the new key prefixes."""
    try:
        claims = jwt.decode(key, options={"verify_signature": False})
        return str(claims.get("role", "anon"))
    except jwt.InvalidTokenError:
        return "service_role" if key.startswith("sb_secret_") else "anon"


class SupabaseTransport:
    """Calls Tessera's functions through a Supabase project's HTTP API.

    Args:
        url: The project URL (``SUPABASE_URL``).
        key: The anon (publishable) key, sent as ``apikey`` and as the anonymous bearer.
        service_key: The service-role key, needed for ``as_service()``.
        jwt_secret: The project's JWT secret, to mint tokens for ``as_user(user_id)``
            (local stacks and tests). Without it ``as_user`` needs the user's own token.
        timeout: Seconds an HTTP request may take.
    """

    name = "supabase"

    def __init__(
        self,
        url: str,
        key: str,
        *,
        service_key: str | None = None,
        jwt_secret: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._url = url.rstrip("/")
        self._key = key
        self._service_key = service_key
        self._jwt_secret = jwt_secret
        self._timeout = timeout
        self._client: AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._realtime: SupabaseRealtime | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the supabase-py client (no request is made)."""
        if self._client is not None:
            return
        # One HTTP connection pool for PostgREST and supabase-auth, owned here.
        http = httpx.AsyncClient(timeout=self._timeout, follow_redirects=True, http2=True)
        options = AsyncClientOptions(
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
            httpx_client=http,
        )
        client = await acreate_client(self._url, self._key, options=options)
        if self._client is None:
            self._client, self._http = client, http
        else:  # a concurrent call opened it first
            await http.aclose()

    async def close(self) -> None:
        """Close the Realtime sockets and the HTTP connections."""
        if self._realtime is not None:
            await self._realtime.close()
            self._realtime = None
        self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def supabase(self) -> AsyncClient:
        """The underlying supabase-py client (for realtime channels, storage, …)."""
        await self.open()
        assert self._client is not None
        return self._client

    # -- identities -----------------------------------------------------------------------

    def anonymous_identity(self) -> Identity:
        """Whatever the API key acts as: ``anon`` for the anon key."""
        if _api_key_role(self._key) == "service_role":
            return Identity.service()
        return Identity.anonymous()

    def service_identity(self) -> Identity:
        """The service role, through the service key."""
        if self._service_key is None and _api_key_role(self._key) != "service_role":
            raise ValueError("as_service() on Supabase needs service_key= in from_supabase()")
        return Identity.service()

    def user_identity(self, user_id: uuid.UUID, email: str | None = None) -> Identity:
        """A user by id, with a token minted from the JWT secret."""
        if self._jwt_secret is None:
            raise ValueError(
                "as_user(user_id) on Supabase needs jwt_secret= in from_supabase(); "
                "otherwise pass the user's access token, or sign_in()"
            )
        identity = Identity.user(user_id, email=email)
        token = sign_token(self._jwt_secret, identity.claims)
        return Identity(role=identity.role, claims=identity.claims, token=token)

    def token_identity(self, token: str) -> Identity:
        """The identity of ``token``, verified here too when the transport has the JWT secret.

        PostgREST verifies it on every call anyway; checking it here as well refuses a bad
        token at ``as_user`` already, as the direct transport does.
        """
        try:
            return Identity.from_jwt(token, self._jwt_secret)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"invalid token: {exc}", code="PGRST301") from exc

    async def sign_in(self, email: str, password: str) -> Identity:
        """A session from supabase-auth's password grant, refreshed when it nears expiry."""
        await self.open()
        # One auth client per session, so several users can be signed in at once.
        auth = AsyncGoTrueClient(
            url=f"{self._url}/auth/v1",
            headers={"apiKey": self._key, "Authorization": f"Bearer {self._key}"},
            auto_refresh_token=False,
            persist_session=True,
            storage=AsyncMemoryStorage(),
            http_client=self._http,
        )
        try:
            response = await auth.sign_in_with_password({"email": email, "password": password})
        except AuthError as exc:
            raise _auth_error(exc) from exc
        if response.session is None:
            raise AuthenticationFailed("sign-in returned no session (is the email confirmed?)")

        async def current_token() -> str:
            try:
                session = await auth.get_session()
            except AuthError as exc:
                raise _auth_error(exc) from exc
            if session is None:
                raise AuthenticationFailed("the session has ended; sign in again")
            return session.access_token

        identity = Identity.from_jwt(response.session.access_token)
        return Identity(
            role=identity.role,
            claims=identity.claims,
            token=identity.token,
            refresh=current_token,
        )

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self,
        identity: Identity,
        function: str,
        args: Mapping[str, Any],
        *,
        returns: Returns,
        read_only: bool,
        schema: str = "public",
        replica: bool = False,
    ) -> Any:
        """``POST /rest/v1/rpc/function`` (``GET`` for read-only calls).

        ``replica`` is ignored: a Supabase read replica has an API URL of its own (GET
        requests only), reached with a second client made for that URL.

        A schema other than ``public`` goes as the ``Content-Profile`` / ``Accept-Profile``
        header; PostgREST must expose it (``db-schemas``).
        """
        client = await self._postgrest(identity, schema)
        params = {name: _wire(value) for name, value in args.items()}
        data = await self._execute(client.rpc(function, params, get=read_only))
        if returns == "many":
            return data if isinstance(data, list) else [data]
        if isinstance(data, list):  # a single row may come as a one-element array
            data = data[0] if data else None
        if returns == "scalar" and isinstance(data, Mapping):
            return next(iter(data.values()))
        return data

    async def select(
        self, identity: Identity, query: Select, *, replica: bool = False
    ) -> list[Mapping[str, Any]]:
        """``GET /rest/v1/table?select=*&column=op.value&order=…&limit=…`` (``replica``: as
        for :meth:`call`)."""
        client = await self._postgrest(identity)
        builder = client.from_(query.table).select(*(query.columns or ("*",)))
        for condition in query.filters:
            builder = builder.filter(condition.column, condition.op, str(_wire(condition.value)))
        if query.after:
            builder = builder.or_(_keyset_after([c for c, _ in query.order], query.after))
        for column, descending in query.order:
            builder = builder.order(column, desc=descending)
        if query.limit is not None:
            builder = builder.limit(query.limit)
        data = await self._execute(builder)
        return list(data)

    async def _credentials(self, identity: Identity) -> tuple[str, str]:
        """The bearer token and the ``apikey`` to act as ``identity``."""
        if identity.refresh is not None:
            return await identity.refresh(), self._key
        if identity.token is not None:
            return identity.token, self._key
        if identity.role == "service_role" and self._service_key is not None:
            return self._service_key, self._service_key
        return self._key, self._key

    async def _postgrest(self, identity: Identity, schema: str = "public") -> AsyncPostgrestClient:
        """A postgrest client sharing the HTTP session, carrying the identity's token."""
        client = await self.supabase()
        token, api_key = await self._credentials(identity)
        scoped = client.postgrest.schema(schema).auth(token)
        scoped.headers["apikey"] = api_key
        return scoped

    # -- realtime -------------------------------------------------------------------------

    def realtime(self) -> SupabaseRealtime:
        """Supabase Realtime channels, one socket per identity (made on first use)."""
        if self._realtime is None:

            async def token_for(identity: Identity) -> str:
                token, _ = await self._credentials(identity)
                return token

            self._realtime = SupabaseRealtime(
                self._url, self._key, token_for, timeout=min(self._timeout, 10.0)
            )
        return self._realtime

    async def _execute(self, builder: Any) -> Any:
        """Send a request built by postgrest-py; its errors become Tessera's."""
        try:
            response = await builder.execute()
        except APIError as exc:
            raise _api_error(exc) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unavailable("could not reach the Supabase API", detail=str(exc)) from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown(
                "the Supabase API did not answer; the call may have taken effect",
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        return response.data


def _api_error(exc: APIError) -> TesseraError:
    code = exc.code or None
    details = None if exc.details is None else str(exc.details)
    if code in _NOT_RUN_STATUSES:
        return Unavailable(exc.message, code="08001", detail=details)
    if code in _UNKNOWN_STATUSES:
        return OutcomeUnknown(exc.message, detail=f"HTTP {code}: {details or ''}".strip())
    return error_for(code, exc.message, details, exc.hint)


def _auth_error(exc: AuthError) -> TesseraError:
    if isinstance(exc, AuthRetryableError):
        return Unavailable("could not reach supabase-auth", detail=exc.message)
    if isinstance(exc, AuthApiError) and exc.code == "invalid_credentials":
        return AuthenticationFailed(exc.message, code="28P01")
    return AuthenticationFailed(exc.message, detail=str(exc.code) if exc.code else None)
