"""``/admin/reload`` and ``/admin/forget/{user_id}``."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import Auth, UserP, links
from shopsight.serving.runtime import (
    AUTH_ERRORS,
    RT,
    ReloadStatus,
    Runtime,
    do_reload,
    jsonable,
    now_iso,
)

router = APIRouter(tags=["admin"], dependencies=Auth, responses=AUTH_ERRORS)


def _model_folder(rt: Runtime, given: str | None) -> Path:
    """The folder a reload may load: below the models folder once links are followed."""
    if not given:
        return rt.deployment.model_dir
    raw = Path(given)
    if ".." in raw.parts:
        raise HTTPException(
            422, "model_dir: '..' is not allowed (a folder below the models folder)"
        )
    root = rt.models_root
    try:
        real = (raw if raw.is_absolute() else root / raw).resolve(strict=True)
    except (OSError, ValueError, RuntimeError):  # missing, a loop, a NUL byte...
        raise HTTPException(
            404, f"model_dir: {given[:200]} is not a trained model folder"
        ) from None
    if not real.is_relative_to(root):
        raise HTTPException(422, f"model_dir: {given[:200]} is outside the models folder")
    if not (real / "config.json").is_file():
        raise HTTPException(404, f"model_dir: {given[:200]} is not a trained model folder")
    for folder, dirs, files in os.walk(real):  # no link inside may lead out of the root either
        for name in dirs + files:
            p = Path(folder) / name
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise HTTPException(
                    422, f"model_dir: {given[:200]} links outside the models folder ({name})"
                )
    return real


@router.post(
    "/admin/reload",
    response_model=S.ReloadOut,
    status_code=202,
    responses={
        **links(202, status=("reload_status", {})),
        200: {
            "model": S.ReloadOut,
            "description": "The reload finished (with `wait`).",
            **links(200, status=("reload_status", {}))[200],
        },
    },
)
def reload(rt: RT, body: Annotated[S.ReloadIn | None, Body()] = None) -> Any:
    """Load a model folder in the background and swap it in atomically.

    ``model_dir`` is relative to the models folder (``serve --models-root``, default: the parent
    of ``--model``); a path leading outside it, by ``..`` or by a link, is refused (422)."""
    body = body or S.ReloadIn()
    if rt.experiment is not None:
        raise HTTPException(409, "an A/B test is running: restart `serve` with new --variant")
    target = _model_folder(rt, body.model_dir)
    with rt.reload_lock:
        if rt.reload.state == "loading":
            raise HTTPException(409, "a reload is already running")
        rt.reload = ReloadStatus(
            state="loading", model_dir=rt.model_label(target), started_at=now_iso()
        )
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
    """State of the last reload (idle, loading, done, failed with its error)."""
    return rt.reload.to_dict()


@router.post(
    "/admin/forget/{user_id}",
    response_model=S.ForgetOut,
    responses=links(
        again=("forget", {"user_id": "$request.path.user_id"}),
        user=("recommend_user", {"user_id": "$request.path.user_id"}),
        persona=("persona", {"user_id": "$request.path.user_id"}),
    ),
)
def forget(rt: RT, user_id: UserP) -> dict[str, Any]:
    """Erase a user (``shopsight.privacy.forget.forget_user``) and drop their live state."""
    if rt.read_only:
        raise HTTPException(409, "the store is open read-only: cannot forget users")
    fn = rt.forget_fn
    if rt.impressions is not None:
        rt.impressions.flush()  # lists already served to them are in the store before it is
    try:
        with rt.store_lock:
            if fn is not None:  # a replacement (tests)
                from shopsight.features.pipeline import features_dir

                report = fn(rt.store, user_id, feature_cache=features_dir(rt.store_path))
            else:
                from shopsight.privacy.forget import forget_served

                # Store, feature cache, spool and the served model folder (personas included),
                # persisted: a restart does not bring the user back.
                dirs = [rt.deployment.model_dir]
                if rt.experiment is not None:  # every A/B variant's folder too
                    dirs += [d.model_dir for d in rt.experiment.deployments.values()]
                report = forget_served(rt.store, user_id, store_path=rt.store_path, model_dirs=dirs)
    except ValueError as exc:
        raise HTTPException(409, f"cannot forget {user_id!r}: {exc}") from None
    dropped = rt.live.forget(rt.user_key(user_id))
    if fn is None and rt.experiment is None:
        # Serve the folded-out model and personas now (variants: the live-state mark above
        # keeps the user off their vectors until restart, which reads the folded-out folders).
        do_reload(rt, rt.deployment.model_dir)
    return {"forgotten": True, "live_state_dropped": dropped, "report": jsonable(report)}
