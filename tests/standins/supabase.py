"""STAND-IN for Supabase's HTTP API (PostgREST and supabase-auth), for tests only.

PostgREST and supabase-auth cannot be installed here, so this replays, on the real local
PostgreSQL, just the part of them the SDK's Supabase transport uses, and nothing else:

- ``POST|GET /rest/v1/rpc/<fn>``: verifies the bearer JWT (HS256, the test's secret), then in
  one READ COMMITTED transaction (read-only for GET) logged in as ``authenticator`` runs
  PostgREST's preamble (``search_path``, ``role``, ``request.jwt.claims``,
  ``request.method``, ``request.path`` as transaction-local settings) and
  ``select … from public.fn(name => value, …)``. A set-returning function answers with an
  array, a composite with an object, anything else with the bare value.
- ``GET /rest/v1/<table>?select=…&col=op.value&order=…&limit=…`` (eq, neq, gt, gte, lt, lte;
  ``or=(…)`` with nested ``and(…)``, as keyset pagination sends).
- Errors: PostgREST's body ``{code, message, details, hint}`` and its HTTP status per
  SQLSTATE (42501 is 401 for anon, 403 otherwise; 08* 503; 40* 500; …); JWT errors are
  401 PGRST301 / PGRST303.
- ``POST /auth/v1/token?grant_type=password`` (and ``refresh_token``): checks the email and
  password against ``auth.users.encrypted_password`` in the format of
  :func:`tessera_client._identity.hash_password` (supabase-auth itself uses bcrypt) and
  answers with a session whose access token is signed with the same secret.

Realtime (``/realtime/v1/websocket``) is answered with a redirect to
:attr:`SupabaseStandIn.realtime_url` when it is set: the Realtime stand-in of
``tests/standins/realtime.py``.

Faults for retry tests: :meth:`fail_next` answers the next requests with 503 before
touching the database; :meth:`drop_reply_after_commit` commits the next call and then closes
the connection without answering, like a reply lost on the way back.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from tessera_client._local import keys
from tessera_client._local.users import verify_password

from ..support import act_as

__all__ = ["RecordedRequest", "SupabaseStandIn"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _split_terms(text: str) -> list[str]:
    """``a.eq."x,y",and(b.gt.1,c.lt.2)`` -> its top-level terms (quotes and parentheses kept)."""
    terms, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _logic(kind: str, text: str) -> tuple[sql.Composable, list[Any]]:
    """PostgREST's ``or=(…)`` / ``and(…)`` filters (the keyset pagination the SDK sends)."""
    if not (text.startswith("(") and text.endswith(")")):
        raise _pgrst(400, "PGRST100", f"unsupported logic filter: {kind}={text}")
    parts: list[sql.Composable] = []
    values: list[Any] = []
    for term in _split_terms(text[1:-1]):
        if term.startswith(("and(", "or(")):
            inner_kind, _, rest = term.partition("(")
            part, found = _logic(inner_kind, "(" + rest)
        else:
            column, _, criterion = term.partition(".")
            op, _, value = criterion.partition(".")
            if not _NAME.match(column) or op not in _OPERATORS:
                raise _pgrst(400, "PGRST100", f"unsupported filter: {term}")
            part = sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(_OPERATORS[op]))
            found = [value[1:-1] if value.startswith('"') and value.endswith('"') else value]
        parts.append(part)
        values.extend(found)
    joined = sql.SQL(f" {kind} ").join(parts)
    return sql.SQL("({})").format(joined), values


class _HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def _pgrst(status: int, code: str, message: str, details: str | None = None) -> _HttpError:
    return _HttpError(status, {"code": code, "message": message, "details": details, "hint": None})


