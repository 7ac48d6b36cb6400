"""EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

A linear item-item model ``X -> X B`` with a zero diagonal, fitted in closed form::

    G = X'X + l2 * I,   P = G^-1,   B_ij = -P_ij / P_jj  (i != j),   B_jj = 0

It is a dense ``n_items x n_items`` model: the Gram matrix and its inverse live in memory
(float32 Cholesky in place, about ``2 * 4 * n_items^2`` bytes at the peak). ``max_items`` guards
against catalogues where that does not fit: above it, ``fit`` refuses with the memory it would
need (raise the limit knowingly, or use ``itemknn`` / ``als``). A user's scores are ``x_u B``
(their feedback row times ``B``), so a new user folds in the same way with no retraining.
``similar_items`` ranks by ``B``'s rows: how strongly item ``i`` predicts each other item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp

from shopsight.errors import InputError
from shopsight.models.base import FloatArray, IntArray, Recommender, topk
from shopsight.models.itemknn import Feedback, feedback_matrix, feedback_vector

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset


class TooManyItemsError(InputError):
    """EASE's dense item-item model would not fit the configured limit."""


class EASE(Recommender):
    """EASE^R closed-form item-item model (see the module docstring)."""

    name = "ease"

    def __init__(
        self, l2: float = 200.0, feedback: Feedback = "binary", max_items: int = 30_000
    ) -> None:
        self.l2 = l2
        self.feedback = feedback
        self.max_items = max_items

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        if not self.l2 > 0:
            raise InputError(f"l2={self.l2!r}: expected a positive number")
        n = dataset.n_items
        if n > self.max_items:
            need_gb = 2 * 4 * n * n / 1e9
            raise TooManyItemsError(
                f"EASE needs a dense {n} x {n} item matrix (~{need_gb:.1f} GB at the peak) but "
                f"max_items={self.max_items}; raise max_items if the memory is there, or use "
                "itemknn / als for large catalogues"
            )
        self.history_: sp.csr_matrix = feedback_matrix(dataset.implicit, self.feedback)
        x = self.history_
        g = np.asarray((x.T @ x).todense(), dtype=np.float32)
        g[np.diag_indices(n)] += np.float32(self.l2)
        # G is symmetric positive definite: Cholesky inverse, in place, float32.
        c, low = scipy.linalg.cho_factor(g, overwrite_a=True, check_finite=False)
        p = scipy.linalg.cho_solve(
            (c, low), np.eye(n, dtype=np.float32), overwrite_b=True, check_finite=False
        )
        del c, g
        p = np.asarray(p, dtype=np.float32)
        diag = np.diag(p).copy()
        p /= -diag[None, :]
        p[np.diag_indices(n)] = 0.0
        self.weights_: FloatArray = np.ascontiguousarray(p, dtype=np.float32)

    def _score(self, users: IntArray) -> FloatArray:
        return np.asarray(self.history_[users] @ self.weights_, dtype=np.float32)

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        if not len(items):
            return self.item_popularity_.copy()
        h = feedback_vector(items, weights, self.n_items_, self.feedback)
        return np.asarray(h @ self.weights_, dtype=np.float32).ravel()

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[IntArray, FloatArray]:
        """Items that item ``i`` predicts most strongly (row ``i`` of ``B``)."""
        self._check_fitted()
        it = np.atleast_1d(np.asarray(items, dtype=np.int64))
        s = self.weights_[it].copy()
        s[np.arange(len(it)), it] = -np.inf
        return topk(s, k)

    def _state(self) -> dict[str, np.ndarray]:
        h = self.history_.tocsr()
        return {
            "weights": self.weights_,
            "history.data": h.data.astype(np.float32),
            "history.indices": h.indices.astype(np.int64),
            "history.indptr": h.indptr.astype(np.int64),
        }

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.weights_ = arrays["weights"]
        self.history_ = sp.csr_matrix(
            (arrays["history.data"], arrays["history.indices"], arrays["history.indptr"]),
            shape=(self.n_users_, self.n_items_),
        )
