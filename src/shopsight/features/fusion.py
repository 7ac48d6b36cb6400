"""Fusion: one item (or user) representation from whichever modalities are available.

Every fusion takes *modalities*, a mapping ``name -> (X, mask)`` with ``X`` an ``(n, d_m)``
matrix and ``mask`` an ``(n,)`` boolean vector (``None``: all rows present). A masked-out row is
excluded, never treated as a real all-zero observation, and every result carries the
per-modality mask. All three are ``torch.nn.Module`` objects with the same interface, so the
models of issue #4 (VBPR, FREEDOM) can embed and train them:

``fit(modalities, y=None) -> self``
    learn what the fusion needs (per-modality means; weights; projections).
``forward(xs, masks) -> Tensor``
    differentiable fusion of tensors (``xs[name]``: ``(n, d_m)``, ``masks[name]``: ``(n,)``).
``transform(modalities) -> Fused``
    numpy in, numpy out, no gradients.

:class:`ConcatFusion`
    each modality centred (optional), L2-normalised and scaled by ``sqrt(w_m / W_i)`` where
    ``W_i`` sums the weights of the modalities row *i* has: fused rows have unit norm, and the
    dot product of two fused rows is the weighted mean of their per-modality cosines (score-level
    fusion in one vector). ``weights="auto"`` tunes the weights on labelled data by
    leave-one-out cosine k-NN balanced accuracy.
:class:`ProjectionFusion`
    the normalised concatenation followed by a learned linear map to ``dim``: PCA-initialised
    (unsupervised default), trainable with any objective, or discriminatively with labels.
:class:`GatedAttentionFusion`
    per-modality projections to ``dim`` and an attention gate over modalities (masked softmax);
    the weights per row are inspectable with :meth:`GatedAttentionFusion.attention_weights`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shopsight.errors import InputError

ArrayLike = Any
Modalities = Mapping[str, tuple[ArrayLike, ArrayLike | None]]


@dataclass
class Fused:
    """Fused vectors; ``mask[i]`` is False when row *i* had no modality at all (zero row)."""

    vectors: np.ndarray  # (n, d) float32
    mask: np.ndarray  # (n,) bool
    modality_mask: np.ndarray  # (n, M) bool, columns in ``modalities`` order
    modalities: list[str]


def _as_inputs(
    modalities: Modalities, names: Sequence[str] | None = None
) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Validated float32 matrices and bool masks, in a fixed modality order."""
    if not modalities:
        raise ValueError("fusion needs at least one modality")
    order = list(names) if names is not None else sorted(modalities)
    missing = [m for m in order if m not in modalities]
    if missing:
        raise ValueError(f"modalities {missing} were fitted but are not given")
    xs: dict[str, np.ndarray] = {}
    ms: dict[str, np.ndarray] = {}
    n: int | None = None
    for name in order:
        x_raw, m_raw = modalities[name]
        x = np.asarray(x_raw, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"modality {name!r}: expected an (n, d) matrix, got shape {x.shape}")
        m = np.ones(len(x), dtype=bool) if m_raw is None else np.asarray(m_raw, dtype=bool)
        if m.shape != (len(x),):
            raise ValueError(f"modality {name!r}: mask shape {m.shape}, expected ({len(x)},)")
        if n is None:
            n = len(x)
        elif len(x) != n:
            raise ValueError(f"modality {name!r} has {len(x)} rows, the others {n}")
        bad = m & ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise ValueError(
                f"modality {name!r}: non-finite values in {int(bad.sum())} rows marked present "
                f"(first row {int(np.flatnonzero(bad)[0])})"
            )
        xs[name] = np.where(m[:, None], x, 0.0).astype(np.float32)
        ms[name] = m
    return order, xs, ms


def _to_tensors(
    xs: Mapping[str, np.ndarray], ms: Mapping[str, np.ndarray]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return (
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in xs.items()},
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ms.items()},
    )


