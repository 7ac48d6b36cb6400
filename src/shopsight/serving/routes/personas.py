"""``/persona/{user_id}``, ``/segments`` and the personas dashboard."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from shopsight.serving.routes.params import UserP
from shopsight.serving.runtime import ERRORS, RT, jsonable
from shopsight.serving.state import PersonaBook

log = logging.getLogger("shopsight.serving")

router = APIRouter(tags=["personas"])


@router.get("/persona/{user_id}", responses=ERRORS)
def persona(rt: RT, user_id: UserP) -> dict[str, Any]:
    personas = rt.deployment.personas
    if personas is None:
        raise HTTPException(404, "no personas are deployed (build them into <model>/personas)")
    profile = personas.profile(user_id)
    if profile is None:
        raise HTTPException(404, f"user_id: no persona for {user_id!r}")
    return jsonable(profile)  # type: ignore[no-any-return]


@router.get("/segments", responses=ERRORS)
def segments(rt: RT) -> dict[str, Any]:
    personas = rt.deployment.personas
    if personas is None:
        raise HTTPException(404, "no personas are deployed (build them into <model>/personas)")
    return {"segments": jsonable(personas.segments())}


def mount_dashboard(app: FastAPI, personas: PersonaBook | None) -> None:
    """The personas dashboard (HTML pages, not API operations: kept out of the schema)."""
    if personas is None:
        return
    try:
        from shopsight.personas.dashboard import create_router  # type: ignore[import-not-found]
    except ImportError:
        log.info("personas present but no dashboard module: /dashboard not mounted")
        return
    book: Any = personas
    app.include_router(create_router(book), include_in_schema=False)
