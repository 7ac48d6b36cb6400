"""VBPR: BPR matrix factorisation with an item-content term (He & McAuley, AAAI 2016).

The score of user ``u`` for item ``i`` is

    x_ui = b_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i

with ``f_i`` the item's content vector (text and/or image, see :mod:`shopsight.models.content`:
each modality centred and L2-normalised, the modalities concatenated, i.e. concatenation
fusion followed by the learned projection ``E``), ``theta_u`` the user's taste in content space
and ``beta'`` a content bias (how much any user likes items that look / read like this). The
global and user biases of the paper cancel in BPR's pairwise loss and are left out.

**Cold items.** Training uses only items with interactions in the training data (positives and
sampled negatives alike): an item without interactions would otherwise only ever be a negative,
and the content term would learn that items like it are bad. An item with content but no
interactions is scored by its content term alone (``gamma_i = 0``, ``b_i`` = the mean item bias),
which is what lets VBPR rank new products.

Built on the BPR pieces of :mod:`shopsight.models.mf` (seeded pair sampler with multi-behaviour
positive weighting, the shared :class:`~shopsight.training.trainer.Trainer` with early stopping
on validation NDCG@10, checkpoints and DDP) and folds in new users with the same BPR-optimal
user vector as ``bpr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from shopsight.errors import DataError, InputError
from shopsight.models.base import FloatArray, IntArray, Recommender
from shopsight.models.content import ContentMixin, ItemContent, fuse, torch_threads
from shopsight.models.mf import (
    BPRModule,
    PairSampler,
    Weighting,
    bpr_loss,
    bpr_user_vector,
    fit_pairwise,
    transform_weights,
)
from shopsight.training.trainer import TrainConfig, TrainResult, derive_seed, validation_fn

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise InputError(f"VBPR: {name}={value!r}: expected {expected}")


def warm_items(matrix: sp.csr_matrix) -> IntArray:
    """Items with at least one interaction (non-zero weight) in a users x items matrix."""
    m = matrix.tocsc()
    m.eliminate_zeros()
    return np.flatnonzero(np.diff(m.indptr) > 0).astype(np.int64)


class VBPRModule(BPRModule):
    """BPR factors and item bias over the warm items, plus ``theta_u``, ``E`` and ``beta'``."""

    features: torch.Tensor  # (n_items, d) fused content, a buffer

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        content_factors: int,
        features: FloatArray,
        *,
        l2: float,
        l2_content: float,
        init_std: float,
        seed: int,
    ) -> None:
        super().__init__(
            n_users, n_items, factors, l2=l2, item_bias=True, init_std=init_std, seed=seed
        )
        self.l2_content = l2_content
        self.register_buffer("features", torch.from_numpy(features), persistent=False)
        self.theta = nn.Embedding(n_users, content_factors)
        self.E = nn.Linear(features.shape[1], content_factors, bias=False)
        self.beta = nn.Linear(features.shape[1], 1, bias=False)
        gen = torch.Generator().manual_seed(derive_seed(seed, 0xB2))
        nn.init.normal_(self.theta.weight, std=init_std, generator=gen)
        # E maps unit-norm content to vectors of about init_std per coordinate, like gamma_i.
        nn.init.normal_(self.E.weight, std=init_std, generator=gen)
        nn.init.zeros_(self.beta.weight)

    def content_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features if items is None else self.features[items]
        return self.E(f)

    def content_bias(self, items: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features if items is None else self.features[items]
        return self.beta(f).squeeze(-1)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (
            super().pair_scores(users, items)
            + (self.theta(users) * self.content_vectors(items)).sum(-1)
            + self.content_bias(items)
        )

    def regularisation(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        return super().regularisation(users, pos, neg) + self.theta(users).pow(2).sum(-1)

    def forward(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, scale: float
    ) -> torch.Tensor:
        # Project each distinct item of the batch once (the content vectors are wide).
        uniq, inv = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        f = self.features[uniq]
        cv, cb = self.E(f)[inv], self.beta(f).squeeze(-1)[inv]
        n = len(pos)
        u, th = self.user(users), self.theta(users)
        gp, gn = self.item(pos), self.item(neg)
        bp, bn = self.item_bias(pos), self.item_bias(neg)
        x_pos = (u * gp).sum(-1) + bp + (th * cv[:n]).sum(-1) + cb[:n]
        x_neg = (u * gn).sum(-1) + bn + (th * cv[n:]).sum(-1) + cb[n:]
        reg = (
            u.pow(2).sum(-1)
            + gp.pow(2).sum(-1)
            + gn.pow(2).sum(-1)
            + bp.pow(2)
            + bn.pow(2)
            + th.pow(2).sum(-1)
        )
        total = scale * (bpr_loss(x_pos, x_neg) + self.l2 * reg).sum()
        # The shared projection is penalised once per (global) batch: scale * len(users) is
        # this rank's share of the batch, so DDP's gradient average adds it exactly once.
        shared = self.E.weight.pow(2).sum() + self.beta.weight.pow(2).sum()
        return total + scale * len(users) * self.l2_content * shared

    @torch.no_grad()
    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        s = super().full_scores(users)
        return s + self.theta(users) @ self.content_vectors().T + self.content_bias()[None, :]


class VBPR(ContentMixin, Recommender):
    """Visual (and textual) BPR; see the module docstring.

    Parameters
    ----------
    factors, content_factors:
        sizes of the ID factors ``gamma`` and of the content factors ``theta`` / ``E f``.
    modalities, feature_cache:
        item content used (``"text"``, ``"image"``); see :mod:`shopsight.models.content`.
    epochs, batch_size, lr, optimizer, lr_schedule, init_std, seed:
        optimisation, as for ``bpr``.
    l2, l2_content:
        per-sample L2 of the touched user / item factors and biases; L2 of ``E`` and ``beta'``
        per batch.
    positive_weighting, samples_per_epoch:
        multi-behaviour positive sampling (see :mod:`shopsight.models.mf`).
    patience, eval_every:
        early stopping on NDCG@10 of ``valid`` when ``fit`` gets one.
    num_threads:
        torch threads while fitting and scoring (0: leave torch's setting; 1 is often fastest
        on small shared machines).
    """

    name = "vbpr"
    handles_cold_items = True

    def __init__(
        self,
        factors: int = 32,
        content_factors: int = 32,
        modalities: Sequence[str] = ("text", "image"),
        feature_cache: str | None = None,
        epochs: int = 20,
        batch_size: int = 1024,
        lr: float = 0.005,
        l2: float = 1e-4,
        l2_content: float = 1e-4,
        positive_weighting: Weighting = "log",
        samples_per_epoch: int | None = None,
        optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam",
        lr_schedule: Literal["constant", "cosine", "linear"] = "constant",
        init_std: float = 0.1,
        patience: int | None = 5,
        eval_every: int = 1,
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.content_factors = content_factors
        self.modalities = tuple(modalities)  # a JSON round trip gives a list back
        self.feature_cache = feature_cache
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.l2 = l2
        self.l2_content = l2_content
        self.positive_weighting = positive_weighting
        self.samples_per_epoch = samples_per_epoch
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.init_std = init_std
        self.patience = patience
        self.eval_every = eval_every
        self.num_threads = num_threads
        self.seed = seed

    def _validate(self) -> None:
        _check("factors", self.factors, self.factors >= 1, "an integer >= 1")
        _check(
            "content_factors", self.content_factors, self.content_factors >= 1, "an integer >= 1"
        )
        _check("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        _check("l2", self.l2, self.l2 >= 0, "a number >= 0")
        _check("l2_content", self.l2_content, self.l2_content >= 0, "a number >= 0")
        transform_weights(np.ones(1), self.positive_weighting)  # validates the name

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self._validate()
        with torch_threads(self.num_threads):
            self._train(dataset, valid)

    def _train(self, dataset: Dataset, valid: Dataset | None) -> None:
        self.content_ = self._resolve_content(dataset)
        f_all = fuse(self.content_)
        warm = warm_items(dataset.implicit)
        if not len(warm):
            raise DataError("VBPR: the training data has no interactions")
        module = VBPRModule(
            dataset.n_users,
            len(warm),
            self.factors,
            self.content_factors,
            np.ascontiguousarray(f_all[warm]),
            l2=self.l2,
            l2_content=self.l2_content,
            init_std=self.init_std,
            seed=self.seed,
        )
        sampler = PairSampler(
            dataset.implicit[:, warm],
            seed=self.seed,
            weighting=self.positive_weighting,
            samples_per_epoch=self.samples_per_epoch,
        )
        self._f_all = torch.from_numpy(f_all)
        self._warm = warm
        self.module_ = module
        # fused Adam / AdamW: one pass per tensor instead of a dozen (the same update)
        config = TrainConfig.from_params(self.get_params(), fused_optimizer=True)
        validate = validation_fn(self, self._module_scores, valid, seed=self.seed)
        self.train_result_: TrainResult = fit_pairwise(
            module, sampler, config, batch_size=self.batch_size, validate=validate
        )
        self._export()

    # -- from the trained module to plain arrays over the whole catalogue ----------------------
    @torch.no_grad()
    def _arrays(self) -> dict[str, np.ndarray]:
        m, warm, n = self.module_, self._warm, self.n_items_
        gamma = np.zeros((n, self.factors), np.float32)
        gamma[warm] = m.item.weight.detach().numpy()
        bias = np.full(n, float(m.bias.weight.mean()) if m.bias is not None else 0.0, np.float32)
        if m.bias is not None:
            bias[warm] = m.bias.weight.detach().numpy().ravel()
        return {
            "user_factors": m.user.weight.detach().numpy().copy(),
            "user_content_factors": m.theta.weight.detach().numpy().copy(),
            "item_factors": gamma,
            "item_bias": bias,
            "item_content_factors": m.E(self._f_all).numpy().copy(),
            "item_content_bias": m.beta(self._f_all).numpy().ravel().copy(),
            "E": m.E.weight.detach().numpy().copy(),
            "beta": m.beta.weight.detach().numpy().ravel().copy(),
        }

    def _module_scores(self, users: IntArray) -> FloatArray:
        return self._scores_from(self._arrays(), users)

    def _scores_from(self, a: dict[str, np.ndarray], users: IntArray) -> FloatArray:
        s = a["user_factors"][users] @ a["item_factors"].T
        s += a["user_content_factors"][users] @ a["item_content_factors"].T
        s += a["item_bias"] + a["item_content_bias"]
        s = s.astype(np.float32)
        # A user without training interactions has untrained factors: use popularity.
        empty = np.diff(self.seen_.indptr)[users] == 0
        if empty.any():
            s[empty] = self.item_popularity_
        return s

    def _export(self) -> None:
        self.arrays_ = self._arrays()
        del self.module_, self._f_all, self._warm

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, users: IntArray) -> FloatArray:
        return self._scores_from(self.arrays_, users)

    def _item_vectors(self) -> tuple[FloatArray, FloatArray]:
        a = self.arrays_
        vec = np.hstack([a["item_factors"], a["item_content_factors"]]).astype(np.float32)
        return vec, (a["item_bias"] + a["item_content_bias"]).astype(np.float32)

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        """BPR-optimal ``[gamma_u, theta_u]`` for these interactions, item side fixed."""
        if not len(items):
            return self.item_popularity_.copy()
        vec, bias = self._item_vectors()
        u = bpr_user_vector(
            vec,
            bias,
            items,
            transform_weights(weights, self.positive_weighting).astype(np.float32),
            l2=self.l2,
            seed=self.seed,
        )
        return (vec @ u + bias).astype(np.float32)

    def item_embeddings(self) -> FloatArray:
        return self._item_vectors()[0]

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        out = dict(self.arrays_)
        out.update(self._content_state())
        return out

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self._load_content_state(arrays)
        keys = (
            "user_factors",
            "user_content_factors",
            "item_factors",
            "item_bias",
            "item_content_factors",
            "item_content_bias",
            "E",
            "beta",
        )
        self.arrays_ = {k: arrays[k] for k in keys}

    def _meta(self) -> dict[str, Any]:
        result = getattr(self, "train_result_", None)
        content: ItemContent = self.content_
        return {
            "modalities": content.modalities,
            "content_dims": content.dims,
            **({"training": result.to_dict()} if result is not None else {}),
        }


__all__ = ["VBPR", "VBPRModule", "warm_items"]
