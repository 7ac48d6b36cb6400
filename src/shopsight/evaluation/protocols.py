"""Named evaluation protocols: split recipe + what is ranked + what counts, as published.

A number only compares with a published one when the protocol is the same: filtering, split,
candidate set, treatment of training items, relevance, metric definitions. A
:class:`Protocol` fixes all of these, works on any :class:`~shopsight.data.dataset.Dataset`, and
the built-in ones (:data:`PROTOCOLS`) reproduce published setups (see
``../shared/PUBLISHED_RESULTS.md``):

``kfold-5``
    Rating prediction, RMSE / MAE over all test pairs, mean of 5 folds. On MovieLens-100K the
    official ``u1..u5.test`` folds (found next to the ingested ``u.data``, see
    :class:`Lineage`); elsewhere Surprise's ``KFold(n_splits=5, shuffle=True)``: rating rows in
    file order, shuffled by ``RandomState(seed)``, cut into consecutive folds. Train = every other
    row (implicit events included).
``stratified-item-75-25``
    Microsoft Recommenders' benchmark: ``python_stratified_split(ratio=0.75, filter_by="item",
    seed=42)`` exactly: ``np.random.seed(42)`` draws one number per rating in file order, ratings
    are ranked within each item by it, and rank ``r`` of ``n`` goes to train when ``r <=
    round(0.75 n)`` (half to even), giving 75,066 / 24,934 on ML-100K. Top-10 over the items
    seen in training minus the user's training items, for users in both train and test; every
    test rating relevant; NDCG / Precision / Recall / ``ms_map`` (their MAP) @10.
``random-75-25``
    Microsoft Recommenders' README table: ``python_random_split(0.75)`` = scikit-learn
    ``train_test_split(train_size=0.75, random_state=42)`` on the ratings in file order; same
    ranking conventions.
``ratio-80-20``
    Cornac's ``RatioSplit(test_size=0.2, rating_threshold=4.0, seed=123, exclude_unknowns=True)``:
    ``RandomState(123).permutation`` of the rows in file order, the last ``ceil(0.2 n)`` test;
    test rows of users/items unknown to training dropped; relevant = rating >= 4; ranked: items
    known in training minus the user's *relevant* training items; users with >= 1 relevant test
    item; NDCG@10, Recall@10, AUC.
``leave-one-out``
    S3-Rec / ICLRec: per user the last interaction is the test target, the second last the
    validation target, the rest train; full ranking over all items; the user's history (train +
    validation item) excluded; sequential models read the history including the validation item;
    HIT and NDCG @5/10/20 averaged over users.
``random-811``
    MMRec: 5-core filter, per-user random 8:1:1 (train / valid / test), full ranking, training
    items excluded; Recall / NDCG / Precision / MAP @10/20.
``temporal-global``
    One global time cut at the 80% and 90% quantiles (train / valid / test); every train event
    precedes every test event; cold users kept (scored by each model's fallback).
``cold-item``
    Whole items held out (80/10/10 of the items): test items have no training interaction and
    only they are ranked (the new-item task of cold-start papers).

Seeds: protocols whose published setup fixes the split seed (``stratified-item-75-25``,
``random-75-25``, ``ratio-80-20``, official folds) keep it for every run; the experiment's seeds
then vary only the models. The others derive their split from the run's seed.

User-defined protocols come from a dict or YAML file (:func:`load_protocol`)::

    name: my-split
    split: {method: stratified, ratio: [0.8, 0.1, 0.1], by: user}
    metrics: [recall, ndcg]
    ks: [10, 20]
    exclude: train+valid
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopsight.config import read_mapping
from shopsight.data import split as S
from shopsight.data.dataset import EVENT_CODE, Dataset, user_sorted_csr
from shopsight.errors import InputError
from shopsight.evaluation import metrics as M

if TYPE_CHECKING:
    from shopsight.data.store import Store

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Labels = npt.NDArray[np.signedinteger[Any]]  # part per row (TRAIN, VALID, TEST, NONE)

RATING_EVENTS: Final[tuple[int, ...]] = (EVENT_CODE["rate"], EVENT_CODE["review"])
ML100K_FOLDS: Final[tuple[str, ...]] = tuple(f"u{k}.test" for k in range(1, 6))

Exclude = Literal["train", "train+valid", "train_relevant", "none"]
Candidates = Literal["all", "train", "test"]


class ProtocolError(InputError):
    """A protocol is unknown, badly configured, or cannot run on this dataset."""


# =============================================================================================
# Lineage: where the rows came from (file order, source files)
# =============================================================================================


@dataclass(frozen=True)
class Lineage:
    """Where a dataset's interaction rows came from.

    ``order[r]``: position of row ``r`` in the ingested files (by ingest, then line), which is
    the order a library reading the raw file would see, so seeded splits that depend on row
    order (Microsoft Recommenders, Cornac, scikit-learn) pick exactly the same rows. ``None``
    when unknown (row order is used instead, and splits are then only equivalent, not
    identical). ``sources``: the files the rows came from. ``note``: why lineage is missing.
    """

    order: IntArray | None = None
    sources: tuple[str, ...] = ()
    note: str = ""

    @property
    def ml100k_dir(self) -> Path | None:
        """The MovieLens-100K folder (with ``u1..u5.test``) when the rows came from its u.data."""
        for src in self.sources:
            p = Path(src)
            if p.name == "u.data" and all((p.parent / f).exists() for f in ML100K_FOLDS):
                return p.parent
        return None


def lineage_from_store(store: Store, dataset: Dataset) -> Lineage:
    """Recover each dataset row's source file and line from the store's events table.

    Rows are matched on (user, item, event type, time); rows with equal keys are in
    (ingest, source, line) order on both sides, as :meth:`Dataset.from_store` orders them.
    """
    import pandas as pd

    table = dataset.meta.get("tables", {}).get("events", "events")
    types = dataset.meta.get("event_types")
    where = "item_id IS NOT NULL"
    if types:
        where += " AND event_type IN (" + ", ".join(f"'{t}'" for t in types) + ")"
    try:
        log = store.arrow(
            f"""SELECT e.user_id, e.item_id, e.event_type, epoch_us(e.timestamp) AS ts,
                       e.source, e.line, coalesce(o.ord, -1) AS ord
                FROM "{table}" e LEFT JOIN (
                    SELECT source, max(ingest_id) AS ord FROM ingest_log GROUP BY source
                ) o USING (source) WHERE {where}"""
        ).to_pandas()
    except Exception as exc:  # a store without lineage columns: no lineage, not a failure
        return Lineage(note=f"no lineage in {table}: {str(exc).splitlines()[0]}")
    if len(log) != len(dataset):
        return Lineage(
            sources=tuple(sorted(log["source"].unique().tolist())) if len(log) else (),
            note=f"{len(dataset)} dataset rows but {len(log)} events (reviews added as rows?)",
        )
    u = pd.Categorical(log["user_id"], categories=dataset.user_ids.tolist()).codes.astype(np.int64)
    i = pd.Categorical(log["item_id"], categories=dataset.item_ids.tolist()).codes.astype(np.int64)
    ev = log["event_type"].map(EVENT_CODE).to_numpy(dtype=np.int64)
    ts = log["ts"].to_numpy(dtype=np.int64)
    src_codes, src_names = pd.factorize(log["source"], sort=True)
    line = log["line"].to_numpy(dtype=np.int64)
    ord_ = log["ord"].to_numpy(dtype=np.int64)
    if (u < 0).any() or (i < 0).any():
        return Lineage(note="events refer to ids outside the dataset's id maps")
    n = len(dataset)
    store_sort = np.lexsort((line, src_codes, ord_, ts, ev, i, u))
    ds_sort = np.lexsort(
        (np.arange(n), dataset.timestamp, dataset.event, dataset.item, dataset.user)
    )
    same = (
        np.array_equal(u[store_sort], dataset.user[ds_sort])
        and np.array_equal(i[store_sort], dataset.item[ds_sort])
        and np.array_equal(ev[store_sort], dataset.event[ds_sort].astype(np.int64))
        and np.array_equal(ts[store_sort], dataset.timestamp[ds_sort])
    )
    sources = tuple(str(x) for x in src_names.tolist())
    if not same:
        return Lineage(sources=sources, note="events do not match the dataset rows one to one")
    file_pos = np.empty(n, dtype=np.int64)
    order_in_files = np.lexsort((line, src_codes, ord_))
    file_pos[order_in_files] = np.arange(n)
    order = np.empty(n, dtype=np.int64)
    order[ds_sort] = file_pos[store_sort]
    return Lineage(order=order, sources=sources)


# =============================================================================================
# Split recipes on a view of rows
# =============================================================================================


class _Column:
    """A dataset column seen through a :class:`_View`, taken when first read, then kept."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, view: _View, owner: type | None = None) -> npt.NDArray[Any]:
        value: npt.NDArray[Any] = np.asarray(view._column(self.name))
        view.__dict__[self.name] = value  # later reads find it on the instance
        return value


