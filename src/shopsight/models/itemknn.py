"""Item-based nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004).

Item ``i`` is the vector of its users' feedback (a column of the users x items matrix). The
similarity of two items is their cosine with shrinkage, ``x_i.x_j / (|x_i| |x_j| + shrinkage)``,
which discounts pairs supported by few users. Before the cosine, the matrix can be reweighted
(``weighting``) as in text retrieval, with users as terms and items as documents:

- ``"tfidf"``: a user's feedback counts ``log(n_items / n_items_of_user)``, so users who touch
  everything say less about any pair;
- ``"bm25"``: additionally saturates repeated feedback and normalises by the item's total
  feedback (``k1``, ``b``), as ``implicit``'s ``BM25Recommender``.

Only each item's ``neighbours`` most similar items are kept (a sparse ``n_items x n_items``
matrix built column block by column block, so memory stays ``O(n_items * neighbours)``). A user
scores item ``j`` as ``sum_i h_ui * sim(i, j)`` over their history ``h`` (a sparse product), which
is also how a new user folds in. ``similar_items`` reads the similarity matrix directly.

``feedback`` chooses ``h`` and the item vectors from the multi-behaviour weights ``w``:
``"binary"`` (1 per interacted pair), ``"weight"`` (``w``) or ``"log"`` (``log1p(w)``, default).

Defaults: ``weighting="tfidf"`` and ``shrinkage="auto"``, 10 co-occurrences of a typical entry
of the reweighted matrix (``10 * mean(x^2)``, :func:`shopsight.models.scaling.auto_shrinkage`),
since the shrinkage is added to a product of norms and must be in their units. The former
fixed shrinkage 10 on unweighted feedback meant 2 co-occurrences on Amazon Beauty (every entry
``log1p(8)``) and scored 0.89 of a tuned setting there; the new defaults hold within 10% of
tuned on MovieLens-100K, the synthetic shop and Beauty (``bench/defaults.py``). The value used
is in the saved model's ``meta.resolved``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopsight.errors import InputError
from shopsight.models.base import FloatArray, IntArray, Recommender, topk
from shopsight.models.scaling import AUTO, DataShape, auto_shrinkage, resolve

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

Feedback = Literal["binary", "weight", "log"]


def feedback_matrix(weights: sp.csr_matrix, mode: Feedback) -> sp.csr_matrix:
    """Users x items float32 feedback from multi-behaviour weights (shared by EASE)."""
    m = weights.tocsr().astype(np.float32, copy=True)
    m.sum_duplicates()
    m.data = np.maximum(m.data, 0)
    m.eliminate_zeros()
    if mode == "binary":
        m.data[:] = 1.0
    elif mode == "log":
        m.data = np.log1p(m.data).astype(np.float32)
    elif mode != "weight":
        raise InputError(f"feedback={mode!r}: expected binary, weight or log")
    return m


def feedback_vector(items: IntArray, weights: FloatArray, n_items: int, mode: Feedback) -> Any:
    """A one-row feedback matrix of a user known by (items, weights), same transform."""
    row = sp.csr_matrix(
        (np.asarray(weights, np.float32), (np.zeros(len(items), np.int64), items)),
        shape=(1, n_items),
    )
    return feedback_matrix(row, mode)


def reweight(x: sp.csr_matrix, weighting: str, k1: float, b: float) -> sp.csr_matrix:
    """TF-IDF / BM25 reweighting of a users x items matrix (users are the "terms")."""
    if weighting == "none":
        return x
    n_items = x.shape[1]
    coo = x.tocoo()
    df = np.diff(x.indptr).astype(np.float64)  # items per user
    if weighting == "tfidf":
        idf = np.log(n_items / np.maximum(df, 1.0))
        data = coo.data * idf[coo.row]
    elif weighting == "bm25":
        idf = np.log(np.maximum(n_items - df + 0.5, 0.5) / (df + 0.5) + 1.0)
        length = np.asarray(x.sum(axis=0)).ravel()  # total feedback per item
        avg = length[length > 0].mean() if (length > 0).any() else 1.0
        norm = k1 * (1.0 - b + b * length[coo.col] / avg)
        data = coo.data * (k1 + 1.0) / (coo.data + norm) * idf[coo.row]
    else:
        raise InputError(f"weighting={weighting!r}: expected none, tfidf or bm25")
    return sp.csr_matrix((data.astype(np.float32), (coo.row, coo.col)), shape=x.shape)


def knn_similarity(
    x: sp.csr_matrix, neighbours: int, shrinkage: float, block: int | None = None
) -> sp.csr_matrix:
    """Row ``i``: the ``neighbours`` largest shrunk cosines of item ``i`` (self excluded)."""
    n = x.shape[1]
    # rows per block so that one dense slab stays around 128 MB of float32
    block = block or max(16, min(4096, (1 << 25) // max(n, 1)))
    xc = x.tocsc().astype(np.float32)
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel()).astype(np.float32)
    xt = xc.T.tocsr()
    rows, cols, vals = [], [], []
    k = min(neighbours, max(n - 1, 0))
    for start in range(0, n, block):
        stop = min(start + block, n)
        # (block x n) dense slab of dot products: bounded memory per block
        dots = np.asarray((xt[start:stop] @ xc).todense(), dtype=np.float32)
        denom = norms[start:stop, None] * norms[None, :] + shrinkage
        sims = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if k <= 0:
            continue
        idx, v = topk(sims, k)
        keep = v > 0
        r = np.repeat(np.arange(start, stop), k).reshape(-1, k)
        rows.append(r[keep])
        cols.append(idx[keep])
        vals.append(v[keep])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
        dtype=np.float32,
    )


class ItemKNN(Recommender):
    """Item-item cosine neighbours (see the module docstring)."""

    name = "itemknn"

    def __init__(
        self,
        neighbours: int = 100,
        shrinkage: float | Literal["auto"] = "auto",
        weighting: Literal["none", "tfidf", "bm25"] = "tfidf",
        feedback: Feedback = "log",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        self.neighbours = neighbours
        self.shrinkage = shrinkage
        self.weighting = weighting
        self.feedback = feedback
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def resolved_params(self, interactions: sp.spmatrix | sp.sparray) -> dict[str, Any]:
        """The parameters with ``"auto"`` resolved for this training matrix (users x items
        multi-behaviour weights, as ``Dataset.implicit``)."""
        return self._resolve(self._item_vectors(feedback_matrix(interactions, self.feedback)))

    def _item_vectors(self, history: sp.csr_matrix) -> sp.csr_matrix:
        return reweight(history, self.weighting, self.bm25_k1, self.bm25_b)

    def _resolve(self, x: sp.csr_matrix) -> dict[str, Any]:
        return resolve(self.get_params(), {"shrinkage": lambda p: auto_shrinkage(x)})

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        if self.neighbours < 1:
            raise InputError(f"neighbours={self.neighbours!r}: expected an integer >= 1")
        if self.shrinkage != AUTO and not (
            isinstance(self.shrinkage, int | float | np.number) and self.shrinkage >= 0
        ):
            raise InputError(f"shrinkage={self.shrinkage!r}: expected 'auto' or a number >= 0")
        self.history_: sp.csr_matrix = feedback_matrix(dataset.implicit, self.feedback)
        x = self._item_vectors(self.history_)
        self.data_shape_ = DataShape.of(dataset.implicit)
        self.resolved_: dict[str, Any] = self._resolve(x)
        shrinkage = float(self.resolved_["shrinkage"])
        self.similarity_: sp.csr_matrix = knn_similarity(x, self.neighbours, shrinkage)

    def _score(self, users: IntArray) -> FloatArray:
        return np.asarray((self.history_[users] @ self.similarity_).todense(), dtype=np.float32)

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        if not len(items):
            return self.item_popularity_.copy()
        h = feedback_vector(items, weights, self.n_items_, self.feedback)
        return np.asarray((h @ self.similarity_).todense(), dtype=np.float32).ravel()

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[IntArray, FloatArray]:
        """Top-k neighbours from the similarity matrix (items outside it score 0)."""
        self._check_fitted()
        it = np.atleast_1d(np.asarray(items, dtype=np.int64))
        s = np.asarray(self.similarity_[it].todense(), dtype=np.float32)
        s[np.arange(len(it)), it] = -np.inf
        return topk(s, k)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            **_csr_state("history", self.history_),
            **_csr_state("similarity", self.similarity_),
        }

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.history_ = _csr_from_state(arrays, "history", (self.n_users_, self.n_items_))
        self.similarity_ = _csr_from_state(arrays, "similarity", (self.n_items_, self.n_items_))
        if "resolved" in meta:
            self.resolved_ = dict(meta["resolved"])

    def _meta(self) -> dict[str, Any]:
        if not hasattr(self, "resolved_"):
            return {}
        return {"resolved": self.resolved_, "data_shape": self.data_shape_.to_dict()}


def _csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    m = m.tocsr()
    return {
        f"{prefix}.data": m.data.astype(np.float32),
        f"{prefix}.indices": m.indices.astype(np.int64),
        f"{prefix}.indptr": m.indptr.astype(np.int64),
    }


def _csr_from_state(
    arrays: dict[str, np.ndarray], prefix: str, shape: tuple[int, int]
) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
        shape=shape,
    )
