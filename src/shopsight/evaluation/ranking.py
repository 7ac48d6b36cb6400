"""Full-ranking evaluation in bounded memory.

Users are scored in chunks with the model's batched ``score(users)``; each chunk's scores are
masked (training items, items outside the candidate set), reduced to a top-``max(K)`` list per
user (block-maxima pre-selection, then ``torch.topk``, then exact tie handling), compared with
the user's test items, and dropped. Peak memory is therefore one chunk of scores
(``chunk x n_items``), set from a memory budget, plus per-user results (a few floats per user and
metric): it does not grow with the number of users, and nothing of size ``n_users x n_items``
ever exists.

What counts, exactly
--------------------
- **Relevant items** of a user: the non-zeros of their row of ``truth`` (users x items).
- **Excluded items**: the non-zeros of ``exclude`` (by default the training items) get the score
  ``mask_value`` (``-inf``: never ranked). A test item that is also excluded cannot be ranked,
  so it is removed from the user's relevant items (``drop_excluded_truth``) and the number of
  such pairs is reported (``info["dropped_pairs"]``).
- **Candidates** (optional item mask): items outside it are never ranked (score ``-inf``). A
  relevant item outside it stays relevant and counts as a miss, as in protocols whose candidate
  set is "items seen in training".
- **Users**: by default every user with at least one relevant item; users with none are never
  part of a mean (see :mod:`shopsight.evaluation.metrics`).
- **Ties**: items with equal scores are ordered by a fixed random permutation of the catalogue
  (``tie_break="random"``, seeded) or by item index (``"index"``); both are exact also at the
  K-th position, where ``argpartition``/``topk`` alone would pick arbitrarily. A random order
  is the unbiased choice: a model that scores everything equal gets chance-level metrics, not
  the metrics of the low item ids.
- **AUC** (``"auc"``, ``"gauc"``) needs each relevant item's rank among *all* candidates: per
  user, ``AUC_u = 1 - sum_pos (#neg scored higher + 0.5 #neg tied) / (n_pos n_neg)`` with the
  negatives = candidates that are neither excluded nor relevant. ``auc`` is the mean over users
  (Cornac's definition), ``gauc`` weights each user by their number of relevant items.

Sampled ranking (``sampled=N``) ranks each relevant item against ``N`` negatives drawn
uniformly (with replacement) from the user's candidates that are neither excluded nor relevant,
instead of against the whole catalogue. It is only done when asked, and its metrics are named
``sampled_<metric>@K`` and the result's ``mode`` is ``"sampled"``, because such numbers are not
comparable to full-ranking ones (Krichene & Rendle, KDD 2020).

Slices: item slices (e.g. cold items, popular head vs long tail) restrict the relevant items to
that slice (lists unchanged, users without relevant items in the slice left out); user slices
and segments average the per-user values of a group of users. :func:`standard_slices` builds
the usual ones from a training matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

from shopsight.errors import InputError
from shopsight.evaluation import metrics as M

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ScoreFn = Callable[[IntArray], np.ndarray]

DEFAULT_MEMORY_MB = 512
# Bytes held per scored cell: the chunk's float32 scores plus one temporary of the same size
# that a model's scoring may make (e.g. a float32 cast), plus headroom. Measured with
# bench/eval_memory.py: numpy's peak is about 2 x the chunk's scores (8 bytes per cell).
BYTES_PER_CELL = 12


class Scorer(Protocol):
    def score(self, users: npt.ArrayLike) -> np.ndarray: ...


class EvaluationError(InputError):
    """The evaluation cannot run as asked (one-line message)."""


@dataclass
class RankingResult:
    """Metrics of one model on one test set (see the module docstring for definitions)."""

    metrics: dict[str, float]
    per_user: dict[str, FloatArray]
    users: IntArray
    n_relevant: IntArray
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    mode: Literal["full", "sampled"] = "full"
    info: dict[str, Any] = field(default_factory=dict)
    lists: IntArray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: means, slices, mode and info (not the per-user arrays)."""
        return {
            "mode": self.mode,
            "metrics": dict(self.metrics),
            "slices": {k: dict(v) for k, v in self.slices.items()},
            "users": len(self.users),
            "info": dict(self.info),
        }


# -- helpers -----------------------------------------------------------------------------------