def postgrest_status(code: str, role: str) -> int:
    """PostgREST's HTTP status for a SQLSTATE (its documented table, abridged)."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "42883": 404, "42P01": 404, "P0001": 400}
    if code == "42501":
        return 401 if role == "anon" else 403
    if code in exact:
        return exact[code]
    by_class = {"08": 503, "53": 503, "0L": 403, "0P": 403, "28": 403}
    if code[:2] in by_class:
        return by_class[code[:2]]
    if code[:2] in {"09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV"}:
        return 500
    if code[:2] in {"P0", "XX"}:
        return 500
    return 400


@dataclass(frozen=True)
class RecordedRequest:
    """What the stand-in received: for asserting on supabase-py's wiring."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class _Faults:
    fail: int = 0
    drop_after_commit: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, name: str) -> bool:
        with self.lock:
            left: int = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


class _DropReply(Exception):
    """Close the connection without answering."""


class SupabaseStandIn:
    """The stand-in server; use it as a context manager.

    Args:
        rest_dsn: PostgreSQL login used for the REST API (``authenticator``).
        auth_dsn: Login that may read ``auth.users`` (``postgres``).
        jwt_secret: Signs and verifies every token.
        access_token_ttl: Lifetime of the access tokens the sign-in hands out.
    """

    def __init__(
        self, rest_dsn: str, auth_dsn: str, jwt_secret: str, *, access_token_ttl: int = 3600
    ) -> None:
        self.jwt_secret = jwt_secret
        self.anon_key = keys.api_key(jwt_secret, "anon")
        self.service_key = keys.api_key(jwt_secret, "service_role")
        self.access_token_ttl = access_token_ttl
        self.requests: list[RecordedRequest] = []
        self._faults = _Faults()
        self._refresh_tokens: dict[str, uuid.UUID] = {}
        self._rest = ConnectionPool(
            rest_dsn, min_size=1, max_size=8, open=False, kwargs={"autocommit": True}
        )
        self._auth = ConnectionPool(
            auth_dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.realtime_url: str | None = None
        """Where ``/realtime/v1/…`` is redirected: a :class:`RealtimeStandIn`'s ``url``."""

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SupabaseStandIn:
        self._rest.open(wait=True)
        self._auth.open(wait=True)
        standin = self

        class Handler(_Handler):
            server_standin = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="supabase-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._rest.close()
        self._auth.close()

    def __enter__(self) -> SupabaseStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------

    def fail_next(self, count: int = 1) -> None:
        """Answer the next ``count`` API requests with 503 (PGRST003), running nothing."""
        self._faults.fail += count

    def drop_reply_after_commit(self, count: int = 1) -> None:
        """Commit the next ``count`` RPCs, then hang up without answering."""
        self._faults.drop_after_commit += count

    @contextmanager
    def recording(self) -> Iterator[list[RecordedRequest]]:
        """Collect the requests received inside the block."""
        start = len(self.requests)
        captured: list[RecordedRequest] = []
        yield captured
        captured.extend(self.requests[start:])

    # -- request handling -----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        payload = json.loads(body) if body else None
        self.requests.append(RecordedRequest(method, path, query, headers, payload))
        if path == "/auth/v1/token" and method == "POST":
            return self._token(query.get("grant_type", ""), payload or {})
        if not path.startswith("/rest/v1/"):
            raise _HttpError(404, {"message": "no route matched"})
        if self._faults.take("fail"):
            raise _pgrst(503, "PGRST003", "Timed out acquiring connection from connection pool.")
        role, claims = self._authorize(headers)
        resource = path.removeprefix("/rest/v1/")
        if resource.startswith("rpc/"):
            args: dict[str, Any]
            if method == "POST":
                args = payload or {}
            elif method == "GET":
                args = dict(query)
            else:
                raise _HttpError(405, {"message": "method not allowed"})
            return self._rpc(resource.removeprefix("rpc/"), args, role, claims, method, path)
        if method != "GET":
            raise _HttpError(405, {"message": "the stand-in only reads tables"})
        return self._select(resource, query, role, claims, path)

    def _authorize(self, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
        api_key = headers.get("apikey")
        if api_key not in (self.anon_key, self.service_key):
            raise _HttpError(401, {"message": "Invalid API key"})
        bearer = headers.get("authorization", "")
        if not bearer.lower().startswith("bearer "):
            return "anon", {"role": "anon"}
        try:
            claims = keys.decode(self.jwt_secret, bearer[7:])
        except jwt.ExpiredSignatureError as exc:
            raise _pgrst(401, "PGRST303", "JWT expired") from exc
        except jwt.InvalidTokenError as exc:
            raise _pgrst(401, "PGRST301", f"JWSError: {exc}") from exc
        return str(claims.get("role", "anon")), claims

    def _transaction(
        self, role: str, claims: dict[str, Any], method: str, path: str, query: sql.Composed,
        params: list[Any],
    ) -> list[Any]:  # fmt: skip
        drop = False
        with self._rest.connection() as conn:
            conn.read_only = method == "GET"
            try:
                with conn.transaction(), conn.cursor() as cur:
                    act_as(
                        cur,
                        role,
                        claims,
                        search_path="public, extensions",
                        **{"request.method": method, "request.path": path},
                    )
                    cur.execute(query, params)
                    rows = [row[0] for row in cur.fetchall()]
                    drop = method != "GET" and self._faults.take("drop_after_commit")
            except psycopg.Error as exc:
                code = exc.sqlstate or "08000"
                diag = exc.diag
                raise _HttpError(
                    postgrest_status(code, role),
                    {
                        "code": code,
                        "message": diag.message_primary or str(exc),
                        "details": diag.message_detail,
                        "hint": diag.message_hint,
                    },
                ) from exc
        if drop:
            raise _DropReply
        return rows

    def _rpc(
        self, fn: str, args: dict[str, Any], role: str, claims: dict[str, Any], method: str,
        path: str,
    ) -> Any:  # fmt: skip
        if not _NAME.match(fn) or not all(_NAME.match(name) for name in args):
            raise _pgrst(404, "PGRST202", f"Could not find the function public.{fn}")
        with self._auth.connection() as conn:
            found = conn.execute(
                """select p.proretset from pg_catalog.pg_proc as p
                   where p.pronamespace = 'public'::regnamespace and p.proname = %s""",
                (fn,),
            ).fetchone()
        if found is None:
            raise _pgrst(404, "PGRST202", f"Could not find the function public.{fn}")
        returns_set = found[0]
        # PostgREST hands arguments over as text and lets PostgreSQL cast them.
        texts = [
            None if value is None
            else json.dumps(value) if isinstance(value, dict | list)
            else ("true" if value else "false") if isinstance(value, bool)
            else str(value)
            for value in args.values()
        ]  # fmt: skip
        query = sql.SQL("select to_jsonb(r) from public.{}({}) as r").format(
            sql.Identifier(fn),
            sql.SQL(", ").join(sql.SQL("{} => %s").format(sql.Identifier(name)) for name in args),
        )
        rows = self._transaction(role, claims, method, path, query, texts)
        if returns_set:
            return rows
        return rows[0] if rows else None

    def _select(
        self, table: str, query: dict[str, str], role: str, claims: dict[str, Any], path: str
    ) -> Any:
        if not _NAME.match(table):
            raise _pgrst(404, "PGRST205", f"Could not find the table public.{table}")
        params = dict(query)
        selected = params.pop("select", "*")
        columns: sql.Composable = sql.SQL("*")
        if selected != "*":
            names = selected.split(",")
            if not all(_NAME.match(name) for name in names):
                raise _pgrst(400, "PGRST100", f"unsupported select: {selected}")
            columns = sql.SQL(", ").join(sql.Identifier(name) for name in names)
        order = params.pop("order", "")
        limit = params.pop("limit", None)
        conditions: list[sql.Composable] = []
        values: list[Any] = []
        if "or" in params:
            condition, found = _logic("or", params.pop("or"))
            conditions.append(condition)
            values.extend(found)
        for column, criterion in params.items():
            op, _, value = criterion.partition(".")
            if not _NAME.match(column) or op not in _OPERATORS:
                raise _pgrst(400, "PGRST100", f"unsupported filter: {column}={criterion}")
            conditions.append(
                sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(_OPERATORS[op]))
            )
            values.append(value)
        statement: list[sql.Composable] = [
            sql.SQL("select {} from public.{}").format(columns, sql.Identifier(table))
        ]
        if conditions:
            statement.append(sql.SQL("where {}").format(sql.SQL(" and ").join(conditions)))
        if order:
            terms = []
            for term in order.split(","):
                column, _, direction = term.partition(".")
                if not _NAME.match(column) or direction not in ("", "asc", "desc"):
                    raise _pgrst(400, "PGRST100", f"unsupported order: {order}")
                terms.append(
                    sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(direction or "asc"))
                )
            statement.append(sql.SQL("order by {}").format(sql.SQL(", ").join(terms)))
        if limit is not None:
            statement.append(sql.SQL("limit %s"))
            values.append(int(limit))
        inner = sql.SQL(" ").join(statement)
        wrapped = sql.SQL("select to_jsonb(t) from ({}) as t").format(inner)
        return self._transaction(role, claims, "GET", path, wrapped, values)

    # -- supabase-auth --------------------------------------------------------------------

    def _token(self, grant_type: str, body: dict[str, Any]) -> Any:
        invalid = _HttpError(
            400,
            {"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"},
        )
        if grant_type == "password":
            with self._auth.connection() as conn:
                row = conn.execute(
                    """select id, email, encrypted_password, created_at from auth.users
                       where email = %s""",
                    (body.get("email"),),
                ).fetchone()
            if row is None or not verify_password(str(body.get("password", "")), row[2]):
                raise invalid
            user_id, email, created_at = row[0], row[1], row[3]
        elif grant_type == "refresh_token":
            user_id = self._refresh_tokens.pop(str(body.get("refresh_token")), None)
            if user_id is None:
                raise _HttpError(
                    400,
                    {"code": 400, "error_code": "refresh_token_not_found",
                     "msg": "Invalid Refresh Token: Refresh Token Not Found"},
                )  # fmt: skip
            with self._auth.connection() as conn:
                found = conn.execute(
                    "select email, created_at from auth.users where id = %s", (user_id,)
                ).fetchone()
            if found is None:
                raise invalid
            email, created_at = found
        else:
            raise _HttpError(
                400, {"code": 400, "error_code": "validation_failed", "msg": "unsupported grant"}
            )
        refresh = secrets.token_urlsafe(24)
        self._refresh_tokens[refresh] = user_id
        now = int(time.time())
        return {
            "access_token": keys.user_token(
                self.jwt_secret, user_id, email=email, ttl=self.access_token_ttl
            ),
            "token_type": "bearer",
            "expires_in": self.access_token_ttl,
            "expires_at": now + self.access_token_ttl,
            "refresh_token": refresh,
            "user": {
                "id": str(user_id),
                "aud": "authenticated",
                "role": "authenticated",
                "email": email,
                "app_metadata": {"provider": "email", "providers": ["email"]},
                "user_metadata": {},
                "created_at": created_at.isoformat(),
            },
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_standin: SupabaseStandIn

    def do_GET(self) -> None:
        realtime = self.server_standin.realtime_url
        if realtime is not None and self.path.startswith("/realtime/v1/"):
            # Realtime runs next door (tests/standins/realtime.py); websocket clients follow.
            self.send_response(307)
            self.send_header("Location", realtime + self.path.removeprefix("/realtime/v1"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            status, payload = 200, self.server_standin.handle(method, self.path, headers, body)
        except _DropReply:
            self.close_connection = True
            return
        except _HttpError as exc:
            status, payload = exc.status, exc.body
        data = json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read recorded requests instead."""
