"""The HTTP API: FastAPI app factory over a DuckDB store and a trained model folder.

``create_app(store_path, model_dir, token=...)`` returns the app that ``shopsight serve`` runs
under uvicorn. The routes live in :mod:`shopsight.serving.routes` (one router per concern) and
share one :class:`~shopsight.serving.runtime.Runtime`. Read endpoints (recommend, similar,
predict, persona, health, metrics) need no token; writes (``/events``) and admin endpoints need
the bearer token. The recommend hot path for a known user touches no database: it scores with
the model in memory (or the user's live fold-in state).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shopsight.data.store import Store
from shopsight.serving.auth import read_token
from shopsight.serving.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from shopsight.serving.routes import include_routers
from shopsight.serving.routes.personas import mount_dashboard
from shopsight.serving.runtime import Runtime, store_pseudonymizer
from shopsight.serving.state import (
    ExplainFn,
    ForgetFn,
    LiveState,
    PersonaBook,
    Predictor,
    load_deployment,
    load_personas,
    load_predictor,
)

log = logging.getLogger("shopsight.serving")

CONFIG_ENV = "SHOPSIGHT_SERVE_CONFIG"
DEFAULT_MAX_BODY = 1 << 20

_ERROR_SLUGS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    501: "not_implemented",
}


def create_app(
    store_path: str | Path,
    model_dir: str | Path,
    *,
    token: str | None = None,
    ann: bool = False,
    read_only: bool = False,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_live_users: int = 100_000,
    predictor_loader: Callable[[Path], Predictor | None] = load_predictor,
    personas_loader: Callable[[Path], PersonaBook | None] = load_personas,
    explain_fn: ExplainFn | None = None,
    forget_fn: ForgetFn | None = None,
) -> FastAPI:
    """The API over ``store_path`` serving the model in ``model_dir`` (see the module doc).

    ``token``: bearer token for write/admin endpoints (None: they answer 403). ``ann``: answer
    known users through an HNSW index instead of exact top-k. ``read_only``: open the store
    read-only (several server processes may share it; ``/events`` and forget answer 409).
    The loaders and functions default to the real stages and can be replaced (tests).
    """
    store_path = Path(store_path)
    model_dir = Path(model_dir)
    store = Store(store_path, read_only=read_only, create=False)
    lock = threading.Lock()
    try:
        dep = load_deployment(
            model_dir,
            store,
            lock,
            store_path,
            ann=ann,
            predictor_loader=predictor_loader,
            personas_loader=personas_loader,
        )
    except BaseException:
        store.close()
        raise
    metrics = Metrics()
    rt = Runtime(
        store_path=store_path,
        store=store,
        store_lock=lock,
        deployment=dep,
        live=LiveState(max_live_users),
        metrics=metrics,
        token=token,
        read_only=read_only,
        ann=ann,
        predictor_loader=predictor_loader,
        personas_loader=personas_loader,
        explain_fn=explain_fn,
        forget_fn=forget_fn,
        pseudonymizer=store_pseudonymizer(store),
    )
    rt.publish(dep)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        if rt.reload_thread is not None:
            rt.reload_thread.join(timeout=30)
        with rt.store_lock:
            rt.store.close()

    app = FastAPI(
        title="shopsight",
        version="1",
        description="Recommendations, similar items, funnel predictions, personas and live "
        "events over a shopsight store and trained model.",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    _install_errors(app)
    include_routers(app)
    mount_dashboard(app, dep.personas)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": _ERROR_SLUGS.get(exc.status_code, "error"), "detail": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {
                "field": ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body",
                "reason": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "detail": f"{type(exc).__name__} (see server log)"},
            status_code=500,
        )


# ------------------------------------------------------------------------------ process entry
def serve_config(
    store: Path,
    model: Path,
    *,
    token_file: Path | None = None,
    ann: bool = False,
    read_only: bool = False,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> dict[str, Any]:
    return {
        "store": str(store),
        "model": str(model),
        "token_file": None if token_file is None else str(token_file),
        "ann": ann,
        "read_only": read_only,
        "cors_origins": list(cors_origins),
        "max_body_bytes": max_body_bytes,
    }


def app_from_config(cfg: dict[str, Any]) -> FastAPI:
    token_file = cfg.get("token_file")
    return create_app(
        cfg["store"],
        cfg["model"],
        token=read_token(Path(token_file) if token_file else None),
        ann=bool(cfg.get("ann", False)),
        read_only=bool(cfg.get("read_only", False)),
        cors_origins=cfg.get("cors_origins") or (),
        max_body_bytes=int(cfg.get("max_body_bytes", DEFAULT_MAX_BODY)),
    )


def app_from_env() -> FastAPI:
    """Uvicorn factory (``--factory shopsight.serving.app:app_from_env``) for worker processes."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set (use `shopsight serve`)")
    return app_from_config(json.loads(raw))