class _View:
    """Some rows of a dataset (``rows`` index the full dataset; None: all of them) with their
    file order. Columns are taken when first read, and a view of all rows reads the dataset's
    own (possibly memory-mapped) arrays: a leave-one-out split of 200 M rows needs only users
    and timestamps, not a copy of the whole log."""

    def __init__(self, ds: Dataset, rows: IntArray | None, order: IntArray | None) -> None:
        self._ds, self._rows, self._order = ds, rows, order
        self._n = len(ds) if rows is None else len(rows)

    @classmethod
    def of(cls, ds: Dataset, rows: IntArray | None, lineage: Lineage | None) -> _View:
        order = lineage.order if lineage is not None and lineage.order is not None else None
        return cls(ds, rows, order)

    def __len__(self) -> int:
        return self._n

    def _column(self, name: str) -> Any:
        col = getattr(self._ds, name)
        return col if self._rows is None else col[self._rows]

    @cached_property
    def rows(self) -> IntArray:
        return np.arange(self._n, dtype=np.int64) if self._rows is None else self._rows

    user = _Column()
    item = _Column()
    event = _Column()
    timestamp = _Column()
    value = _Column()
    ts_ordinal = _Column()

    @cached_property
    def order(self) -> IntArray:
        """File position of each row (ranks are what matters)."""
        if self._order is None:
            return self.rows.copy()
        return self._order if self._rows is None else self._order[self._rows]

    def take(self, mask: BoolArray) -> _View:
        return _View(self._ds, self.rows[mask], self._order)

    @property
    def file_rows(self) -> IntArray:
        """Local row positions in file order (position p -> local row)."""
        return np.argsort(self.order, kind="stable").astype(np.int64)


