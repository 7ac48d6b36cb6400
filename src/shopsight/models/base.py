"""The one protocol every recommender implements.

Shaped after Cornac's ``Recommender`` and implicit's batched ``recommend``, with scikit-learn's
parameter conventions: ``__init__`` only stores hyper-parameters; ``fit`` learns state into
attributes ending in ``_`` and returns ``self``; ``get_params``/``set_params`` make tuning generic.

A subclass implements:

- ``_fit(dataset, valid)``: learn from a :class:`~shopsight.data.dataset.Dataset`;
- ``_score(users)``: float32 scores ``(len(users), n_items)`` for known user indices;
- ``_fold_in(items, weights)``: scores ``(n_items,)`` for a user known only by their events
  (new or changed users in serving: no retraining);
- ``_state()`` / ``_load_state(arrays, meta)``: learned arrays for safetensors, never pickle.

Everything else (batched scoring, top-k with seen-item exclusion and candidate sets, cold users,
similar items, save/load) is shared here and tested once by the contract suite for all models.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopsight.errors import InputError, MissingFileError, StateError

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

FORMAT_VERSION = 1
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class NotFittedError(StateError):
    pass


def topk(scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Indices and values of the k largest scores per row, best first (ties: lower index)."""
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), np.float32)
    part = (
        np.argpartition(scores, n - k, axis=1)[:, n - k :]  # no negated copy of the scores
        if k < n
        else np.tile(np.arange(n), (scores.shape[0], 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    # stable sort on (-score, index) so ties are deterministic
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx.astype(np.int64), np.take_along_axis(vals, order, axis=1).astype(np.float32)


class Recommender(ABC):
    """Base class of all recommenders (see the module docstring for the contract)."""

    name: ClassVar[str] = "base"
    #: True when the model can score items with no interactions (from their content features).
    handles_cold_items: ClassVar[bool] = False
    #: What the model learns from: "implicit" (the weighted interactions) or "explicit" (the
    #: ratings, ``dataset.ratings``).
    learns_from: ClassVar[str] = "implicit"

    # -- scikit-learn style parameters ---------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise InputError(
                    f"{type(self).__name__}: unknown parameter {key!r} (valid: {sorted(valid)})"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: Dataset | None = None) -> Self:
        """Learn from ``dataset`` (``valid`` for early stopping where a model uses it)."""
        self.n_users_, self.n_items_ = dataset.n_users, dataset.n_items
        seen = dataset.implicit.copy()  # float32 CSR already: one copy, not two
        seen.data[:] = 1.0
        self.seen_: sp.csr_matrix = seen
        # Popularity is the fallback for users with no history (cold start).
        self.item_popularity_: FloatArray = np.asarray(
            dataset.implicit.sum(axis=0), dtype=np.float32
        ).ravel()
        self._fit(dataset, valid)
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None: ...

    @abstractmethod
    def _score(self, users: IntArray) -> FloatArray:
        """Scores over the whole catalogue for known user indices."""

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        """Scores for a user known only by these interactions; default: popularity."""
        return self.item_popularity_.copy()

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- scoring ---------------------------------------------------------------------------
    def score(self, users: npt.ArrayLike, items: npt.ArrayLike | None = None) -> FloatArray:
        """Scores ``(len(users), n_items)``, or ``(len(users), len(items))`` for given items.

        A user index outside the training users (or -1) is a cold user: scored by fold-in with
        an empty history, i.e. the model's cold-start fallback.
        """
        self._check_fitted()
        u = np.atleast_1d(np.asarray(users, dtype=np.int64))
        known = (u >= 0) & (u < self.n_users_)
        if known.all():  # the common case: no copy into a second (users, items) buffer
            out = np.asarray(self._score(u), dtype=np.float32)
        else:
            out = np.empty((len(u), self.n_items_), dtype=np.float32)
        if known.any() and not known.all():
            out[known] = self._score(u[known])
        if (~known).any():
            out[~known] = self._fold_in(np.zeros(0, np.int64), np.zeros(0, np.float32))
        if items is None:
            return out
        it = np.asarray(items, dtype=np.int64)
        return out[:, it] if it.ndim == 1 else np.take_along_axis(out, it, axis=1)

    def score_history(
        self, items: npt.ArrayLike, weights: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Scores for a new or updated user from their interactions, without retraining."""
        self._check_fitted()
        it = np.asarray(items, dtype=np.int64)
        w = np.ones(len(it), np.float32) if weights is None else np.asarray(weights, np.float32)
        ok = (it >= 0) & (it < self.n_items_)
        return self._fold_in(it[ok], w[ok])

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: npt.ArrayLike | None = None,
        batch_size: int = 2048,
    ) -> tuple[IntArray, FloatArray]:
        """Top-k item indices and scores per user, best first, scored in batches of users.

        ``exclude_seen`` drops items the user interacted with in training. ``candidates``
        restricts the ranking to those item indices (e.g. in stock, or a sampled protocol).
        """
        self._check_fitted()
        u = np.atleast_1d(np.asarray(users, dtype=np.int64))
        cand = None if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
        width = self.n_items_ if cand is None else len(cand)
        kk = min(k, width)
        ids = np.zeros((len(u), kk), dtype=np.int64)
        vals = np.zeros((len(u), kk), dtype=np.float32)
        for start in range(0, len(u), batch_size):
            ub = u[start : start + batch_size]
            s = self.score(ub)
            if exclude_seen:
                self._mask_seen(s, ub)
            if cand is not None:
                s = s[:, cand]
            idx, v = topk(s, kk)
            ids[start : start + len(ub)] = idx if cand is None else cand[idx]
            vals[start : start + len(ub)] = v
        return ids, vals

    def recommend_history(
        self,
        items: npt.ArrayLike,
        k: int = 10,
        weights: npt.ArrayLike | None = None,
        exclude_seen: bool = True,
        candidates: npt.ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-k for a user given only their interactions (live users in serving)."""
        it = np.asarray(items, dtype=np.int64)
        s = self.score_history(it, weights)[None, :].copy()
        if exclude_seen and len(it):
            s[0, it[(it >= 0) & (it < self.n_items_)]] = -np.inf
        cols = None if candidates is None else np.unique(np.asarray(candidates, np.int64))
        if cols is not None:
            s = s[:, cols]
        idx, v = topk(s, k)
        return (idx[0] if cols is None else cols[idx[0]]), v[0]

    def _mask_seen(self, scores: FloatArray, users: IntArray) -> None:
        known = np.flatnonzero((users >= 0) & (users < self.n_users_))
        if not len(known):
            return
        # Straight from the CSR arrays: scipy's fancy row indexing costs more than the scoring
        # itself for the one-user requests of serving.
        indptr, indices = self.seen_.indptr, self.seen_.indices
        u = users[known]
        starts, ends = indptr[u], indptr[u + 1]
        counts = ends - starts
        if not counts.sum():
            return
        rows = np.repeat(known, counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        scores[rows, indices[np.repeat(starts, counts) + offsets]] = -np.inf

    # -- item-item -------------------------------------------------------------------------
    def item_embeddings(self) -> FloatArray | None:
        """Item vectors for similarity, when the model has them."""
        return None

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[IntArray, FloatArray]:
        """The k most similar items to each given item (cosine over item embeddings)."""
        self._check_fitted()
        emb = self.item_embeddings()
        if emb is None:
            raise NotImplementedError(f"{type(self).__name__} has no item embeddings")
        it = np.atleast_1d(np.asarray(items, dtype=np.int64))
        norm = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sims = (norm[it] @ norm.T).astype(np.float32)
        sims[np.arange(len(it)), it] = -np.inf  # an item is not similar to itself
        return topk(sims, k)

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (besides the shared ones)."""
        return {}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore what :meth:`_state` saved (nothing by default)."""
        return None

    def _meta(self) -> dict[str, Any]:
        """Extra JSON-serialisable learned state."""
        return {}

    def save(self, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` (name, params, shapes, extra) and ``model.safetensors``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        seen = self.seen_.tocsr()
        arrays = {
            "seen.indptr": seen.indptr.astype(np.int64),
            "seen.indices": seen.indices.astype(np.int64),
            "item_popularity": self.item_popularity_,
        }
        for key, arr in self._state().items():
            arrays[f"state.{key}"] = np.ascontiguousarray(arr)
        save_file(arrays, str(d / "model.safetensors"))
        config = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "params": self.get_params(),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "meta": self._meta(),
            **(extra or {}),
        }
        (d / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        return d

    #: How a model name becomes its class: :func:`shopsight.models.registry.get_model_class`,
    #: installed by the registry (imported with the package), so this module needs no import
    #: of the registry and the registry's lazy imports of model modules make no cycle.
    _resolver: ClassVar[Callable[[str], type[Recommender]] | None] = None

    @staticmethod
    def class_named(name: str) -> type[Recommender]:
        """The model class saved or configured under ``name`` (through the registry)."""
        if Recommender._resolver is not None:
            return Recommender._resolver(name)
        found = [k for k in _all_subclasses(Recommender) if k.__dict__.get("name") == name]
        if len(found) != 1:
            raise InputError(f"unknown model {name!r}")
        return found[0]

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load any saved model; on a subclass, checks the saved model is of that class."""
        from safetensors.numpy import load_file

        d = Path(path)
        cfg_path = d / "config.json"
        if not cfg_path.exists():
            raise MissingFileError(f"{d}: no config.json (not a saved shopsight model)")
        config = json.loads(cfg_path.read_text())
        klass = Recommender.class_named(config["model"])
        if cls is not Recommender and not issubclass(klass, cls):
            raise TypeError(f"{d} holds a {config['model']} model, not {cls.name}")
        model = klass(**config["params"])
        arrays = load_file(str(d / "model.safetensors"))
        model.n_users_, model.n_items_ = int(config["n_users"]), int(config["n_items"])
        indptr, indices = arrays["seen.indptr"], arrays["seen.indices"]
        model.seen_ = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr),
            shape=(model.n_users_, model.n_items_),
        )
        model.item_popularity_ = arrays["item_popularity"]
        state = {k[len("state.") :]: v for k, v in arrays.items() if k.startswith("state.")}
        model._load_state(state, config.get("meta", {}))
        return model


def _all_subclasses(klass: type) -> list[type[Recommender]]:
    out: list[type[Recommender]] = []
    todo: list[type[Recommender]] = list(klass.__subclasses__())
    while todo:
        k = todo.pop()
        out.append(k)
        todo.extend(k.__subclasses__())
    return out