def chunk_size_for(n_items: int, memory_budget_mb: float = DEFAULT_MEMORY_MB) -> int:
    """Users per chunk so that a chunk's scores and temporaries fit the memory budget."""
    if memory_budget_mb <= 0:
        raise EvaluationError(f"memory_budget_mb must be positive, got {memory_budget_mb}")
    per_user = BYTES_PER_CELL * max(n_items, 1)
    return int(max(1, min(65536, memory_budget_mb * 2**20 // per_user)))


def tie_ranks(n_items: int, tie_break: str = "random", seed: int = 0) -> IntArray:
    """The order in which tied items are ranked: a seeded permutation rank, or the index."""
    if tie_break == "index":
        return np.arange(n_items, dtype=np.int64)
    if tie_break == "random":
        perm = np.random.default_rng(seed).permutation(n_items)
        rank = np.empty(n_items, dtype=np.int64)
        rank[perm] = np.arange(n_items)
        return rank
    raise EvaluationError(f"tie_break must be 'random' or 'index', got {tie_break!r}")


TOPK_BLOCK = 64


def _topk_candidates(t: torch.Tensor, kq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``kq`` largest values per row and their columns (unordered), as ``torch.topk``.

    On wide rows a block-max pre-selection is about 2x cheaper than ``torch.topk`` over every
    column: the row is cut into blocks of ``TOPK_BLOCK`` columns, and the ``kq`` largest values
    all lie in the ``kq`` blocks with the largest maxima (a block holding one of them has a
    maximum at least that large), so only those blocks (plus the ragged tail) are searched. The
    values returned are exactly ``torch.topk``'s; among equal values the columns may differ,
    which the caller resolves. NaN propagates through the block maxima, so a NaN is still
    returned first.
    """
    b, n = t.shape
    nb = n // TOPK_BLOCK
    if nb < 4 * kq:
        return torch.topk(t, kq, dim=1, largest=True, sorted=False)
    width = nb * TOPK_BLOCK
    blocks = t[:, :width].unflatten(1, (nb, TOPK_BLOCK))
    _, chosen = torch.topk(blocks.amax(dim=2), kq, dim=1, largest=True, sorted=False)
    cand = blocks.gather(1, chosen.unsqueeze(2).expand(-1, -1, TOPK_BLOCK)).reshape(b, -1)
    if width < n:
        cand = torch.cat([cand, t[:, width:]], dim=1)
    vals, pos = torch.topk(cand, kq, dim=1, largest=True, sorted=False)
    in_block = pos < kq * TOPK_BLOCK
    blk = torch.gather(chosen, 1, torch.where(in_block, pos // TOPK_BLOCK, 0))
    cols = torch.where(in_block, blk * TOPK_BLOCK + pos % TOPK_BLOCK, pos - kq * TOPK_BLOCK + width)
    return vals, cols


def topk_with_ties(
    scores: npt.NDArray[np.float32], k: int, tie_rank: IntArray
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Top-``k`` item indices and scores per row, best first, ties ordered by ``tie_rank``.

    ``torch.topk`` (multi-threaded, unsorted: the ``k + 1`` winners are then ordered here by
    score and tie rank) selects candidates; it picks arbitrarily among items tied at the k-th
    score, so a row whose k-th and (k+1)-th scores are equal is redone exactly: every item
    above the k-th score, then the tied ones with the smallest ``tie_rank``. Items scored
    ``-inf`` are never returned: their slots hold index ``-1`` (a row with fewer than ``k``
    finite scores). A row containing NaN gets NaN among its returned scores (torch ranks NaN
    first), for the caller to report.
    """
    b, n = scores.shape
    kk = min(k, n)
    if kk <= 0 or b == 0:
        return np.full((b, max(k, 0)), -1, np.int64), np.full((b, max(k, 0)), -np.inf, np.float32)
    kq = min(kk + 1, n)
    t_vals, t_idx = _topk_candidates(torch.from_numpy(scores), kq)
    vals = t_vals.numpy()
    idx = t_idx.numpy().astype(np.int64)
    has_nan = np.isnan(vals).any(axis=1)
    order = np.lexsort((tie_rank[idx], -vals), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    if kq > kk:
        boundary = vals[:, kk - 1]
        rows = np.flatnonzero((vals[:, kk] == boundary) & np.isfinite(boundary))
        if len(rows):
            sub = scores[rows]
            bnd = boundary[rows][:, None]
            big = np.int64(n + 1)
            key = np.where(sub > bnd, np.int64(-1), np.where(sub == bnd, tie_rank[None, :], big))
            sel = np.argpartition(key, kk - 1, axis=1)[:, :kk]
            sel_vals = np.take_along_axis(sub, sel, axis=1)
            o = np.lexsort((tie_rank[sel], -sel_vals), axis=1)
            idx[rows, :kk] = np.take_along_axis(sel, o, axis=1)
            vals[rows, :kk] = np.take_along_axis(sel_vals, o, axis=1)
        idx, vals = idx[:, :kk], vals[:, :kk]
    idx[vals == -np.inf] = -1
    if has_nan.any():
        vals[has_nan, 0] = np.nan
    if kk < k:  # fewer items than k in the catalogue
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return idx, vals


def _row_keys(mat: sp.csr_matrix, n_cols: int) -> IntArray:
    """Sorted ``local_row * n_cols + col`` keys of a CSR matrix's non-zeros."""
    rows = np.repeat(np.arange(mat.shape[0], dtype=np.int64), np.diff(mat.indptr))
    keys = rows * np.int64(n_cols) + mat.indices.astype(np.int64)
    return np.sort(keys)


def _member(keys: IntArray, query: IntArray) -> BoolArray:
    if not len(keys):
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(keys, query)
    return keys[np.minimum(pos, len(keys) - 1)] == query


def _binary_csr(m: sp.spmatrix | None, shape: tuple[int, int], what: str) -> sp.csr_matrix | None:
    if m is None:
        return None
    c = sp.csr_matrix(m)
    if c.shape[1] != shape[1]:
        raise EvaluationError(f"{what} has {c.shape[1]} item columns, expected {shape[1]}")
    if c.shape[0] < shape[0]:  # fewer user rows: pad (users beyond have nothing)
        c = sp.vstack([c, sp.csr_matrix((shape[0] - c.shape[0], shape[1]))]).tocsr()
    if c.dtype == np.float32 and c.has_canonical_format and bool(np.all(c.data == 1.0)):
        return c  # already binary (a protocol's pairs): no gigabyte copy of a large log's
    c = c.astype(np.float32)
    c.eliminate_zeros()
    c.data[:] = 1.0
    c.sort_indices()
    return c


def _overlap(truth: sp.csr_matrix, excl: sp.csr_matrix, rows: int = 1 << 16) -> sp.csr_matrix:
    """``truth * excl`` (element-wise) a block of user rows at a time: scipy's product of the
    whole matrices allocates for nnz(truth) + nnz(excl), a gigabyte more on a large log."""
    parts = [
        truth[lo : lo + rows].multiply(excl[lo : min(lo + rows, truth.shape[0])]).tocsr()
        for lo in range(0, truth.shape[0], rows)
    ]
    return sp.vstack(parts, format="csr") if parts else truth.copy()


def standard_slices(
    train: sp.spmatrix, *, popular_fraction: float = 0.2
) -> tuple[dict[str, BoolArray], dict[str, BoolArray]]:
    """The usual item and user slices from a training matrix (users x items).

    Items: ``cold_items`` (no training interaction), ``popular`` (the top ``popular_fraction``
    of items by number of training users; ties at the cut-off included) and ``long_tail`` (the
    other items with at least one training interaction). Users: ``cold_users`` (no training
    interaction) and ``warm_users``.
    """
    if not 0.0 < popular_fraction < 1.0:
        raise EvaluationError(f"popular_fraction must be in (0, 1), got {popular_fraction}")
    x = sp.csr_matrix(train)
    if x.has_canonical_format and bool(np.all(x.data != 0)):  # counts without a copy of x
        item_users = np.bincount(x.indices, minlength=x.shape[1])
        user_items = np.diff(x.indptr)
    else:
        item_users = np.asarray((x != 0).sum(axis=0)).ravel()
        user_items = np.asarray((x != 0).sum(axis=1)).ravel()
    n_items = x.shape[1]
    n_head = max(1, round(popular_fraction * n_items))
    cut = np.sort(item_users)[::-1][n_head - 1]
    popular = (item_users >= cut) & (item_users > 0)
    items = {
        "cold_items": item_users == 0,
        "popular": popular,
        "long_tail": (item_users > 0) & ~popular,
    }
    users = {"cold_users": user_items == 0, "warm_users": user_items > 0}
    return items, users


# -- the evaluator -----------------------------------------------------------------------------


SHARDED_CHUNK = 256  # users per chunk in a sharded evaluation
_SHARDED: ContextVar[bool] = ContextVar("shopsight_ranking_sharded", default=False)


@contextmanager
def sharded_by_chunks() -> Iterator[None]:
    """Inside, :func:`evaluate_ranking` under torchrun splits its user chunks over the ranks
    (rank ``r`` scores chunks ``r, r + N, ...``) and gathers the per-user values back in chunk
    order, so every rank returns exactly the one-process result. Every rank must make the same
    calls (collectives); off by default because training validation runs on rank 0 alone."""
    token = _SHARDED.set(True)
    try:
        yield
    finally:
        _SHARDED.reset(token)


def _chunk_shard() -> tuple[int, int] | None:
    if not _SHARDED.get():
        return None
    from shopsight import distributed as D

    ctx = D.current()
    return (ctx.rank, ctx.world_size) if ctx.distributed else None


def _merge_chunk_shards(
    world: int,
    per_user: dict[str, list[FloatArray]],
    slice_vals: dict[str, dict[str, list[FloatArray]]],
    slice_nrel: dict[str, list[IntArray]],
    lists: list[IntArray],
    counts: dict[int, IntArray],
    score_seconds: float,
) -> tuple[
    dict[str, list[FloatArray]],
    dict[str, dict[str, list[FloatArray]]],
    dict[str, list[IntArray]],
    list[IntArray],
    dict[int, IntArray],
    float,
]:
    """Every rank's per-chunk values, back in global chunk order (rank r's j-th chunk is chunk
    ``r + j * world``); recommendation counts summed (integers: exact)."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * world
    dist.all_gather_object(
        gathered, (per_user, slice_vals, slice_nrel, lists, counts, score_seconds)
    )

    def ordered(parts: list[list[Any]]) -> list[Any]:
        keyed = [(r + j * world, x) for r, p in enumerate(parts) for j, x in enumerate(p)]
        return [x for _, x in sorted(keyed, key=lambda e: e[0])]

    names = list(dict.fromkeys(n for g in gathered for n in g[0]))  # rank 0's order first
    per_user_m = {n: ordered([g[0].get(n, []) for g in gathered]) for n in names}
    slice_vals_m: dict[str, dict[str, list[FloatArray]]] = {}
    for s in slice_vals:
        mnames = list(dict.fromkeys(n for g in gathered for n in g[1].get(s, {})))
        slice_vals_m[s] = {
            n: ordered([g[1].get(s, {}).get(n, []) for g in gathered]) for n in mnames
        }
    slice_nrel_m = {s: ordered([g[2].get(s, []) for g in gathered]) for s in slice_nrel}
    lists_m = ordered([g[3] for g in gathered])
    counts_m = {k: np.sum([g[4][k] for g in gathered], axis=0) for k in counts}
    return per_user_m, slice_vals_m, slice_nrel_m, lists_m, counts_m, sum(g[5] for g in gathered)


def evaluate_ranking(
    scorer: Scorer | ScoreFn,
    truth: sp.spmatrix,
    *,
    exclude: sp.spmatrix | None = None,
    ks: Sequence[int] = (10,),
    metrics: Sequence[str] = ("precision", "recall", "ndcg", "map", "mrr", "hit"),
    users: npt.ArrayLike | None = None,
    candidates: npt.ArrayLike | None = None,
    mask_value: float = -np.inf,
    drop_excluded_truth: bool = True,
    tie_break: str = "random",
    seed: int = 0,
    memory_budget_mb: float = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
    sampled: int | None = None,
    item_counts: npt.ArrayLike | None = None,
    n_train_users: int | None = None,
    item_features: npt.ArrayLike | sp.spmatrix | None = None,
    item_slices: Mapping[str, npt.ArrayLike] | None = None,
    user_slices: Mapping[str, npt.ArrayLike] | None = None,
    segments: npt.ArrayLike | None = None,
    return_lists: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RankingResult:
    """Evaluate a scorer over the whole catalogue (or ``sampled`` negatives) in user chunks.

    ``scorer``: a fitted recommender (its ``score(users)``) or a function ``users -> (len(users),
    n_items)`` scores that returns a new array (it is masked in place). ``truth``: users x items,
    non-zero = relevant. ``metrics``: names from :mod:`shopsight.evaluation.metrics` (top-K,
    ``auc``/``gauc``, ``coverage``/``gini``/``novelty``/``diversity``); each top-K and beyond
    metric is reported at every ``ks``. ``novelty`` needs ``item_counts`` (training users per
    item) and ``n_train_users``; ``diversity`` needs ``item_features`` (one row per item).
    ``segments``: a label per user (``None`` entries ignored) for per-segment means.
    ``progress(done_users, total_users)`` is called after each chunk.
    """
    t0 = time.perf_counter()
    score_fn = _score_function(scorer)
    names, cut = M.parse_metrics(list(metrics), ks)
    if not cut:
        raise EvaluationError("no cut-off K given (ks)")
    topk_names = [m for m in names if m in M.TOPK_METRICS]
    full_names = [m for m in names if m in M.FULL_RANK_METRICS]
    beyond_names = [m for m in names if m in M.BEYOND_METRICS]
    bad = [m for m in names if m in M.RATING_METRICS or m == "logloss"]
    if bad:
        raise EvaluationError(f"{bad} are rating/pointwise metrics, not ranking metrics")
    kmax = max(cut)

    tr = sp.csr_matrix(truth)
    n_users_t, n_items = tr.shape
    truth_c = _binary_csr(tr, tr.shape, "truth")
    assert truth_c is not None
    excl = _binary_csr(exclude, tr.shape, "exclude")
    dropped = 0
    if excl is not None and drop_excluded_truth and truth_c.nnz:
        overlap = _overlap(truth_c, excl)
        dropped = int(overlap.nnz)
        if dropped:
            truth_c = (truth_c - overlap).tocsr()
            truth_c.eliminate_zeros()
            truth_c.sort_indices()
    n_rel_all = np.diff(truth_c.indptr).astype(np.int64)

    if users is None:
        eval_users = np.flatnonzero(n_rel_all > 0).astype(np.int64)
    else:
        eval_users = np.unique(np.asarray(users, dtype=np.int64))
        if len(eval_users) and (eval_users.min() < 0 or eval_users.max() >= n_users_t):
            raise EvaluationError(f"users outside the truth matrix's [0, {n_users_t})")
        eval_users = eval_users[n_rel_all[eval_users] > 0]

    cand_mask: BoolArray | None = None
    if candidates is not None:
        c = np.asarray(candidates)
        if c.dtype == bool:
            if c.shape != (n_items,):
                raise EvaluationError(f"candidate mask has shape {c.shape}, expected ({n_items},)")
            cand_mask = c.copy()
        else:
            cand_mask = np.zeros(n_items, dtype=bool)
            cand_mask[c.astype(np.int64)] = True
    non_cand = None if cand_mask is None else np.flatnonzero(~cand_mask)
    n_candidates = n_items if cand_mask is None else int(cand_mask.sum())

    tie_rank = tie_ranks(n_items, tie_break, seed)
    chunk = int(chunk_size) if chunk_size else chunk_size_for(n_items, memory_budget_mb)
    if _SHARDED.get() and not chunk_size:
        # Chunks are the unit of work split over ranks; the same size at any world size
        # keeps every score computed exactly as in one process.
        chunk = min(chunk, SHARDED_CHUNK)
    if chunk < 1:
        raise EvaluationError(f"chunk_size must be >= 1, got {chunk}")

    info_self: FloatArray | None = None
    if "novelty" in beyond_names:
        if item_counts is None or not n_train_users:
            raise EvaluationError(
                "novelty needs item_counts (training users per item) and n_train_users"
            )
        info_self = M.self_information(item_counts, int(n_train_users))
    feats: FloatArray | None = None
    if "diversity" in beyond_names:
        if item_features is None:
            raise EvaluationError("diversity needs item_features (one content row per item)")
        feats = M.normalize_rows(item_features)
        if feats.shape[0] != n_items:
            raise EvaluationError(f"item_features has {feats.shape[0]} rows, expected {n_items}")

    islices = {name: np.asarray(v, dtype=bool) for name, v in (item_slices or {}).items()}
    for name, mask in islices.items():
        if mask.shape != (n_items,):
            raise EvaluationError(
                f"item slice {name!r} has shape {mask.shape}, expected ({n_items},)"
            )

    rng = np.random.default_rng(seed)
    per_user: dict[str, list[FloatArray]] = {}
    slice_vals: dict[str, dict[str, list[FloatArray]]] = {k: {} for k in islices}
    slice_nrel: dict[str, list[IntArray]] = {k: [] for k in islices}
    counts = (
        {kc: np.zeros(n_items, dtype=np.int64) for kc in cut}
        if ("coverage" in beyond_names or "gini" in beyond_names)
        else {}
    )
    lists: list[IntArray] = []
    score_seconds = 0.0
    n_done = 0

    def add(name: str, values: FloatArray) -> None:
        per_user.setdefault(name, []).append(values)

    starts = list(range(0, len(eval_users), chunk))
    shard = None if sampled else _chunk_shard()  # sampled negatives draw from one stream
    for start in starts if shard is None else starts[shard[0] :: shard[1]]:
        ub = eval_users[start : start + chunk]
        t1 = time.perf_counter()
        s = np.asarray(score_fn(ub))
        score_seconds += time.perf_counter() - t1
        if s.shape != (len(ub), n_items):
            raise EvaluationError(
                f"scorer returned shape {s.shape}, expected ({len(ub)}, {n_items})"
            )
        if (
            s.dtype != np.float32
            or not s.flags.writeable
            or not s.flags.c_contiguous
            or not s.flags.owndata  # a view of someone's array: masking it in place would harm
        ):
            s = np.array(s, dtype=np.float32, order="C", copy=True)
        if non_cand is not None and len(non_cand):
            s[:, non_cand] = -np.inf
        ex_r = ex_c = None
        if excl is not None:
            sub = excl[ub].tocoo()
            ex_r, ex_c = sub.row.astype(np.int64), sub.col.astype(np.int64)
            s[ex_r, ex_c] = -np.inf
        t_sub = truth_c[ub]
        t_sub.sort_indices()
        n_rel = np.diff(t_sub.indptr).astype(np.int64)
        keys = _row_keys(t_sub, n_items)

        if sampled:
            _sampled_chunk(
                s,
                t_sub,
                keys,
                cand_mask,
                ex_r,
                ex_c,
                int(sampled),
                cut,
                topk_names,
                full_names,
                tie_rank,
                rng,
                add,
            )
        else:
            if ex_r is not None and mask_value != -np.inf:
                s[ex_r, ex_c] = mask_value  # e.g. ICLRec's rule: history items scored 0
            idx, top_vals = topk_with_ties(s, kmax, tie_rank)
            if np.isnan(top_vals).any():  # torch.topk ranks NaN first: a NaN row shows here
                bad_u = int(ub[np.flatnonzero(np.isnan(top_vals).any(axis=1))[0]])
                raise EvaluationError(f"scorer returned NaN scores (first for user index {bad_u})")
            if ex_r is not None and mask_value != -np.inf:
                s[ex_r, ex_c] = -np.inf
            local = np.arange(len(ub), dtype=np.int64)[:, None]
            hits = _member(keys, local * n_items + idx) & (idx >= 0)
            if topk_names:
                for name, v in M.ranking_metrics(hits, n_rel, cut, topk_names).items():
                    add(name, v)
            for sname, smask in islices.items():
                t_rows = np.repeat(np.arange(len(ub)), np.diff(t_sub.indptr))
                nr = np.bincount(
                    t_rows, weights=smask[t_sub.indices].astype(np.float64), minlength=len(ub)
                ).astype(np.int64)
                h = hits & np.where(idx >= 0, smask[np.maximum(idx, 0)], False)
                slice_nrel[sname].append(nr)
                for name, v in M.ranking_metrics(h, nr, cut, topk_names or ["recall"]).items():
                    slice_vals[sname].setdefault(name, []).append(v)
            if full_names:
                auc_u = _auc_chunk(s, t_sub)
                if "auc" in full_names:
                    add("auc", auc_u)
                if "gauc" in full_names:
                    add("_gauc_auc", auc_u)
            for k in cut:
                top = idx[:, :k]
                if k in counts:
                    counts[k] += np.bincount(top[top >= 0], minlength=n_items)
                if info_self is not None:
                    ok_top = top >= 0
                    vals = np.where(ok_top, info_self[np.maximum(top, 0)], 0.0)
                    nv = ok_top.sum(axis=1)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        add(
                            f"novelty@{k}",
                            np.where(nv > 0, vals.sum(axis=1) / np.maximum(nv, 1), np.nan),
                        )
                if feats is not None:
                    add(f"diversity@{k}", M.intra_list_diversity(top, feats, normalized=True))
            if return_lists:
                lists.append(idx)
        add("_n_rel", n_rel.astype(np.float64))
        n_done += len(ub)
        if progress is not None:
            progress(n_done, len(eval_users))

    if shard is not None:
        per_user, slice_vals, slice_nrel, lists, counts, score_seconds = _merge_chunk_shards(
            shard[1], per_user, slice_vals, slice_nrel, lists, counts, score_seconds
        )
    n_chunks = len(starts)
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in per_user.items()}
    n_relevant = cat.pop("_n_rel", np.zeros(0)).astype(np.int64)
    gauc_vals = cat.pop("_gauc_auc", None)
    result_metrics: dict[str, float] = {}
    prefix = "sampled_" if sampled else ""
    for name, v in cat.items():
        result_metrics[name if name.startswith("sampled_") else prefix + name] = M.mean_over_users(
            v, n_relevant
        )
    per_user_out = {(k if k.startswith("sampled_") else prefix + k): v for k, v in cat.items()}
    if gauc_vals is not None:
        ok = np.isfinite(gauc_vals) & (n_relevant > 0)
        w = n_relevant[ok].astype(np.float64)
        result_metrics["gauc"] = (
            float((gauc_vals[ok] * w).sum() / w.sum()) if w.sum() else float("nan")
        )
    for kc, cnt in counts.items():
        cand_counts = cnt if cand_mask is None else cnt[cand_mask]
        if "coverage" in beyond_names:
            result_metrics[f"coverage@{kc}"] = float(
                np.count_nonzero(cand_counts) / max(n_candidates, 1)
            )
        if "gini" in beyond_names:
            result_metrics[f"gini@{kc}"] = M.gini_from_counts(cand_counts)

    slices: dict[str, dict[str, float]] = {}
    for sname in islices:
        nr = np.concatenate(slice_nrel[sname]) if slice_nrel[sname] else np.zeros(0, np.int64)
        vals_s = {k: np.concatenate(v) for k, v in slice_vals[sname].items()}
        entry: dict[str, float] = {"users": float(np.count_nonzero(nr > 0))}
        entry.update({k: M.mean_over_users(v, nr) for k, v in vals_s.items()})
        slices[sname] = entry
    group_masks: dict[str, BoolArray] = {}
    for gname, gmask in (user_slices or {}).items():
        g = np.asarray(gmask, dtype=bool).ravel()
        if len(g) > n_users_t:
            raise EvaluationError(
                f"user slice {gname!r} has {len(g)} entries for {n_users_t} users"
            )
        g = np.pad(g, (0, n_users_t - len(g)))
        group_masks[gname] = g[eval_users]
    if segments is not None:
        seg = np.asarray(segments, dtype=object)
        if len(seg) < n_users_t:
            seg = np.concatenate([seg, np.full(n_users_t - len(seg), None, dtype=object)])
        seg_eval = seg[eval_users]
        for label in sorted({x for x in seg_eval.tolist() if x is not None}, key=str):
            group_masks[f"segment={label}"] = seg_eval == label
    for gname, gm in group_masks.items():
        entry = {"users": float(np.count_nonzero(gm & (n_relevant > 0)))}
        for mname, v in per_user_out.items():
            entry[mname] = M.mean_over_users(v[gm], n_relevant[gm])
        slices[gname] = entry

    info = {
        "users": len(eval_users),
        "items": int(n_items),
        "candidates": int(n_candidates),
        "ks": list(cut),
        "chunk_size": chunk,
        "chunks": n_chunks,
        "dropped_pairs": dropped,
        "tie_break": tie_break,
        "mask_value": float(mask_value),
        "sampled_negatives": int(sampled) if sampled else None,
        "seconds": time.perf_counter() - t0,
        "score_seconds": score_seconds,
    }
    return RankingResult(
        metrics=result_metrics,
        per_user=per_user_out,
        users=eval_users,
        n_relevant=n_relevant,
        slices=slices,
        mode="sampled" if sampled else "full",
        info=info,
        lists=np.concatenate(lists) if return_lists and lists else None,
    )


def _score_function(scorer: Scorer | ScoreFn) -> ScoreFn:
    """The batched scoring function of a recommender or a plain callable.

    For a :class:`~shopsight.models.base.Recommender` that does not override ``score``, known
    users are scored with ``_score`` directly: ``score`` computes exactly that and then copies
    it into a fresh array, a copy that costs about as much as the model's matrix product
    itself on a large catalogue. (The evaluator copies views it must not mask in place.)
    """
    from shopsight.models.base import Recommender

    if isinstance(scorer, Recommender):
        model = scorer
        model._check_fitted()
        if type(model).score is Recommender.score:

            def fast(users: IntArray) -> np.ndarray:
                if len(users) and users.min() >= 0 and users.max() < model.n_users_:
                    return model._score(users)
                return model.score(users)

            return fast
        return model.score
    if hasattr(scorer, "score"):
        return scorer.score
    return scorer


def _auc_chunk(s: npt.NDArray[np.float32], t_sub: sp.csr_matrix) -> FloatArray:
    """Per-user AUC of the relevant items against the other finite-scored (candidate) items.

    ``s`` has excluded and non-candidate items at ``-inf`` already; relevant items are set to
    ``-inf`` here (in place) so they are not counted as negatives.
    """
    b = s.shape[0]
    rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(t_sub.indptr))
    cols = t_sub.indices.astype(np.int64)
    pos_scores = s[rows, cols].copy()
    s[rows, cols] = -np.inf
    out = np.full(b, np.nan)
    finite = np.isfinite(s)
    n_neg = finite.sum(axis=1)
    starts = t_sub.indptr
    for r in range(b):
        a, e = starts[r], starts[r + 1]
        if a == e or n_neg[r] == 0:
            continue
        neg = np.sort(s[r][finite[r]])
        p = pos_scores[a:e].astype(np.float32)
        below = np.searchsorted(neg, p, side="left")  # negatives strictly lower
        tied = np.searchsorted(neg, p, side="right") - below
        # a relevant item that could not be ranked (-inf) beats nothing
        below = np.where(np.isfinite(p), below, 0)
        tied = np.where(np.isfinite(p), tied, 0)
        out[r] = float((below + 0.5 * tied).sum() / ((e - a) * n_neg[r]))
    return out


def _sampled_chunk(
    s: npt.NDArray[np.float32],
    t_sub: sp.csr_matrix,
    keys: IntArray,
    cand_mask: BoolArray | None,
    ex_r: IntArray | None,
    ex_c: IntArray | None,
    n_neg: int,
    cut: Sequence[int],
    topk_names: Sequence[str],
    full_names: Sequence[str],
    tie_rank: IntArray,
    rng: np.random.Generator,
    add: Callable[[str, FloatArray], None],
) -> None:
    """Rank each relevant item against ``n_neg`` sampled negatives; per-user means."""
    b, n_items = s.shape
    rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(t_sub.indptr))
    cols = t_sub.indices.astype(np.int64)
    pool = np.arange(n_items, dtype=np.int64) if cand_mask is None else np.flatnonzero(cand_mask)
    forbidden = keys
    if ex_r is not None and ex_c is not None and len(ex_r):
        forbidden = np.union1d(keys, ex_r * np.int64(n_items) + ex_c)
    if not len(pool):
        raise EvaluationError("sampled ranking: no candidate items to sample negatives from")
    neg = pool[rng.integers(0, len(pool), size=(len(rows), n_neg))]
    for _ in range(1000):
        bad = _member(forbidden, rows[:, None] * n_items + neg)
        if not bad.any():
            break
        neg[bad] = pool[rng.integers(0, len(pool), size=int(bad.sum()))]
    else:
        raise EvaluationError(
            "sampled ranking: could not draw negatives outside the users' known items "
            "(a user has almost no candidates left)"
        )
    pos_s = s[rows, cols]
    neg_s = s[rows[:, None], neg]
    greater = (neg_s > pos_s[:, None]).sum(axis=1)
    tied_before = ((neg_s == pos_s[:, None]) & (tie_rank[neg] < tie_rank[cols][:, None])).sum(
        axis=1
    )
    rank = np.where(np.isfinite(pos_s), greater + tied_before, n_neg)  # 0-based
    counts = np.bincount(rows, minlength=b).astype(np.float64)

    def per_user(v: FloatArray) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                counts > 0,
                np.bincount(rows, weights=v, minlength=b) / np.maximum(counts, 1),
                np.nan,
            )

    for k in cut:
        hit = (rank < k).astype(np.float64)
        for m in topk_names:
            if m == "hit":
                add(f"sampled_hit@{k}", per_user(hit))
            elif m == "ndcg":
                add(f"sampled_ndcg@{k}", per_user(hit / np.log2(rank + 2.0)))
            elif m == "mrr":
                add(f"sampled_mrr@{k}", per_user(hit / (rank + 1.0)))
            elif m in ("recall", "precision", "map", "ms_map"):
                raise EvaluationError(
                    f"{m} is not defined for sampled ranking (each relevant item is ranked on its "
                    "own); use hit, ndcg or mrr"
                )
    if full_names:
        eq = (neg_s == pos_s[:, None]).sum(axis=1)
        add("sampled_auc", per_user(1.0 - (greater + 0.5 * eq) / n_neg))


__all__ = [
    "DEFAULT_MEMORY_MB",
    "EvaluationError",
    "RankingResult",
    "chunk_size_for",
    "evaluate_ranking",
    "standard_slices",
    "tie_ranks",
    "topk_with_ties",
]