TRAIN, VALID, TEST, NONE = 0, 1, 2, -1


def _norm_ratio(ratio: Any) -> list[float]:
    try:
        return S._ratios(ratio)
    except S.SplitError as exc:
        raise ProtocolError(str(exc)) from None


def _ms_stratified(
    v: _View, ratio: Any = 0.75, by: str = "user", min_rating: int = 1, seed: int = 42
) -> list[Labels]:
    """Microsoft Recommenders' ``python_stratified_split`` (rank <= round(cum ratio * count))."""
    if by not in ("user", "item"):
        raise ProtocolError(f"ms_stratified: by must be 'user' or 'item', got {by!r}")
    ratios = _norm_ratio(ratio)
    n = len(v)
    rnd = np.empty(n)
    rnd[v.file_rows] = np.random.RandomState(int(seed)).rand(n)  # np.random.seed(seed); rand(n)
    group = v.item if by == "item" else v.user
    order = np.lexsort((rnd, group))
    g = group[order]
    start = np.r_[True, g[1:] != g[:-1]] if n else np.zeros(0, bool)
    gid = np.cumsum(start) - 1
    starts = np.flatnonzero(start)
    sizes = np.diff(np.r_[starts, n])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - starts[gid] + 1
    count = np.empty(n, np.int64)
    count[order] = sizes[gid]
    labels = np.full(n, NONE, np.int64)
    cum = np.cumsum(ratios)
    bounds = [np.round(c * count) for c in cum]  # numpy/pandas round: half to even
    parts = [TRAIN, TEST] if len(ratios) == 2 else [TRAIN, VALID, TEST]
    prev = np.zeros(n)
    for part, b in zip(parts, bounds, strict=True):
        labels[(rank > prev) & (rank <= b)] = part
        prev = b
    labels[count < int(min_rating)] = NONE
    return [labels]


def _sklearn_random(v: _View, train_size: float = 0.75, seed: int = 42) -> list[Labels]:
    """scikit-learn ``train_test_split(train_size, random_state=seed)`` over rows in file order."""
    from sklearn.model_selection import train_test_split

    n = len(v)
    pos = np.arange(n)
    tr, te = train_test_split(pos, train_size=train_size, random_state=int(seed))
    labels = np.full(n, NONE, np.int64)
    fr = v.file_rows
    labels[fr[tr]] = TRAIN
    labels[fr[te]] = TEST
    return [labels]


def _cornac_ratio(
    v: _View,
    test_size: float = 0.2,
    val_size: float = 0.0,
    seed: int = 123,
    exclude_unknowns: bool = True,
) -> list[Labels]:
    """Cornac ``RatioSplit``: ``RandomState(seed).permutation`` of rows in file order."""
    n = len(v)
    n_test = math.ceil(test_size * n) if test_size < 1 else int(test_size)
    n_val = math.ceil(val_size * n) if val_size < 1 else int(val_size)
    if n_test + n_val >= n or n_test < 1:
        raise ProtocolError(
            f"cornac_ratio: test {n_test} + valid {n_val} leave no training rows of {n}"
        )
    n_train = n - n_test - n_val
    perm = np.random.RandomState(int(seed)).permutation(n)
    fr = v.file_rows
    labels = np.full(n, NONE, np.int64)
    labels[fr[perm[:n_train]]] = TRAIN
    labels[fr[perm[n_train : n - n_test]]] = VALID
    labels[fr[perm[n - n_test :]]] = TEST
    if exclude_unknowns:
        tr = labels == TRAIN
        known_u = np.zeros(int(v.user.max()) + 1 if n else 0, bool)
        known_i = np.zeros(int(v.item.max()) + 1 if n else 0, bool)
        known_u[v.user[tr]] = True
        known_i[v.item[tr]] = True
        unknown = ~tr & ~(known_u[v.user] & known_i[v.item])
        labels[unknown] = NONE
    return [labels]


def _rating_rows(v: _View) -> BoolArray:
    return np.isin(v.event, RATING_EVENTS) & np.isfinite(v.value)


