"""Hyper-parameter defaults that follow the size and density of the training data.

A default tuned on one dataset can be 25% off on the next: BPR's former fixed 8 epochs of 64
factors scored NDCG@10 0.397 on MovieLens-100K stratified by item, where cornac's BPR at 200
epochs publishes 0.445, because an epoch there is only 37 steps. So the pairwise-ranking models (:class:`~shopsight.models.mf.BPR`,
:class:`~shopsight.models.lightgcn.LightGCN`) take ``"auto"`` for their size and schedule
parameters and resolve it at ``fit`` time from the :class:`DataShape` of the training
interactions, with rules stated here (the resolved values are recorded in the saved model):

- **factors** grow with the evidence per parameter: ``interactions / (users + items)``, the
  mean number of training pairs behind each user or item vector: about 2 factors per pair, a
  power of two in [32, 256]. MovieLens-100K (29 pairs a vector) gets 64, Amazon Beauty (4.5)
  the floor of 32.
- **epochs** give every fit the same number of optimiser steps (2,200 batches of 2,048
  triples, 60 epochs on MovieLens-100K's 75,000 training pairs): an epoch of a large dataset
  is many steps and needs few passes, an epoch of a small one a handful of steps; within
  [10, 100] epochs, so a tiny dataset is not trained for ever and a huge one still sees each
  pair 10 times.

The rest are fixed on purpose: Adam's step size (``lr`` 0.003) does not depend on the scale of
the gradients, which is what changes with density, and the per-sample penalty (``l2`` 0.01,
Rendle's: the factors a triple touches) already grows with each vector's degree.

The constants were fitted on MovieLens-100K (stratified by item, the Microsoft Recommenders
benchmark) and checked on Amazon Beauty (leave-one-out) and the synthetic shop;
``bench/defaults.py`` compares every model's defaults with tuned settings on all three.
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


def auto_factors(shape: DataShape, *, per_pair: float = 2.0, low: int = 32, high: int = 256) -> int:
    """Factors in proportion to the pairs behind each vector (a power of two)."""
    return _pow2(per_pair * shape.pairs_per_vector, low, high)


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


def resolve(params: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each ``"auto"`` replaced by its rule's value (rules: name -> callable of
    the partly resolved params, applied in order)."""
    out = dict(params)
    for name, rule in rules.items():
        if out.get(name) == AUTO:
            out[name] = rule(out)
    return out


__all__ = ["AUTO", "DataShape", "auto_epochs", "auto_factors", "resolve"]
