"""Recommendation metrics with exact, documented definitions.

Conventions shared by every top-K metric
-----------------------------------------
A user's recommendation list is a row of item indices, best first; ``-1`` pads a list that is
shorter than K (fewer rankable items than K) and is never relevant. ``hits`` is the boolean
matrix ``hits[u, p] = list[u, p] is one of u's relevant (test) items``; ``n_relevant[u]`` is the
number of u's relevant items (``|T_u|``). Relevance is binary. Positions ``p`` are 0-based, so
the item at position ``p`` has rank ``p + 1``. Every top-K metric is computed from ``hits`` and
``n_relevant`` alone, so all of them, for every K, come from one top-``max(K)`` list per user
(:func:`ranking_metrics`).

Users with no relevant items (``n_relevant == 0``) have no defined recall, NDCG or AP (the
per-user functions return NaN for them) and are **excluded from every mean**
(:func:`mean_over_users`), for all metrics, including precision and hit rate.

Ties between scores are resolved before these functions see a list (see
:mod:`shopsight.evaluation.ranking`: by a seeded random order of the items by default); the
metrics themselves only read positions.

Per-user definitions (``h_p = hits[u, p]``, ``K`` the cut-off, ``|T|`` = ``n_relevant[u]``):

- Precision@K = ``sum_{p<K} h_p / K``
- Recall@K = ``sum_{p<K} h_p / |T|``
- HitRate@K = ``1`` if any ``h_p`` for ``p < K``, else ``0``
- NDCG@K = ``DCG / IDCG`` with ``DCG = sum_{p<K} h_p / log2(p + 2)`` and ``IDCG = sum_{p <
  min(K, |T|)} 1 / log2(p + 2)`` (binary relevance, log2 discount; any log base gives the same
  ratio, so this equals Microsoft Recommenders' ``1/ln(1+rank)`` form)
- MRR@K = ``1 / (p* + 1)`` for the first hit position ``p* < K``, ``0`` when none
- MAP@K = ``sum_{p<K} h_p * Precision@(p+1) / min(K, |T|)`` (RecBole / most papers);
  ``ms_map`` divides by ``|T|`` instead (Microsoft Recommenders' "MAP" column)

Beyond-accuracy metrics read the lists of all users: catalogue coverage, Gini index of how often
each item is recommended, novelty (mean self-information ``-log2 p_i`` of recommended items) and
intra-list diversity (``1 -`` mean pairwise cosine similarity of item content features).

Pointwise metrics: AUC (Mann-Whitney, ties count one half), GAUC (per-group AUC, weighted),
LogLoss, and the rating metrics RMSE, MAE and R2.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from typing import Final, Literal, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.stats import rankdata

from shopsight.errors import InputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Top-K metrics computed from the hit matrix (see the module docstring).
TOPK_METRICS: Final[tuple[str, ...]] = (
    "precision",
    "recall",
    "hit",
    "ndcg",
    "mrr",
    "map",
    "ms_map",
)
#: Metrics that need the rank of every relevant item among all candidates (not only the top K).
FULL_RANK_METRICS: Final[tuple[str, ...]] = ("auc", "gauc")
#: Metrics of the recommendation lists themselves (no ground truth), each at every K.
BEYOND_METRICS: Final[tuple[str, ...]] = ("coverage", "gini", "novelty", "diversity")
RATING_METRICS: Final[tuple[str, ...]] = ("rmse", "mae", "r2")
ALIASES: Final[dict[str, str]] = {
    "hr": "hit",
    "hitrate": "hit",
    "hit_rate": "hit",
    "ndcg": "ndcg",
    "p": "precision",
    "prec": "precision",
    "r": "recall",
    "ild": "diversity",
    "catalog_coverage": "coverage",
    "catalogue_coverage": "coverage",
}


class MetricError(InputError):
    """A metric name or its inputs are invalid (one-line message)."""


# -- names -----------------------------------------------------------------------------------


def canonical_metric(name: str) -> str:
    """The canonical name of a metric (``HR`` -> ``hit``, ``ILD`` -> ``diversity``)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    known = TOPK_METRICS + FULL_RANK_METRICS + BEYOND_METRICS + RATING_METRICS + ("logloss",)
    if key not in known:
        raise MetricError(f"unknown metric {name!r} (known: {', '.join(known)})")
    return key