def _surprise_kfold(
    v: _View, n_folds: int = 5, seed: int = 0, ratings_only: bool = True
) -> list[Labels]:
    """Surprise ``KFold(n_splits, shuffle=True, random_state=seed)`` over the (rating) rows.

    The unit dealt into folds is a (user, item) pair, in file order of its first row, so that
    two rows of one pair (say a rating and a review of the same purchase) never sit on both
    sides; with one row per pair (MovieLens) this is exactly Surprise's row-level KFold.
    """
    if n_folds < 2:
        raise ProtocolError(f"kfold: n_folds must be >= 2, got {n_folds}")
    eligible = _rating_rows(v) if ratings_only else np.ones(len(v), bool)
    local = np.flatnonzero(eligible)
    local = local[np.argsort(v.order[local], kind="stable")]  # file order
    n_cols = int(v.item.max()) + 1 if len(v) else 1
    _, first, inverse = np.unique(
        v.user[local] * np.int64(n_cols) + v.item[local], return_index=True, return_inverse=True
    )
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))  # units in order of first appearance
    unit = rank[inverse]
    n = len(first)
    if n < n_folds:
        raise ProtocolError(
            f"kfold: {n} {'rated ' if ratings_only else ''}pairs for {n_folds} folds"
        )
    idx = np.arange(n)
    np.random.RandomState(int(seed)).shuffle(idx)
    fold_of = np.empty(n, np.int64)
    stop = 0
    for f in range(n_folds):
        start = stop
        stop += n // n_folds + (1 if f < n % n_folds else 0)
        fold_of[idx[start:stop]] = f
    out = []
    for f in range(n_folds):
        labels = np.full(len(v), TRAIN, np.int64)
        labels[local[fold_of[unit] == f]] = TEST
        out.append(labels)
    return out


def _official_ml100k_folds(ds: Dataset, lineage: Lineage | None) -> list[Labels] | None:
    """Labels of the official MovieLens-100K ``u1..u5`` folds, when the dataset is ML-100K."""
    folder = lineage.ml100k_dir if lineage is not None else None
    if folder is None:
        return None
    rating = np.flatnonzero(np.isin(ds.event, RATING_EVENTS) & np.isfinite(ds.value))
    key = ds.user[rating] * np.int64(ds.n_items) + ds.item[rating]
    if len(np.unique(key)) != len(key):
        return None  # several ratings per pair: the files cannot name rows
    by_key = dict(zip(key.tolist(), rating.tolist(), strict=True))
    out = []
    seen = np.zeros(len(ds), bool)
    for name in ML100K_FOLDS:
        path = folder / name
        try:
            raw = np.loadtxt(path, dtype=str, ndmin=2, usecols=(0, 1))
        except ValueError as exc:
            raise ProtocolError(f"{path}: expected 'user item rating time' lines ({exc})") from None
        u = ds.user_idx(raw[:, 0].tolist(), missing=-1)
        i = ds.item_idx(raw[:, 1].tolist(), missing=-1)
        rows = [
            by_key.get(int(a) * ds.n_items + int(b), -1) if a >= 0 and b >= 0 else -1
            for a, b in zip(u, i, strict=True)
        ]
        if min(rows, default=-1) < 0:
            return None  # the folds do not describe this dataset (filtered, other version)
        labels = np.full(len(ds), TRAIN, np.int64)
        labels[rows] = TEST
        seen[rows] = True
        out.append(labels)
    if not seen[rating].all():
        return None
    return out


