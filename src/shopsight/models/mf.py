"""Matrix factorisation for implicit feedback: ALS (``implicit``'s engine) and a PyTorch BPR.

**ALS** (Hu, Koren & Volinsky 2008) minimises ``sum_ui c_ui (p_ui - x_u.y_i)^2 + l2 (|X|^2 +
|Y|^2)`` with ``p_ui = 1`` where the user interacted and confidence ``c_ui = 1 + alpha *
w_ui`` from the dataset's multi-behaviour weights ``w`` (``Dataset.implicit``: views, clicks,
carts, purchases, ... each with its own weight), or ``1 + alpha * log(1 + w / epsilon)`` with
``confidence="log"``. Fitting runs on ``implicit``'s Cython solver (conjugate gradient by
default). Fold-in solves the same least squares exactly for one user against the fixed item
factors (``implicit``'s ``recalculate_user``), so a new user costs one ``d x d`` solve.

**BPR** (Rendle et al. 2009) is a PyTorch model, because multimodal extensions (VBPR) build on
it: :class:`PairSampler` (vectorised, seedable triples; positives drawn in proportion to the
transformed multi-behaviour weights, negatives uniform among the user's non-interacted items),
:class:`BPRModule` (user/item factors + item bias; subclasses override :meth:`BPRModule.
pair_scores` and :meth:`BPRModule.regularisation`) and :func:`fit_pairwise` (the
:class:`~shopsight.training.trainer.Trainer` wired to a sampler, DDP-ready) are the reusable
pieces. Fold-in maximises the same BPR objective for one user with the item side fixed
(L-BFGS over the user vector, all the user's positives against a fixed seeded sample of
negatives), i.e. the user's BPR-optimal vector rather than a heuristic average.

Positive weighting for BPR (``positive_weighting``): ``"uniform"`` (default) visits every
interacted pair once per epoch (classic BPR); ``"linear"`` draws pairs with probability
proportional to their multi-behaviour weight ``w`` (a purchase with weight 8 is drawn 8x as
often as a view with weight 1); ``"log"`` proportional to ``log1p(w)``, purchases ahead of
views without letting a few heavy pairs dominate an epoch. The default is uniform because it
ranked best on both benchmark sets (next-interaction targets of any type: MovieLens-100K,
NDCG@10 0.175 vs 0.160 for log; synthetic shop 0.261 vs 0.258 log, 0.237 linear); weighting
pays off when the target is the heavy behaviour itself (e.g. predicting purchases).

Defaults follow the data (:mod:`shopsight.models.scaling`): ``factors="auto"`` (about 2 per
training pair behind a user or item vector or ``2 sqrt(items)``, whichever is larger, 64-256:
64 on MovieLens-100K, 256 on Amazon Beauty's 12,101 items), ``epochs="auto"`` (about 2,200
steps of 2,048 triples, 10-100 epochs: 60 on MovieLens-100K) and ``l2="auto"`` (0.01, more on
sparse data: 0.025 on Beauty), Adam at 0.003. On MovieLens-100K stratified by item (Microsoft
Recommenders' benchmark) they give NDCG@10 0.462 against cornac BPR's published 0.445 (k 200,
200 iterations); the former fixed 8 epochs at 0.01 gave 0.397. ``bench/defaults.py`` compares
them with tuned settings on three datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from shopsight import distributed as D
from shopsight.models.base import FloatArray, IntArray, Recommender
from shopsight.models.scaling import (
    AUTO,
    DataShape,
    auto_als_factors,
    auto_als_l2,
    auto_bpr_factors,
    auto_bpr_l2,
    auto_epochs,
    data_shape,
    resolve,
)
from shopsight.training.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    derive_seed,
    validation_fn,
)

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

Weighting = Literal["uniform", "linear", "log"]
Auto = Literal["auto"]


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: expected {expected}")


# =============================================================================================
# ALS
# =============================================================================================


def confidence_matrix(
    weights: sp.csr_matrix, alpha: float, mode: str = "linear", epsilon: float = 1.0
) -> sp.csr_matrix:
    """``1 + alpha * w`` (linear) or ``1 + alpha * log(1 + w / epsilon)`` on the non-zeros."""
    c = weights.tocsr().astype(np.float32, copy=True)
    c.sum_duplicates()
    c.data = np.maximum(c.data, 0)
    if mode == "log":
        c.data = 1.0 + alpha * np.log1p(c.data / epsilon)
    else:
        c.data = 1.0 + alpha * c.data
    c.data = c.data.astype(np.float32)
    c.eliminate_zeros()
    return c


def items_major(item_factors: FloatArray) -> FloatArray:
    """Item factors as a C-contiguous (factors, items) copy, kept beside the model for scoring.

    ``user @ items_major`` runs BLAS's column-sweeping gemv, several times faster on one thread
    than ``item_factors @ user`` (a dot product per 64-float row): about 0.3 ms instead of
    1-1.5 ms for 50,000 x 64 here, which is most of a served request. It costs one more copy of
    the item factors.
    """
    return np.ascontiguousarray(np.asarray(item_factors, np.float32).T)


class ALS(Recommender):
    """Implicit-feedback ALS on ``implicit``'s CPU solver (see the module docstring).

    Parameters: ``factors``; ``iterations``; ``l2`` (regularisation of both factor matrices);
    ``alpha`` and ``confidence`` (``"linear"`` or ``"log"``, with ``epsilon``) define the
    confidence of an interaction from its multi-behaviour weight; ``use_cg``: conjugate-gradient
    solver (fast) or exact Cholesky; ``num_threads`` (0: all cores; the result does not depend
    on it, every user/item solve is independent); ``seed`` for the initial factors.
    ``valid`` is not used (ALS converges in a few iterations without early stopping).

    ``factors`` and ``l2`` default to ``"auto"``, resolved at ``fit`` from the training data
    (:mod:`shopsight.models.scaling`): about ``2 sqrt(items)`` factors (64-256) and ``l2`` half
    the mean pairs of a user (ALS-WR's scaling): 64 / 40 on MovieLens-100K, 64 / 16 on the
    synthetic shop, 256 / 3.4 on Amazon Beauty, where the former fixed 64 / 10 scored 0.82 of
    a tuned setting. The values used are in the saved model's ``meta.resolved``.
    """

    name = "als"

    def __init__(
        self,
        factors: int | Auto = "auto",
        iterations: int = 15,
        l2: float | Auto = "auto",
        alpha: float = 1.0,
        confidence: Literal["linear", "log"] = "linear",
        epsilon: float = 1.0,
        use_cg: bool = True,
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.l2 = l2
        self.alpha = alpha
        self.confidence = confidence
        self.epsilon = epsilon
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.seed = seed

    def resolved_params(self, data: DataShape | sp.spmatrix | sp.sparray) -> dict[str, Any]:
        """The parameters with every ``"auto"`` resolved for this training matrix (or its
        :class:`DataShape`; see :mod:`shopsight.models.scaling`)."""
        shape = data_shape(data)
        return resolve(
            self.get_params(),
            {
                "factors": lambda p: auto_als_factors(shape),
                "l2": lambda p: auto_als_l2(shape),
            },
        )

    @property
    def _factors(self) -> int:
        return int(_resolved(self)["factors"])

    @property
    def _l2(self) -> float:
        return float(_resolved(self)["l2"])

    def _validate(self) -> None:
        _check("factors", self.factors, _is_auto_or(self.factors, 1), "'auto' or an integer >= 1")
        _check("iterations", self.iterations, self.iterations >= 1, "an integer >= 1")
        _check("l2", self.l2, self.l2 == AUTO or _is_number(self.l2), "'auto' or a number >= 0")
        _check("alpha", self.alpha, self.alpha > 0, "a number > 0")
        _check("confidence", self.confidence, self.confidence in ("linear", "log"), "linear|log")
        _check("epsilon", self.epsilon, self.epsilon > 0, "a number > 0")

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self._validate()
        shape = DataShape.of(dataset.implicit)
        self.data_shape_ = shape
        self.resolved_: dict[str, Any] = self.resolved_params(shape)
        # implicit takes c_ui itself (with its alpha = 1): pass 1 + alpha * w.
        # BLAS threads off: implicit parallelises over users itself; nested pools crawl.
        with threadpool_limits(1, "blas"):
            engine = AlternatingLeastSquares(
                factors=self._factors,
                regularization=self._l2,
                alpha=1.0,
                dtype=np.float32,
                use_cg=self.use_cg,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=np.random.default_rng(self.seed),
            )
            ctx = D.current()
            if ctx.distributed:
                x, y = self._fit_sharded(engine, dataset.implicit, ctx)
            else:
                conf = confidence_matrix(
                    dataset.implicit, self.alpha, self.confidence, self.epsilon
                )
                engine.fit(conf, show_progress=False)
                x, y = engine.user_factors, engine.item_factors
        self.user_factors_: FloatArray = np.ascontiguousarray(x, np.float32)
        self.item_factors_: FloatArray = np.ascontiguousarray(y, np.float32)
        self._prepare()

    def _fit_sharded(
        self, engine: Any, weights: sp.csr_matrix, ctx: D.DistContext
    ) -> tuple[Any, Any]:
        """``engine.fit`` under torchrun: each rank solves its slice of users, then of items.

        Every user's (item's) solve depends only on the other side's factors, so the ranks'
        slices, gathered after each half-step, are bit-identical to one process's factors
        (same initial factors from the seed, same solver, single-threaded BLAS)."""
        n_users, n_items = weights.shape

        def own_range(n: int) -> tuple[int, int]:
            return n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size

        def conf(w: sp.spmatrix) -> sp.csr_matrix:  # element-wise: commutes with slicing
            return confidence_matrix(sp.csr_matrix(w), self.alpha, self.confidence, self.epsilon)

        # Each rank keeps only the rows it solves: its users' rows of C and its items' rows of
        # C^T (a column slice, transposed), built once; the whole C and C^T on every rank
        # were two more log-sized matrices per rank.
        u_lo, u_hi = own_range(n_users)
        i_lo, i_hi = own_range(n_items)
        cui = conf(weights[u_lo:u_hi])
        ciu = conf(weights[:, i_lo:i_hi].T)
        rng = np.random.default_rng(self.seed)  # as implicit's fit draws them
        x = rng.random((n_users, self._factors), dtype=np.float32) * 0.01
        y = rng.random((n_items, self._factors), dtype=np.float32) * 0.01
        solver = engine.solver

        def half_step(
            c: sp.csr_matrix, lo: int, hi: int, own: FloatArray, other: FloatArray
        ) -> FloatArray:
            mine = np.ascontiguousarray(own[lo:hi])
            solver(c, mine, other, self._l2, num_threads=self.num_threads)
            full = np.zeros_like(own)
            full[lo:hi] = mine
            t = torch.from_numpy(full).to(ctx.device)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)  # x + 0 + ... is exact: a gather
            out: FloatArray = t.cpu().numpy()
            return out

        for _ in range(self.iterations):
            x = half_step(cui, u_lo, u_hi, x, y)
            y = half_step(ciu, i_lo, i_hi, y, x)
        return x, y

    def _prepare(self) -> None:
        y = self.item_factors_.astype(np.float64)
        self._yty = y.T @ y
        self._items_t = items_major(self.item_factors_)

    def _score(self, users: IntArray) -> FloatArray:
        return (self.user_factors_[users] @ self._items_t).astype(np.float32, copy=False)

    def user_vector(self, items: IntArray, weights: FloatArray) -> FloatArray:
        """The ALS-optimal factor of a user with these interactions (item factors fixed)."""
        if not len(items):
            return np.zeros(self.item_factors_.shape[1], np.float32)
        row = sp.csr_matrix(
            (np.asarray(weights, np.float32), (np.zeros(len(items), np.int64), items)),
            shape=(1, self.n_items_),
        )
        c = confidence_matrix(row, self.alpha, self.confidence, self.epsilon)
        idx, conf = c.indices, c.data.astype(np.float64)
        y = self.item_factors_[idx].astype(np.float64)
        # (Y'Y + Y_I' (C_I - I) Y_I + l2 I) x = Y_I' C_I p_I  (Hu et al., eq. 4)
        a = self._yty + (y.T * (conf - 1.0)) @ y + self._l2 * np.eye(y.shape[1])
        b = y.T @ conf
        return np.linalg.solve(a, b).astype(np.float32)

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        if not len(items):
            return self.item_popularity_.copy()
        return (self.user_vector(items, weights) @ self._items_t).astype(np.float32)

    def item_embeddings(self) -> FloatArray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        if "resolved" in meta:
            self.resolved_ = dict(meta["resolved"])
        self._prepare()

    def _meta(self) -> dict[str, Any]:
        if not hasattr(self, "resolved_"):
            return {}
        return {"resolved": self.resolved_, "data_shape": self.data_shape_.to_dict()}


# =============================================================================================
# BPR building blocks (reused by VBPR and LightGCN)
# =============================================================================================


def transform_weights(w: npt.ArrayLike, mode: Weighting) -> npt.NDArray[np.float64]:
    """Sampling weights of positive pairs from their multi-behaviour weights."""
    x: npt.NDArray[np.float64] = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    if mode == "uniform":
        return np.ones_like(x)
    if mode == "log":
        return np.log1p(x)
    if mode == "linear":
        return x
    raise ValueError(f"positive_weighting={mode!r}: expected uniform, linear or log")


class PairSampler:
    """BPR training triples ``(user, positive, negative)``, a pure function of (seed, epoch).

    ``matrix``: users x items, non-zero weight where the user interacted. One epoch has
    ``samples_per_epoch`` triples (default: the number of interacted pairs). With
    ``weighting="uniform"`` an epoch is a permutation of all pairs; otherwise pairs are drawn
    with replacement in proportion to :func:`transform_weights`. Negatives are uniform over
    the catalogue, redrawn (vectorised, a few rounds) while they hit one of the user's
    positives. Every rank of a DDP run draws the same epoch and takes its shard of each batch
    (:meth:`batches`), which is what makes N processes train like one.
    """

    BITSET_BYTES = 32 << 20

    def __init__(
        self,
        matrix: sp.csr_matrix,
        *,
        seed: int = 0,
        weighting: Weighting = "uniform",
        samples_per_epoch: int | None = None,
        max_resample: int = 20,
    ) -> None:
        m = matrix.tocsr().astype(np.float64, copy=True)
        m.sum_duplicates()
        m.data = np.maximum(m.data, 0.0)
        m.eliminate_zeros()
        coo = m.tocoo()
        self.n_users, self.n_items = m.shape
        self.users = coo.row.astype(np.int64)
        self.items = coo.col.astype(np.int64)
        self.weighting = weighting
        p = transform_weights(coo.data, weighting)
        if len(p) and not p.sum() > 0:
            p = np.ones_like(p)
        self._cum = np.cumsum(p)
        keys = self.users * np.int64(self.n_items) + self.items
        self._keys = np.sort(keys)
        # Membership of a (user, item) pair: one bit per cell when that fits in BITSET_BYTES
        # (a lookup is a few vectorised ops; a binary search over all pairs was a third of
        # BPR's time on MovieLens-100K), else a binary search of the sorted keys.
        n_cells = self.n_users * self.n_items
        self._bits: npt.NDArray[np.uint8] | None = None
        if n_cells <= 8 * self.BITSET_BYTES:
            bits = np.zeros((n_cells + 7) // 8, np.uint8)
            np.bitwise_or.at(bits, keys >> 3, (1 << (keys & 7)).astype(np.uint8))
            self._bits = bits
        self.seed = int(seed)
        self.samples_per_epoch = int(samples_per_epoch or len(self.users))
        self.max_resample = max_resample

    def __len__(self) -> int:
        return self.samples_per_epoch

    def is_positive(self, users: IntArray, items: IntArray) -> npt.NDArray[np.bool_]:
        keys = users * np.int64(self.n_items) + items
        if self._bits is not None:
            return ((self._bits[keys >> 3] >> (keys & 7).astype(np.uint8)) & 1).astype(bool)
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, max(len(self._keys) - 1, 0))
        return self._keys[pos] == keys if len(self._keys) else np.zeros(len(keys), bool)

    def epoch(self, epoch: int) -> tuple[IntArray, IntArray, IntArray]:
        """All triples of one epoch (identical on every rank)."""
        if not len(self.users):
            raise ValueError("no positive interactions to train on")
        rng = np.random.default_rng(derive_seed(self.seed, epoch, 0xB9))
        n = self.samples_per_epoch
        if self.weighting == "uniform" and n == len(self.users):
            idx = rng.permutation(n)
        else:
            idx = np.searchsorted(self._cum, rng.random(n) * self._cum[-1], side="right")
            idx = np.minimum(idx, len(self.users) - 1)
        u, i = self.users[idx], self.items[idx]
        j = rng.integers(0, self.n_items, n, dtype=np.int64)
        for _ in range(self.max_resample):
            hit = self.is_positive(u, j)
            if not hit.any():
                break
            j[hit] = rng.integers(0, self.n_items, int(hit.sum()), dtype=np.int64)
        return u, i, j

    def batches(
        self, epoch: int, batch_size: int, ctx: D.DistContext | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
        """This rank's share of each global batch, with its loss scale (see distributed)."""
        u, i, j = self.epoch(epoch)
        for rows in D.global_batches(len(u), batch_size):
            local, scale = D.shard(rows, ctx)
            yield (
                torch.from_numpy(u[local]),
                torch.from_numpy(i[local]),
                torch.from_numpy(j[local]),
                scale,
            )


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per-sample ``-log sigmoid(pos - neg)`` (numerically stable)."""
    return -F.logsigmoid(pos - neg)


class BPRModule(nn.Module):
    """User and item factors plus an item bias; ``forward`` is the scaled BPR loss of a batch.

    Subclasses change the model by overriding :meth:`pair_scores` (score of user-item pairs)
    and :meth:`regularisation` (per-sample penalty); :meth:`full_scores` must agree with
    :meth:`pair_scores` for scoring the catalogue.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        *,
        l2: float = 1e-4,
        item_bias: bool = True,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.l2 = l2
        self.user = nn.Embedding(n_users, factors)
        self.item = nn.Embedding(n_items, factors)
        # A private generator: initialisation depends on the seed only, not on global state.
        gen = torch.Generator().manual_seed(derive_seed(seed, 0xB1))
        nn.init.normal_(self.user.weight, std=init_std, generator=gen)
        nn.init.normal_(self.item.weight, std=init_std, generator=gen)
        self.bias: nn.Embedding | None = None
        if item_bias:
            self.bias = nn.Embedding(n_items, 1)
            nn.init.zeros_(self.bias.weight)

    def item_bias(self, items: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.zeros(items.shape, dtype=self.item.weight.dtype)
        return self.bias(items).squeeze(-1)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user(users) * self.item(items)).sum(-1) + self.item_bias(items)

    def regularisation(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample L2 of the parameters the sample touches (Rendle's per-update penalty)."""
        reg = (
            self.user(users).pow(2).sum(-1)
            + self.item(pos).pow(2).sum(-1)
            + self.item(neg).pow(2).sum(-1)
        )
        if self.bias is not None:
            reg = reg + self.item_bias(pos).pow(2) + self.item_bias(neg).pow(2)
        return reg

    def forward(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """``scale * sum(BPR loss + l2 * penalty)`` of the batch (see distributed.shard)."""
        if type(self).pair_scores is not BPRModule.pair_scores or (
            type(self).regularisation is not BPRModule.regularisation
        ):
            # a subclass changed the model: use its definitions
            x = self.pair_scores(users, pos) - self.pair_scores(users, neg)
            reg = self.regularisation(users, pos, neg)
            return scale * (F.softplus(-x) + self.l2 * reg).sum()
        # Plain BPR-MF, the hot loop. Positives and negatives share one lookup (each lookup's
        # backward scatters into a whole table), and the penalty, which only enters the loss
        # summed over the batch, is summed per looked-up tensor: the same value in fewer ops.
        both = torch.cat([pos, neg])
        u = self.user(users)
        e = self.item(both)
        p, n = e.chunk(2)
        x = (u * (p - n)).sum(-1)
        reg = u.pow(2).sum() + e.pow(2).sum()
        if self.bias is not None:
            b = self.bias(both).squeeze(-1)
            bp, bn = b.chunk(2)
            x = x + bp - bn
            reg = reg + b.pow(2).sum()
        return scale * (F.softplus(-x).sum() + self.l2 * reg)

    @torch.no_grad()
    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        s = self.user(users) @ self.item.weight.T
        if self.bias is not None:
            s = s + self.bias.weight.T
        return s


def fit_pairwise(
    module: nn.Module,
    sampler: PairSampler,
    config: TrainConfig,
    *,
    batch_size: int,
    validate: Callable[[], float] | None = None,
) -> TrainResult:
    """Train a module whose ``forward(users, pos, neg, scale)`` is a pairwise loss."""
    ctx = D.current()
    trainer = Trainer(module, config)
    return trainer.fit(lambda epoch: sampler.batches(epoch, batch_size, ctx), validate)


def bpr_user_vector(
    item_vectors: FloatArray,
    item_bias: FloatArray | None,
    items: IntArray,
    weights: FloatArray,
    *,
    l2: float,
    n_negatives: int = 500,
    seed: int = 0,
) -> FloatArray:
    """The BPR-optimal vector of one user given fixed item vectors (fold-in).

    Minimises ``f(u) = sum_ij w_i / N * -log sigmoid(u.(v_i - v_j) + b_i - b_j) + l2 |u|^2``
    over the user's positives ``i`` (weights ``w`` normalised to sum 1, already transformed)
    and ``N`` negatives ``j``: a seeded sample of ``n_negatives`` non-interacted items (all when
    fewer), so the result is deterministic. ``f`` is smooth and strictly convex, so Newton's
    method with a backtracking line search converges in a handful of steps; the Hessian is
    three small matrix products (``d x d``), never a ``P x N x d`` tensor.
    """
    from scipy.special import expit

    n_items, d = item_vectors.shape
    if not len(items):
        return np.zeros(d, np.float32)
    pos = np.unique(items)
    w = np.zeros(n_items)
    np.add.at(w, items, weights)
    wp = np.maximum(w[pos], 0.0)
    if not wp.sum() > 0:
        wp = np.ones_like(wp)
    others = np.setdiff1d(np.arange(n_items), pos, assume_unique=True)
    if len(others) > n_negatives:
        others = np.sort(np.random.default_rng(seed).choice(others, n_negatives, replace=False))
    if not len(others):
        return np.zeros(d, np.float32)
    vp = item_vectors[pos].astype(np.float64)
    vn = item_vectors[others].astype(np.float64)
    bias = np.zeros(n_items) if item_bias is None else item_bias.astype(np.float64)
    bdiff = bias[pos][:, None] - bias[others][None, :]
    wpair = (wp / wp.sum())[:, None] / len(others)  # (P, 1): weight of each (i, j) pair

    def margins(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return (vp @ u)[:, None] - (vn @ u)[None, :] + bdiff  # (P, N)

    def value(x: npt.NDArray[np.float64], u: npt.NDArray[np.float64]) -> float:
        return float((np.logaddexp(0.0, -x) * wpair).sum() + l2 * (u @ u))

    u = np.zeros(d)
    x = margins(u)
    f = value(x, u)
    for _ in range(50):
        s = expit(-x)  # -d loss / dx
        g_pair = s * wpair
        grad = -(vp.T @ g_pair.sum(axis=1)) + vn.T @ g_pair.sum(axis=0) + 2 * l2 * u
        a = s * (1.0 - s) * wpair  # d2 loss / dx2
        avn = a @ vn  # (P, d)
        hess = (
            (vp.T * a.sum(axis=1)) @ vp
            + (vn.T * a.sum(axis=0)) @ vn
            - vp.T @ avn
            - avn.T @ vp
            + 2 * l2 * np.eye(d)
        )
        step = np.linalg.solve(hess, -grad)
        decrease = float(grad @ step)
        if -decrease < 1e-12:
            break
        t = 1.0
        while True:  # Armijo backtracking (always terminates: step is a descent direction)
            u_new = u + t * step
            x_new = margins(u_new)
            f_new = value(x_new, u_new)
            if f_new <= f + 1e-4 * t * decrease or t < 1e-8:
                break
            t *= 0.5
        u, x, f = u_new, x_new, f_new
    return u.astype(np.float32)


# =============================================================================================
# BPR recommender
# =============================================================================================


class BPR(Recommender):
    """BPR-MF trained with PyTorch (see the module docstring).

    Parameters: ``factors``, ``epochs`` and ``l2`` (``"auto"``: from the training data's shape at
    ``fit``, see :mod:`shopsight.models.scaling`; the values used are in the saved model's
    ``meta.resolved``); ``batch_size`` (triples per global batch, split over DDP ranks);
    ``lr``, ``optimizer``, ``lr_schedule``; ``l2`` is the per-sample penalty of the touched
    factors and biases; ``item_bias``; ``positive_weighting`` (uniform / linear /
    log of the multi-behaviour weights); ``samples_per_epoch`` (None: one per interacted pair);
    ``patience`` (early stopping on NDCG@10 of ``valid``, when ``fit`` gets one); ``seed``.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int | Auto = "auto",
        epochs: int | Auto = "auto",
        batch_size: int = 2048,
        lr: float = 0.003,
        l2: float | Auto = "auto",
        item_bias: bool = True,
        positive_weighting: Weighting = "uniform",
        samples_per_epoch: int | None = None,
        optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam",
        lr_schedule: Literal["constant", "cosine", "linear"] = "constant",
        init_std: float = 0.1,
        patience: int | None = 5,
        eval_every: int = 1,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.l2 = l2
        self.item_bias = item_bias
        self.positive_weighting = positive_weighting
        self.samples_per_epoch = samples_per_epoch
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.init_std = init_std
        self.patience = patience
        self.eval_every = eval_every
        self.seed = seed

    def resolved_params(self, data: DataShape | sp.spmatrix | sp.sparray) -> dict[str, Any]:
        """The parameters with every ``"auto"`` resolved for this training matrix (or its
        :class:`DataShape`; see :mod:`shopsight.models.scaling`)."""
        shape = data_shape(data)
        return resolve(
            self.get_params(),
            {
                "factors": lambda p: auto_bpr_factors(shape),
                "epochs": lambda p: auto_epochs(shape, int(p["batch_size"])),
                "l2": lambda p: auto_bpr_l2(shape),
            },
        )

    def train_config(self) -> TrainConfig:
        # many small steps per fit on MovieLens-100K: the fused step's cost shows
        return TrainConfig.from_params(_resolved(self), fused_optimizer=True)

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        _check("batch_size", self.batch_size, _is_int(self.batch_size, 1), "an integer >= 1")
        _check("factors", self.factors, _is_auto_or(self.factors, 1), "'auto' or an integer >= 1")
        _check("epochs", self.epochs, _is_auto_or(self.epochs, 0), "'auto' or an integer >= 0")
        _check("l2", self.l2, self.l2 == AUTO or _is_number(self.l2), "'auto' or a number >= 0")
        transform_weights(np.ones(1), self.positive_weighting)  # validates the name
        shape = DataShape.of(dataset.implicit)
        self.data_shape_ = shape
        self.resolved_: dict[str, Any] = self.resolved_params(shape)
        module = BPRModule(
            dataset.n_users,
            dataset.n_items,
            int(self.resolved_["factors"]),
            l2=float(self.resolved_["l2"]),
            item_bias=self.item_bias,
            init_std=self.init_std,
            seed=self.seed,
        )
        sampler = PairSampler(
            dataset.implicit,
            seed=self.seed,
            weighting=self.positive_weighting,
            samples_per_epoch=self.samples_per_epoch,
        )
        self.module_ = module
        validate = validation_fn(self, self._module_scores, valid, seed=self.seed)
        self.train_result_ = fit_pairwise(
            module, sampler, self.train_config(), batch_size=self.batch_size, validate=validate
        )
        self._export(module)

    def _module_scores(self, users: IntArray) -> FloatArray:
        with torch.no_grad():
            return self.module_.full_scores(torch.from_numpy(users)).numpy()

    def _export(self, module: BPRModule) -> None:
        self.user_factors_: FloatArray = module.user.weight.detach().numpy().copy()
        self.item_factors_: FloatArray = module.item.weight.detach().numpy().copy()
        self.item_bias_: FloatArray = (
            module.bias.weight.detach().numpy().ravel().copy()
            if module.bias is not None
            else np.zeros(self.item_factors_.shape[0], np.float32)
        )
        del self.module_
        self._items_t = items_major(self.item_factors_)

    def _score(self, users: IntArray) -> FloatArray:
        return (self.user_factors_[users] @ self._items_t + self.item_bias_).astype(
            np.float32, copy=False
        )

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        if not len(items):
            return self.item_popularity_.copy()
        u = bpr_user_vector(
            self.item_factors_,
            self.item_bias_,
            items,
            transform_weights(weights, self.positive_weighting).astype(np.float32),
            l2=float(_resolved(self)["l2"]),
            seed=self.seed,
        )
        return (u @ self._items_t + self.item_bias_).astype(np.float32)

    def item_embeddings(self) -> FloatArray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "item_bias": self.item_bias_,
        }

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self.item_bias_ = arrays["item_bias"]
        self._items_t = items_major(self.item_factors_)
        if "resolved" in meta:
            self.resolved_ = dict(meta["resolved"])

    def _meta(self) -> dict[str, Any]:
        result = getattr(self, "train_result_", None)
        out: dict[str, Any] = {"training": result.to_dict()} if result is not None else {}
        if hasattr(self, "resolved_"):
            out["resolved"] = self.resolved_
            out["data_shape"] = self.data_shape_.to_dict()
        return out


def _resolved(model: Recommender) -> dict[str, Any]:
    """The parameters a fitted (or loaded) model used, ``"auto"`` resolved; before ``fit``, its
    parameters as given."""
    return dict(getattr(model, "resolved_", model.get_params()))


def _is_int(value: Any, low: int) -> bool:
    return (
        isinstance(value, int | np.integer) and not isinstance(value, bool) and bool(value >= low)
    )


def _is_auto_or(value: Any, low: int) -> bool:
    return value == AUTO or _is_int(value, low)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and bool(value >= 0)
    )


__all__ = [
    "ALS",
    "BPR",
    "BPRModule",
    "PairSampler",
    "bpr_loss",
    "bpr_user_vector",
    "confidence_matrix",
    "fit_pairwise",
    "transform_weights",
]
