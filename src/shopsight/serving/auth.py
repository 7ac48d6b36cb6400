"""Access control: two bearer tokens, checked on every route but ``/health`` before any body.

Tokens: the *admin* token (``SHOPSIGHT_API_TOKEN`` or ``--token-file``) may do everything; the
optional *read* token (``SHOPSIGHT_API_READ_TOKEN`` or ``--read-token-file``) may call every
route except writes and admin (``POST /events``, ``/admin/*``). Both are compared in constant
time (``hmac.compare_digest``).

- With a token configured, every route except ``GET /health`` and the login page needs one:
  recommendations, predictions, personas, the dashboard and its JSON, the API docs, metrics.
  Without any token, reads are open (a loopback development server) and writes and admin
  refuse every request (403): the safe default for a server someone forgot to configure.
- :class:`AuthMiddleware` decides from the path and headers alone, before the route runs, so an
  unauthenticated request is refused before its body is read or parsed.
- Browsers (the dashboard, ``/docs``) sign in at ``/login`` with a token and get a session
  cookie: ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS, holding its expiry (12 h)
  and an HMAC of it keyed by the token (not the token; checked on every request). The cookie is accepted only for ``GET``/``HEAD`` of read routes, so a forged
  cross-site form can neither write nor reach admin. Tokens never go in URLs (they end up in
  logs and ``Referer`` headers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from shopsight.errors import InputError

TOKEN_ENV = "SHOPSIGHT_API_TOKEN"
READ_TOKEN_ENV = "SHOPSIGHT_API_READ_TOKEN"
MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "shopsight_session"
SESSION_MAX_AGE_S = 12 * 3600
# Reachable without a token: the minimal liveness probe and the sign-in page.
PUBLIC_PATHS = frozenset({"/health", "/login", "/logout"})

Level = Literal["read", "admin"]

bearer = HTTPBearer(
    auto_error=False,
    description="The admin token (everything) or the read token (every route but /events and "
    "/admin/*). Needed on every route but /health once a token is configured.",
)


def read_token(token_file: Path | None = None, env: str = TOKEN_ENV) -> str | None:
    """The configured token: the file's first line, else the environment; None when neither."""
    if token_file is not None:
        text = Path(token_file).read_text(encoding="utf-8").strip()
        if not text:
            raise InputError(f"{token_file}: empty token file")
        token = text.splitlines()[0].strip()
    else:
        token = os.environ.get(env, "").strip()
        if not token:
            return None
    if len(token) < MIN_TOKEN_LENGTH:
        src = str(token_file) if token_file is not None else env
        raise InputError(f"{src}: token too short (at least {MIN_TOKEN_LENGTH} characters)")
    return token


def required_level(method: str, path: str) -> Level:
    """What a request needs: admin for writes and admin routes, read for everything else."""
    if path.startswith("/admin/") or path == "/admin" or path == "/events":
        return "admin"
    return "read"


def _session_mac(token: str, expires: int) -> str:
    msg = f"shopsight-session-v1:{expires}".encode()
    return hmac.new(token.encode(), msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AccessPolicy:
    """The configured tokens and what each may do."""

    admin_token: str | None = None
    read_token: str | None = None

    def __post_init__(self) -> None:
        if self.admin_token is not None and self.admin_token == self.read_token:
            raise InputError("--read-token-file: the read token must differ from the admin token")

    @property
    def enabled(self) -> bool:
        return self.admin_token is not None or self.read_token is not None

    def _tokens(self) -> list[tuple[str, Level]]:
        out: list[tuple[str, Level]] = []
        if self.admin_token is not None:
            out.append((self.admin_token, "admin"))
        if self.read_token is not None:
            out.append((self.read_token, "read"))
        return out

    def token_level(self, token: str) -> Level | None:
        given = token.encode()
        found: Level | None = None
        for t, level in self._tokens():  # no early exit: the same work for every token
            if hmac.compare_digest(given, t.encode()):
                found = level
        return found

    def session_level(self, cookie: str, now: float | None = None) -> Level | None:
        """The level of a session cookie ``<expiry>.<HMAC>``; None when forged or expired."""
        stamp, _, mac = cookie.partition(".")
        if not stamp.isdigit() or int(stamp) < (time.time() if now is None else now):
            return None
        given = mac.encode()
        found: Level | None = None
        for t, level in self._tokens():
            if hmac.compare_digest(given, _session_mac(t, int(stamp)).encode()):
                found = level
        return found

    def session_cookie(self, token: str, now: float | None = None) -> str | None:
        """The cookie value for a token that signs in (None for a wrong token): its expiry time
        and an HMAC of it keyed by the token, so the server needs no session store."""
        if self.token_level(token) is None:
            return None
        expires = int(time.time() if now is None else now) + SESSION_MAX_AGE_S
        return f"{expires}.{_session_mac(token, expires)}"


def check_token(policy: AccessPolicy, creds: HTTPAuthorizationCredentials | None) -> None:
    """The admin check as a route dependency (the middleware has already run it)."""
    if policy.admin_token is None:
        raise HTTPException(
            403, f"write and admin endpoints are disabled: no API token configured ({TOKEN_ENV})"
        )
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="shopsight"'}
        )
    if policy.token_level(creds.credentials) != "admin":
        raise HTTPException(403, "invalid token")


def _bearer_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, cred = value.decode("latin-1").partition(" ")
            return cred.strip() if scheme.lower() == "bearer" else ""
    return None


def _cookie_of(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


class AuthMiddleware:
    """Refuses requests without the token their route needs, before the route reads a byte."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        need = required_level(method, scope["path"])
        policy = self.policy
        if not policy.enabled and need == "read":
            await self.app(scope, receive, send)
            return
        if need == "admin" and policy.admin_token is None:
            await _deny(
                send,
                403,
                f"write and admin endpoints are disabled: no API token configured ({TOKEN_ENV})",
            )
            return
        token = _bearer_of(scope)
        level: Level | None = None
        if token:
            level = policy.token_level(token)
        elif token is None and method in ("GET", "HEAD") and need == "read":
            cookie = _cookie_of(scope, SESSION_COOKIE)
            level = policy.session_level(cookie) if cookie else None
            if level is None and _wants_html(scope):
                await _redirect_to_login(scope, send)
                return
        if level == "admin" or (level == "read" and need == "read"):
            await self.app(scope, receive, send)
        elif level == "read":
            await _deny(send, 403, "the read token cannot call write or admin endpoints")
        elif token:
            await _deny(send, 403, "invalid token")
        else:
            await _deny(send, 401, "missing bearer token")


async def _deny(send: Send, status: int, detail: str) -> None:
    slug = "unauthorized" if status == 401 else "forbidden"
    body = json.dumps({"error": slug, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="shopsight"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect_to_login(scope: Scope, send: Send) -> None:
    target = scope["path"]
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    location = "/login?next=" + quote(target, safe="")
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in (never another site: no scheme, no ``//host``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/dashboard"
    return target