def _k_core(v: _View, core: int) -> BoolArray:
    """Rows kept by the iterative k-core filter: every kept user and item has at least ``core``
    distinct partners among the kept rows."""
    n = len(v)
    keep = np.ones(n, bool)
    if not n:
        return keep
    n_u, n_i = int(v.user.max()) + 1, int(v.item.max()) + 1
    pair = v.user * np.int64(n_i) + v.item
    while True:
        p = np.unique(pair[keep])
        du = np.bincount(p // n_i, minlength=n_u)
        di = np.bincount(p % n_i, minlength=n_i)
        new = keep & (du[v.user] >= core) & (di[v.item] >= core)
        if new.sum() == keep.sum():
            return new
        keep = new


def _labelled(labels: Labels, rows: IntArray | None, label: int) -> IntArray:
    """Dataset rows whose label is ``label`` (``rows`` None: label i belongs to row i)."""
    hit = labels == label
    return np.flatnonzero(hit) if rows is None else rows[hit]


def _from_split(split: S.Split, n: int) -> list[Labels]:
    labels = np.full(n, NONE, np.int8)  # one byte a row: logs run to 10^8 rows
    labels[split.train] = TRAIN
    labels[split.test] = TEST
    if split.valid is not None:
        labels[split.valid] = VALID
    return [labels]


def _library_split(method: str, v: _View, params: Mapping[str, Any], seed: int) -> list[Labels]:
    """The splitters of :mod:`shopsight.data.split`, with the run's seed where they take one."""
    p = dict(params)
    n = len(v)
    try:
        if method == "random":
            return _from_split(S.random_split(n, seed=int(p.pop("seed", seed)), **p), n)
        if method == "stratified":
            return _from_split(
                S.stratified_split(v.user, v.item, seed=int(p.pop("seed", seed)), **p), n
            )
        if method == "temporal":
            return _from_split(S.temporal_split(v.timestamp, ts_ordinal=v.ts_ordinal, **p), n)
        if method == "leave_last_out":
            return _from_split(S.leave_last_out(v.user, v.timestamp, **p), n)
        if method == "cold_item":
            return _from_split(S.cold_item_split(v.item, seed=int(p.pop("seed", seed)), **p), n)
        if method == "cold_user":
            return _from_split(S.cold_user_split(v.user, seed=int(p.pop("seed", seed)), **p), n)
    except TypeError as exc:
        raise ProtocolError(f"split {method!r}: {exc}") from None
    except S.SplitError as exc:
        raise ProtocolError(f"split {method!r}: {exc}") from None
    raise ProtocolError(f"unknown split method {method!r} (known: {', '.join(SPLIT_METHODS)})")


SPLIT_METHODS: Final[tuple[str, ...]] = (
    "kfold",
    "ms_stratified",
    "sklearn_random",
    "cornac_ratio",
    "random",
    "stratified",
    "temporal",
    "leave_last_out",
    "cold_item",
    "cold_user",
)
# Methods whose published setup fixes the seed (the run seed does not change the split).
FIXED_SEED_METHODS: Final[frozenset[str]] = frozenset(
    {"ms_stratified", "sklearn_random", "cornac_ratio"}
)


# =============================================================================================
# Protocol
# =============================================================================================


@dataclass(frozen=True)
class Protocol:
    """A complete evaluation recipe (see the module docstring for the built-in ones).

    ``split`` / ``split_params``: the split method (:data:`SPLIT_METHODS`) and its parameters
    (``core: K`` applies a K-core filter first; a ``seed`` in the params pins the split).
    ``task``: ``"ranking"`` (top-N) or ``"rating"`` (predict ratings: RMSE / MAE / R2).
    ``relevance_threshold``: a test rating counts as relevant when >= it (rows without a rating
    value, e.g. purchases, are always relevant); ``None``: every test row is relevant.
    ``exclude``: the items masked for a user at test time: training items, training + validation
    items, only *relevant* training items (Cornac), or none. ``candidates``: all items, items
    seen in training, or the test part's items (cold-item task). ``users``: every user with a
    relevant test item, or only those also present in training. ``history``: what a sequential
    model (one with ``score_sequences``) reads as the user's sequence at test time.
    ``mask_value``: the score given to excluded items (``-inf``; ICLRec's code uses 0).
    """

    name: str
    split: str
    split_params: Mapping[str, Any] = field(default_factory=dict)
    task: Literal["ranking", "rating"] = "ranking"
    metrics: tuple[str, ...] = ("recall", "ndcg", "precision", "map", "hit")
    ks: tuple[int, ...] = (10, 20)
    relevance_threshold: float | None = None
    exclude: Exclude = "train+valid"
    candidates: Candidates = "all"
    users: Literal["test", "test_and_train"] = "test"
    history: Literal["train", "train+valid"] = "train"
    mask_value: float = -math.inf
    tie_break: Literal["random", "index"] = "random"
    primary_metric: str = "ndcg@10"
    description: str = ""
    reference: str = ""
    published: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # The dataset the published numbers are on: they compare only with a run on that dataset.
    published_on: str = ""

    def __post_init__(self) -> None:
        if self.split not in SPLIT_METHODS:
            raise ProtocolError(
                f"protocol {self.name!r}: unknown split {self.split!r} (known: {', '.join(SPLIT_METHODS)})"
            )
        if self.task not in ("ranking", "rating"):
            raise ProtocolError(f"protocol {self.name!r}: task must be ranking or rating")
        for attr, allowed in (
            ("exclude", ("train", "train+valid", "train_relevant", "none")),
            ("candidates", ("all", "train", "test")),
            ("users", ("test", "test_and_train")),
            ("history", ("train", "train+valid")),
            ("tie_break", ("random", "index")),
        ):
            if getattr(self, attr) not in allowed:
                raise ProtocolError(
                    f"protocol {self.name!r}: {attr}={getattr(self, attr)!r}, expected one of {allowed}"
                )
        try:
            names, cut = M.parse_metrics(list(self.metrics), list(self.ks))
        except M.MetricError as exc:
            raise ProtocolError(f"protocol {self.name!r}: {exc}") from None
        object.__setattr__(self, "metrics", tuple(names))
        object.__setattr__(self, "ks", tuple(cut))
        if self.task == "rating" and any(m not in M.RATING_METRICS for m in names):
            raise ProtocolError(f"protocol {self.name!r}: a rating protocol takes rmse, mae, r2")
        if self.exclude == "train_relevant" and self.relevance_threshold is None:
            raise ProtocolError(
                f"protocol {self.name!r}: exclude=train_relevant needs relevance_threshold"
            )

    # -- description -----------------------------------------------------------------------
    @property
    def needs_lineage(self) -> bool:
        """True when the split depends on the rows' file order or source files (see
        :class:`Lineage`); the other recipes only read the interaction log."""
        return self.split in ("kfold", "ms_stratified", "sklearn_random", "cornac_ratio")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_params"] = dict(self.split_params)
        d["published"] = {k: dict(v) for k, v in self.published.items()}
        d["mask_value"] = None if self.mask_value == -math.inf else self.mask_value
        return d

    def with_(self, **changes: Any) -> Protocol:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "protocol") -> Protocol:
        """Build from a mapping (YAML/JSON); ``split`` may be a name or ``{method: ..., **params}``."""
        d = dict(data)
        sp_ = d.pop("split", None)
        params = dict(d.pop("split_params", None) or d.pop("params", None) or {})
        if isinstance(sp_, Mapping):
            params.update({k: v for k, v in sp_.items() if k != "method"})
            sp_ = sp_.get("method")
        if not isinstance(sp_, str):
            raise ProtocolError(
                f"{source}: 'split' must name a method ({', '.join(SPLIT_METHODS)})"
            )
        known = {f for f in cls.__dataclass_fields__} - {"split", "split_params"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ProtocolError(f"{source}: unknown keys {unknown} (known: {sorted(known)})")
        if "mask_value" in d:
            d["mask_value"] = -math.inf if d["mask_value"] is None else float(d["mask_value"])
        for key in ("metrics", "ks"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key]) if not isinstance(d[key], str) else tuple(d[key].split(","))
        d.setdefault("name", Path(source).stem if source != "protocol" else "custom")
        return cls(split=sp_, split_params=params, **d)

    # -- splitting ---------------------------------------------------------------------------
    def make_splits(
        self, dataset: Dataset, seed: int = 0, lineage: Lineage | None = None
    ) -> list[S.Split]:
        """The split(s) of ``dataset`` for one run (several for k-fold)."""
        return self._splits_of(dataset, None, seed, lineage, allow_files=True)

    def inner_splits(
        self,
        dataset: Dataset,
        train_rows: npt.ArrayLike,
        seed: int = 0,
        lineage: Lineage | None = None,
    ) -> list[S.Split]:
        """The same recipe applied to ``train_rows`` only (tuning without touching the test)."""
        rows = np.unique(np.asarray(train_rows, dtype=np.int64))
        return self._splits_of(dataset, rows, seed, lineage, allow_files=False)

    def _splits_of(
        self,
        ds: Dataset,
        rows: IntArray | None,
        seed: int,
        lineage: Lineage | None,
        allow_files: bool,
    ) -> list[S.Split]:
        """``rows``: the dataset rows to split (None: all of them)."""
        v = _View.of(ds, rows, lineage)
        params = dict(self.split_params)
        core = params.pop("core", None)
        keep: BoolArray | None = None
        if core:
            keep = _k_core(v, int(core))
            v = v.take(keep)
        method = self.split
        info: dict[str, Any] = {"protocol": self.name, "method": method, **params}
        if core:
            info["core"] = int(core)
        if lineage is None or lineage.order is None:
            info["file_order"] = False
        if method == "kfold":
            files = params.pop("files", "auto")
            n_folds = int(params.pop("n_folds", 5))
            labels_list = None
            if allow_files and files == "auto" and rows is None and not core:
                labels_list = _official_ml100k_folds(ds, lineage)
                if labels_list is not None and n_folds != 5:
                    raise ProtocolError("the official MovieLens-100K folds are 5")
            if labels_list is not None:
                info["folds"] = "official u1..u5"
            else:
                split_seed = int(params.pop("seed", seed))
                try:
                    labels_list = _surprise_kfold(v, n_folds=n_folds, seed=split_seed, **params)
                except TypeError as exc:
                    raise ProtocolError(f"split 'kfold': {exc}") from None
                info.update(folds="random (Surprise KFold)", seed=split_seed)
        elif method in ("ms_stratified", "sklearn_random", "cornac_ratio"):
            # the built-in protocols pin the published seed; a custom one without a seed
            # follows the run's seed
            params.setdefault("seed", seed)
            info["seed"] = int(params["seed"])
            try:
                if method == "ms_stratified":
                    labels_list = _ms_stratified(v, **params)
                elif method == "sklearn_random":
                    labels_list = _sklearn_random(v, **params)
                else:
                    labels_list = _cornac_ratio(v, **params)
            except TypeError as exc:
                raise ProtocolError(f"split {method!r}: {exc}") from None
        else:
            labels_list = _library_split(method, v, params, seed)
            if method not in ("temporal", "leave_last_out"):
                info.setdefault("seed", int(params.get("seed", seed)))
        out = []
        full_rows = v.rows if keep is not None else rows  # None: every dataset row, in order
        for f, labels in enumerate(labels_list):
            if len(labels) != len(v):  # official folds label the whole dataset
                full_labels, part_rows = labels, None
            else:
                full_labels, part_rows = labels, full_rows
            three = bool((full_labels == VALID).any()) or self._has_valid_part()
            params_f = dict(info, fold=f) if len(labels_list) > 1 else dict(info)
            split = S.Split(
                train=_labelled(full_labels, part_rows, TRAIN),
                test=_labelled(full_labels, part_rows, TEST),
                valid=_labelled(full_labels, part_rows, VALID) if three else None,
                name=self.name,
                params=params_f,
            )
            self._check_usable(split, len(ds) if rows is None else len(rows))
            out.append(split)
        return out

    def _check_usable(self, split: S.Split, n_rows: int) -> None:
        """Stop with one line when a split leaves nothing to train on or to test: evaluate's
        table of empty metrics or tune's failing trials would look like a result."""
        if len(split.train) and len(split.test):
            return
        core = split.params.get("core")
        why = (
            f"its {core}-core filter keeps {split.n_rows:,} of {n_rows:,} interactions"
            if core
            else f"it gives {len(split.train):,} training and {len(split.test):,} test rows "
            f"from {n_rows:,} interactions"
        )
        raise ProtocolError(
            f"protocol {self.name!r} cannot be used on this data: {why}; "
            "choose another protocol (`shopsight evaluate --help` lists them)"
        )

    def _has_valid_part(self) -> bool:
        r = self.split_params.get("ratio")
        if isinstance(r, list | tuple) and len(r) == 3:
            return True
        return self.split == "leave_last_out" and int(self.split_params.get("valid_k", 1)) > 0

    # -- what is evaluated ------------------------------------------------------------------------
    def relevant_rows(self, part: Dataset) -> BoolArray:
        """Rows of ``part`` that are relevant (rating >= threshold; unrated rows always)."""
        if self.relevance_threshold is None:
            return np.ones(len(part), bool)
        rated = np.isin(part.event, RATING_EVENTS) & np.isfinite(part.value)
        return ~rated | (part.value >= float(self.relevance_threshold))

    def truth(self, test: Dataset) -> sp.csr_matrix:
        """Users x items, 1 for the relevant (user, item) pairs of the test part."""
        keep = self.relevant_rows(test)
        return _pairs(test.user[keep], test.item[keep], test.shape)

    def exclusion(
        self, train: Dataset, valid: Dataset | None, train_pairs: sp.csr_matrix | None = None
    ) -> sp.csr_matrix | None:
        """Users x items to mask at test time (see ``exclude``). ``train_pairs``: the training
        part's binary pairs if the caller has them (reused, not rebuilt)."""
        if self.exclude == "none":
            return None
        if self.exclude == "train_relevant":
            keep = self.relevant_rows(train)
            return _pairs(train.user[keep], train.item[keep], train.shape)
        m = train_pairs if train_pairs is not None else _pairs(train.user, train.item, train.shape)
        if self.exclude == "train+valid" and valid is not None and len(valid):
            m = (m + _pairs(valid.user, valid.item, valid.shape)).tocsr()
            m.data[:] = 1.0
        return m

    @staticmethod
    def pairs(part: Dataset) -> sp.csr_matrix:
        """Users x items, 1 for every (user, item) pair of ``part``."""
        return _pairs(part.user, part.item, part.shape)

    def candidate_mask(self, train: Dataset, test: Dataset) -> BoolArray | None:
        """Items that may be ranked, or ``None`` for the whole catalogue."""
        if self.candidates == "all":
            return None
        part = train if self.candidates == "train" else test
        mask = np.zeros(part.n_items, bool)
        mask[part.item] = True
        return mask

    def eval_users(self, train: Dataset, truth: sp.csr_matrix) -> IntArray:
        has_test = np.diff(truth.indptr) > 0
        if self.users == "test_and_train":
            has_test &= np.bincount(train.user, minlength=train.n_users)[: len(has_test)] > 0
        return np.flatnonzero(has_test).astype(np.int64)


