"""``/redoc`` from local assets (``/docs`` comes from fastapi-offline as is).

ReDoc's bundle shows a "by Redocly" logo fetched from Redocly's CDN; the copy served here points
that one image at the bundled favicon instead, so the page makes no request off this server.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

STATIC_URL = "/static-offline-docs"  # fastapi-offline's mount
REDOC_JS_URL = "/docs-assets/redoc.standalone.js"
_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_js() -> bytes:
    import fastapi_offline

    js = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js").read_bytes()
    return js.replace(_CDN_LOGO, f"{STATIC_URL}/favicon.png".encode())


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=request.app.title + " - ReDoc",
        redoc_js_url=f"{root}{REDOC_JS_URL}",
        redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        with_google_fonts=False,
    )


@router.get(REDOC_JS_URL)
def redoc_js() -> Response:
    return Response(
        _redoc_js(),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )
