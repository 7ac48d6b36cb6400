"""Hyper-parameter defaults that follow the size and density of the training data.

A default tuned on one dataset can be 25% off on the next: BPR's former fixed 8 epochs of 64
factors scored NDCG@10 0.397 on MovieLens-100K stratified by item, where cornac's BPR at 200
epochs publishes 0.445, because an epoch there is only 37 steps. So
:class:`~shopsight.models.mf.BPR` takes ``"auto"`` for its size and schedule parameters
(:class:`~shopsight.models.lightgcn.LightGCN` for its epochs and size) and resolves it at ``fit`` time
from the :class:`DataShape` of the training interactions, with rules stated here (the resolved
values are recorded in the saved model):

- **factors** follow the evidence per vector and the catalogue, whichever asks more: about 2
  per training pair behind a user or item vector (``interactions / (users + items)``) or ALS's
  ``2 sqrt(items)``, a power of two in [64, 256]. MovieLens-100K (29 pairs a vector, 1,682
  items) and the shop get 64; Amazon Beauty (4.5 pairs a vector, 12,101 items) 256. The
  evidence rule alone gave Beauty its floor, where the catalogue is what needs the capacity,
  as for ALS.
- **epochs** give every fit the same number of optimiser steps (2,200 batches of 2,048
  triples, 60 epochs on MovieLens-100K's 75,000 training pairs): an epoch of a large dataset
  is many steps and needs few passes, an epoch of a small one a handful of steps; within
  [10, 100] epochs, so a tiny dataset is not trained for ever and a huge one still sees each
  pair 10 times.
- **l2** (the per-sample penalty of the factors a triple touches, Rendle's) is 0.01 on data
  with 28 or more pairs behind a vector and grows as ``sqrt(28 / pairs_per_vector)`` below
  that: the per-sample penalty scales with a vector's degree exactly as its data term does, so
  it cannot tell a vector with 4 pairs, which needs the prior more, from one with 40. 0.01 on
  MovieLens-100K and the shop, 0.025 on Amazon Beauty.

Adam's step size (``lr`` 0.003) is fixed on purpose: it does not depend on the scale of the
gradients. The validation figures behind these choices (Beauty: the former 32 factors / l2
0.01 scored NDCG@10 0.0159, 256 / 0.025 scores 0.0322; doubling ``lr`` loses 1.3% on
MovieLens-100K and 4.4% on the shop) are in BENCHMARKS.md, from ``bench/defaults.py
--validate``.

**ALS** (:class:`~shopsight.models.mf.ALS`) takes ``"auto"`` for ``factors`` and ``l2``:

- **factors** grow with the catalogue, about ``2 sqrt(items)`` (a power of two in [64, 256]):
  the unobserved cells (confidence 1) regularise ALS against overfitting, so the capacity a
  catalogue needs is what limits it. MovieLens-100K (1,682 items) and the shop (300) keep 64;
  Amazon Beauty (12,101 items, 7 pairs a user) gets 256, where 64 factors lost a fifth of the
  NDCG of a tuned 256 (validation 0.0346 vs 0.0460).
- **l2** is half the mean number of training pairs a user has, as ALS-WR (Zhou et al. 2008)
  scales each user's penalty with their ratings: the data term of a user's solve grows with
  their pairs, so a fixed ``l2`` is too weak on dense data and irrelevant on sparse. 40 on
  MovieLens-100K (80 pairs a user; the former fixed 10 scored 17% under ``l2`` 30-40 on the
  validation split), 16 on the shop, 3.4 on Beauty (where anything in 0.01-3 ranks the same).

**ItemKNN** (:class:`~shopsight.models.itemknn.ItemKNN`) takes ``"auto"`` for ``shrinkage``:
the shrinkage is added to the product of two item norms, so it must be in the units of the
(transformed, reweighted) feedback: ``"auto"`` is worth 10 co-occurrences of a typical
entry, ``10 * mean(x^2)`` over the stored entries of the matrix the cosine is taken on. A fixed
10 was 10 co-occurrences of binary feedback but only 2 of Beauty's (every entry ``log1p(8)``)
and a fraction of one under TF-IDF, which is why Beauty's search wanted shrinkage 165.

The constants were fitted on MovieLens-100K (stratified by item, the Microsoft Recommenders
benchmark) and checked on Amazon Beauty (leave-one-out) and the synthetic shop (choices made on
the tuner's validation split, never the test part); ``bench/defaults.py`` compares every
model's defaults with tuned settings on all three.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

AUTO: Final = "auto"


@dataclass(frozen=True)
class DataShape:
    """Counts of a training interaction matrix (users x items, one entry per pair)."""

    n_users: int
    n_items: int
    n_pairs: int

    @classmethod
    def of(cls, interactions: sp.spmatrix | sp.sparray) -> DataShape:
        m = sp.csr_matrix(interactions)
        m.sum_duplicates()
        n_pairs = int(np.count_nonzero(m.data))
        return cls(int(m.shape[0]), int(m.shape[1]), n_pairs)

    @property
    def density(self) -> float:
        return self.n_pairs / max(self.n_users * self.n_items, 1)

    @property
    def pairs_per_user(self) -> float:
        return self.n_pairs / max(self.n_users, 1)

    @property
    def pairs_per_vector(self) -> float:
        """Mean training pairs behind one user or item vector."""
        return self.n_pairs / max(self.n_users + self.n_items, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "density": self.density,
            "pairs_per_user": self.pairs_per_user,
            "pairs_per_vector": self.pairs_per_vector,
        }


def _pow2(x: float, low: int, high: int) -> int:
    """The power of two nearest ``x`` (in log scale), within ``[low, high]``."""
    return int(min(max(2 ** round(math.log2(max(x, 1.0))), low), high))


def auto_factors(shape: DataShape, *, per_pair: float = 2.0, low: int = 64, high: int = 256) -> int:
    """Factors in proportion to the pairs behind each vector (a power of two)."""
    return _pow2(per_pair * shape.pairs_per_vector, low, high)


def auto_bpr_l2(shape: DataShape, *, base: float = 0.01, dense_pairs: float = 28.0) -> float:
    """BPR's per-sample penalty: ``base`` at ``dense_pairs`` or more pairs behind a vector, times
    ``sqrt(dense_pairs / pairs_per_vector)`` on sparser data."""
    return float(base * math.sqrt(max(dense_pairs / max(shape.pairs_per_vector, 1e-9), 1.0)))


def auto_bpr_factors(shape: DataShape, *, low: int = 64, high: int = 256) -> int:
    """BPR's factors: the larger of :func:`auto_factors` and :func:`auto_als_factors`."""
    return max(auto_factors(shape, low=low, high=high), auto_als_factors(shape, low=low, high=high))


def auto_epochs(
    shape: DataShape,
    batch_size: int,
    *,
    steps: int = 2200,
    low: int = 10,
    high: int = 100,
) -> int:
    """Epochs giving about ``steps`` optimiser steps of ``batch_size``, within [low, high]."""
    steps_per_epoch = max(math.ceil(shape.n_pairs / max(batch_size, 1)), 1)
    return int(min(max(math.ceil(steps / steps_per_epoch), low), high))


def auto_als_factors(shape: DataShape, *, low: int = 64, high: int = 256) -> int:
    """ALS factors: about ``2 sqrt(items)``, a power of two within [low, high]."""
    return _pow2(2.0 * math.sqrt(shape.n_items), low, high)


def auto_als_l2(shape: DataShape, *, per_pair: float = 0.5, low: float = 0.01) -> float:
    """ALS penalty: ``per_pair`` times the mean training pairs of a user (ALS-WR's scaling)."""
    return float(max(per_pair * shape.pairs_per_user, low))


def auto_shrinkage(x: sp.spmatrix | sp.sparray, *, pairs: float = 10.0) -> float:
    """Cosine shrinkage worth ``pairs`` co-occurrences of a typical entry of ``x``."""
    data = np.asarray(sp.csr_matrix(x).data, dtype=np.float64)
    return float(pairs * np.mean(data * data)) if data.size else 0.0


def data_shape(data: DataShape | sp.spmatrix | sp.sparray) -> DataShape:
    """``data`` itself if it is a :class:`DataShape`, else the shape of that matrix."""
    return data if isinstance(data, DataShape) else DataShape.of(data)


def resolve(params: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each ``"auto"`` replaced by its rule's value (rules: name -> callable of
    the partly resolved params, applied in order)."""
    out = dict(params)
    for name, rule in rules.items():
        if out.get(name) == AUTO:
            out[name] = rule(out)
    return out


__all__ = [
    "AUTO",
    "DataShape",
    "auto_als_factors",
    "auto_als_l2",
    "auto_bpr_factors",
    "auto_bpr_l2",
    "auto_epochs",
    "auto_factors",
    "auto_shrinkage",
    "data_shape",
    "resolve",
]