def parse_metrics(
    metrics: Sequence[str], ks: Sequence[int] | None = None
) -> tuple[list[str], list[int]]:
    """Split ``["ndcg@10", "recall", "hit@5"]`` into metric names and the sorted cut-offs.

    A metric given with ``@K`` adds ``K`` to the cut-offs; every top-K metric is then reported
    at every cut-off (they all come from the same list, so extra K cost nothing).
    """
    names: list[str] = []
    cut: set[int] = {int(k) for k in (ks or [])}
    for m in metrics:
        base, _, k = m.partition("@")
        name = canonical_metric(base)
        if k:
            try:
                kk = int(k)
            except ValueError:
                raise MetricError(f"metric {m!r}: expected NAME@K with an integer K") from None
            cut.add(kk)
        if name not in names:
            names.append(name)
    if any(k < 1 for k in cut):
        raise MetricError(f"cut-offs must be >= 1, got {sorted(cut)}")
    return names, sorted(cut)


# -- hits --------------------------------------------------------------------------------------


def hits_from_lists(
    recommended: npt.ArrayLike, relevant: Sequence[Collection[int]]
) -> tuple[BoolArray, IntArray]:
    """``(hits, n_relevant)`` for lists of recommended items and sets of relevant items.

    ``recommended``: ``(n_users, K)`` item indices, best first, ``-1`` for padding.
    A convenience for small inputs and tests; the evaluator computes hits vectorised.
    """
    rec = np.atleast_2d(np.asarray(recommended, dtype=np.int64))
    if len(relevant) != rec.shape[0]:
        raise MetricError(f"{rec.shape[0]} recommendation lists but {len(relevant)} relevant sets")
    hits = np.zeros(rec.shape, dtype=bool)
    n_rel = np.zeros(rec.shape[0], dtype=np.int64)
    for u, rel in enumerate(relevant):
        rel_set = {int(x) for x in rel}
        n_rel[u] = len(rel_set)
        hits[u] = [(int(x) in rel_set) and x >= 0 for x in rec[u]]
    return hits, n_rel


def _check(
    hits: npt.ArrayLike, n_relevant: npt.ArrayLike | None, k: int
) -> tuple[BoolArray, IntArray]:
    h = np.atleast_2d(np.asarray(hits, dtype=bool))
    if k < 1:
        raise MetricError(f"k must be >= 1, got {k}")
    if n_relevant is None:
        return h, np.zeros(0, np.int64)
    n = np.asarray(n_relevant, dtype=np.int64).ravel()
    if len(n) != h.shape[0]:
        raise MetricError(f"hits has {h.shape[0]} rows but n_relevant has {len(n)}")
    if (h.sum(axis=1) > n).any():
        raise MetricError("a user has more hits than relevant items (duplicates in a list?)")
    return h, n


def _discount(k: int) -> FloatArray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _pad(h: BoolArray, k: int) -> BoolArray:
    """First ``k`` columns, padded with misses when the lists are shorter than ``k``."""
    if h.shape[1] >= k:
        return h[:, :k]
    return np.pad(h, ((0, 0), (0, k - h.shape[1])))


def precision_at_k(hits: npt.ArrayLike, k: int) -> FloatArray:
    """Per-user Precision@K = hits in the first K positions / K (see the module docstring)."""
    h, _ = _check(hits, None, k)
    return _pad(h, k).sum(axis=1) / float(k)


