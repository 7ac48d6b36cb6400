"""Bearer-token check for write and admin endpoints.

The token comes from ``SHOPSIGHT_API_TOKEN`` or a file (``--token-file``); it is compared in
constant time (``hmac.compare_digest``). With no token configured, write and admin endpoints
refuse every request (403): the safe default for a server someone forgot to configure.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shopsight.errors import InputError

TOKEN_ENV = "SHOPSIGHT_API_TOKEN"
MIN_TOKEN_LENGTH = 16

bearer = HTTPBearer(auto_error=False, description="Write and admin endpoints.")


def read_token(token_file: Path | None = None) -> str | None:
    """The configured token: the file's first line, else the environment; None when neither."""
    if token_file is not None:
        text = Path(token_file).read_text(encoding="utf-8").strip()
        if not text:
            raise InputError(f"{token_file}: empty token file")
        token = text.splitlines()[0].strip()
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
    if len(token) < MIN_TOKEN_LENGTH:
        src = str(token_file) if token_file is not None else TOKEN_ENV
        raise InputError(f"{src}: token too short (at least {MIN_TOKEN_LENGTH} characters)")
    return token


def check_token(expected: str | None, creds: HTTPAuthorizationCredentials | None) -> None:
    if expected is None:
        raise HTTPException(
            403, f"write and admin endpoints are disabled: no API token configured ({TOKEN_ENV})"
        )
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="shopsight"'}
        )
    if not hmac.compare_digest(creds.credentials.encode(), expected.encode()):
        raise HTTPException(403, "invalid token")


def token_of(request: Request) -> str | None:
    token: str | None = request.app.state.token
    return token
