"""FREEDOM: frozen item-item content graph + denoised user-item graph (Zhou & Shen, MM 2023).

"A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal Recommendation".
Two graphs, two kinds of propagation, one BPR objective:

- **Item-item graph, frozen.** Per modality (text, image), each item's ``knn_k`` most similar
  items by cosine of the content vectors (:mod:`shopsight.models.content`, centred and
  normalised), as a binary kNN graph with symmetric degree normalisation ``D^-1/2 A D^-1/2``;
  the modality graphs are mixed with weights ``image_weight`` / ``1 - image_weight``. It is built
  once before training and never learned (freezing it is FREEDOM's point against LATTICE, which
  relearns it at great cost). The item ID embeddings propagated over it (``h = S e``) are added
  to the items' final embeddings.
- **User-item graph, denoised.** LightGCN propagation (``n_layers``, mean over layers) over the
  interaction graph, where at each epoch a fraction ``edge_dropout`` of the edges is pruned,
  sampled with probability proportional to ``1 / sqrt(d_u d_i)`` (degree-sensitive pruning: the
  edges between popular nodes, most likely noise, go first), and the kept graph re-normalised.
  Scoring uses the full graph.
- **Loss**: BPR on the final embeddings plus ``align_weight`` x BPR of the user embeddings
  against each modality's projected content (``Linear(d_m, factors)``), which aligns the
  user space with item content.

**Cold items** (content but no interactions) never take part in training (neither as positives
nor as negatives, so the model does not learn that content like theirs is bad). Their
embedding is read out of the frozen content graph: their ``knn_k`` nearest *trained* items per
modality, mixed and normalised like the training graph, applied to those items' final
embeddings. So a new item is scored like the trained items it resembles, the reason FREEDOM's
item-item graph exists.

Training runs on the shared :class:`~shopsight.training.trainer.Trainer` (early stopping on
validation NDCG@10, checkpoints, DDP; the pruned graph of an epoch is a function of the seed and
the epoch, identical on every rank). New users are folded in with the BPR-optimal user vector
against the final item embeddings (as ``bpr``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from torch import nn

from shopsight import distributed as D
from shopsight.errors import DataError, InputError
from shopsight.models.base import FloatArray, IntArray, Recommender
from shopsight.models.content import ContentMixin, ItemContent, standardize, torch_threads
from shopsight.models.mf import (
    PairSampler,
    Weighting,
    bpr_loss,
    bpr_user_vector,
    transform_weights,
)
from shopsight.models.vbpr import warm_items
from shopsight.training.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    derive_seed,
    validation_fn,
)

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise InputError(f"FREEDOM: {name}={value!r}: expected {expected}")


# =============================================================================================
# Graphs
# =============================================================================================


def knn_graph(
    features: FloatArray,
    mask: npt.NDArray[np.bool_],
    k: int,
    rows: IntArray,
    cols: IntArray,
    *,
    block: int = 1024,
) -> sp.csr_matrix:
    """Binary kNN graph ``(len(rows), len(cols))``: each row's ``k`` most cosine-similar columns.

    ``features`` are rows over the whole catalogue (compared by cosine); ``rows`` / ``cols`` are
    the item indices of the graph's rows and columns. Items without the modality (``mask``
    False) get no neighbours and are nobody's neighbour. Computed in row blocks, so memory is
    ``block x len(cols)`` whatever the catalogue size. Ties go to the lower column index.
    """
    # Cosine similarity: unit rows (zero rows stay zero and are masked out anyway).
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    features = (features / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    cand = np.flatnonzero(mask[cols])
    kk = min(k, len(cand))
    n_rows = len(rows)
    row_ok = mask[rows]
    if kk == 0 or not row_ok.any():
        return sp.csr_matrix((n_rows, len(cols)), dtype=np.float32)
    xc = features[cols[cand]]
    todo = np.flatnonzero(row_ok)
    tops = np.empty((len(todo), kk), np.int64)
    for start in range(0, len(todo), block):
        r = rows[todo[start : start + block]]
        sim = features[r] @ xc.T  # (b, |cand|)
        if kk < len(cand):
            part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        else:
            part = np.tile(np.arange(len(cand)), (len(r), 1))
        vals = np.take_along_axis(sim, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        tops[start : start + len(r)] = np.take_along_axis(part, order, axis=1)
    lengths = np.where(row_ok, kk, 0)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = cand[tops].ravel()
    return sp.csr_matrix(
        (np.ones(len(indices), np.float32), indices, indptr), shape=(n_rows, len(cols))
    )


def sym_normalize(a: sp.csr_matrix, row_deg: FloatArray, col_deg: FloatArray) -> sp.csr_matrix:
    """``a_ij / sqrt(row_deg_i * col_deg_j)`` (zero degrees give zero entries)."""
    r = np.where(row_deg > 0, 1.0 / np.sqrt(np.maximum(row_deg, 1e-12)), 0.0)
    c = np.where(col_deg > 0, 1.0 / np.sqrt(np.maximum(col_deg, 1e-12)), 0.0)
    out = sp.diags(r.astype(np.float32)) @ a @ sp.diags(c.astype(np.float32))
    return sp.csr_matrix(out, dtype=np.float32)


def item_item_graph(
    content: ItemContent, k: int, image_weight: float, rows: IntArray, cols: IntArray
) -> sp.csr_matrix:
    """FREEDOM's mixed, degree-normalised kNN content graph from ``rows`` to ``cols`` items.

    Each modality's binary kNN graph is normalised by the row degrees (its own for the rows,
    the column items' own kNN degree for the columns, as in the training graph where rows and
    columns are the same items), then mixed: image ``image_weight``, text the rest (a single
    modality gets weight 1).
    """
    weights = _modality_weights(content.modalities, image_weight)
    total = sp.csr_matrix((len(rows), len(cols)), dtype=np.float32)
    for m, w in weights.items():
        x, mask = content.features[m], content.masks[m]
        a = knn_graph(x, mask, k, rows, cols)
        row_deg = np.asarray(a.sum(axis=1)).ravel()
        # A column item's degree is the number of neighbours it has as a row of its own graph.
        col_deg = np.where(mask[cols], float(min(k, int(mask[cols].sum()))), 0.0)
        total = total + w * sym_normalize(a, row_deg, col_deg)
    return sp.csr_matrix(total, dtype=np.float32)


def _modality_weights(modalities: Sequence[str], image_weight: float) -> dict[str, float]:
    if set(modalities) == {"text", "image"}:
        return {"text": 1.0 - image_weight, "image": image_weight}
    return {m: 1.0 / len(modalities) for m in modalities}


def _to_torch_sparse(a: sp.spmatrix) -> torch.Tensor:
    coo = a.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape, check_invariants=False
    ).coalesce()


def bipartite_adjacency(
    users: IntArray, items: IntArray, n_users: int, n_items: int
) -> torch.Tensor:
    """Normalised ``(U + I) x (U + I)`` LightGCN adjacency of the given (unique) edges."""
    du = np.bincount(users, minlength=n_users).astype(np.float64)
    di = np.bincount(items, minlength=n_items).astype(np.float64)
    val = (1.0 / np.sqrt(du[users] * di[items])).astype(np.float32)
    r = np.concatenate([users, items + n_users])
    c = np.concatenate([items + n_users, users])
    v = np.concatenate([val, val])
    idx = torch.from_numpy(np.vstack([r, c]).astype(np.int64))
    n = n_users + n_items
    return torch.sparse_coo_tensor(
        idx, torch.from_numpy(v), (n, n), check_invariants=False
    ).coalesce()


# =============================================================================================
# The network
# =============================================================================================


class FreedomModule(nn.Module):
    """User / item ID embeddings, modality projections; ``forward`` is a batch's scaled loss."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        n_layers: int,
        item_graph: torch.Tensor,
        features: dict[str, FloatArray],
        *,
        align_weight: float,
        l2: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        self.align_weight, self.l2 = align_weight, l2
        self.user = nn.Embedding(n_users, factors)
        self.item = nn.Embedding(n_items, factors)
        self.proj = nn.ModuleDict({m: nn.Linear(x.shape[1], factors) for m, x in features.items()})
        gen = torch.Generator().manual_seed(derive_seed(seed, 0xF4))
        # Xavier-uniform embeddings as in the reference implementation (MMRec).
        for w in (self.user.weight, self.item.weight):
            nn.init.xavier_uniform_(w, generator=gen)
        for lin in self.proj.values():
            assert isinstance(lin, nn.Linear)
            nn.init.xavier_uniform_(lin.weight, generator=gen)
            nn.init.zeros_(lin.bias)
        self.features = {m: torch.from_numpy(x) for m, x in features.items()}
        self.item_graph = item_graph
        self.adj: torch.Tensor | None = None  # this epoch's (pruned) user-item graph

    def propagate(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings: LightGCN layer mean (+ item-graph readout for items)."""
        h = torch.sparse.mm(self.item_graph, self.item.weight)
        x = torch.cat([self.user.weight, self.item.weight])
        acc = x
        for _ in range(self.n_layers):
            x = torch.sparse.mm(adj, x)
            acc = acc + x
        acc = acc / (self.n_layers + 1)
        u, i = acc.split([self.n_users, self.n_items])
        return u, i + h

    def forward(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, scale: float
    ) -> torch.Tensor:
        assert self.adj is not None
        u_all, i_all = self.propagate(self.adj)
        ue = u_all[users]
        loss = bpr_loss((ue * i_all[pos]).sum(-1), (ue * i_all[neg]).sum(-1))
        if self.align_weight:
            # Project each distinct item of the batch once (the content vectors are wide).
            uniq, inv = torch.unique(torch.cat([pos, neg]), return_inverse=True)
            n = len(pos)
            for m, proj in self.proj.items():
                f = proj(self.features[m][uniq])[inv]
                loss = loss + self.align_weight * bpr_loss(
                    (ue * f[:n]).sum(-1), (ue * f[n:]).sum(-1)
                )
        if self.l2:
            reg = (
                self.user(users).pow(2).sum(-1)
                + self.item(pos).pow(2).sum(-1)
                + self.item(neg).pow(2).sum(-1)
            )
            loss = loss + self.l2 * reg
        return scale * loss.sum()


# =============================================================================================
# The recommender
# =============================================================================================


class FREEDOM(ContentMixin, Recommender):
    """FREEDOM-style multimodal graph recommender (see the module docstring).

    Parameters
    ----------
    dim, n_layers:
        embedding size; LightGCN layers over the user-item graph.
    knn_k, image_weight:
        neighbours per item in each modality's kNN graph; weight of the image graph when both
        text and image are used (FREEDOM: 10 and 0.1).
    edge_dropout:
        fraction of user-item edges pruned each epoch, degree-sensitively (0: no pruning).
    align_weight:
        weight of the user-content alignment BPR terms.
    l2:
        per-sample L2 of the touched ID embeddings.
    modalities, feature_cache:
        item content used; see :mod:`shopsight.models.content`.
    epochs, batch_size, lr, positive_weighting, samples_per_epoch, patience, eval_every, seed:
        optimisation (Adam), multi-behaviour positive sampling and early stopping on NDCG@10
        of ``valid``, as for ``bpr``.
    num_threads:
        torch threads while fitting and scoring (0: leave torch's setting; 1 is often fastest
        on small shared machines).
    """

    name = "freedom"
    handles_cold_items = True

    def __init__(
        self,
        dim: int = 64,
        n_layers: int = 2,
        knn_k: int = 10,
        image_weight: float = 0.1,
        edge_dropout: float = 0.8,
        align_weight: float = 1e-3,
        l2: float = 0.0,
        modalities: Sequence[str] = ("text", "image"),
        feature_cache: str | None = None,
        epochs: int = 40,
        batch_size: int = 2048,
        lr: float = 0.005,
        positive_weighting: Weighting = "log",
        samples_per_epoch: int | None = None,
        patience: int | None = 5,
        eval_every: int = 1,
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.n_layers = n_layers
        self.knn_k = knn_k
        self.image_weight = image_weight
        self.edge_dropout = edge_dropout
        self.align_weight = align_weight
        self.l2 = l2
        self.modalities = tuple(modalities)  # a JSON round trip gives a list back
        self.feature_cache = feature_cache
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.positive_weighting = positive_weighting
        self.samples_per_epoch = samples_per_epoch
        self.patience = patience
        self.eval_every = eval_every
        self.num_threads = num_threads
        self.seed = seed

    def _validate(self) -> None:
        _check("dim", self.dim, self.dim >= 1, "an integer >= 1")
        _check("n_layers", self.n_layers, self.n_layers >= 0, "an integer >= 0")
        _check("knn_k", self.knn_k, self.knn_k >= 1, "an integer >= 1")
        _check("image_weight", self.image_weight, 0.0 <= self.image_weight <= 1.0, "in [0, 1]")
        _check("edge_dropout", self.edge_dropout, 0.0 <= self.edge_dropout < 1.0, "in [0, 1)")
        _check("align_weight", self.align_weight, self.align_weight >= 0, "a number >= 0")
        _check("l2", self.l2, self.l2 >= 0, "a number >= 0")
        _check("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        transform_weights(np.ones(1), self.positive_weighting)  # validates the name

    # -- fitting --------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self._validate()
        with torch_threads(self.num_threads):
            self._train(dataset, valid)

    def _train(self, dataset: Dataset, valid: Dataset | None) -> None:
        self.content_ = self._resolve_content(dataset)
        feats, _ = standardize(self.content_)
        warm = warm_items(dataset.implicit)
        if not len(warm):
            raise DataError("FREEDOM: the training data has no interactions")
        all_items = np.arange(dataset.n_items, dtype=np.int64)
        cold = np.setdiff1d(all_items, warm, assume_unique=True)
        ii_warm = item_item_graph(feats, self.knn_k, self.image_weight, warm, warm)
        # Cold items read out of their nearest trained items (same construction).
        self.cold_items_: IntArray = cold
        self.cold_graph_: sp.csr_matrix = item_item_graph(
            feats, self.knn_k, self.image_weight, cold, warm
        )
        matrix = dataset.implicit[:, warm].tocsr()
        matrix.eliminate_zeros()
        coo = matrix.tocoo()
        self._edges = (coo.row.astype(np.int64), coo.col.astype(np.int64))
        module = FreedomModule(
            dataset.n_users,
            len(warm),
            self.dim,
            self.n_layers,
            _to_torch_sparse(ii_warm),
            {m: np.ascontiguousarray(feats.features[m][warm]) for m in feats.modalities},
            align_weight=self.align_weight,
            l2=self.l2,
            seed=self.seed,
        )
        self._full_adj = bipartite_adjacency(*self._edges, dataset.n_users, len(warm))
        self._warm = warm
        self.module_ = module
        sampler = PairSampler(
            matrix,
            seed=self.seed,
            weighting=self.positive_weighting,
            samples_per_epoch=self.samples_per_epoch,
        )
        # fused Adam: one pass per tensor instead of a dozen (the same update)
        config = TrainConfig.from_params(self.get_params(), optimizer="adam", fused_optimizer=True)
        validate = validation_fn(self, self._module_scores, valid, seed=self.seed)
        self.train_result_: TrainResult = Trainer(module, config).fit(
            lambda epoch: self._batches(sampler, epoch), validate
        )
        self._export()

    def _batches(self, sampler: PairSampler, epoch: int) -> Iterator[tuple[Any, ...]]:
        # Set this epoch's denoised graph first (same on every rank: seed and epoch only).
        self.module_.adj = self._pruned_adjacency(epoch)
        yield from sampler.batches(epoch, self.batch_size, D.current())

    def _pruned_adjacency(self, epoch: int) -> torch.Tensor:
        """Degree-sensitive edge pruning: keep ``1 - edge_dropout`` of the edges, sampled
        without replacement with probability proportional to ``1 / sqrt(d_u d_i)``."""
        users, items = self._edges
        n_users, n_items = self.n_users_, len(self._warm)
        if self.edge_dropout <= 0:
            return self._full_adj
        du = np.bincount(users, minlength=n_users).astype(np.float64)
        di = np.bincount(items, minlength=n_items).astype(np.float64)
        p = 1.0 / np.sqrt(du[users] * di[items])
        keep = max(1, int(len(users) * (1.0 - self.edge_dropout)))
        rng = np.random.default_rng(derive_seed(self.seed, epoch, 0xED9))
        # Weighted sampling without replacement (Efraimidis & Spirakis): the keep smallest
        # Exp(1) / p keys.
        key = rng.exponential(size=len(p)) / p
        kept = (
            np.sort(np.argpartition(key, keep - 1)[:keep]) if keep < len(p) else np.arange(len(p))
        )
        return bipartite_adjacency(users[kept], items[kept], n_users, n_items)

    # -- from the trained module to plain arrays --------------------------------------------------
    @torch.no_grad()
    def _arrays(self) -> tuple[FloatArray, FloatArray]:
        """Final user embeddings and item embeddings over the whole catalogue."""
        m = self.module_
        u, i = m.propagate(self._full_adj)
        items = np.zeros((self.n_items_, self.dim), np.float32)
        warm_final = i.numpy()
        items[self._warm] = warm_final
        if len(self.cold_items_):
            items[self.cold_items_] = self.cold_graph_ @ warm_final
        return u.numpy().copy(), items

    def _module_scores(self, users: IntArray) -> FloatArray:
        u, i = self._arrays()
        return self._with_fallback(u[users] @ i.T, users)

    def _export(self) -> None:
        self.user_embeddings_, self.item_embeddings_ = self._arrays()
        del self.module_, self._full_adj, self._edges, self._warm

    # -- scoring ----------------------------------------------------------------------------------
    def _with_fallback(self, scores: npt.NDArray[Any], users: IntArray) -> FloatArray:
        # A user without training interactions has an untrained embedding: use popularity.
        s = np.asarray(scores, np.float32)
        empty = np.diff(self.seen_.indptr)[users] == 0
        if empty.any():
            s[empty] = self.item_popularity_
        return s

    def _score(self, users: IntArray) -> FloatArray:
        return self._with_fallback(self.user_embeddings_[users] @ self.item_embeddings_.T, users)

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        """BPR-optimal user vector against the final item embeddings."""
        if not len(items):
            return self.item_popularity_.copy()
        u = bpr_user_vector(
            self.item_embeddings_,
            None,
            items,
            transform_weights(weights, self.positive_weighting).astype(np.float32),
            l2=1e-4,
            seed=self.seed,
        )
        return (self.item_embeddings_ @ u).astype(np.float32)

    def item_embeddings(self) -> FloatArray:
        return self.item_embeddings_

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        g = self.cold_graph_.tocsr()
        return {
            "user_embeddings": self.user_embeddings_,
            "item_embeddings": self.item_embeddings_,
            "cold_items": self.cold_items_,
            "cold_graph.indptr": g.indptr.astype(np.int64),
            "cold_graph.indices": g.indices.astype(np.int64),
            "cold_graph.data": g.data.astype(np.float32),
            **self._content_state(),
        }

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self._load_content_state(arrays)
        self.user_embeddings_ = arrays["user_embeddings"]
        self.item_embeddings_ = arrays["item_embeddings"]
        self.cold_items_ = arrays["cold_items"]
        self.cold_graph_ = sp.csr_matrix(
            (arrays["cold_graph.data"], arrays["cold_graph.indices"], arrays["cold_graph.indptr"]),
            shape=(len(self.cold_items_), int(meta["n_warm"])),
        )

    def _meta(self) -> dict[str, Any]:
        result = getattr(self, "train_result_", None)
        return {
            "n_warm": int(self.n_items_ - len(self.cold_items_)),
            "modalities": self.content_.modalities,
            **({"training": result.to_dict()} if result is not None else {}),
        }


__all__ = ["FREEDOM", "FreedomModule", "bipartite_adjacency", "item_item_graph", "knn_graph"]
