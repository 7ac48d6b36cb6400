"""Why was this item recommended? History attribution, modality weights and a one-line reason.

:func:`explain_items` answers, for each recommended item of a user known by their interactions
(``history_items`` / ``history_weights``, the same input as ``Recommender.score_history``):

**Which past items contributed** (``history``). The default, ``method="loo"``, is
leave-one-out on the model's own fold-in: the item's score with the full history minus its
score with every event of one past item removed. It needs nothing but ``score_history``, so it
works for every :class:`~shopsight.models.base.Recommender` (EASE, ItemKNN, ALS, BPR, LightGCN,
VBPR, FREEDOM, SASRec, quantised models), and for models whose fold-in is linear in the history
(EASE, ItemKNN, LightGCN) it is exactly their additive decomposition. It costs one fold-in per
distinct past item, so only the ``max_history`` most recent distinct items are attributed.
``method="gradient"`` is gradient x input on the input item embeddings of SASRec (one backward
pass per recommended item instead of one forward pass per past item). Weights are the effects
divided by the sum of their absolute values (signed; the listed ones are the ``top`` positive).

**Which modalities contributed** (``modalities``): how much more similar the recommended item
is to the top past items than to a typical catalogue item, per modality. Text and image use the
item content matrices (the model's ``content_`` when it is a content model, else ``content``),
centred and L2-normalised as the content models do (raw image features are all alike without
centring); behaviour uses co-occurrence in the model's training interactions (cosine of item
columns of ``seen_``: "the same shoppers interacted with both"). Per modality the
attribution-weighted mean cosine to the top past items is turned into a z-score against the
recommended item's cosine to every other item (standard error of a weighted mean of random
items); what exceeds ``CHANCE_Z`` (1) is the modality's evidence, normalised to sum 1, so a
modality that carries no information (e.g. noise features) gets little or no weight.

**A reason**: "Because you bought <title>; similar style" from the top past item, its event
type (``history_events`` when given, else inferred from the default implicit weights: 8
purchase, 4 cart, 2 click, 1 view) and the dominant modality.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt

from shopsight.errors import InputError

if TYPE_CHECKING:  # runtime imports stay lazy: `shopsight --help` imports this package
    import scipy.sparse as sp

    from shopsight.models.base import Recommender

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]

MODALITY_KEYS: Final[tuple[str, ...]] = ("text", "image", "behaviour")
Method = Literal["loo", "gradient"]

# Past-tense phrase per event type, for the reason line.
VERBS: Final[dict[str, str]] = {
    "purchase": "bought",
    "add_to_cart": "added to your cart",
    "favorite": "saved",
    "share": "shared",
    "review": "reviewed",
    "rate": "rated",
    "click": "looked at",
    "view": "viewed",
    "remove_from_cart": "considered",
    "search": "searched for",
}
# Strength of each event type when choosing the verb for an item seen several times.
_EVENT_RANK: Final[dict[str, int]] = {
    "purchase": 9,
    "review": 8,
    "rate": 8,
    "add_to_cart": 7,
    "favorite": 6,
    "share": 5,
    "click": 4,
    "view": 3,
    "remove_from_cart": 2,
    "search": 1,
}
PHRASES: Final[dict[str, str]] = {
    "text": "similar style",
    "image": "similar look",
    "behaviour": "often chosen by the same shoppers",
}
DEFAULT_REASON: Final[str] = "Popular with shoppers like you"
# Similarity within this many standard errors of chance is no evidence for a modality.
CHANCE_Z: Final[float] = 1.0


class ExplainError(InputError):
    """The explanation cannot be computed as asked (one-line message)."""


def event_from_weight(weight: float) -> str:
    """The event type an implicit weight most likely came from (``Dataset.DEFAULT_WEIGHTS``)."""
    if weight >= 8:
        return "purchase"
    if weight >= 4:
        return "add_to_cart"
    if weight >= 2:
        return "click"
    return "view"


# -- which past items ---------------------------------------------------------------------------


def _distinct_recent(items: IntArray, max_history: int) -> IntArray:
    """Distinct items of the history, most recent last occurrence first, at most ``max_history``."""
    last: dict[int, int] = {}
    for pos, it in enumerate(items.tolist()):
        last[it] = pos
    order = sorted(last, key=lambda i: -last[i])
    return np.array(order[:max_history], np.int64)


def leave_one_out(
    model: Recommender,
    history_items: IntArray,
    history_weights: FloatArray,
    items: IntArray,
    *,
    max_history: int = 50,
) -> tuple[IntArray, F64Array, FloatArray]:
    """``(past_items, effects (len(past_items), len(items)), full scores (len(items),))``.

    ``effects[p, r]``: score of ``items[r]`` with the full history minus with every event of
    ``past_items[p]`` removed (order of the remaining events kept). A history of one distinct
    item gets effect 1 (it is the whole reason; removing it leaves the cold-start ranking,
    whose scores are on another scale).
    """
    full = model.score_history(history_items, history_weights)[items]
    past = _distinct_recent(history_items, max_history)
    effects = np.zeros((len(past), len(items)), np.float64)
    if len(past) == 1 and len(np.unique(history_items)) == 1:
        effects[0] = 1.0
        return past, effects, full
    for p, it in enumerate(past.tolist()):
        keep = history_items != it
        s = model.score_history(history_items[keep], history_weights[keep])[items]
        effects[p] = full.astype(np.float64) - s.astype(np.float64)
    return past, effects, full


def gradient_x_input(
    model: Recommender,
    history_items: IntArray,
    history_weights: FloatArray,
    items: IntArray,
    *,
    max_history: int = 50,
    steps: int = 8,
) -> tuple[IntArray, F64Array, FloatArray]:
    """Integrated gradients x input for SASRec (same return shape as :func:`leave_one_out`).

    The history is encoded as ``SASRec._fold_in`` does (event types from the weights, repeats
    collapsed); the effect of a past item on ``items[r]`` is the sum, over the positions it
    occupies, of ``x_pos . mean_alpha d score_r / d x_pos (alpha x)`` with ``x_pos`` its input
    item embedding and ``alpha`` on ``steps`` midpoints of (0, 1] (integrated gradients from
    the all-zero input embeddings; ``steps=1``: plain gradient x input).
    """
    import torch

    from shopsight.models import sasrec as S

    model = getattr(model, "model_", model)  # a quantised SASRec scores with its inner model
    if not isinstance(model, S.SASRec):
        raise ExplainError(
            f"method=gradient: needs a SASRec model (got {type(model).__name__}); use method=loo"
        )
    model._check_fitted()
    lut = model.event_by_weight_
    ev = np.array(
        [lut.get(float(x), model._default_event()) for x in history_weights.tolist()], np.int64
    )
    seq, evs = history_items, ev
    if model.collapse_repeats and len(seq):
        seq, evs, _ = S._collapse(seq, evs, history_weights, np.array([0, len(seq)]))
    seq, evs = seq[-model.max_len :], evs[-model.max_len :]
    net = model.net_
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        table = net.item_table()
    x_items = torch.from_numpy(S._left_pad([seq], model.max_len)).to(device)
    x_events = (
        torch.from_numpy(S._left_pad([evs], model.max_len)).to(device)
        if net.event is not None
        else None
    )
    targets = torch.from_numpy(np.asarray(items, np.int64) + 1).to(device)
    # gradients w.r.t. table rows sum over an item's positions: one term per distinct item
    uniq = np.unique(seq)
    rows = torch.from_numpy(uniq + 1).to(device)
    x = table.detach()[rows]
    out = table.detach()[targets]
    bias = net.bias.detach()[targets]
    # Riemann midpoints of the path alpha * x, alpha in (0, 1]; steps=1 is plain gradient x input
    alphas = [1.0] if steps <= 1 else [(s + 0.5) / steps for s in range(steps)]
    per_item = np.zeros((len(uniq), len(items)))
    with torch.enable_grad():
        for alpha in alphas:
            scaled = (alpha * table.detach()).requires_grad_(True)
            h = net.encode(x_items, x_events, scaled)[0, -1]
            scores = out @ h + bias
            for r in range(len(items)):
                (g,) = torch.autograd.grad(scores[r], scaled, retain_graph=r < len(items) - 1)
                per_item[:, r] += (g[rows] * x).sum(-1).cpu().numpy() / len(alphas)
    with torch.no_grad():
        h = net.encode(x_items, x_events, table)[0, -1]
        scores = out @ h + bias
    past = _distinct_recent(history_items, max_history)
    effects = np.zeros((len(past), len(items)), np.float64)
    index = {it: p for p, it in enumerate(past.tolist())}
    for u, it in enumerate(uniq.tolist()):
        if it in index:
            effects[index[it]] = per_item[u]
    return past, effects, scores.detach().cpu().numpy().astype(np.float32)


def _gradient(
    model: Recommender,
    history_items: IntArray,
    history_weights: FloatArray,
    items: IntArray,
    *,
    max_history: int = 50,
) -> tuple[IntArray, F64Array, FloatArray]:
    return gradient_x_input(model, history_items, history_weights, items, max_history=max_history)


# -- which modalities ----------------------------------------------------------------------------


def _normalised(x: npt.NDArray[np.floating[Any]], mask: npt.NDArray[np.bool_]) -> FloatArray:
    """Centre on the mean of the present rows and L2-normalise (absent rows: zero)."""
    x = np.asarray(x, np.float32)
    if not mask.any():
        return np.zeros_like(x)
    y = np.where(mask[:, None], x - x[mask].mean(axis=0), 0.0)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return (y / np.maximum(norms, 1e-12)).astype(np.float32)


class _ModalityIndex:
    """Per-modality unit-norm item vectors (dense text/image, sparse behaviour)."""

    def __init__(
        self, model: Recommender, content: Mapping[str, npt.ArrayLike] | None, n_items: int
    ) -> None:
        self.dense: dict[str, FloatArray] = {}
        self.masks: dict[str, npt.NDArray[np.bool_]] = {}
        given: dict[str, tuple[np.ndarray, npt.NDArray[np.bool_]]] = {}
        model_content = getattr(model, "content_", None)
        if model_content is not None:
            for m in model_content.modalities:
                given[m] = (model_content.features[m], np.asarray(model_content.masks[m], bool))
        for m, x in (content or {}).items():
            arr = np.asarray(x, np.float32)
            given[m] = (arr, np.linalg.norm(arr, axis=1) > 0)
        for m, (x, mask) in given.items():
            if m not in ("text", "image"):
                continue
            if x.shape[0] != n_items:
                raise ExplainError(
                    f"content[{m!r}]: {x.shape[0]} rows for a model of {n_items} items"
                )
            self.dense[m] = _normalised(x, mask)
            self.masks[m] = mask
        import scipy.sparse as sp

        seen = getattr(model, "seen_", None)
        self.seen = seen
        self.behaviour: sp.csr_matrix | None = None
        if seen is not None and seen.nnz:
            cols = sp.csr_matrix(seen.T, dtype=np.float32)
            norms = np.sqrt(np.asarray(cols.multiply(cols).sum(axis=1)).ravel())
            self.behaviour = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ cols)
            self.masks["behaviour"] = norms > 0

    def similarities(self, modality: str, item: int) -> FloatArray | None:
        """Cosine of ``item`` to every item in this modality (None: the item lacks it)."""
        if not self.masks.get(modality, np.zeros(item + 1, bool))[item]:
            return None
        if modality == "behaviour":
            assert self.behaviour is not None
            return np.asarray((self.behaviour @ self.behaviour[item].T).todense()).ravel()
        x = self.dense[modality]
        return (x @ x[item]).astype(np.float32)

    def weights(self, item: int, past: IntArray, past_w: F64Array) -> dict[str, float]:
        """Evidence (z-score above chance) of similarity to the top past items, summing to 1."""
        z: dict[str, float] = dict.fromkeys(MODALITY_KEYS, 0.0)
        if not len(past):
            return z
        for m in MODALITY_KEYS:
            sims = self.similarities(m, item)
            if sims is None:
                continue
            present = self.masks[m].copy()
            present[item] = False
            has = present[past]
            if not has.any() or present.sum() < 2:
                continue
            ref = sims[present]
            w = past_w[has] / past_w[has].sum()
            mean_sim = float((sims[past[has]] * w).sum())
            # standard error of a weighted mean of random items' similarities
            se = float(ref.std()) * float(np.sqrt((w**2).sum()))
            if se > 0:
                z[m] = max((mean_sim - float(ref.mean())) / se - CHANCE_Z, 0.0)
        total = sum(z.values())
        return {m: (v / total if total > 0 else 0.0) for m, v in z.items()}


# Per fitted model (when no explicit content is given): the normalised matrices are built once,
# not per request. Weak keys: the cache never keeps a model alive.
_INDEX_CACHE: weakref.WeakKeyDictionary[Recommender, _ModalityIndex] = weakref.WeakKeyDictionary()


def _modality_index(
    model: Recommender, content: Mapping[str, npt.ArrayLike] | None, n_items: int
) -> _ModalityIndex:
    if content is not None:
        return _ModalityIndex(model, content, n_items)
    try:
        cached = _INDEX_CACHE.get(model)
    except TypeError:  # not weak-referenceable
        return _ModalityIndex(model, None, n_items)
    if cached is None or cached.seen is not getattr(model, "seen_", None):
        cached = _ModalityIndex(model, None, n_items)
        _INDEX_CACHE[model] = cached
    return cached


# -- the reason line -------------------------------------------------------------------------------


def _strongest_events(
    items: IntArray, weights: FloatArray, events: Sequence[str] | None
) -> dict[int, str]:
    out: dict[int, str] = {}
    for pos, it in enumerate(items.tolist()):
        e = events[pos] if events is not None else event_from_weight(float(weights[pos]))
        if it not in out or _EVENT_RANK.get(e, 0) > _EVENT_RANK.get(out[it], 0):
            out[it] = e
    return out


def _title(item: int, titles: Sequence[str | None] | None) -> str:
    if titles is not None and 0 <= item < len(titles):
        t = titles[item]
        if isinstance(t, str) and t.strip():
            return t.strip()
    return f"item {item}"


def reason_line(title: str | None, event: str | None, modalities: Mapping[str, float]) -> str:
    """``Because you bought <title>; similar style`` (or the default reason without a title)."""
    if title is None:
        return DEFAULT_REASON
    line = f"Because you {VERBS.get(event or 'view', 'interacted with')} {title}"
    best = max(modalities.items(), key=lambda kv: kv[1], default=("", 0.0))
    if best[1] > 0:
        line += f"; {PHRASES.get(best[0], 'similar')}"
    return line


# -- the public entry point ----------------------------------------------------------------------------


def explain_items(
    model: Recommender,
    history_items: npt.ArrayLike,
    history_weights: npt.ArrayLike,
    items: npt.ArrayLike,
    *,
    item_titles: Sequence[str | None] | None = None,
    content: dict[str, np.ndarray] | None = None,
    top: int = 3,
    history_events: Sequence[str] | None = None,
    method: Method = "loo",
    max_history: int = 50,
) -> list[dict[str, Any]]:
    """Explain each recommended item index of ``items`` for a user with this history.

    Returns one JSON-ready dict per item: ``{"item", "score", "reason", "history": [{"item",
    "weight"}] (top ``top`` positive contributors, best first), "modalities": {"text",
    "image", "behaviour"}, "method"}`` (see the module docstring for the definitions).
    ``history_events``: the event type of each history entry (exact verbs in the reason).
    """
    model._check_fitted()
    n_items = int(model.n_items_)
    h = np.atleast_1d(np.asarray(history_items, np.int64))
    w = np.atleast_1d(np.asarray(history_weights, np.float32))
    if len(w) != len(h):
        raise ExplainError(f"history_weights: {len(w)} weights for {len(h)} history items")
    if history_events is not None and len(history_events) != len(h):
        raise ExplainError(f"history_events: {len(history_events)} events for {len(h)} items")
    ok = (h >= 0) & (h < n_items)
    events = (
        None
        if history_events is None
        else [e for e, k in zip(history_events, ok, strict=True) if k]
    )
    h, w = h[ok], w[ok]
    rec = np.atleast_1d(np.asarray(items, np.int64))
    if ((rec < 0) | (rec >= n_items)).any():
        raise ExplainError(f"items: indices outside [0, {n_items})")
    if top < 1 or max_history < 1:
        raise ExplainError(f"top={top}, max_history={max_history}: expected integers >= 1")
    if method not in ("loo", "gradient"):
        raise ExplainError(f"method={method!r}: expected loo or gradient")

    if len(h):
        attribute = leave_one_out if method == "loo" else _gradient
        past, effects, full = attribute(model, h, w, rec, max_history=max_history)
    else:
        past = np.zeros(0, np.int64)
        effects = np.zeros((0, len(rec)), np.float64)
        full = model.score_history(h, w)[rec]
    verbs = _strongest_events(h, w, events)
    index = _modality_index(model, content, n_items)

    out: list[dict[str, Any]] = []
    for r, item in enumerate(rec.tolist()):
        eff = effects[:, r]
        total = float(np.abs(eff).sum())
        norm = eff / total if total > 0 else np.zeros_like(eff)
        order = [p for p in np.argsort(-norm, kind="stable").tolist() if norm[p] > 0][:top]
        top_items, top_w = past[order], norm[order].astype(np.float64)
        modalities = index.weights(item, top_items, top_w)
        first = int(top_items[0]) if len(top_items) else None
        reason = reason_line(
            None if first is None else _title(first, item_titles),
            None if first is None else verbs.get(first),
            modalities,
        )
        out.append(
            {
                "item": int(item),
                "score": float(full[r]),
                "reason": reason,
                "history": [
                    {"item": int(i), "weight": round(float(v), 6)}
                    for i, v in zip(top_items.tolist(), top_w.tolist(), strict=True)
                ],
                "modalities": {m: round(float(v), 6) for m, v in modalities.items()},
                "method": method,
            }
        )
    return out


__all__ = [
    "DEFAULT_REASON",
    "MODALITY_KEYS",
    "ExplainError",
    "event_from_weight",
    "explain_items",
    "gradient_x_input",
    "leave_one_out",
    "reason_line",
]
