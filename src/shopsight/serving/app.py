"""The HTTP API: FastAPI app factory over a DuckDB store and a trained model folder.

``create_app(store_path, model_dir, token=...)`` returns the app that ``shopsight serve`` runs
under uvicorn. Read endpoints (recommend, similar, predict, persona, health, metrics) need no
token; writes (``/events``) and admin endpoints need the bearer token. The recommend hot path
for a known user touches no database: it scores with the model in memory (or the user's live
fold-in state). The store has one connection, guarded by a lock, used by events, predictions,
reloads and forget requests.

Which model version answers is decided once per request (one reference read): a reload builds
the new :class:`~shopsight.serving.state.Deployment` completely in a background thread and then
replaces that reference, so no request sees a half-loaded model.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import numpy as np
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shopsight.data.store import Store
from shopsight.serving import schemas as S
from shopsight.serving.auth import bearer, check_token, read_token
from shopsight.serving.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from shopsight.serving.state import (
    Deployment,
    EventsRejected,
    ExplainFn,
    ForgetFn,
    LiveState,
    PersonaBook,
    Predictor,
    Ranked,
    event_key,
    event_weight,
    ingest_events,
    load_deployment,
    load_personas,
    load_predictor,
    load_user_history,
    rank_session,
    rank_user,
    stage_events,
    user_history_for_explain,
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


@dataclass
class ReloadStatus:
    state: Literal["idle", "loading", "done", "failed"] = "idle"
    model_dir: str | None = None
    version: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Runtime:
    """Everything the endpoints share; one per app."""

    store_path: Path
    store: Store
    store_lock: threading.Lock
    deployment: Deployment
    live: LiveState
    metrics: Metrics
    token: str | None
    read_only: bool
    ann: bool
    predictor_loader: Callable[[Path], Predictor | None]
    personas_loader: Callable[[Path], PersonaBook | None]
    explain_fn: ExplainFn | None
    forget_fn: ForgetFn | None
    pseudonymizer: Callable[[str], str] | None = None
    started: float = field(default_factory=time.time)
    reload: ReloadStatus = field(default_factory=ReloadStatus)
    reload_lock: threading.Lock = field(default_factory=threading.Lock)
    reload_thread: threading.Thread | None = None
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def publish(self, dep: Deployment) -> None:
        self.deployment = dep  # the atomic swap: one reference assignment
        self.metrics.set_model(dep.model.name, dep.version)

    def user_key(self, user_id: str) -> str:
        """The id the store and model know a user by (its pseudonym in a pseudonymised store)."""
        if self.pseudonymizer is None:
            return user_id
        from shopsight.privacy.pseudonym import is_pseudonym

        return user_id if is_pseudonym(user_id) else self.pseudonymizer(user_id)

    def content_for_explain(self, dep: Deployment) -> dict[str, np.ndarray] | None:
        if dep.content is None:
            return None
        key = (dep.version, "explain_content")
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = dep.content.aligned(dep.artifact.item_ids)
        value: dict[str, np.ndarray] = self._cache[key]
        return value


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RT = Annotated[Runtime, Depends(_rt)]


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    check_token(_rt(request).token, creds)


Auth = [Depends(require_token)]
ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": S.ErrorOut} for c in (400, 404, 409, 413, 422)
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": S.ErrorOut},
    403: {"model": S.ErrorOut},
}


def _items_out(
    dep: Deployment, ranked: Ranked, explanations: dict[int, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Plain dicts (the hot path skips building pydantic objects; the schema documents them)."""
    cat = dep.catalogue
    ids = dep.artifact.item_ids
    out = []
    for i, s in zip(ranked.items.tolist(), ranked.scores.tolist(), strict=True):
        price = cat.prices[i]
        out.append(
            {
                "item_id": str(ids[i]),
                "score": s,
                "title": cat.titles[i],
                "category": cat.categories[i],
                "price": None if price != price else float(price),  # NaN: unknown
                "explanation": None if explanations is None else explanations.get(i),
            }
        )
    return out


def _json(obj: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(obj), status_code=status_code, media_type="application/json")


