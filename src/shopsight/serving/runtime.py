"""What every route shares: the :class:`Runtime` (one per app) and the helpers that answer from it.

The store has one connection, guarded by ``store_lock``, used by events, predictions, reloads
and forget requests. Which model version answers is decided once per request (one reference
read of ``Runtime.deployment``): a reload builds the new
:class:`~shopsight.serving.state.Deployment` completely in a background thread and then
replaces that reference, so no request sees a half-loaded model.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import Depends, Request
from fastapi.responses import Response

from shopsight.app.explain import IndexedHistory
from shopsight.app.explain import explain_ranked as app_explain_ranked
from shopsight.data.store import Store
from shopsight.serving import schemas as S
from shopsight.serving.auth import AccessPolicy
from shopsight.serving.impressions import ImpressionLog
from shopsight.serving.middleware import Metrics
from shopsight.serving.state import (
    Deployment,
    ExplainFn,
    ForgetFn,
    LiveState,
    PersonaBook,
    Predictor,
    Ranked,
    event_key,
    event_weight,
    load_deployment,
    load_user_history,
    rank_user,
    user_history_for_explain,
)

if TYPE_CHECKING:
    from shopsight.serving.variants import Experiment

log = logging.getLogger("shopsight.serving")


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


def now_iso() -> str:
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
    policy: AccessPolicy
    models_root: Path
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
    experiment: Experiment | None = None  # A/B variants (serving/variants.py)
    impressions: ImpressionLog | None = None  # served-list log (serving/impressions.py)

    def deployment_for(self, user_id: str) -> Deployment:
        """The deployment that answers this user: their A/B variant's, else the one served."""
        if self.experiment is None:
            return self.deployment
        return self.experiment.deployment_for(self.user_key(user_id))

    def log_served(
        self,
        surface: str,
        user_key: str | None,
        dep: Deployment,
        ranked: Ranked,
        item_ids: np.ndarray | None = None,
    ) -> None:
        """Queue a served list for the impression log (a no-op when logging is off).

        ``ranked.items`` index ``item_ids`` (default: the model's item ids)."""
        if self.impressions is not None:
            if user_key is not None and self.live.is_forgotten(user_key):
                user_key = None  # forgotten in this process: served, but not linked to them
            variant = None if self.experiment is None else self.experiment.name_of(dep)
            self.impressions.add(
                surface,
                user_key,
                variant,
                dep.model.name,
                dep.version,
                ranked.source,
                dep.artifact.item_ids if item_ids is None else item_ids,
                ranked.items,
            )

    def publish(self, dep: Deployment) -> None:
        self.deployment = dep  # the atomic swap: one reference assignment
        self.metrics.set_model(dep.model.name, dep.version)

    @contextmanager
    def read_view(self) -> Iterator[Store]:
        """The store on a connection of its own (a DuckDB cursor: same database, own
        transaction), for reads that must not hold ``store_lock`` (the lock only guards the
        shared connection, taken here just to open the cursor)."""
        with self.store_lock:
            cursor = self.store.conn.cursor()
        view = copy.copy(self.store)
        view.conn = cursor
        try:
            yield view
        finally:
            cursor.close()

    def model_label(self, model_dir: Path) -> str:
        """A model folder as clients see it: relative to the models folder, never absolute."""
        try:
            return Path(model_dir).resolve().relative_to(self.models_root).as_posix()
        except ValueError:
            return Path(model_dir).name

    def user_key(self, user_id: str) -> str:
        """The id the store and model know a user by (its pseudonym in a pseudonymised store)."""
        if self.pseudonymizer is None:
            return user_id
        from shopsight.data.pseudonym import is_pseudonym

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


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RT = Annotated[Runtime, Depends(get_runtime)]

ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": S.ErrorOut} for c in (400, 404, 409, 413, 422)
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": S.ErrorOut},
    403: {"model": S.ErrorOut},
}


def json_response(obj: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(obj), status_code=status_code, media_type="application/json")


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def items_out(
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


def explain_ranked(
    rt: Runtime,
    dep: Deployment,
    ranked: Ranked,
    history: tuple[np.ndarray, np.ndarray] | IndexedHistory,
) -> dict[int, dict[str, Any]]:
    """Explanations of the ranked items by item index (:func:`shopsight.app.explain_ranked`,
    the same function ``shopsight explain`` uses)."""
    if isinstance(history, tuple):
        history = IndexedHistory(*history)
    result = app_explain_ranked(
        dep.artifact,
        history,
        ranked.items,
        dep.catalogue.titles,
        content=rt.content_for_explain(dep),
        top=3,
        explain_fn=rt.explain_fn,
    )
    return {int(i): jsonable(e) for i, e in zip(ranked.items.tolist(), result, strict=True)}


def recommend_one(
    rt: Runtime,
    dep: Deployment,
    user_id: str,
    k: int,
    exclude_seen: bool,
    allowed: np.ndarray | None,
    with_explain: bool,
) -> dict[str, Any]:
    key = rt.user_key(user_id)
    ranked = rank_user(dep, rt.live, key, k, exclude_seen, allowed)
    explanations = None
    if with_explain:
        hist = ranked.history or user_history_for_explain(
            dep, rt.live, key, rt.store, rt.store_lock
        )
        explanations = explain_ranked(rt, dep, ranked, hist)
    rt.log_served("user", key, dep, ranked)
    return {
        "user_id": user_id,
        "source": ranked.source,
        "model_version": dep.version,
        "items": items_out(dep, ranked, explanations),
    }


def fold_in(rt: Runtime, rows: Iterable[dict[str, object]]) -> None:
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


def do_reload(rt: Runtime, target: Path) -> None:
    """Build the deployment of ``target`` and publish it (run on the reload thread)."""
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
            model_dir=rt.model_label(target),
            error=msg,
            started_at=rt.reload.started_at,
            finished_at=now_iso(),
        )
        rt.metrics.reloads.labels("failed").inc()
        log.warning("reload of %s failed: %s", target, msg)
        return
    rt.publish(dep)
    rt.reload = ReloadStatus(
        state="done",
        model_dir=rt.model_label(target),
        version=dep.version,
        started_at=rt.reload.started_at,
        finished_at=now_iso(),
    )
    rt.metrics.reloads.labels("done").inc()


def store_pseudonymizer(store: Store) -> Callable[[str], str] | None:
    """A pseudonymised store's id mapping (raw ids in requests; pseudonyms stored)."""
    from shopsight.data.pseudonym import store_pseudonymizer as make

    try:
        pz = make(store)
    except ValueError as exc:  # pseudonymised, but its key is not set here
        log.warning("%s", exc)
        return None
    return None if pz is None else pz
