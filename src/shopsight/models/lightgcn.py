"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, trained with BPR.

The graph is the bipartite user-item adjacency ``A`` (one edge per interacted pair), normalised
symmetrically, ``Â = D^-1/2 A D^-1/2``. Layer ``k`` embeddings are ``E_k = Â E_{k-1}`` from the
learned ``E_0``; the final embedding is their mean over ``k = 0..n_layers``. A user's score for
an item is the dot product of their final embeddings. Training minimises the BPR loss of
sampled triples (:class:`~shopsight.models.mf.PairSampler`, positives drawn by the
multi-behaviour weights) plus ``l2`` on the *layer-0* embeddings of the batch, as in the paper.
Each step propagates over the whole graph (a sparse matmul per layer); after ``fit`` the final
embeddings are computed once and cached, so scoring is one dense product.

Isolated nodes (items or users with no training edges) keep degree 0; their rows of ``Â`` are
empty, so their final embedding is ``E_0 / (n_layers + 1)`` and their scores stay finite.

Fold-in (a new user, no retraining) is an approximation, documented as such: the user's final
embedding is the weighted mean of the final embeddings of the items they interacted with. (The
exact layer-1 message of a new user node would be the degree-normalised sum of the items'
layer-0 embeddings; deeper layers would need the user's own layer-0 embedding, which a new
user does not have.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from shopsight.errors import InputError
from shopsight.models.base import FloatArray, IntArray, Recommender
from shopsight.models.mf import PairSampler, Weighting, bpr_loss, fit_pairwise, transform_weights
from shopsight.models.scaling import (
    AUTO,
    DataShape,
    auto_bpr_factors,
    auto_epochs,
    data_shape,
    resolve,
)
from shopsight.training.trainer import TrainConfig, derive_seed, validation_fn

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset


def normalized_adjacency(interactions: sp.csr_matrix) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph, as a torch sparse CSR tensor (float32)."""
    r = interactions.tocsr().astype(np.float32, copy=True)
    r.sum_duplicates()
    r.eliminate_zeros()
    r.data[:] = 1.0
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = 1.0 / np.sqrt(deg[nz])
    d = sp.diags(inv_sqrt)
    norm = (d @ a @ d).tocsr().astype(np.float32)
    norm.sort_indices()
    with warnings.catch_warnings():
        # "sparse CSR support is in beta": sparse-dense matmul (and its backward) is all we use
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(norm.indptr.astype(np.int64)),
            torch.from_numpy(norm.indices.astype(np.int64)),
            torch.from_numpy(norm.data),
            size=norm.shape,
            dtype=torch.float32,
            check_invariants=False,  # built by scipy: sorted, in range
        )


class LightGCNModule(nn.Module):
    """Layer-0 embeddings of users and items; ``propagate`` gives the final ones."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        n_layers: int,
        adjacency: torch.Tensor,
        *,
        l2: float,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.n_layers, self.l2 = n_users, n_items, n_layers, l2
        self.embedding = nn.Embedding(n_users + n_items, dim)
        gen = torch.Generator().manual_seed(derive_seed(seed, 0x6C))
        nn.init.normal_(self.embedding.weight, std=init_std, generator=gen)
        self.adjacency = adjacency  # not a parameter: the fixed graph

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embedding.weight
        total = e
        for _ in range(self.n_layers):
            e = torch.sparse.mm(self.adjacency, e)
            total = total + e
        final = total / (self.n_layers + 1)
        return final[: self.n_users], final[self.n_users :]

    def forward(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, scale: float
    ) -> torch.Tensor:
        u_all, i_all = self.propagate()
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        e0 = self.embedding.weight
        reg = (
            e0[users].pow(2).sum(-1)
            + e0[self.n_users + pos].pow(2).sum(-1)
            + e0[self.n_users + neg].pow(2).sum(-1)
        )
        return scale * (loss + self.l2 * reg).sum()


class LightGCN(Recommender):
    """LightGCN with BPR (see the module docstring).

    Parameters: ``dim`` (embedding size), ``n_layers``, ``l2`` (on batch layer-0 embeddings),
    ``epochs``, ``batch_size``, ``lr``, ``positive_weighting`` (see :mod:`shopsight.models.mf`),
    ``samples_per_epoch``, ``patience`` (early stopping on NDCG@10 of ``valid``), ``seed``.
    ``epochs`` defaults to ``"auto"``: BPR's rule (:func:`shopsight.models.scaling.
    auto_epochs`, about 2,200 optimiser steps, 10-100 epochs: 60 on MovieLens-100K stratified,
    29 on Amazon Beauty), with ``l2`` 1e-3 so that the longer schedule does not overfit (on
    MovieLens-100K's validation split: 20 epochs at 1e-4, the former defaults, 0.2502 NDCG@10;
    60 epochs at 1e-4, 0.2192; 60 at 1e-3, 0.2601). ``dim`` defaults to ``"auto"``: BPR's factor
    rule (:func:`shopsight.models.scaling.auto_bpr_factors`: 64 on MovieLens-100K and the shop,
    128 on Amazon Scientific, 256 on Amazon Beauty, whose validation split scored NDCG@10
    0.0326 at the former fixed 64 and 0.0375 at 128). The values used are in
    ``meta.resolved``. One layer is nearly as good as two at half the cost per step.
    """

    name = "lightgcn"

    def __init__(
        self,
        dim: int | Literal["auto"] = "auto",
        n_layers: int = 2,
        l2: float = 1e-3,
        epochs: int | Literal["auto"] = "auto",
        batch_size: int = 2048,
        lr: float = 0.01,
        positive_weighting: Weighting = "uniform",
        samples_per_epoch: int | None = None,
        lr_schedule: Literal["constant", "cosine", "linear"] = "constant",
        init_std: float = 0.1,
        patience: int | None = 5,
        eval_every: int = 1,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.n_layers = n_layers
        self.l2 = l2
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.positive_weighting = positive_weighting
        self.samples_per_epoch = samples_per_epoch
        self.lr_schedule = lr_schedule
        self.init_std = init_std
        self.patience = patience
        self.eval_every = eval_every
        self.seed = seed

    def resolved_params(self, data: DataShape | sp.spmatrix | sp.sparray) -> dict[str, Any]:
        """The parameters with ``"auto"`` resolved for this training matrix (or its shape)."""
        shape = data_shape(data)
        return resolve(
            self.get_params(),
            {
                "epochs": lambda p: auto_epochs(shape, int(p["batch_size"])),
                "dim": lambda p: auto_bpr_factors(shape),
            },
        )

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        dim_ok = self.dim == AUTO or (
            isinstance(self.dim, int | np.integer)
            and not isinstance(self.dim, bool)
            and self.dim >= 1
        )
        if not dim_ok or self.n_layers < 0:
            raise InputError(
                f"dim={self.dim!r}, n_layers={self.n_layers!r}: expected dim 'auto' or >= 1, "
                "n_layers >= 0"
            )
        if self.epochs != AUTO and not (
            isinstance(self.epochs, int | np.integer)
            and not isinstance(self.epochs, bool)
            and self.epochs >= 0
        ):
            raise InputError(f"epochs={self.epochs!r}: expected 'auto' or an integer >= 0")
        transform_weights(np.ones(1), self.positive_weighting)
        self.data_shape_ = DataShape.of(dataset.implicit)
        self.resolved_: dict[str, Any] = self.resolved_params(self.data_shape_)
        adjacency = normalized_adjacency(dataset.implicit)
        module = LightGCNModule(
            dataset.n_users,
            dataset.n_items,
            int(self.resolved_["dim"]),
            self.n_layers,
            adjacency,
            l2=self.l2,
            init_std=self.init_std,
            seed=self.seed,
        )
        sampler = PairSampler(
            dataset.implicit,
            seed=self.seed,
            weighting=self.positive_weighting,
            samples_per_epoch=self.samples_per_epoch,
        )
        # fused Adam: one pass per tensor instead of a dozen (the same update)
        config = TrainConfig.from_params(self.resolved_, fused_optimizer=True)

        def scorer() -> Callable[[IntArray], FloatArray]:
            # one propagation per evaluation, shared by all batches of users
            u, i = module.propagate()
            return lambda users: (u[torch.from_numpy(users)] @ i.T).numpy()

        validate = validation_fn(self, None, valid, scorer=scorer, seed=self.seed)
        self.train_result_ = fit_pairwise(
            module, sampler, config, batch_size=self.batch_size, validate=validate
        )
        with torch.no_grad():
            u, i = module.propagate()
        self.user_embeddings_: FloatArray = u.numpy().copy()
        self.item_embeddings_: FloatArray = i.numpy().copy()

    def _score(self, users: IntArray) -> FloatArray:
        return (self.user_embeddings_[users] @ self.item_embeddings_.T).astype(
            np.float32, copy=False
        )

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        if not len(items):
            return self.item_popularity_.copy()
        w = transform_weights(weights, self.positive_weighting)
        if not w.sum() > 0:
            w = np.ones_like(w)
        user = (w[:, None] * self.item_embeddings_[items]).sum(axis=0) / w.sum()
        return (self.item_embeddings_ @ user.astype(np.float32)).astype(np.float32)

    def item_embeddings(self) -> FloatArray:
        return self.item_embeddings_

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_embeddings": self.user_embeddings_, "item_embeddings": self.item_embeddings_}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.user_embeddings_ = arrays["user_embeddings"]
        self.item_embeddings_ = arrays["item_embeddings"]
        if "resolved" in meta:
            self.resolved_ = dict(meta["resolved"])

    def _meta(self) -> dict[str, Any]:
        result = getattr(self, "train_result_", None)
        out: dict[str, Any] = {"training": result.to_dict()} if result is not None else {}
        if hasattr(self, "resolved_"):
            out["resolved"] = self.resolved_
            out["data_shape"] = self.data_shape_.to_dict()
        return out
