"""The HTTP API: FastAPI app factory over a DuckDB store and a trained model folder.

``create_app(store_path, model_dir, token=...)`` returns the app that ``shopsight serve`` runs
under uvicorn. The routes live in :mod:`shopsight.serving.routes` (one router per concern) and
share one :class:`~shopsight.serving.runtime.Runtime`. With a token configured every route but
``/health`` needs one (:mod:`shopsight.serving.auth`): the admin token for writes
(``/events``) and ``/admin/*``, either token for the rest. The recommend hot path for a known
user touches no database: it scores with the model in memory (or the user's live fold-in
state). ``/docs`` and ``/redoc`` load their scripts from this server (fastapi-offline), never a
CDN.
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
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from shopsight.data.store import Store
from shopsight.errors import InputError
from shopsight.serving.auth import (
    READ_TOKEN_ENV,
    TOKEN_ENV,
    AccessPolicy,
    AuthMiddleware,
    read_token,
)
from shopsight.serving.impressions import ImpressionLog
from shopsight.serving.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from shopsight.serving.routes import include_routers
from shopsight.serving.routes.personas import mount_dashboard
from shopsight.serving.runtime import Runtime, store_pseudonymizer
from shopsight.serving.state import (
    Deployment,
    ExplainFn,
    ForgetFn,
    LiveState,
    PersonaBook,
    Predictor,
    load_deployment,
    load_personas,
    load_predictor,
)
from shopsight.serving.variants import VariantSpec, load_experiment

log = logging.getLogger("shopsight.serving")

CONFIG_ENV = "SHOPSIGHT_SERVE_CONFIG"
DEFAULT_MAX_BODY = 1 << 20

API_DESCRIPTION = f"""Recommendations, similar items, funnel predictions, personas and live
events over a shopsight store and trained model.

**Access.** Once a token is configured (`{TOKEN_ENV}` / `--token-file`, optionally a read-only
`{READ_TOKEN_ENV}` / `--read-token-file`) every route but `GET /health` needs
`Authorization: Bearer <token>`; `POST /events` and `/admin/*` need the admin token. Requests
without one are refused (401/403) before their body is read. Browsers sign in at `/login`
(session cookie, read pages only).

