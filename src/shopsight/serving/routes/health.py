"""``/health`` and ``/metrics``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from shopsight.serving.runtime import RT

router = APIRouter(tags=["ops"])


@router.get("/health")
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


@router.get("/metrics", response_class=Response)
async def metrics(rt: RT) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    rt.metrics.live_users.set(len(rt.live))
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