def _pairs(user: IntArray, item: IntArray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = user_sorted_csr(user, item, shape)
    m.data[:] = 1.0
    return m


# =============================================================================================
# Built-in protocols
# =============================================================================================

_TOPN_MS = ("ndcg", "precision", "recall", "ms_map")

PROTOCOLS: Final[dict[str, Protocol]] = {
    p.name: p
    for p in (
        Protocol(
            name="kfold-5",
            split="kfold",
            split_params={"n_folds": 5, "files": "auto"},
            task="rating",
            metrics=("rmse", "mae"),
            ks=(),
            primary_metric="rmse",
            description="5-fold rating prediction (u1..u5 folds on MovieLens-100K, else random)",
            reference="Surprise README (random 5-fold); scikit-surprise 1.1.5 on u1..u5",
            published_on="MovieLens-100K",
            published={
                "Surprise SVD++ (README, random folds)": {"rmse": 0.919, "mae": 0.721},
                "Surprise SVD (README, random folds)": {"rmse": 0.934, "mae": 0.737},
                "Surprise SVD++ (official u1..u5)": {"rmse": 0.922, "mae": 0.724},
                "Surprise SVD (official u1..u5)": {"rmse": 0.938, "mae": 0.739},
                "Surprise KNNBaseline (README)": {"rmse": 0.931, "mae": 0.733},
                "Surprise BaselineOnly (README)": {"rmse": 0.944, "mae": 0.748},
            },
        ),
        Protocol(
            name="stratified-item-75-25",
            split="ms_stratified",
            split_params={"ratio": 0.75, "by": "item", "min_rating": 1, "seed": 42},
            metrics=_TOPN_MS,
            ks=(10,),
            exclude="train",
            candidates="train",
            users="test_and_train",
            description="Microsoft Recommenders benchmark: stratified by item 75/25, top-10",
            reference="recommenders benchmark notebook (python_stratified_split, filter_by=item)",
            published_on="MovieLens-100K",
            published={
                "BiVAE (MS benchmark)": {"ndcg@10": 0.4687},
                "BPR cornac (MS benchmark)": {"ndcg@10": 0.4450},
                "BiVAE (MS README, random split)": {"ndcg@10": 0.4751},
                "BPR (MS README, random split)": {"ndcg@10": 0.4420},
            },
        ),
        Protocol(
            name="random-75-25",
            split="sklearn_random",
            split_params={"train_size": 0.75, "seed": 42},
            metrics=_TOPN_MS,
            ks=(10,),
            exclude="train",
            candidates="train",
            users="test_and_train",
            description="Microsoft Recommenders README: random 75/25 (sklearn, seed 42), top-10",
            reference="recommenders README / deep-dive notebooks (python_random_split)",
            published_on="MovieLens-100K",
            published={
                "BiVAE": {"ndcg@10": 0.4751},
                "BPR": {"ndcg@10": 0.4420},
                "LightGCN": {"ndcg@10": 0.4198},
                "NCF": {"ndcg@10": 0.3961},
                "SAR": {"ndcg@10": 0.3825},
            },
        ),
        Protocol(
            name="ratio-80-20",
            split="cornac_ratio",
            split_params={"test_size": 0.2, "seed": 123, "exclude_unknowns": True},
            metrics=("ndcg", "recall", "auc"),
            ks=(10,),
            relevance_threshold=4.0,
            exclude="train_relevant",
            candidates="train",
            description="Cornac RatioSplit 80/20, rating >= 4 relevant",
            reference="Cornac README example (ML-100K)",
            published_on="MovieLens-100K",
            published={
                "BPR (Cornac README)": {"ndcg@10": 0.1500, "recall@10": 0.1195, "auc": 0.8695}
            },
        ),
        Protocol(
            name="leave-one-out",
            split="leave_last_out",
            split_params={"k": 1, "valid_k": 1},
            metrics=("hit", "ndcg"),
            ks=(5, 10, 20),
            exclude="train+valid",
            history="train+valid",
            description="S3-Rec/ICLRec: last item test, second last valid, full ranking",
            reference="ICLRec (WWW 2022) repository README, Amazon Beauty",
            published_on="Amazon Beauty",
            published={
                "ICLRec": {
                    "hit@5": 0.0500,
                    "ndcg@5": 0.0326,
                    "hit@10": 0.0744,
                    "ndcg@10": 0.0403,
                    "hit@20": 0.1058,
                    "ndcg@20": 0.0483,
                }
            },
        ),
        Protocol(
            name="random-811",
            split="stratified",
            split_params={"ratio": [0.8, 0.1, 0.1], "by": "user", "core": 5},
            metrics=("recall", "ndcg", "precision", "map"),
            ks=(10, 20),
            exclude="train",
            primary_metric="recall@20",
            description="MMRec: 5-core, random 8:1:1 per user, full ranking",
            reference="MMRec (Zhou et al.) tables, Amazon Baby: Recall@20",
            published_on="Amazon Baby",
            published={
                "FREEDOM (Baby)": {"recall@20": 0.0992},
                "LightGCN (Baby)": {"recall@20": 0.0754},
                "VBPR (Baby)": {"recall@20": 0.0663},
                "BPR (Baby)": {"recall@20": 0.0575},
            },
        ),
        Protocol(
            name="temporal-global",
            split="temporal",
            split_params={"ratio": [0.8, 0.1, 0.1]},
            metrics=("recall", "ndcg", "hit"),
            ks=(10, 20),
            exclude="train+valid",
            primary_metric="recall@20",
            description="one global time cut (80/10/10 by time); cold users kept",
            reference="MMRec global time split (FREEDOM on Sports, Recall@20 0.0372)",
        ),
        Protocol(
            name="cold-item",
            split="cold_item",
            split_params={"ratio": [0.8, 0.1, 0.1]},
            metrics=("recall", "ndcg", "hit"),
            ks=(10, 20),
            exclude="none",
            candidates="test",
            primary_metric="recall@20",
            description="whole items held out (80/10/10 of items); only held-out items ranked",
            reference="new-item cold start (e.g. DropoutNet, CLCRec)",
        ),
    )
}


def available_protocols() -> list[str]:
    return sorted(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProtocolError(
            f"unknown protocol {name!r} (known: {', '.join(available_protocols())})"
        )
    return PROTOCOLS[name]


def load_protocol(spec: str | Path | Mapping[str, Any] | Protocol) -> Protocol:
    """A protocol by built-in name, from a YAML/JSON file, from a dict, or as given."""
    if isinstance(spec, Protocol):
        return spec
    if isinstance(spec, Mapping):
        return Protocol.from_dict(spec)
    text = str(spec)
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        data = read_mapping(path, "protocol", ProtocolError)
        return Protocol.from_dict(data, source=str(path))
    raise ProtocolError(
        f"unknown protocol {text!r} (a name: {', '.join(available_protocols())}; or a .yaml/.json file)"
    )


__all__ = [
    "PROTOCOLS",
    "SPLIT_METHODS",
    "Lineage",
    "Protocol",
    "ProtocolError",
    "available_protocols",
    "get_protocol",
    "lineage_from_store",
    "load_protocol",
]