def recall_at_k(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> FloatArray:
    """Per-user Recall@K = hits in the first K / |T|; NaN for users with no relevant items."""
    h, n = _check(hits, n_relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, _pad(h, k).sum(axis=1) / np.maximum(n, 1), np.nan)


def hit_rate_at_k(hits: npt.ArrayLike, k: int) -> FloatArray:
    """Per-user HitRate@K: 1 when at least one relevant item is in the first K, else 0."""
    h, _ = _check(hits, None, k)
    return np.asarray(_pad(h, k).any(axis=1), dtype=np.float64)


def ndcg_at_k(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> FloatArray:
    """Per-user NDCG@K, binary relevance, log2 discount, IDCG over ``min(K, |T|)`` positions.

    NaN for users with no relevant items.
    """
    h, n = _check(hits, n_relevant, k)
    disc = _discount(k)
    dcg = _pad(h, k).astype(np.float64) @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, dcg / np.where(ideal > 0, ideal, 1.0), np.nan)


def mrr_at_k(hits: npt.ArrayLike, k: int) -> FloatArray:
    """Per-user reciprocal rank of the first relevant item within the first K (0 if none)."""
    h, _ = _check(hits, None, k)
    hk = _pad(h, k)
    first = np.argmax(hk, axis=1)
    return np.where(hk.any(axis=1), 1.0 / (first + 1.0), 0.0)


def map_at_k(
    hits: npt.ArrayLike,
    n_relevant: npt.ArrayLike,
    k: int,
    denominator: Literal["min", "relevant"] = "min",
) -> FloatArray:
    """Per-user average precision at K.

    ``AP@K = sum_{p<K} hits[p] * Precision@(p+1) / D`` with ``D = min(K, |T|)`` (``"min"``, the
    usual definition, so a perfect list scores 1) or ``D = |T|`` (``"relevant"``, Microsoft
    Recommenders' "MAP"). NaN for users with no relevant items.
    """
    h, n = _check(hits, n_relevant, k)
    hk = _pad(h, k).astype(np.float64)
    prec = np.cumsum(hk, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    total = (prec * hk).sum(axis=1)
    if denominator == "min":
        d = np.minimum(n, k)
    elif denominator == "relevant":
        d = n
    else:
        raise MetricError(f"denominator must be 'min' or 'relevant', got {denominator!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(d, 1), np.nan)


def ranking_metrics(
    hits: npt.ArrayLike,
    n_relevant: npt.ArrayLike,
    ks: Sequence[int],
    metrics: Sequence[str] = TOPK_METRICS,
) -> dict[str, FloatArray]:
    """All requested top-K metrics at every K in one pass: ``{"ndcg@10": per-user values}``.

    ``hits`` needs at least ``max(ks)`` columns (shorter lists are padded with misses).
    """
    h, n = _check(hits, n_relevant, max(ks) if ks else 1)
    out: dict[str, FloatArray] = {}
    names = [canonical_metric(m) for m in metrics]
    unknown = [m for m in names if m not in TOPK_METRICS]
    if unknown:
        raise MetricError(f"not top-K metrics: {unknown}")
    kmax = max(ks)
    hk = _pad(h, kmax).astype(np.float64)
    cum = np.cumsum(hk, axis=1)  # hits in the first p+1 positions
    disc = _discount(kmax)
    dcg = np.cumsum(hk * disc, axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    prec_at = cum / np.arange(1, kmax + 1, dtype=np.float64)
    ap = np.cumsum(prec_at * hk, axis=1)
    any_hit = np.cumsum(hk, axis=1) > 0
    first = np.where(hk.any(axis=1), np.argmax(hk, axis=1), kmax)
    has = n > 0
    safe_n = np.maximum(n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in sorted(set(int(x) for x in ks)):
            c = cum[:, k - 1]
            for m in names:
                key = f"{m}@{k}"
                if m == "precision":
                    out[key] = c / k
                elif m == "recall":
                    out[key] = np.where(has, c / safe_n, np.nan)
                elif m == "hit":
                    out[key] = any_hit[:, k - 1].astype(np.float64)
                elif m == "ndcg":
                    idcg = ideal[np.minimum(n, k)]
                    out[key] = np.where(has, dcg[:, k - 1] / np.where(idcg > 0, idcg, 1.0), np.nan)
                elif m == "mrr":
                    out[key] = np.where(first < k, 1.0 / (first + 1.0), 0.0)
                elif m == "map":
                    out[key] = np.where(has, ap[:, k - 1] / np.maximum(np.minimum(n, k), 1), np.nan)
                elif m == "ms_map":
                    out[key] = np.where(has, ap[:, k - 1] / safe_n, np.nan)
    return out


def mean_over_users(values: npt.ArrayLike, n_relevant: npt.ArrayLike | None = None) -> float:
    """Mean of per-user values over users with at least one relevant item (NaN-free).

    Users with ``n_relevant == 0`` are left out, and so is any NaN (an undefined value, e.g.
    the AUC of a user without negatives). NaN when no user is left.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    keep = np.isfinite(v)
    if n_relevant is not None:
        keep &= np.asarray(n_relevant).ravel() > 0
    return float(v[keep].mean()) if keep.any() else float("nan")


# -- pointwise classification metrics -------------------------------------------------------


def auc_score(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative).

    Computed as the Mann-Whitney U statistic from average ranks, so a tie between a positive
    and a negative counts one half. NaN when there are no positives or no negatives.
    """
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(y) != len(s):
        raise MetricError(f"{len(y)} labels but {len(s)} scores")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks: ties share
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def gauc(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike,
    weight: Literal["impressions", "positives", "uniform"] = "impressions",
) -> float:
    """Group AUC (Zhou et al., DIN 2018): per-group AUC averaged with weights.

    ``GAUC = sum_g w_g AUC_g / sum_g w_g`` over the groups (usually users) whose AUC is defined
    (at least one positive and one negative); ``w_g`` is the group's number of rows
    (``"impressions"``, as in DIN), of positives (``"positives"``), or 1 (``"uniform"``).
    NaN when no group has both classes.
    """
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if not (len(y) == len(s) == len(g)):
        raise MetricError(f"labels, scores, groups differ in length: {len(y)}, {len(s)}, {len(g)}")
    if weight not in ("impressions", "positives", "uniform"):
        raise MetricError(f"weight must be impressions, positives or uniform, got {weight!r}")
    order = np.argsort(g, kind="stable")
    g_sorted = g[order]
    bounds = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1], True])
    num = den = 0.0
    for a, b in itertools.pairwise(bounds):
        rows = order[a:b]
        value = auc_score(y[rows], s[rows])
        if np.isnan(value):
            continue
        w = float(
            b - a if weight == "impressions" else y[rows].sum() if weight == "positives" else 1
        )
        num += w * value
        den += w
    return num / den if den > 0 else float("nan")


def log_loss(labels: npt.ArrayLike, probabilities: npt.ArrayLike, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))``, ``p`` clipped to
    ``[eps, 1 - eps]`` so a confident mistake costs ``-log(eps)`` instead of infinity."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if len(y) != len(p):
        raise MetricError(f"{len(y)} labels but {len(p)} probabilities")
    if not len(y):
        return float("nan")
    if ((y != 0) & (y != 1)).any():
        raise MetricError("log_loss labels must be 0 or 1")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


# -- rating metrics ----------------------------------------------------------------------------


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if len(t) != len(p):
        raise MetricError(f"{len(t)} true values but {len(p)} predictions")
    return t, p


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error over all (user, item) test pairs: ``sqrt(mean((y - y^)^2))``."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan")


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error over all test pairs: ``mean(|y - y^|)``."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if len(t) else float("nan")


