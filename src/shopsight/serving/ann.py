"""Approximate top-k for dot-product models through an HNSW graph (``hnswlib``).

Exact top-k scores the whole catalogue for every request: ``O(n_items * d)``, which is fine up to
a few hundred thousand items. For catalogues of millions, an HNSW index over the item vectors
answers in roughly ``O(log n)`` at a measured loss of recall. It applies to models whose score is
``u . v_i (+ b_i)`` (ALS, BPR): the bias is folded in as one extra dimension (``[v_i, b_i]`` and
``[u, 1]``), so the inner product in the index is exactly the model's score. Whether a model is
of that kind is checked numerically against ``model.score`` when the index is built, never
assumed from its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsight.errors import InputError
from shopsight.models.base import FloatArray, IntArray, Recommender, topk


class AnnUnsupported(InputError):
    """The model's scores are not an inner product of stored vectors."""


def dot_product_factors(model: Recommender) -> tuple[FloatArray, FloatArray]:
    """``(U, V)`` with ``model.score(u) == U[u] @ V.T`` (bias folded into the last column)."""
    users = getattr(model, "user_factors_", None)
    items = getattr(model, "item_factors_", None)
    if not isinstance(users, np.ndarray) or not isinstance(items, np.ndarray):
        raise AnnUnsupported(f"{model.name}: no user/item factors for an approximate index")
    bias = getattr(model, "item_bias_", None)
    u = np.asarray(users, np.float32)
    v = np.asarray(items, np.float32)
    if isinstance(bias, np.ndarray) and bias.shape == (v.shape[0],):
        u = np.hstack([u, np.ones((u.shape[0], 1), np.float32)])
        v = np.hstack([v, bias.astype(np.float32)[:, None]])
    probe = np.arange(min(8, u.shape[0]))
    if len(probe):
        want = model.score(probe)
        got = u[probe] @ v.T
        if want.shape != got.shape or not np.allclose(want, got, rtol=1e-3, atol=1e-3):
            raise AnnUnsupported(f"{model.name}: scores are not an inner product of its factors")
    return np.ascontiguousarray(u), np.ascontiguousarray(v)


@dataclass
class AnnIndex:
    """An HNSW inner-product index over item vectors, with the user vectors beside it."""

    user_vectors: FloatArray
    index: object
    n_items: int
    ef: int

    @classmethod
    def build(
        cls,
        model: Recommender,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 200,
        threads: int = 2,
        seed: int = 0,
    ) -> AnnIndex:
        import hnswlib

        u, v = dot_product_factors(model)
        index = hnswlib.Index(space="ip", dim=v.shape[1])
        index.init_index(
            max_elements=max(1, v.shape[0]), ef_construction=ef_construction, M=m, random_seed=seed
        )
        index.add_items(v, np.arange(v.shape[0]), num_threads=threads)
        index.set_ef(ef)
        return cls(user_vectors=u, index=index, n_items=int(v.shape[0]), ef=ef)

    def query(
        self,
        user: int,
        k: int,
        exclude: IntArray | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Approximate top-k items for a known user, best first.

        ``exclude`` (seen items) is removed by asking for ``k + len(exclude)`` neighbours, so at
        least ``k`` survive; ``allowed`` (a boolean item mask: the request's filters) is applied
        inside the graph search, i.e. before top-k.
        """
        n_ex = 0 if exclude is None else len(exclude)
        want = min(self.n_items, k + n_ex)
        if want <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        index = self.index
        q = self.user_vectors[user][None, :]
        if allowed is not None:
            n_allowed = int(allowed.sum())
            want = min(want, n_allowed)
            if want <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            index.set_ef(max(self.ef, want))  # type: ignore[attr-defined]
            labels, dist = index.knn_query(  # type: ignore[attr-defined]
                q, k=want, num_threads=1, filter=lambda i: bool(allowed[i])
            )
        else:
            index.set_ef(max(self.ef, want))  # type: ignore[attr-defined]
            labels, dist = index.knn_query(q, k=want, num_threads=1)  # type: ignore[attr-defined]
        idx = labels[0].astype(np.int64)
        scores = (1.0 - dist[0]).astype(np.float32)  # hnswlib's ip distance is 1 - <q, v>
        if n_ex:
            keep = ~np.isin(idx, exclude)  # type: ignore[arg-type]
            idx, scores = idx[keep], scores[keep]
        order = np.lexsort((idx, -scores))[:k]
        return idx[order], scores[order]


def recall_at_k(
    model: Recommender, ann: AnnIndex, users: IntArray, k: int = 10, exclude_seen: bool = True
) -> float:
    """Mean |approximate top-k ∩ exact top-k| / k over ``users`` (exact = ``model.recommend``)."""
    exact, _ = model.recommend(users, k, exclude_seen=exclude_seen)
    hits = 0
    total = 0
    indptr, indices = model.seen_.indptr, model.seen_.indices
    for row, u in enumerate(users.tolist()):
        seen = indices[indptr[u] : indptr[u + 1]].astype(np.int64) if exclude_seen else None
        approx, _ = ann.query(u, k, exclude=seen)
        want = set(exact[row].tolist())
        hits += len(want & set(approx.tolist()))
        total += len(want)
    return hits / max(total, 1)


__all__ = ["AnnIndex", "AnnUnsupported", "dot_product_factors", "recall_at_k", "topk"]
