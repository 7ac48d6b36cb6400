"""``/persona/{user_id}``, ``/segments`` and the personas dashboard."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import ReadAuth, UserP
from shopsight.serving.runtime import AUTH_ERRORS, RT, jsonable
from shopsight.serving.state import PersonaBook

log = logging.getLogger("shopsight.serving")

router = APIRouter(tags=["personas"], dependencies=ReadAuth, responses=AUTH_ERRORS)


@router.get("/persona/{user_id}", response_model=S.PersonaOut)
def persona(rt: RT, user_id: UserP) -> dict[str, Any]:
    """One user's persona (segment, demographics, activity, affinities, price, rhythm, funnel,
    RFM, propensity) from ``<model>/personas``, under their pseudonym; raw id or pseudonym in."""
    personas = rt.deployment.personas
    if personas is None:
        raise HTTPException(404, "no personas are deployed (build them into <model>/personas)")
    profile = personas.profile(user_id)
    if profile is None:
        raise HTTPException(404, f"user_id: no persona for {user_id!r}")
    return jsonable(profile)  # type: ignore[no-any-return]


@router.get("/segments", response_model=S.SegmentsOut)
def segments(rt: RT) -> dict[str, Any]:
    """The shop's segments (name, size, description, traits), largest first."""
    personas = rt.deployment.personas
    if personas is None:
        raise HTTPException(404, "no personas are deployed (build them into <model>/personas)")
    return {"segments": jsonable(personas.segments())}


def mount_dashboard(app: FastAPI, personas: PersonaBook | None) -> None:
    """The personas dashboard (HTML pages, not API operations: kept out of the schema).

    Like every route but ``/health`` it needs a token once one is configured (AuthMiddleware):
    a browser signs in at ``/login`` and is sent back with a session cookie."""
    if personas is None:
        return
    from shopsight.personas.dashboard import create_router

    book: Any = personas
    app.include_router(create_router(book), include_in_schema=False)
