"""Compact models for serving: int8 or float16 storage of a trained model's tables.

:func:`quantize_model` wraps a fitted recommender in a :class:`QuantizedRecommender`: every
float array of the model's learned state (factor and embedding tables, EASE's item-item matrix,
SASRec's layer weights, content matrices) with at least ``min_elements`` entries is stored

- ``"int8"``: 2-D tables per row, symmetric: ``q = round(x / s)``, ``s = max|row| / 127``
  (one float32 scale per row), so each row keeps its own range and a row's largest entry is
  exact; 1-D arrays (biases, sparse-matrix values) stay float32;
- ``"float16"``: every such array as IEEE half precision.

The wrapped model scores with the *dequantised* tables (``q * s``, or the float16 values as
float32), i.e. exactly what a model loaded from the compact file computes, so the metric change
measured here is the change serving sees. ``save`` writes the compact arrays (about 1/4 or 1/2
of the float32 bytes); ``load`` dequantises once. Integer arrays (indices, histories) are never
touched. :func:`state_nbytes` measures the learned state in memory; the saved
``model.safetensors`` size is the on-disk figure.

The wrapper is itself a registered Recommender (``quantized``): ``fit`` trains the model named
by ``model_name`` with ``model_params`` and quantises it, so ``shopsight train --model
quantized --set model_name=als`` works once the registry lists this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from shopsight.errors import InputError
from shopsight.models.base import FloatArray, IntArray, Recommender

if TYPE_CHECKING:
    from pathlib import Path

    from shopsight.data.dataset import Dataset

QDtype = Literal["int8", "float16"]
INT8_MAX = 127


def quantize_int8(x: npt.ArrayLike) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Per-row symmetric int8: ``(q, scale)`` with ``x ~= q * scale[:, None]``."""
    a = np.asarray(x, np.float32)
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    amax = np.abs(rows).max(axis=1) if rows.size else np.zeros(rows.shape[0], np.float32)
    scale = np.where(amax > 0, amax / INT8_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(rows / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q.reshape(a.shape), scale


def dequantize_int8(q: npt.ArrayLike, scale: npt.ArrayLike) -> FloatArray:
    qa = np.asarray(q)
    rows = qa.reshape(qa.shape[0], -1).astype(np.float32) * np.asarray(scale, np.float32)[:, None]
    return rows.reshape(qa.shape).astype(np.float32)


def state_nbytes(model: Recommender) -> int:
    """Bytes of a model's learned arrays as it stores them (``_state()``)."""
    return int(sum(np.asarray(a).nbytes for a in model._state().values()))


def _kind(arr: np.ndarray, dtype: str, min_elements: int) -> str:
    """How one state array is stored: ``int8``, ``float16`` or ``keep``."""
    if not np.issubdtype(arr.dtype, np.floating) or arr.size < min_elements:
        return "keep"
    if dtype == "int8":
        return "int8" if arr.ndim >= 2 else "keep"
    return "float16"


class QuantizedRecommender(Recommender):
    """A trained model whose float tables are stored as int8 / float16 (module docstring).

    Parameters: ``model_name`` and ``model_params`` (the wrapped model, trained by ``fit``);
    ``dtype`` (``"int8"`` or ``"float16"``); ``min_elements`` (smaller arrays stay float32).
    """

    name: ClassVar[str] = "quantized"

    def __init__(
        self,
        model_name: str = "als",
        model_params: dict[str, Any] | None = None,
        dtype: QDtype = "int8",
        min_elements: int = 1024,
    ) -> None:
        self.model_name = model_name
        self.model_params = model_params
        self.dtype = dtype
        self.min_elements = min_elements

    def _validate(self) -> None:
        if self.dtype not in ("int8", "float16"):
            raise InputError(f"dtype={self.dtype!r}: expected int8 or float16")
        if self.min_elements < 1:
            raise InputError(f"min_elements={self.min_elements!r}: expected an integer >= 1")

    # -- building ---------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        inner = Recommender.class_named(self.model_name)(**(self.model_params or {}))
        self._wrap(inner.fit(dataset, valid))

    def _wrap(self, inner: Recommender) -> None:
        """Quantise a fitted model's state and rebuild it from the dequantised arrays."""
        self._validate()
        inner._check_fitted()
        if isinstance(inner, QuantizedRecommender):
            raise InputError("the model is already quantised")
        # The wrapped model as built (its full params), learnt like any fitted attribute: the
        # user's own params are never changed by fit (scikit-learn's rule).
        self.inner_name_ = inner.name
        self.inner_params_: dict[str, Any] = inner.get_params()
        self.n_users_, self.n_items_ = inner.n_users_, inner.n_items_
        self.seen_ = inner.seen_
        self.item_popularity_ = inner.item_popularity_
        self.inner_meta_: dict[str, Any] = inner._meta()
        self.packed_: dict[str, np.ndarray] = {}
        self.kinds_: dict[str, str] = {}
        for key, arr in inner._state().items():
            a = np.asarray(arr)
            kind = _kind(a, self.dtype, self.min_elements)
            self.kinds_[key] = kind
            if kind == "int8":
                q, s = quantize_int8(a)
                self.packed_[f"q.{key}"], self.packed_[f"s.{key}"] = q, s
            elif kind == "float16":
                self.packed_[f"h.{key}"] = a.astype(np.float16)
            else:
                self.packed_[f"f.{key}"] = np.ascontiguousarray(a)
        self._rebuild()

    def _unpacked(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, kind in self.kinds_.items():
            if kind == "int8":
                out[key] = dequantize_int8(self.packed_[f"q.{key}"], self.packed_[f"s.{key}"])
            elif kind == "float16":
                out[key] = self.packed_[f"h.{key}"].astype(np.float32)
            else:
                out[key] = self.packed_[f"f.{key}"]
        return out

    def _rebuild(self) -> None:
        inner = Recommender.class_named(self.inner_name_)(**self.inner_params_)
        inner.n_users_, inner.n_items_ = self.n_users_, self.n_items_
        inner.seen_ = self.seen_
        inner.item_popularity_ = self.item_popularity_
        inner._load_state(self._unpacked(), self.inner_meta_)
        self.model_: Recommender = inner

    # -- scoring: the dequantised model ------------------------------------------------------
    def _score(self, users: IntArray) -> FloatArray:
        return self.model_._score(users)

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        return self.model_._fold_in(items, weights)

    def item_embeddings(self) -> FloatArray | None:
        return self.model_.item_embeddings()

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[IntArray, FloatArray]:
        return self.model_.similar_items(items, k)

    @property
    def content_(self) -> Any:
        """The wrapped model's item content (content models), for explanations."""
        return getattr(self.model_, "content_", None)

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return dict(self.packed_)

    def _meta(self) -> dict[str, Any]:
        return {
            "inner_meta": self.inner_meta_,
            "kinds": self.kinds_,
            "inner_name": self.inner_name_,
            "inner_params": self.inner_params_,
        }

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.inner_meta_ = dict(meta["inner_meta"])
        self.kinds_ = {str(k): str(v) for k, v in meta["kinds"].items()}
        self.packed_ = dict(arrays)
        # Saves before the inner model was recorded apart kept it in the params.
        self.inner_name_ = str(meta.get("inner_name", self.model_name))
        self.inner_params_ = dict(meta.get("inner_params", self.model_params or {}))
        self._rebuild()


def quantize_model(
    model: Recommender, dtype: QDtype = "int8", *, min_elements: int = 1024
) -> QuantizedRecommender:
    """A copy of a fitted model whose float tables are stored as ``dtype`` (see the module)."""
    q = QuantizedRecommender(model.name, model.get_params(), dtype=dtype, min_elements=min_elements)
    q._wrap(model)
    return q


def load_quantized(path: str | Path) -> Recommender:
    """Load a saved model directory (quantised or not); importing this module registers
    ``quantized`` for :meth:`Recommender.load`."""
    return Recommender.load(path)


__all__ = [
    "QuantizedRecommender",
    "dequantize_int8",
    "load_quantized",
    "quantize_int8",
    "quantize_model",
    "state_nbytes",
]
