"""``POST /events``: live events, stored like file ingest and folded into recommendations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import Auth, links
from shopsight.serving.runtime import AUTH_ERRORS, RT, fold_in
from shopsight.serving.state import EventsRejected, ingest_events, stage_events

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    response_model=S.EventsOut,
    dependencies=Auth,
    responses={
        **AUTH_ERRORS,
        422: {"model": S.EventsOut},
        **links(
            user=("recommend_user", {"user_id": "$request.body#/user_id"}),
            persona=("persona", {"user_id": "$request.body#/user_id"}),
        ),
    },
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
    fold_in(rt, [r for n, r in enumerate(rows) if n not in bad])
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
