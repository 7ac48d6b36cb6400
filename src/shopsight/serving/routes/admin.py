"""``/admin/reload`` and ``/admin/forget/{user_id}``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import Auth, UserP
from shopsight.serving.runtime import AUTH_ERRORS, RT, ReloadStatus, do_reload, jsonable, now_iso

router = APIRouter(tags=["admin"], dependencies=Auth, responses=AUTH_ERRORS)


@router.post("/admin/reload", response_model=S.ReloadOut, status_code=202)
def reload(rt: RT, body: Annotated[S.ReloadIn | None, Body()] = None) -> Any:
    """Load a model folder in the background and swap it in atomically."""
    body = body or S.ReloadIn()
    target = Path(body.model_dir) if body.model_dir else rt.deployment.model_dir
    try:
        is_model = (target / "config.json").is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte...
        is_model = False
    if not is_model:
        raise HTTPException(404, f"model_dir: {str(target)[:200]} is not a trained model folder")
    with rt.reload_lock:
        if rt.reload.state == "loading":
            raise HTTPException(409, "a reload is already running")
        rt.reload = ReloadStatus(state="loading", model_dir=str(target), started_at=now_iso())
        thread = threading.Thread(
            target=do_reload, args=(rt, target), name="shopsight-reload", daemon=True
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


@router.get("/admin/reload", response_model=S.ReloadOut)
def reload_status(rt: RT) -> Any:
    return rt.reload.to_dict()


@router.post("/admin/forget/{user_id}")
def forget(rt: RT, user_id: UserP) -> dict[str, Any]:
    """Erase a user (``shopsight.privacy.forget.forget_user``) and drop their live state."""
    if rt.read_only:
        raise HTTPException(409, "the store is open read-only: cannot forget users")
    fn = rt.forget_fn
    if fn is None:
        try:
            from shopsight.privacy.forget import forget_user  # type: ignore[import-not-found]
        except ImportError:
            raise HTTPException(
                501, "forget is not available: shopsight.privacy.forget is missing"
            ) from None
        fn = forget_user
    from shopsight.features.pipeline import features_dir

    try:
        with rt.store_lock:
            report = fn(rt.store, user_id, feature_cache=features_dir(rt.store_path))
    except ValueError as exc:
        raise HTTPException(409, f"cannot forget {user_id!r}: {exc}") from None
    dropped = rt.live.forget(rt.user_key(user_id))
    return {"forgotten": True, "live_state_dropped": dropped, "report": jsonable(report)}