class Fusion(nn.Module):
    """Base: per-modality centring (means learned in ``fit``) and L2 normalisation."""

    def __init__(self, dims: Mapping[str, int] | None = None, center: bool = True) -> None:
        super().__init__()
        self.center = center
        self.modalities_: list[str] = []
        self.dims_: dict[str, int] = {}
        self.means = nn.ParameterDict()  # frozen parameters: saved in state_dict, not trained
        if dims is not None:
            self._build(dict(dims))

    # -- structure ---------------------------------------------------------------------
    def _build(self, dims: dict[str, int]) -> None:
        self.modalities_ = sorted(dims)
        self.dims_ = {m: int(dims[m]) for m in self.modalities_}
        for m in self.modalities_:
            self.means[m] = nn.Parameter(torch.zeros(self.dims_[m]), requires_grad=False)
        self._build_layers()

    def _build_layers(self) -> None:
        """Subclasses create their learnable layers here (dims are known)."""

    def _check_fitted(self) -> None:
        if not self.modalities_:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(modalities) first")

    # -- the shared first step ---------------------------------------------------------
    def normalized(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Each modality centred (if enabled), L2-normalised; missing rows exactly zero."""
        out = {}
        for m in self.modalities_:
            x = xs[m].float()
            if self.center:
                x = x - self.means[m]
            x = nn.functional.normalize(x, p=2.0, dim=1)
            out[m] = x * masks[m].to(x.dtype).unsqueeze(1)
        return out

    def _fit_means(self, xs: Mapping[str, np.ndarray], ms: Mapping[str, np.ndarray]) -> None:
        for m in self.modalities_:
            present = xs[m][ms[m]]
            # Centring matters for CNN features: all-positive (post-ReLU) vectors share one
            # dominant direction that would otherwise swamp every cosine.
            if self.center and len(present):
                mean = present.mean(axis=0)
            else:
                mean = np.zeros(self.dims_[m], np.float32)
            self.means[m].data = torch.from_numpy(np.asarray(mean, dtype=np.float32))

    def _prepare_fit(self, modalities: Modalities) -> tuple[dict, dict]:
        names, xs, ms = _as_inputs(modalities)
        dims = {m: xs[m].shape[1] for m in names}
        if not self.modalities_ or self.dims_ != dims:
            self._build(dims)
        self._fit_means(xs, ms)
        return xs, ms

    # -- public API ------------------------------------------------------------------------
    def fit(self, modalities: Modalities, y: ArrayLike | None = None) -> Fusion:
        raise NotImplementedError

    def forward(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, modalities: Modalities, batch_size: int = 8192) -> Fused:
        self._check_fitted()
        names, xs, ms = _as_inputs(modalities, self.modalities_)
        n = len(next(iter(xs.values())))
        parts = []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for lo in range(0, n, batch_size):
                    sl = slice(lo, lo + batch_size)
                    tx, tm = _to_tensors(
                        {k: v[sl] for k, v in xs.items()}, {k: v[sl] for k, v in ms.items()}
                    )
                    parts.append(self.forward(tx, tm).numpy())
        finally:
            self.train(was_training)
        modality_mask = np.column_stack([ms[m] for m in names]) if n else np.zeros((0, len(names)))
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.output_dim), np.float32)
        return Fused(
            vectors.astype(np.float32),
            np.asarray(modality_mask.any(axis=1), dtype=bool),
            modality_mask.astype(bool),
            names,
        )

    def fit_transform(self, modalities: Modalities, y: ArrayLike | None = None) -> Fused:
        return self.fit(modalities, y).transform(modalities)

    @property
    def output_dim(self) -> int:
        raise NotImplementedError


# -- concatenation ---------------------------------------------------------------------------
class ConcatFusion(Fusion):
    """Weighted concatenation of centred, L2-normalised modalities; missing ones re-weighted.

    ``weights``: ``None`` (equal), a mapping ``name -> weight``, or ``"auto"`` (tuned in
    :meth:`fit` from labels by leave-one-out cosine k-NN balanced accuracy over a grid on the
    simplex with step ``grid_step``; at most ``max_tune`` rows, sampled with ``seed``).
    """

    def __init__(
        self,
        weights: Mapping[str, float] | str | None = None,
        *,
        center: bool = True,
        dims: Mapping[str, int] | None = None,
        k: int = 10,
        grid_step: float = 0.05,
        max_tune: int = 4000,
        seed: int = 0,
    ) -> None:
        if isinstance(weights, str) and weights != "auto":
            raise InputError(f"weights must be a mapping, None or 'auto', got {weights!r}")
        if not 0 < grid_step <= 0.5:
            raise InputError(f"grid_step must be in (0, 0.5], got {grid_step}")
        self.weights = weights
        self.k = k
        self.grid_step = grid_step
        self.max_tune = max_tune
        self.seed = seed
        super().__init__(dims, center)

    def _build_layers(self) -> None:
        self.register_buffer("weight_", torch.ones(len(self.modalities_)), persistent=True)
        if isinstance(self.weights, Mapping):
            self._set_weights(self.weights)

    def _set_weights(self, weights: Mapping[str, float]) -> None:
        unknown = sorted(set(weights) - set(self.modalities_))
        if unknown:
            raise ValueError(f"weights for unknown modalities {unknown}")
        w = torch.tensor([float(weights.get(m, 1.0)) for m in self.modalities_])
        if (w < 0).any() or not torch.isfinite(w).all() or float(w.sum()) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {dict(weights)}")
        self.weight_ = w / w.sum()

    @property
    def weights_(self) -> dict[str, float]:
        """The fitted weights (summing to 1), by modality."""
        self._check_fitted()
        return {m: float(w) for m, w in zip(self.modalities_, self.weight_, strict=True)}

    @property
    def output_dim(self) -> int:
        return sum(self.dims_.values())

    def fit(self, modalities: Modalities, y: ArrayLike | None = None) -> ConcatFusion:
        xs, ms = self._prepare_fit(modalities)
        if self.weights == "auto":
            if y is None:
                raise ValueError("ConcatFusion(weights='auto') needs labels: fit(modalities, y)")
            self._set_weights(self._tune(xs, ms, np.asarray(y)))
        elif isinstance(self.weights, Mapping):
            self._set_weights(self.weights)
        else:
            self.weight_ = torch.full((len(self.modalities_),), 1.0 / len(self.modalities_))
        return self

    def forward(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        self._check_fitted()
        units = self.normalized(xs, masks)
        present = torch.stack([masks[m].to(torch.float32) for m in self.modalities_], dim=1)
        total = (present * self.weight_).sum(dim=1, keepdim=True)  # W_i over present modalities
        scale = torch.sqrt(self.weight_ / total.clamp(min=1e-12))  # (n, M)
        blocks = [units[m] * scale[:, j : j + 1] for j, m in enumerate(self.modalities_)]
        return torch.cat(blocks, dim=1)

    def _tune(
        self, xs: Mapping[str, np.ndarray], ms: Mapping[str, np.ndarray], y: np.ndarray
    ) -> dict[str, float]:
        n = len(y)
        if n != len(next(iter(xs.values()))):
            raise ValueError(f"y has {n} labels for {len(next(iter(xs.values())))} rows")
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(n, self.max_tune, replace=False)) if n > self.max_tune else None
        tx, tm = _to_tensors(xs, ms)
        with torch.no_grad():
            units = self.normalized(tx, tm)
        grams, present = [], []
        for m in self.modalities_:
            u = units[m].numpy()
            p = ms[m]
            if idx is not None:
                u, p = u[idx], p[idx]
            grams.append(u @ u.T)
            present.append(p.astype(np.float32))
        labels = y if idx is None else y[idx]
        best_w, best_score = None, -1.0
        for w in _simplex_grid(len(self.modalities_), self.grid_step):
            total = sum(wj * pj for wj, pj in zip(w, present, strict=True))
            sim = sum(wj * g for wj, g in zip(w, grams, strict=True))
            with np.errstate(divide="ignore", invalid="ignore"):
                sim = sim / np.sqrt(np.outer(total, total))
            score = loo_knn_balanced_accuracy(np.nan_to_num(sim, nan=-1.0), labels, self.k)
            if score > best_score + 1e-9:
                best_w, best_score = w, score
        assert best_w is not None
        self.tuning_score_ = best_score
        return dict(zip(self.modalities_, best_w, strict=True))


def _simplex_grid(m: int, step: float) -> list[tuple[float, ...]]:
    """Weight vectors on the simplex with the given step (centre first, so ties keep balance)."""
    steps = round(1.0 / step)
    points = [
        tuple(c / steps for c in combo)
        for combo in itertools.product(range(steps + 1), repeat=m)
        if sum(combo) == steps
    ]
    centre = np.full(m, 1.0 / m)
    return sorted(points, key=lambda p: float(np.abs(np.asarray(p) - centre).sum()))


def knn_vote(sim: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Predicted labels from a (queries x references) similarity matrix: the k most similar
    references vote, each with its (non-negative) similarity."""
    k = min(k, sim.shape[1])
    classes, codes = np.unique(labels, return_inverse=True)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    weight = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0) + 1e-3
    votes = np.zeros((sim.shape[0], len(classes)))
    rows = np.repeat(np.arange(sim.shape[0]), k)
    np.add.at(votes, (rows, codes[top].ravel()), weight.ravel())
    return np.asarray(classes[votes.argmax(axis=1)])


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def loo_knn_balanced_accuracy(sim: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN balanced accuracy on a square similarity matrix."""
    s = sim.copy()
    np.fill_diagonal(s, -np.inf)
    return balanced_accuracy(labels, knn_vote(s, labels, k))


# -- learned projection ------------------------------------------------------------------------
def _train(
    module: Fusion,
    xs: Mapping[str, np.ndarray],
    ms: Mapping[str, np.ndarray],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    extra_params: Sequence[nn.Parameter] = (),
    num_threads: int | None = None,
) -> list[float]:
    """Minimise ``loss_fn(fused_batch, row_indices)`` with Adam; returns the loss per epoch."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        # Small problems train faster on one thread than paying thread sync per tiny op.
        torch.set_num_threads(num_threads)
    try:
        return _train_loop(
            module, xs, ms, loss_fn, epochs, lr, batch_size, weight_decay, seed, extra_params
        )
    finally:
        torch.set_num_threads(previous)


def _train_loop(
    module: Fusion,
    xs: Mapping[str, np.ndarray],
    ms: Mapping[str, np.ndarray],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    extra_params: Sequence[nn.Parameter],
) -> list[float]:
    tx, tm = _to_tensors(xs, ms)
    n = len(next(iter(tx.values())))
    params = [p for p in module.parameters() if p.requires_grad] + list(extra_params)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for lo in range(0, n, batch_size):
            idx = perm[lo : lo + batch_size]
            z = module({k: v[idx] for k, v in tx.items()}, {k: v[idx] for k, v in tm.items()})
            loss = loss_fn(z, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / max(n, 1))
    module.eval()
    return history


def _classification_loss(
    y: np.ndarray, dim: int, seed: int
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], list[nn.Parameter]]:
    """Cross-entropy of a temporary linear head on the fused vectors (the head is discarded)."""
    _, codes = np.unique(y, return_inverse=True)
    target = torch.from_numpy(codes.astype(np.int64))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = nn.Linear(dim, int(codes.max()) + 1)

    def loss(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(head(z), target[idx])

    return loss, list(head.parameters())


class TrainableFusion(Fusion):
    """A fusion with learnable layers: optional supervised fitting and custom objectives.

    Subclasses set ``dim``, ``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``seed`` and
    ``num_threads`` in their constructor.
    """

    dim: int
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    seed: int
    num_threads: int | None

    def _train_layers(
        self,
        xs: Mapping[str, np.ndarray],
        ms: Mapping[str, np.ndarray],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        epochs: int,
        extra_params: Sequence[nn.Parameter] = (),
    ) -> list[float]:
        return _train(
            self,
            xs,
            ms,
            loss_fn,
            epochs=epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self.seed,
            extra_params=extra_params,
            num_threads=self.num_threads,
        )

    def _fit_supervised(
        self, xs: Mapping[str, np.ndarray], ms: Mapping[str, np.ndarray], y: ArrayLike | None
    ) -> None:
        """With labels ``y``, train the layers to separate the classes (a linear head)."""
        if y is not None:
            loss, head = _classification_loss(np.asarray(y), self.dim, self.seed)
            self.history_ = self._train_layers(xs, ms, loss, self.epochs, head)

    def train_objective(
        self,
        modalities: Modalities,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        epochs: int | None = None,
        extra_params: Sequence[nn.Parameter] = (),
    ) -> list[float]:
        """Train with ``loss_fn(fused_batch, row_indices)``; returns the mean loss per epoch."""
        self._check_fitted()
        _, xs, ms = _as_inputs(modalities, self.modalities_)
        return self._train_layers(
            xs, ms, loss_fn, self.epochs if epochs is None else epochs, extra_params
        )


class ProjectionFusion(TrainableFusion):
    """Learned linear projection of the normalised concatenation to ``dim`` dimensions.

    ``fit(modalities)`` initialises the projection with the top principal components of the
    (weighted, re-weighted-for-missing) concatenation; ``fit(modalities, y)`` then trains it
    with a temporary softmax head (a discriminative projection); :meth:`train_objective`
    trains it with any loss. Output rows are L2-normalised when ``normalize_output``.
    ``num_threads`` sets torch's threads while training (None: leave them as they are).
    """

    def __init__(
        self,
        dim: int = 64,
        *,
        weights: Mapping[str, float] | None = None,
        center: bool = True,
        normalize_output: bool = True,
        dims: Mapping[str, int] | None = None,
        epochs: int = 30,
        lr: float = 1e-2,
        batch_size: int = 256,
        weight_decay: float = 1e-4,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        if dim < 1:
            raise InputError(f"dim must be >= 1, got {dim}")
        self.num_threads = num_threads
        self.dim = dim
        self.weights = weights
        self.normalize_output = normalize_output
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed
        super().__init__(dims, center)

    @property
    def output_dim(self) -> int:
        return self.dim

    def _build_layers(self) -> None:
        self.concat = ConcatFusion(
            weights=self.weights, center=False, dims=self.dims_
        )  # centring is done once, by this module's own means
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.proj = nn.Linear(sum(self.dims_.values()), self.dim, bias=False)

    def forward(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        self._check_fitted()
        centred = {
            m: xs[m].float() - self.means[m] if self.center else xs[m] for m in self.modalities_
        }
        z = self.proj(self.concat(centred, masks))
        return nn.functional.normalize(z, dim=1) if self.normalize_output else z

    def fit(self, modalities: Modalities, y: ArrayLike | None = None) -> ProjectionFusion:
        xs, ms = self._prepare_fit(modalities)
        self.concat.fit({m: (xs[m] - self.means[m].numpy(), ms[m]) for m in self.modalities_})
        tx, tm = _to_tensors(xs, ms)
        with torch.no_grad():
            centred = {m: tx[m] - self.means[m] for m in self.modalities_}
            joint = self.concat(centred, tm)
            rows = joint[torch.from_numpy(np.column_stack(list(ms.values())).any(axis=1))]
            self.proj.weight.data = _pca_components(rows, self.dim, self.seed)
        self._fit_supervised(xs, ms, y)
        return self


def _pca_components(rows: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Top ``dim`` principal directions as a (dim, D) matrix; completed with a seeded
    orthonormal basis of the rest of the space when the data has lower rank."""
    d_in = rows.shape[1]
    comps = torch.zeros((0, d_in))
    if len(rows) > 1:
        centred = rows - rows.mean(dim=0, keepdim=True)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        comps = vh[: min(dim, int((s > 1e-6 * s.max()).sum()))]
    if len(comps) < dim:
        gen = torch.Generator().manual_seed(seed)
        extra = torch.randn((d_in, dim - len(comps)), generator=gen)
        if len(comps):
            extra = extra - comps.T @ (comps @ extra)
        q, _ = torch.linalg.qr(extra)
        comps = torch.cat([comps, q.T[: dim - len(comps)]], dim=0)
    if len(comps) < dim:  # dim > D: the extra output dimensions are unused
        comps = torch.cat([comps, torch.zeros((dim - len(comps), d_in))], dim=0)
    return comps.contiguous().float()


# -- gated attention -----------------------------------------------------------------------
class GatedAttentionFusion(TrainableFusion):
    """Per-modality projections to ``dim`` and a learned attention over modalities.

    ``h_m = P_m x_m`` (``x_m`` centred and L2-normalised), ``s_m = v^T tanh(W h_m) + b_m``,
    ``a = softmax(s)`` over the modalities a row has (missing ones get no weight), and the
    output is ``sum_m a_m h_m``. Untrained, ``P_m`` are each modality's principal directions
    and the gate is uniform; ``fit(modalities, y)`` or :meth:`train_objective` learn both.
    """

    def __init__(
        self,
        dim: int = 64,
        *,
        hidden: int = 32,
        center: bool = True,
        normalize_output: bool = True,
        dims: Mapping[str, int] | None = None,
        epochs: int = 30,
        lr: float = 1e-2,
        batch_size: int = 256,
        weight_decay: float = 1e-4,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        if dim < 1 or hidden < 1:
            raise InputError(f"dim and hidden must be >= 1, got {dim}, {hidden}")
        self.num_threads = num_threads
        self.dim = dim
        self.hidden = hidden
        self.normalize_output = normalize_output
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed
        self.last_attention_: torch.Tensor | None = None
        super().__init__(dims, center)

    @property
    def output_dim(self) -> int:
        return self.dim

    def _build_layers(self) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.proj = nn.ModuleDict(
                {m: nn.Linear(self.dims_[m], self.dim, bias=False) for m in self.modalities_}
            )
            self.gate_hidden = nn.Linear(self.dim, self.hidden)
            self.gate_out = nn.Linear(self.hidden, 1, bias=False)
            nn.init.zeros_(self.gate_out.weight)  # uniform attention until trained
            self.gate_bias = nn.Parameter(torch.zeros(len(self.modalities_)))

    def scores(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, a)``: projected modalities ``(n, M, dim)`` and attention ``(n, M)``."""
        self._check_fitted()
        units = self.normalized(xs, masks)
        h = torch.stack([self.proj[m](units[m]) for m in self.modalities_], dim=1)
        s = self.gate_out(torch.tanh(self.gate_hidden(h))).squeeze(-1) + self.gate_bias
        present = torch.stack([masks[m].bool() for m in self.modalities_], dim=1)
        s = s.masked_fill(~present, float("-inf"))
        a = torch.softmax(s, dim=1)
        a = torch.nan_to_num(a, nan=0.0)  # rows with no modality: all -inf -> zero weights
        return h, a

    def forward(
        self, xs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        h, a = self.scores(xs, masks)
        self.last_attention_ = a.detach()
        z = (a.unsqueeze(-1) * h).sum(dim=1)
        return nn.functional.normalize(z, dim=1) if self.normalize_output else z

    def attention_weights(self, modalities: Modalities) -> np.ndarray:
        """Attention per row and modality ``(n, M)``, columns in ``modalities_`` order;
        rows sum to 1 (0 for rows with no modality)."""
        self._check_fitted()
        _, xs, ms = _as_inputs(modalities, self.modalities_)
        tx, tm = _to_tensors(xs, ms)
        with torch.no_grad():
            _, a = self.scores(tx, tm)
        return a.numpy()

    def fit(self, modalities: Modalities, y: ArrayLike | None = None) -> GatedAttentionFusion:
        xs, ms = self._prepare_fit(modalities)
        tx, tm = _to_tensors(xs, ms)
        with torch.no_grad():
            units = self.normalized(tx, tm)
            for m in self.modalities_:
                rows = units[m][tm[m]]
                self.proj[m].weight.data = _pca_components(rows, self.dim, self.seed)
        self._fit_supervised(xs, ms, y)
        return self


__all__ = [
    "ConcatFusion",
    "Fused",
    "Fusion",
    "GatedAttentionFusion",
    "Modalities",
    "ProjectionFusion",
    "balanced_accuracy",
    "knn_vote",
    "loo_knn_balanced_accuracy",
]
