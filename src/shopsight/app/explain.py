"""A user's recommendations, each with its reason: one function for the CLI and the HTTP API.

``shopsight explain`` and ``GET /recommend/{user}?explain=true`` both call
:func:`explain_ranked` with the user's history from :mod:`shopsight.data.history` (one
event-weight rule), so for the same user and model they give the same items and reasons, and
reasons name item titles (the item id where a title is unknown), never internal indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shopsight.data.history import UserHistory
from shopsight.data.store import Store
from shopsight.errors import InputError
from shopsight.models.artifact import ModelArtifact
from shopsight.models.base import FloatArray, IntArray

Method = Literal["loo", "gradient"]
ExplainFn = Callable[..., list[dict[str, Any]]]


@dataclass
class IndexedHistory:
    """A history in the model's item indices (items the model does not know are dropped)."""

    items: IntArray
    weights: FloatArray
    events: list[str] | None = None


def index_history(artifact: ModelArtifact, history: UserHistory) -> IndexedHistory:
    idx = np.array([artifact.item_index(i) for i in history.items], np.int64)
    known = idx >= 0
    return IndexedHistory(
        idx[known],
        np.asarray(history.weights, np.float32)[known],
        [e for e, ok in zip(history.events, known.tolist(), strict=True) if ok],
    )


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def align_content(
    row: dict[str, int],
    vectors: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    item_ids: np.ndarray,
) -> dict[str, np.ndarray]:
    """Unit text/image vectors aligned with the model's item indices (zero where missing);
    ``row`` maps an item id to its row of ``vectors``."""
    out: dict[str, np.ndarray] = {}
    pos = np.array([row.get(str(t), -1) for t in item_ids.tolist()], np.int64)
    for name in ("text", "image"):
        if name not in vectors:
            continue
        x, m = vectors[name], masks[name]
        a = np.zeros((len(item_ids), x.shape[1]), np.float32)
        ok = (pos >= 0) & m[np.maximum(pos, 0)]
        a[ok] = x[pos[ok]]
        out[name] = a
    return out


def item_content(store_path: str | Path, item_ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """The store's item features (``featurize``) aligned with the model, None without any."""
    from shopsight.features.pipeline import load_item_features

    try:
        feats = load_item_features(store_path)
    except FileNotFoundError:
        return None
    mods = feats.modalities()
    return align_content(
        {item: i for i, item in enumerate(feats.item_ids)},
        {n: normalise_rows(x) for n, (x, _) in mods.items()},
        {n: np.asarray(m, bool) for n, (_, m) in mods.items()},
        item_ids,
    )


def rank_user(
    artifact: ModelArtifact, user_id: str, history: IndexedHistory, k: int
) -> tuple[IntArray, FloatArray]:
    """Top-k item indices for a user, as every front end ranks them: a user the model knows by
    their trained vector (items seen in training excluded), else from their history, else the
    model's cold-start ranking."""
    model = artifact.model
    uidx = artifact.user_index(user_id)
    if uidx >= 0:
        idx, vals = model.recommend(np.array([uidx], np.int64), k, exclude_seen=True)
        idx, vals = idx[0], vals[0]
    else:
        idx, vals = model.recommend_history(history.items, k, weights=history.weights)
    ok = np.isfinite(vals)
    return idx[ok], vals[ok]


def explain_ranked(
    artifact: ModelArtifact,
    history: IndexedHistory,
    ranked: IntArray,
    titles: Sequence[str | None],
    *,
    top: int = 3,
    method: Method = "loo",
    content: dict[str, np.ndarray] | None = None,
    explain_fn: ExplainFn | None = None,
) -> list[dict[str, Any]]:
    """One explanation per ranked item index: ``{"item_id", "title", "score", "reason",
    "history": [{"item_id", "title", "weight"}], "modalities", "method"}``.

    ``titles`` is aligned with the model's item indices. ``explain_fn`` (default
    :func:`shopsight.explain.items.explain_items`) may be replaced (tests of the API).
    """
    if top < 1:
        raise InputError(f"--top {top}: expected an integer >= 1")
    if method not in ("loo", "gradient"):
        raise InputError(f"--method: expected loo or gradient, got {method!r}")
    if explain_fn is None:
        from shopsight.explain.items import explain_items

        explain_fn = explain_items
    ids = [str(i) for i in artifact.item_ids.tolist()]
    names = [t if isinstance(t, str) and t.strip() else ids[i] for i, t in enumerate(titles)]
    kwargs: dict[str, Any] = {"item_titles": names, "content": content, "top": top}
    if history.events is not None:
        kwargs["history_events"] = history.events
    if method != "loo":
        kwargs["method"] = method
    raw = explain_fn(artifact.model, history.items, history.weights, ranked, **kwargs)

    def named(i: int) -> dict[str, Any]:
        return {"item_id": ids[i], "title": titles[i]}

    out = []
    for e in raw:
        item = int(e["item"])
        out.append(
            {
                **named(item),
                "score": None if e.get("score") is None else float(e["score"]),
                "reason": e["reason"],
                "history": [
                    {**named(int(p["item"])), "weight": float(p["weight"])}
                    for p in e.get("history", [])
                ],
                "modalities": {m: float(v) for m, v in e.get("modalities", {}).items()},
                "method": e.get("method", method),
            }
        )
    return out


def explain_user(
    store_path: str | Path,
    model_dir: str | Path,
    user_id: str,
    *,
    k: int = 10,
    top: int = 3,
    method: Method = "loo",
) -> dict[str, Any]:
    """``shopsight explain``: the user's top-k with the reason for each."""
    from shopsight.app.models import load_model
    from shopsight.data.history import item_titles, user_history

    if k < 1:
        raise InputError(f"-k {k}: expected an integer >= 1")
    if top < 1:
        raise InputError(f"--top {top}: expected an integer >= 1")
    if method not in ("loo", "gradient"):
        raise InputError(f"--method: expected loo or gradient, got {method!r}")
    with Store(store_path, read_only=True) as st:
        art = load_model(model_dir)
        history = index_history(art, user_history(st, user_id))
        titles = item_titles(st, [str(i) for i in art.item_ids.tolist()])
    ranked, _ = rank_user(art, user_id, history, k)
    content = item_content(store_path, art.item_ids)
    recs = explain_ranked(art, history, ranked, titles, top=top, method=method, content=content)
    return {
        "user": user_id,
        "model": art.model.name,
        "method": method,
        "history_events": len(history.items),
        "recommendations": [{"rank": r, **e} for r, e in enumerate(recs, 1)],
    }


__all__ = [
    "ExplainFn",
    "IndexedHistory",
    "align_content",
    "explain_ranked",
    "explain_user",
    "index_history",
    "item_content",
    "normalise_rows",
    "rank_user",
]
