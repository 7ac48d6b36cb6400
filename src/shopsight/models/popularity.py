"""Most-popular items: the non-personalised baseline every other model must beat.

An item's score is the sum of the weights of its events: by default the dataset's
multi-behaviour weights (``Dataset.weights``: a purchase counts more than a view), or per-event
weights given here (``event_weights``, e.g. ``{"purchase": 1}`` for "best sellers").
Recency: ``window_days`` keeps only events of the last N days before the newest event, and
``half_life_days`` decays an event's weight by ``0.5 ** (age / half_life)``; both measure time
back from the dataset's newest dated event. Rows with ordinal timestamps carry no date, so
window and decay leave them at full weight.

``distinct_users=True`` counts each (user, item) pair at most once per event type, so one
user's 200 views of an item do not outweigh 20 users who viewed it once each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from shopsight.errors import InputError
from shopsight.models.base import FloatArray, IntArray, Recommender, topk

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

_DAY_US = 86_400 * 1_000_000


class Popularity(Recommender):
    """Item popularity by weighted event counts, optionally recent (see the module docstring)."""

    name = "popularity"

    def __init__(
        self,
        event_weights: Mapping[str, float] | None = None,
        window_days: float | None = None,
        half_life_days: float | None = None,
        distinct_users: bool = False,
    ) -> None:
        self.event_weights = event_weights
        self.window_days = window_days
        self.half_life_days = half_life_days
        self.distinct_users = distinct_users

    def _row_weights(self, dataset: Dataset) -> npt.NDArray[np.float64]:
        from shopsight.data.dataset import EVENT_CODE, EVENT_TYPES

        if self.event_weights is None:
            return dataset.row_weights().astype(np.float64)
        unknown = sorted(set(self.event_weights) - set(EVENT_CODE))
        if unknown:
            raise InputError(
                f"event_weights: unknown event types {unknown} (expected some of "
                f"{', '.join(EVENT_TYPES)})"
            )
        table = np.zeros(len(EVENT_TYPES))
        for etype, w in self.event_weights.items():
            if not (np.isfinite(w) and w >= 0):
                raise InputError(f"event_weights[{etype!r}]={w!r}: expected a number >= 0")
            table[EVENT_CODE[etype]] = float(w)
        return table[dataset.event]

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        for name in ("window_days", "half_life_days"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"{name}={v!r}: expected a positive number of days or None")
        w = self._row_weights(dataset)
        user, item, event = dataset.user, dataset.item, dataset.event
        dated = ~dataset.ts_ordinal
        if (self.window_days or self.half_life_days) and dated.any():
            now = dataset.timestamp[dated].max()
            age_days = np.where(dated, (now - dataset.timestamp) / _DAY_US, 0.0)
            if self.window_days is not None:
                w = np.where(age_days <= self.window_days, w, 0.0)
            if self.half_life_days is not None:
                w = w * np.power(0.5, age_days / self.half_life_days)
        if self.distinct_users:
            # keep one row per (user, item, event type): the most recent one, which has the
            # largest decayed weight
            key = (user * np.int64(dataset.n_items) + item) * 16 + event
            _, first_rev = np.unique(key[::-1], return_index=True)
            keep = len(key) - 1 - first_rev
            item, w = item[keep], w[keep]
        scores = np.bincount(item, weights=w, minlength=dataset.n_items)
        self.scores_: FloatArray = scores.astype(np.float32)

    def _score(self, users: IntArray) -> FloatArray:
        return np.tile(self.scores_, (len(users), 1))

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        return self.scores_.copy()

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[IntArray, FloatArray]:
        """Non-personalised fallback: the most popular *other* items for every given item."""
        self._check_fitted()
        it = np.atleast_1d(np.asarray(items, dtype=np.int64))
        s = np.tile(self.scores_, (len(it), 1))
        s[np.arange(len(it)), it] = -np.inf
        return topk(s, k)

    def _state(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores_}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.scores_ = arrays["scores"]
