"""``GET /recommend/{user_id}`` (with its fast path) and ``POST /recommend``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import KQ, CategoryQ, PriceQ, ReadAuth, UserP, links
from shopsight.serving.runtime import (
    AUTH_ERRORS,
    RT,
    Runtime,
    explain_ranked,
    get_runtime,
    items_out,
    json_response,
    recommend_one,
)
from shopsight.serving.state import rank_session

router = APIRouter(tags=["recommend"], dependencies=ReadAuth, responses=AUTH_ERRORS)


@router.get(
    "/recommend/{user_id}",
    response_model=S.Recommendation,
    responses=links(
        persona=("persona", {"user_id": "$response.body#/user_id"}),
        similar=("similar", {"item_id": "$response.body#/items/0/item_id"}),
        forget=("forget", {"user_id": "$request.path.user_id"}),
    ),
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
    rt = get_runtime(request)
    dep = rt.deployment_for(user_id)
    allowed = dep.catalogue.allowed(category, price_max)
    if explain:
        return json_response(
            await run_in_threadpool(recommend_one, rt, dep, user_id, k, exclude_seen, allowed, True)
        )
    return json_response(recommend_one(rt, dep, user_id, k, exclude_seen, allowed, False))


@router.post(
    "/recommend",
    response_model=S.RecommendBatchOut,
    responses=links(
        user=("recommend_user", {"user_id": "$response.body#/results/0/user_id"}),
        similar=("similar", {"item_id": "$response.body#/results/0/items/0/item_id"}),
    ),
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
            expl = explain_ranked(rt, dep, ranked, ranked.history)
        rt.log_served("session", None, dep, ranked)
        rec = {
            "user_id": None,
            "source": ranked.source,
            "model_version": dep.version,
            "items": items_out(dep, ranked, expl),
        }
        return json_response({"results": [rec]})
    assert body.user_ids is not None
    return json_response(
        {"results": [_recommend_variant(rt, u, body, dep, allowed) for u in body.user_ids]}
    )


def _recommend_variant(
    rt: Runtime, user_id: str, body: S.RecommendIn, dep: Any, allowed: Any
) -> dict[str, Any]:
    """One user of a batch, from their A/B variant's deployment when it is not ``dep``."""
    mine = rt.deployment_for(user_id)
    if mine is not dep:
        dep, allowed = mine, mine.catalogue.allowed(body.category, body.price_max)
    return recommend_one(rt, dep, user_id, body.k, body.exclude_seen, allowed, body.explain)


class _RecommendQuery(BaseModel):
    """``GET /recommend/{user_id}``'s parameters, with the documented route's constraints."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=S.MAX_ID, pattern=S.NO_CONTROL)
    k: int = Field(10, ge=1, le=S.MAX_K)
    exclude_seen: bool = True
    category: str | None = Field(None, min_length=1, max_length=S.MAX_ID, pattern=S.NO_CONTROL)
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
        dep = rt.deployment_for(q.user_id)
        allowed = dep.catalogue.allowed(q.category, q.price_max)
        body = recommend_one(rt, dep, q.user_id, q.k, q.exclude_seen, allowed, False)
        await json_response(body)(scope, receive, send)


def install_fast_path(app: FastAPI) -> None:
    """Put the fast ``GET /recommend/{user_id}`` ahead of every route of ``app``.

    It hands other forms to this module's documented route object itself (not to the copy or
    wrapper ``include_router`` makes, which differs between FastAPI versions).
    """
    documented = next(
        r
        for r in router.routes
        if isinstance(r, APIRoute)
        and r.path == "/recommend/{user_id}"
        and "GET" in (r.methods or ())
    )
    app.router.routes.insert(0, Route(documented.path, _FastRecommend(documented), methods=["GET"]))