def _explain(
    rt: Runtime, dep: Deployment, ranked: Ranked, history: tuple[np.ndarray, np.ndarray]
) -> dict[int, dict[str, Any]]:
    fn = rt.explain_fn
    if fn is None:
        try:
            from shopsight.explain import explain_items  # type: ignore[attr-defined]
        except ImportError:
            raise HTTPException(
                501, "explanations are not available: shopsight.explain has no explain_items"
            ) from None
        fn = explain_items
    titles = [t or str(dep.artifact.item_ids[i]) for i, t in enumerate(dep.catalogue.titles)]
    result = fn(
        dep.model,
        history[0],
        history[1],
        ranked.items,
        item_titles=titles,
        content=rt.content_for_explain(dep),
        top=3,
    )
    return {int(e["item"]): _jsonable(e) for e in result}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _recommend_one(
    rt: Runtime,
    dep: Deployment,
    user_id: str,
    k: int,
    exclude_seen: bool,
    allowed: np.ndarray | None,
    explain: bool,
) -> dict[str, Any]:
    key = rt.user_key(user_id)
    ranked = rank_user(dep, rt.live, key, k, exclude_seen, allowed)
    explanations = None
    if explain:
        hist = ranked.history or user_history_for_explain(dep, rt.live, key)
        explanations = _explain(rt, dep, ranked, hist)
    return {
        "user_id": user_id,
        "source": ranked.source,
        "model_version": dep.version,
        "items": _items_out(dep, ranked, explanations),
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
    if not store_path.exists():
        raise FileNotFoundError(f"{store_path}: no such store")
    store = Store(store_path, read_only=read_only)
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
        pseudonymizer=_store_pseudonymizer(store),
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
    _routes(app)
    documented = next(
        r
        for r in app.router.routes
        if isinstance(r, APIRoute)
        and r.path == "/recommend/{user_id}"
        and "GET" in (r.methods or ())
    )
    fast = Route(documented.path, _FastRecommend(documented), methods=["GET"])
    app.router.routes.insert(0, fast)
    if dep.personas is not None:
        try:
            from shopsight.personas.dashboard import create_router  # type: ignore[import-not-found]
        except ImportError:
            log.info("personas present but no dashboard module: /dashboard not mounted")
        else:
            # HTML pages, not API operations: kept out of the OpenAPI schema.
            personas: Any = dep.personas
            app.include_router(create_router(personas), include_in_schema=False)
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


def _store_pseudonymizer(store: Store) -> Callable[[str], str] | None:
    """A pseudonymised store's id mapping (raw ids in requests; pseudonyms stored)."""
    try:
        from shopsight.privacy.pseudonym import store_pseudonymizer
    except ImportError:
        return None
    try:
        pz = store_pseudonymizer(store)
    except ValueError as exc:  # pseudonymised, but its key is not set here
        log.warning("%s", exc)
        return None
    return None if pz is None else pz


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


KQ = Annotated[int, Query(ge=1, le=S.MAX_K, description="How many items.")]
CategoryQ = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=S.MAX_ID,
        description="Only items in this category (full path, leading sub-path or one segment).",
    ),
]
PriceQ = Annotated[
    float | None, Query(ge=0, le=1e12, allow_inf_nan=False, description="Only items this cheap.")
]
UserP = Annotated[str, PathParam(min_length=1, max_length=S.MAX_ID)]
ItemP = Annotated[str, PathParam(min_length=1, max_length=S.MAX_ID)]