def r2(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (``SS_tot`` around the test mean).

    1 is perfect, 0 is as good as predicting the test mean, negative is worse. NaN when the
    test values are constant.
    """
    t, p = _pair(y_true, y_pred)
    ss_tot = float(((t - t.mean()) ** 2).sum()) if len(t) else 0.0
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot


# -- beyond accuracy ---------------------------------------------------------------------------


def _valid_items(rec: npt.ArrayLike, n_items: int) -> IntArray:
    r = np.asarray(rec, dtype=np.int64)
    flat = r[r >= 0]
    if len(flat) and flat.max() >= n_items:
        raise MetricError(f"recommended item index {int(flat.max())} outside [0, {n_items})")
    return flat


def recommendation_counts(recommended: npt.ArrayLike, n_items: int) -> IntArray:
    """How many lists each item appears in (``-1`` padding ignored)."""
    return np.bincount(_valid_items(recommended, n_items), minlength=n_items).astype(np.int64)


def catalogue_coverage(recommended: npt.ArrayLike, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` items that appear in at least one list."""
    if n_items <= 0:
        raise MetricError(f"n_items must be positive, got {n_items}")
    return float(np.count_nonzero(recommendation_counts(recommended, n_items)) / n_items)


def gini_from_counts(counts: npt.ArrayLike) -> float:
    """Gini index of non-negative counts over all items (zeros included).

    With counts sorted ascending, ``x_1 <= ... <= x_n``:
    ``G = sum_i (2i - n - 1) x_i / (n sum_i x_i)``. 0 when every item is recommended equally
    often; ``1 - 1/n`` when a single item takes every slot. NaN when all counts are zero.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    n = len(x)
    total = x.sum()
    if n == 0 or total == 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def gini_index(recommended: npt.ArrayLike, n_items: int) -> float:
    """Gini index of how often each catalogue item is recommended (see
    :func:`gini_from_counts`); a measure of concentration on few items."""
    return gini_from_counts(recommendation_counts(recommended, n_items))


def self_information(item_counts: npt.ArrayLike, n_users: int) -> FloatArray:
    """``-log2 p_i`` with ``p_i = (users who interacted with i in training) / n_users``.

    An item nobody interacted with gets ``p_i = 1 / n_users`` (as if seen once), so novelty
    stays finite and cold items count as the most novel.
    """
    c = np.asarray(item_counts, dtype=np.float64).ravel()
    if n_users <= 0:
        raise MetricError(f"n_users must be positive, got {n_users}")
    p = np.clip(np.maximum(c, 1.0) / n_users, None, 1.0)
    return -np.log2(p)


def novelty(recommended: npt.ArrayLike, item_counts: npt.ArrayLike, n_users: int) -> FloatArray:
    """Per-list novelty: the mean self-information (:func:`self_information`) of its items.

    NaN for an empty list; average over users with :func:`mean_over_users`.
    """
    rec = np.atleast_2d(np.asarray(recommended, dtype=np.int64))
    info = self_information(item_counts, n_users)
    valid = rec >= 0
    vals = np.where(valid, info[np.where(valid, rec, 0)], 0.0)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, vals.sum(axis=1) / np.maximum(n, 1), np.nan)


def normalize_rows(features: npt.ArrayLike | sp.spmatrix) -> FloatArray:
    """Dense float64 rows scaled to unit L2 norm (all-zero rows stay zero)."""
    if sp.issparse(features):
        f = np.asarray(cast(sp.spmatrix, features).toarray(), dtype=np.float64)
    else:
        f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise MetricError(f"item features must be 2-d (n_items, dim), got shape {f.shape}")
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.where(norm > 0, norm, 1.0)


def intra_list_diversity(
    recommended: npt.ArrayLike, features: npt.ArrayLike | sp.spmatrix, *, normalized: bool = False
) -> FloatArray:
    """Per-list intra-list diversity: ``1 -`` the mean cosine similarity over item pairs.

    ``ILD(L) = 1 - (2 / (n(n-1))) sum_{a<b} cos(f_a, f_b)`` over the ``n`` valid items of the
    list (content feature rows ``f``); an item with an all-zero feature row has similarity 0 to
    everything. NaN for lists with fewer than two items. Uses ``|sum f|^2 - sum |f|^2 = 2 sum_{a<b}
    f_a.f_b`` on unit rows, so a list costs ``O(n * dim)``, not ``O(n^2 * dim)``.
    """
    rec = np.atleast_2d(np.asarray(recommended, dtype=np.int64))
    f = np.asarray(features, dtype=np.float64) if normalized else normalize_rows(features)
    if rec.size and rec.max() >= f.shape[0]:
        raise MetricError(f"item index {int(rec.max())} has no feature row ({f.shape[0]} rows)")
    valid = rec >= 0
    emb = f[np.where(valid, rec, 0)] * valid[..., None]
    total = emb.sum(axis=1)
    sq = (emb**2).sum(axis=(1, 2))
    pair_sum = ((total**2).sum(axis=1) - sq) / 2.0
    n = valid.sum(axis=1).astype(np.float64)
    pairs = n * (n - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, 1.0 - pair_sum / np.maximum(pairs, 1.0), np.nan)


#: Metrics where a smaller value is better (errors, losses, concentration).
LOWER_IS_BETTER: Final[frozenset[str]] = frozenset({"rmse", "mae", "logloss", "gini"})


def lower_is_better(metric: str) -> bool:
    """True when a smaller value of ``metric`` (``"rmse"``, ``"gini@10"``) is better."""
    return metric.split("@")[0].removeprefix("sampled_") in LOWER_IS_BETTER


def summarize(per_user: Mapping[str, npt.ArrayLike], n_relevant: npt.ArrayLike) -> dict[str, float]:
    """``{metric: mean_over_users(values, n_relevant)}`` for a dict of per-user arrays."""
    return {k: mean_over_users(v, n_relevant) for k, v in per_user.items()}


__all__ = [
    "BEYOND_METRICS",
    "FULL_RANK_METRICS",
    "LOWER_IS_BETTER",
    "RATING_METRICS",
    "TOPK_METRICS",
    "MetricError",
    "auc_score",
    "canonical_metric",
    "catalogue_coverage",
    "gauc",
    "gini_from_counts",
    "gini_index",
    "hit_rate_at_k",
    "hits_from_lists",
    "intra_list_diversity",
    "log_loss",
    "lower_is_better",
    "mae",
    "map_at_k",
    "mean_over_users",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_rows",
    "novelty",
    "parse_metrics",
    "precision_at_k",
    "r2",
    "ranking_metrics",
    "recall_at_k",
    "recommendation_counts",
    "rmse",
    "self_information",
    "summarize",
]
