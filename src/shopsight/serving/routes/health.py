"""``/health`` (open), ``/status`` and ``/metrics`` (token)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import ReadAuth
from shopsight.serving.runtime import AUTH_ERRORS, RT

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=S.HealthOut, response_model_exclude_unset=True)
async def health(rt: RT) -> dict[str, Any]:
    """Liveness probe, the one route open without a token: no paths, counts or users; a
    private model's published budget (epsilon, delta) is added."""
    dep = rt.deployment
    out: dict[str, Any] = {"status": "ok", "model_version": dep.version, "reload": rt.reload.state}
    if dep.artifact.privacy is not None:
        out["privacy"] = dep.artifact.privacy
    return out


@router.get("/status", response_model=S.StatusOut, dependencies=ReadAuth, responses=AUTH_ERRORS)
async def status(rt: RT) -> dict[str, Any]:
    """The model being served, its size and parts, live users and uptime."""
    dep = rt.deployment
    return {
        "status": "ok",
        **dep.describe(),
        "model_dir": rt.model_label(dep.model_dir),
        "live_users": len(rt.live),
        "uptime_s": round(time.time() - rt.started, 1),
        "read_only": rt.read_only,
        "reload": rt.reload.state,
    }


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=ReadAuth,
    responses={
        **AUTH_ERRORS,
        200: {"description": "Prometheus text format.", "content": {"text/plain": {}}},
    },
)
async def metrics(rt: RT) -> Response:
    """Prometheus metrics: requests and latency per route template, model, live users."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    rt.metrics.live_users.set(len(rt.live))
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
