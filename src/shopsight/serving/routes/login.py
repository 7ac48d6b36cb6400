"""``/login`` and ``/logout``: a browser signs in with a token and gets a session cookie.

The cookie (see :mod:`shopsight.serving.auth`) opens the read pages (the dashboard, ``/docs``)
to that browser; API clients send ``Authorization: Bearer`` instead. HTML, kept out of the
OpenAPI schema.
"""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shopsight.serving.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    AccessPolicy,
    AuthMiddleware,
    safe_next,
)

router = APIRouter(include_in_schema=False)

MAX_FORM_BYTES = 4096


def _page(next_path: str, message: str = "", status_code: int = 200) -> HTMLResponse:
    note = f'<p id="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    body = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shopsight: sign in</title><link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}</style>
</head><body><h1>Sign in</h1>
<p>This server needs its API token (the admin or the read-only one).</p>{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<input type="text" name="username" value="api" autocomplete="username" hidden>
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>"""
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


@router.get("/login")
def login_form(next: Annotated[str | None, Query(max_length=2048)] = None) -> Response:
    return _page(safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            return _page("/dashboard", "The form is too large.", 413)
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    target = safe_next(form.get("next"))
    policy: AccessPolicy = request.app.state.access_policy
    if not policy.enabled:
        return RedirectResponse(target, status_code=303)
    cookie = policy.session_cookie(form.get("token", "").strip())
    if cookie is None:
        return _page(target, "Wrong token.", 403)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return resp


def protect(app: FastAPI, policy: AccessPolicy) -> None:
    """Put ``app`` behind ``policy``: the sign-in pages and the middleware that checks every
    request (for apps other than the API, e.g. the stand-alone personas dashboard)."""
    app.state.access_policy = policy
    app.include_router(router)
    app.add_middleware(AuthMiddleware, policy=policy)