**Limits per request.** `POST /recommend`: at most 100 users, users x k at most 2,000 items,
with `explain` at most 200 explained items. `POST /predict`: at most 1,000 pairs. `POST /events`:
at most 1,000 events. Bodies over `--max-body-bytes` (1 MiB): 413. Ids with control characters:
422.
"""

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
    read_token: str | None = None,
    models_root: str | Path | None = None,
    ann: bool = False,
    read_only: bool = False,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_live_users: int = 100_000,
    predictor_loader: Callable[[Path], Predictor | None] = load_predictor,
    personas_loader: Callable[[Path], PersonaBook | None] = load_personas,
    explain_fn: ExplainFn | None = None,
    forget_fn: ForgetFn | None = None,
    variants: Sequence[VariantSpec] = (),
    impressions: bool = True,
) -> FastAPI:
    """The API over ``store_path`` serving the model in ``model_dir`` (see the module doc).

    ``token``: the admin bearer token (None: writes and admin answer 403); ``read_token``: a
    token for every route but writes and admin. With either set, every route but ``/health``
    needs a token. ``models_root``: ``/admin/reload`` loads only folders below it (default: the
    parent of ``model_dir``). ``ann``: answer
    known users through an HNSW index instead of exact top-k. ``read_only``: open the store
    read-only (several server processes may share it; ``/events`` and forget answer 409).
    The loaders and functions default to the real stages and can be replaced (tests).
    ``variants``: an A/B test (``serving/variants.py``); ``model_dir`` is then ignored.
    ``impressions``: log every served list (``serving/impressions.py``).
    """
    store_path = Path(store_path)
    model_dir = Path(model_dir)
    policy = AccessPolicy(admin_token=token, read_token=read_token)
    root = (Path(models_root) if models_root is not None else model_dir.resolve().parent).resolve()
    if not model_dir.resolve().is_relative_to(root):
        raise InputError(f"{model_dir}: not below the models folder {root}")
    store = Store(store_path, read_only=read_only, create=False)
    lock = threading.Lock()
    experiment = None

    def load(folder: Path) -> Deployment:
        return load_deployment(
            folder,
            store,
            lock,
            store_path,
            ann=ann,
            predictor_loader=predictor_loader,
            personas_loader=personas_loader,
        )

    try:
        if variants:
            experiment = load_experiment(variants, load)
            dep = experiment.default
        else:
            dep = load(model_dir)
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
        policy=policy,
        models_root=root,
        read_only=read_only,
        ann=ann,
        predictor_loader=predictor_loader,
        personas_loader=personas_loader,
        explain_fn=explain_fn,
        forget_fn=forget_fn,
        pseudonymizer=store_pseudonymizer(store),
        experiment=experiment,
    )
    rt.publish(dep)
    if impressions:
        rt.impressions = ImpressionLog(store, lock, store_path, read_only=read_only)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        if rt.reload_thread is not None:
            rt.reload_thread.join(timeout=30)
        if rt.impressions is not None:
            rt.impressions.close()
        with rt.store_lock:
            rt.store.close()

    app = FastAPIOffline(
        redoc_url=None,  # served by routes/docs.py (a copy of ReDoc without its CDN logo)
        # Swagger UI would otherwise ask swagger.io's online validator about the spec.
        swagger_ui_parameters={"validatorUrl": None},
        title="shopsight",
        version="1",
        description=API_DESCRIPTION,
        # operationIds are the route functions' names (links in the schema refer to them)
        generate_unique_id_function=lambda route: route.name,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.access_policy = policy
    _install_errors(app)
    include_routers(app)
    mount_dashboard(app, dep.personas)
    # Innermost first: auth sees the request before any route reads its body; CORS answers
    # preflights (which carry no token) and adds its headers to refusals too.
    app.add_middleware(AuthMiddleware, policy=policy)
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
    read_token_file: Path | None = None,
    models_root: Path | None = None,
    ann: bool = False,
    read_only: bool = False,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY,
    variants: Sequence[VariantSpec] = (),
    impressions: bool = True,
) -> dict[str, Any]:
    return {
        "variants": [[v.name, str(v.model_dir), v.share] for v in variants],
        "impressions": impressions,
        "store": str(store),
        "model": str(model),
        "token_file": None if token_file is None else str(token_file),
        "read_token_file": None if read_token_file is None else str(read_token_file),
        "models_root": None if models_root is None else str(models_root),
        "ann": ann,
        "read_only": read_only,
        "cors_origins": list(cors_origins),
        "max_body_bytes": max_body_bytes,
    }


def app_from_config(cfg: dict[str, Any]) -> FastAPI:
    token_file = cfg.get("token_file")
    read_file = cfg.get("read_token_file")
    return create_app(
        cfg["store"],
        cfg["model"],
        token=read_token(Path(token_file) if token_file else None),
        read_token=read_token(Path(read_file) if read_file else None, env=READ_TOKEN_ENV),
        models_root=cfg.get("models_root"),
        ann=bool(cfg.get("ann", False)),
        read_only=bool(cfg.get("read_only", False)),
        cors_origins=cfg.get("cors_origins") or (),
        max_body_bytes=int(cfg.get("max_body_bytes", DEFAULT_MAX_BODY)),
        variants=[VariantSpec(n, Path(p), float(w)) for n, p, w in cfg.get("variants") or ()],
        impressions=bool(cfg.get("impressions", True)),
    )


def app_from_env() -> FastAPI:
    """Uvicorn factory (``--factory shopsight.serving.app:app_from_env``) for worker processes."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set (use `shopsight serve`)")
    return app_from_config(json.loads(raw))