class _RecommendQuery(BaseModel):
    """``GET /recommend/{user_id}``'s parameters, with the documented route's constraints."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=S.MAX_ID)
    k: int = Field(10, ge=1, le=S.MAX_K)
    exclude_seen: bool = True
    category: str | None = Field(None, min_length=1, max_length=S.MAX_ID)
    price_max: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False)
    explain: bool = False


class _FastRecommend:
    """The hottest request, ``GET /recommend/{user_id}``, without FastAPI's per-request
    dependency machinery (about a quarter of a request's CPU on 2 cores).

    It answers only the plain form: known parameters, each at most once, that validate, and no
    ``explain``. Anything else is handed to the documented FastAPI route, which then produces
    exactly its usual response or 422, so the two can never disagree on what is valid.
    """

    def __init__(self, documented: APIRoute) -> None:
        self.documented = documented
        self.fields = set(_RecommendQuery.model_fields) - {"user_id"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.documented  # metrics label by the same route template
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        params: dict[str, Any] = dict(pairs)
        q = None
        if len(params) == len(pairs) and params.keys() <= self.fields:
            params["user_id"] = scope["path_params"]["user_id"]
            try:
                q = _RecommendQuery.model_validate(params)
            except ValidationError:
                q = None
        if q is None or q.explain:
            await self.documented.handle(scope, receive, send)
            return
        rt: Runtime = scope["app"].state.runtime
        dep = rt.deployment
        allowed = dep.catalogue.allowed(q.category, q.price_max)
        body = _recommend_one(rt, dep, q.user_id, q.k, q.exclude_seen, allowed, False)
        await _json(body)(scope, receive, send)


def _routes(app: FastAPI) -> None:
    @app.get("/health", tags=["ops"])
    async def health(rt: RT) -> dict[str, Any]:
        dep = rt.deployment
        return {
            "status": "ok",
            **dep.describe(),
            "live_users": len(rt.live),
            "uptime_s": round(time.time() - rt.started, 1),
            "read_only": rt.read_only,
            "reload": rt.reload.state,
        }

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics(rt: RT) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        rt.metrics.live_users.set(len(rt.live))
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/recommend/{user_id}",
        response_model=S.Recommendation,
        tags=["recommend"],
        responses=ERRORS,
    )
    async def recommend_user(
        request: Request,
        user_id: UserP,
        k: KQ = 10,
        exclude_seen: bool = True,
        category: CategoryQ = None,
        price_max: PriceQ = None,
        explain: bool = False,
    ) -> Response:
        """Top-k for a user; filters are applied before top-k. Unknown users get the model's
        cold-start ranking (``source: fallback``); users with live events get fold-in."""
        rt = _rt(request)
        dep = rt.deployment
        allowed = dep.catalogue.allowed(category, price_max)
        if explain:
            return _json(
                await run_in_threadpool(
                    _recommend_one, rt, dep, user_id, k, exclude_seen, allowed, True
                )
            )
        return _json(_recommend_one(rt, dep, user_id, k, exclude_seen, allowed, False))

    @app.post(
        "/recommend",
        response_model=S.RecommendBatchOut,
        tags=["recommend"],
        responses=ERRORS,
    )
    def recommend_batch(rt: RT, body: S.RecommendIn) -> Response:
        """A batch of users, or one anonymous session (item ids seen so far, no user id)."""
        dep = rt.deployment
        allowed = dep.catalogue.allowed(body.category, body.price_max)
        if body.session is not None:
            ranked = rank_session(
                dep, body.session.items, body.session.weights, body.k, body.exclude_seen, allowed
            )
            expl = None
            if body.explain:
                assert ranked.history is not None
                expl = _explain(rt, dep, ranked, ranked.history)
            rec = {
                "user_id": None,
                "source": ranked.source,
                "model_version": dep.version,
                "items": _items_out(dep, ranked, expl),
            }
            return _json({"results": [rec]})
        assert body.user_ids is not None
        return _json(
            {
                "results": [
                    _recommend_one(rt, dep, u, body.k, body.exclude_seen, allowed, body.explain)
                    for u in body.user_ids
                ]
            }
        )

    @app.get(
        "/similar/{item_id}", response_model=S.SimilarOut, tags=["recommend"], responses=ERRORS
    )
    def similar(
        rt: RT,
        item_id: ItemP,
        k: KQ = 10,
        modality: Literal["behaviour", "text", "image", "fused"] = "behaviour",
    ) -> S.SimilarOut:
        """Items most similar to one item: by the model's item embeddings (behaviour) or by the
        feature cache's text / image vectors or their fusion (``shopsight featurize``)."""
        dep = rt.deployment
        if modality == "behaviour":
            i = dep.artifact.item_index(item_id)
            if i < 0:
                raise HTTPException(404, f"item_id: unknown item {item_id!r}")
            try:
                idx, vals = dep.model.similar_items([i], k)
            except NotImplementedError:
                raise HTTPException(
                    409,
                    f"modality behaviour: model {dep.model.name} has no item embeddings "
                    "(try modality=text)",
                ) from None
            ok = np.isfinite(vals[0])
            ranked = Ranked(idx[0][ok], vals[0][ok], "model")
            return S.SimilarOut.model_validate(
                {
                    "item_id": item_id,
                    "modality": modality,
                    "model_version": dep.version,
                    "items": _items_out(dep, ranked),
                }
            )
        content = dep.content
        if content is None:
            raise HTTPException(
                409, f"modality {modality}: not computed for this store ({dep.content_error})"
            )
        if modality not in content.vectors:
            raise HTTPException(
                409,
                f"modality {modality}: not computed for this store (run `shopsight featurize` "
                "with images)",
            )
        if item_id not in content.row:
            raise HTTPException(404, f"item_id: no {modality} features for item {item_id!r}")
        try:
            found = content.similar(item_id, modality, k)
        except LookupError as exc:
            raise HTTPException(409, f"modality {modality}: {exc}") from None
        cat = dep.catalogue
        items = []
        for f in found:
            j = dep.artifact.item_index(f["item_id"])
            items.append(
                S.ScoredItem(
                    item_id=f["item_id"],
                    score=f["score"],
                    title=cat.titles[j] if j >= 0 else None,
                    category=cat.categories[j] if j >= 0 else None,
                    price=None if j < 0 or np.isnan(cat.prices[j]) else float(cat.prices[j]),
                )
            )
        return S.SimilarOut(
            item_id=item_id, modality=modality, model_version=dep.version, items=items
        )

    @app.post("/predict", response_model=S.PredictOut, tags=["predict"], responses=ERRORS)
    def predict(rt: RT, body: S.PredictIn) -> S.PredictOut:
        """Click / add-to-cart / purchase probabilities for user-item pairs."""
        dep = rt.deployment
        if dep.predictor is None:
            raise HTTPException(
                404,
                f"no predictor is deployed (train one into {dep.model_dir / 'predictor'})",
            )
        users = [p.user_id for p in body.pairs]
        items = [p.item_id for p in body.pairs]
        with rt.store_lock:
            out = dep.predictor.predict(rt.store, users, items)
        cols = {}
        for key in ("click", "add_to_cart", "purchase"):
            arr = np.asarray(out[key], np.float64)
            if arr.shape != (len(users),):
                raise RuntimeError(f"predictor returned {arr.shape} for {key}")
            cols[key] = np.nan_to_num(arr, nan=0.0).tolist()
        preds = [
            S.Prediction(
                user_id=u,
                item_id=i,
                click=cols["click"][n],
                add_to_cart=cols["add_to_cart"][n],
                purchase=cols["purchase"][n],
            )
            for n, (u, i) in enumerate(zip(users, items, strict=True))
        ]
        return S.PredictOut(model_version=dep.version, predictions=preds)

    @app.get("/persona/{user_id}", tags=["personas"], responses=ERRORS)
    def persona(rt: RT, user_id: UserP) -> dict[str, Any]:
        personas = rt.deployment.personas
        if personas is None:
            raise HTTPException(404, "no personas are deployed (build them into <model>/personas)")
        profile = personas.profile(user_id)
        if profile is None:
            raise HTTPException(404, f"user_id: no persona for {user_id!r}")
        return _jsonable(profile)  # type: ignore[no-any-return]

    @app.get("/segments", tags=["personas"], responses=ERRORS)
    def segments(rt: RT) -> dict[str, Any]:
        personas = rt.deployment.personas
        if personas is None:
            raise HTTPException(404, "no personas are deployed (build them into <model>/personas)")
        return {"segments": _jsonable(personas.segments())}

    @app.post(
        "/events",
        response_model=S.EventsOut,
        tags=["events"],
        dependencies=Auth,
        responses={**AUTH_ERRORS, 422: {"model": S.EventsOut}},
    )
    def events(
        rt: RT,
        body: Annotated[S.EventIn | S.EventBatch, Body()],
    ) -> Any:
        """Store one event or a batch, validated like file ingest; the next recommendation for
        those users folds them in. Rows failing a rule are quarantined and listed (422)."""
        if rt.read_only:
            raise HTTPException(409, "the store is open read-only: events are not accepted")
        evs = body.events if isinstance(body, S.EventBatch) else [body]
        raw = [e.model_dump() for e in evs]
        now = datetime.now(UTC).replace(tzinfo=None)
        rows, rejected = stage_events(raw, now)
        try:
            with rt.store_lock:
                stored, dups, quarantined = ingest_events(rt.store, rows)
        except (EventsRejected, ValueError) as exc:
            raise HTTPException(409, f"the store refused the events: {exc}") from None
        rt.metrics.events.labels("stored").inc(stored)
        rt.metrics.events.labels("duplicate").inc(dups)
        rt.metrics.events.labels("quarantined").inc(quarantined)
        bad = {r["index"] for r in rejected}
        _fold_in(rt, [r for n, r in enumerate(rows) if n not in bad])
        result = {
            "received": len(rows),
            "stored": stored,
            "duplicates": dups,
            "quarantined": quarantined,
            "rejected": rejected,
        }
        if rejected:
            return JSONResponse({"error": "invalid_events", **result}, status_code=422)
        return result

    @app.post(
        "/admin/reload",
        response_model=S.ReloadOut,
        tags=["admin"],
        dependencies=Auth,
        responses=AUTH_ERRORS,
        status_code=202,
    )
    def reload(rt: RT, body: Annotated[S.ReloadIn | None, Body()] = None) -> Any:
        """Load a model folder in the background and swap it in atomically."""
        body = body or S.ReloadIn()
        target = Path(body.model_dir) if body.model_dir else rt.deployment.model_dir
        try:
            is_model = (target / "config.json").is_file()
        except (OSError, ValueError):  # a name too long, a NUL byte...
            is_model = False
        if not is_model:
            raise HTTPException(
                404, f"model_dir: {str(target)[:200]} is not a trained model folder"
            )
        with rt.reload_lock:
            if rt.reload.state == "loading":
                raise HTTPException(409, "a reload is already running")
            rt.reload = ReloadStatus(state="loading", model_dir=str(target), started_at=_now())
            thread = threading.Thread(
                target=_do_reload, args=(rt, target), name="shopsight-reload", daemon=True
            )
            rt.reload_thread = thread
            thread.start()
        if body.wait:
            thread.join()
            status = rt.reload.to_dict()
            code = 200 if rt.reload.state == "done" else 422
            if code != 200:
                return JSONResponse({"error": "reload_failed", **status}, status_code=code)
            return JSONResponse(status, status_code=200)
        return rt.reload.to_dict()

    @app.get(
        "/admin/reload",
        response_model=S.ReloadOut,
        tags=["admin"],
        dependencies=Auth,
        responses=AUTH_ERRORS,
    )
    def reload_status(rt: RT) -> Any:
        return rt.reload.to_dict()

    @app.post(
        "/admin/forget/{user_id}",
        tags=["admin"],
        dependencies=Auth,
        responses=AUTH_ERRORS,
    )
    def forget(rt: RT, user_id: UserP) -> dict[str, Any]:
        """Erase a user (``shopsight.privacy.forget.forget_user``) and drop their live state."""
        if rt.read_only:
            raise HTTPException(409, "the store is open read-only: cannot forget users")
        fn = rt.forget_fn
        try:
            with rt.store_lock:
                if fn is not None:
                    from shopsight.features.pipeline import features_dir

                    report = fn(rt.store, user_id, feature_cache=features_dir(rt.store_path))
                else:
                    from shopsight.privacy.forget import forget_served

                    # The store, cache, spool and the served model folder (personas included),
                    # persisted: a restart does not bring the user back.
                    report = forget_served(
                        rt.store,
                        user_id,
                        store_path=rt.store_path,
                        model_dirs=[rt.deployment.model_dir],
                    )
        except ValueError as exc:
            raise HTTPException(409, f"cannot forget {user_id!r}: {exc}") from None
        dropped = rt.live.forget(rt.user_key(user_id))
        if fn is None:
            # Serve the folded-out model now (its user map and personas no longer hold them).
            _do_reload(rt, rt.deployment.model_dir)
        return {"forgotten": True, "live_state_dropped": dropped, "report": _jsonable(report)}


def _fold_in(rt: Runtime, rows: Iterable[dict[str, object]]) -> None:
    """Add accepted events to their users' live state (loading stored history on first use)."""
    by_user: dict[str, list[tuple[Any, str | None, float]]] = {}
    for r in rows:
        user = rt.user_key(str(r["user_id"]))
        et = str(r["event_type"])
        value = r.get("value")
        v = float(value) if isinstance(value, int | float) else None
        item = r.get("item_id")
        key = event_key(
            None if item is None else str(item),
            et,
            r["timestamp"],  # type: ignore[arg-type]
            r.get("session_id"),  # type: ignore[arg-type]
            r.get("query"),  # type: ignore[arg-type]
            v,
        )
        by_user.setdefault(user, []).append(
            (key, None if item is None else str(item), event_weight(et, v))
        )
    for user, evs in by_user.items():
        if not rt.live.add(user, evs):
            with rt.store_lock:
                held = load_user_history(rt.store, user)  # includes the rows just stored
            for key, item, w in evs:  # rows that were duplicates of stored ones are no-ops
                held.add(key, item, w)
            rt.live.replace(user, held)


def _do_reload(rt: Runtime, target: Path) -> None:
    try:
        dep = load_deployment(
            target,
            rt.store,
            rt.store_lock,
            rt.store_path,
            ann=rt.ann,
            predictor_loader=rt.predictor_loader,
            personas_loader=rt.personas_loader,
        )
    except Exception as exc:  # any failure keeps the current model serving
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rt.reload = ReloadStatus(
            state="failed",
            model_dir=str(target),
            error=msg,
            started_at=rt.reload.started_at,
            finished_at=_now(),
        )
        rt.metrics.reloads.labels("failed").inc()
        log.warning("reload of %s failed: %s", target, msg)
        return
    rt.publish(dep)
    rt.reload = ReloadStatus(
        state="done",
        model_dir=str(target),
        version=dep.version,
        started_at=rt.reload.started_at,
        finished_at=_now(),
    )
    rt.metrics.reloads.labels("done").inc()


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
