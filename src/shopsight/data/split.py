"""Deterministic train / valid / test splits of an interaction log.

Every splitter takes the log's columns as numpy arrays (one entry per interaction row) and returns
a :class:`Split`: sorted ``int64`` row indices for train, test and optionally valid. Splitting by
row index (not by copying data) keeps one id space for all parts: ``Dataset.split(split)`` turns
the indices into datasets that share the full dataset's user and item maps.

Ratios follow Microsoft Recommenders' convention: a float is the *train* fraction (the rest is
test); a list ``[train, test]`` or ``[train, valid, test]`` is normalised to sum to 1.

Randomness comes only from ``numpy.random.default_rng(seed)``; the same inputs and seed always
give the same split.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shopsight.errors import InputError

IntArray = npt.NDArray[np.int64]
Ratio = float | Sequence[float]

# Tolerance for comparing a within-group rank fraction with a cumulative ratio, so that e.g.
# 0.7 + 0.1 (= 0.7999999999999999 in floating point) still admits rank 8 of 10.
_EPS = 1e-9


class SplitError(InputError):
    """Invalid split parameters or input (one-line message naming what was expected)."""


@dataclass(frozen=True)
class Split:
    """Row indices of an interaction log, partitioned into train / (valid) / test.

    ``valid`` is ``None`` when the split has no validation part. Each part is a sorted ``int64``
    array of row indices; ``name`` and ``params`` record how the split was made (JSON-friendly),
    so it can be recorded beside results and redone exactly.
    """

    train: IntArray
    test: IntArray
    valid: IntArray | None = None
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("train", "test", "valid"):
            arr = getattr(self, part)
            if arr is None:
                continue
            arr = np.asarray(arr).ravel()
            if arr.dtype != np.int64 or (len(arr) > 1 and bool(np.any(arr[1:] < arr[:-1]))):
                arr = np.sort(arr.astype(np.int64))  # already sorted: kept, not copied (10^8 rows)
            object.__setattr__(self, part, arr)

    @property
    def parts(self) -> dict[str, IntArray]:
        """The non-empty-able parts present, in order train, valid, test."""
        out = {"train": self.train}
        if self.valid is not None:
            out["valid"] = self.valid
        out["test"] = self.test
        return out

    @property
    def n_rows(self) -> int:
        return sum(len(p) for p in self.parts.values())

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.parts.items()}

    def validate(self, n_rows: int) -> None:
        """Raise :class:`SplitError` unless the parts are disjoint and cover ``range(n_rows)``."""
        allrows = np.concatenate(list(self.parts.values()))
        if len(allrows) != n_rows:
            raise SplitError(f"split {self.name!r} has {len(allrows)} rows, expected {n_rows}")
        if n_rows and (allrows.min() < 0 or allrows.max() >= n_rows):
            raise SplitError(f"split {self.name!r} has row indices outside [0, {n_rows})")
        if len(np.unique(allrows)) != n_rows:
            raise SplitError(f"split {self.name!r}: train/valid/test overlap")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (sizes, not the indices)."""
        return {"name": self.name, "params": self.params, "sizes": self.sizes()}

    def save(self, path: str | Path) -> None:
        """Save to ``.npz`` (indices) with the name and params as JSON; no pickle."""
        arrays: dict[str, Any] = dict(self.parts)
        arrays["meta"] = np.frombuffer(
            json.dumps({"name": self.name, "params": self.params}).encode(), dtype=np.uint8
        )
        np.savez_compressed(Path(path), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            valid = z["valid"] if "valid" in z.files else None
            return cls(
                train=z["train"],
                test=z["test"],
                valid=valid,
                name=meta["name"],
                params=meta["params"],
            )


# -- helpers -------------------------------------------------------------------------------


def _ratios(ratio: Ratio) -> list[float]:
    """Normalised ``[train, test]`` or ``[train, valid, test]`` fractions (MS Recommenders rule)."""
    if isinstance(ratio, bool):
        raise SplitError(f"ratio must be a float or a list of 2 or 3 floats, got {ratio!r}")
    if isinstance(ratio, int | float):
        r = float(ratio)
        if not 0.0 < r < 1.0:
            raise SplitError(f"ratio must be a train fraction in (0, 1), got {ratio}")
        return [r, 1.0 - r]
    try:
        vals = [float(x) for x in ratio]
    except TypeError as exc:
        raise SplitError(
            f"ratio must be a float or a list of 2 or 3 floats, got {ratio!r}"
        ) from exc
    if len(vals) not in (2, 3):
        raise SplitError(f"ratio list must be [train, test] or [train, valid, test], got {vals}")
    if any(not np.isfinite(v) or v <= 0 for v in vals):
        raise SplitError(f"all split ratios must be positive, got {vals}")
    total = float(np.sum(vals))
    return [v / total for v in vals]


def _rng(seed: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise SplitError(f"seed must be an integer, got {seed!r}")
    return np.random.default_rng(int(seed))


def _as_1d(name: str, arr: npt.ArrayLike, n: int | None = None) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 1:
        raise SplitError(f"{name} must be a 1-d array, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise SplitError(f"{name} has {len(a)} rows, expected {n} (same as the other columns)")
    return a


def _group_ranks(group: np.ndarray, order_key: np.ndarray) -> tuple[IntArray, IntArray, IntArray]:
    """Sort rows by (group, order_key, row) and return (order, 0-based rank, group size) per row.

    ``order`` is the sorted row order; ``rank`` and ``size`` are indexed by row (not by order).
    """
    n = len(group)
    rows = np.arange(n, dtype=np.int64)
    order = np.lexsort((rows, order_key, group)).astype(np.int64)
    g_sorted = group[order]
    is_start = np.empty(n, dtype=bool)
    if n:
        is_start[0] = True
        is_start[1:] = g_sorted[1:] != g_sorted[:-1]
    starts = np.flatnonzero(is_start)
    sizes_per_group = np.diff(np.append(starts, n))
    group_id = np.cumsum(is_start) - 1
    rank_sorted = np.arange(n, dtype=np.int64) - starts[group_id]
    size_sorted = sizes_per_group[group_id]
    rank = np.empty(n, dtype=np.int64)
    size = np.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    size[order] = size_sorted
    return order, rank, size


def _sorted_by_group(group: np.ndarray, order_key: np.ndarray, chunk: int = 1 << 22) -> bool:
    """Whether rows are already sorted by (non-negative integer group, order_key), checked a
    chunk at a time (a Dataset's log is sorted by user then time)."""
    n = len(group)
    if not n or not np.issubdtype(group.dtype, np.integer):
        return False
    if not np.issubdtype(np.asarray(order_key[:1]).dtype, np.number):
        return False
    if int(group[n - 1]) > 16 * n + 1024:  # sparse ids: the per-group counts would be large
        return False
    for start in range(0, n, chunk):
        g = np.asarray(group[start : start + chunk + 1])
        t = np.asarray(order_key[start : start + chunk + 1])
        dg = np.diff(g)
        if g[0] < 0 or (dg < 0).any() or ((dg == 0) & (np.diff(t) < 0)).any():
            return False
    return True


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """The concatenation of ``range(s, s + l)`` over the pairs, as one index array."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    offsets = np.repeat(np.asarray(starts, np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _last_rows_by_group(
    group: np.ndarray, k: int, valid_k: int, min_train: int
) -> npt.NDArray[np.int8]:
    """Part per row (0 train, 1 valid, 2 test; 1 test without valid) of leave_last_out for rows
    sorted by (group, time): each group's last rows, taken from the group's end."""
    size = np.bincount(np.asarray(group, np.int64)) if len(group) else np.zeros(0, np.int64)
    end = np.cumsum(size)
    n_test = np.clip(size - min_train, 0, k)
    n_valid = np.clip(size - min_train - n_test, 0, valid_k)
    part = np.zeros(len(group), np.int8)
    if valid_k:
        part[_ranges(end - n_test - n_valid, n_valid)] = 1
        part[_ranges(end - n_test, n_test)] = 2
    else:
        part[_ranges(end - n_test, n_test)] = 1
    return part


def _assign(fraction: np.ndarray, ratios: list[float]) -> np.ndarray:
    """Part number per row: the first part whose cumulative ratio covers ``fraction``."""
    thresholds = np.cumsum(ratios)
    thresholds[-1] = np.inf  # every row lands somewhere, whatever the rounding
    return np.searchsorted(thresholds, fraction - _EPS, side="left")


def _from_parts(part: np.ndarray, n_parts: int, name: str, params: dict[str, Any]) -> Split:
    idx = [np.flatnonzero(part == p).astype(np.int64) for p in range(n_parts)]
    if n_parts == 2:
        return Split(train=idx[0], test=idx[1], name=name, params=params)
    return Split(train=idx[0], valid=idx[1], test=idx[2], name=name, params=params)


def _check_ordinal(ts_ordinal: npt.ArrayLike | None, n: int, allow: bool, what: str) -> None:
    if ts_ordinal is None or allow:
        return
    flags = _as_1d("ts_ordinal", ts_ordinal, n).astype(bool)
    if flags.any():
        raise SplitError(
            f"{what}: {int(flags.sum())} rows have ordinal timestamps (order within a user only, "
            "not comparable across users); use leave_last_out, or pass allow_ordinal=True"
        )


# -- splitters -----------------------------------------------------------------------------


def random_split(n_rows: int, *, ratio: Ratio = 0.8, seed: int = 0) -> Split:
    """Global random split of ``n_rows`` rows by ``ratio`` (rows shuffled, then cut).

    Part sizes: train gets ``floor(r_train * n)`` rows (as scikit-learn's ``train_test_split``
    with ``train_size``), valid likewise by cumulative fraction, test the rest.
    """
    if n_rows < 0:
        raise SplitError(f"n_rows must be >= 0, got {n_rows}")
    ratios = _ratios(ratio)
    perm = _rng(seed).permutation(n_rows)
    rank = np.empty(n_rows, dtype=np.int64)
    rank[perm] = np.arange(n_rows)
    part = _assign((rank + 1) / max(n_rows, 1), ratios)
    return _from_parts(part, len(ratios), "random", {"ratio": ratios, "seed": int(seed)})


def stratified_split(
    user: npt.ArrayLike,
    item: npt.ArrayLike | None = None,
    *,
    ratio: Ratio = 0.75,
    by: str = "user",
    min_rating: int = 1,
    seed: int = 0,
) -> Split:
    """Per-group random split: each user's (or item's) rows are split by ``ratio``.

    Matches Microsoft Recommenders' ``python_stratified_split``: rows are shuffled within each
    group; the row of 1-based rank ``r`` in a group of ``n`` goes to the first part whose
    cumulative ratio is ``>= r / n``. So a user with 4 ratings and ratio 0.75 keeps 3 in train,
    and a user with a single rating has it in test. ``by="item"`` stratifies per item instead.
    ``min_rating``: as in MS Recommenders, groups with fewer rows are left out of the split
    (their rows appear in no part); with the default 1 every row is assigned.
    The random draw is numpy's Generator, so the exact rows differ from MS Recommenders' legacy
    ``np.random.seed`` draw, while the per-group counts are the same.
    """
    if by not in ("user", "item"):
        raise SplitError(f"by must be 'user' or 'item', got {by!r}")
    users = _as_1d("user", user)
    n = len(users)
    if by == "item":
        if item is None:
            raise SplitError("stratified_split(by='item') needs the item column")
        group = _as_1d("item", item, n)
    else:
        group = users
    if min_rating < 1:
        raise SplitError(f"min_rating must be >= 1, got {min_rating}")
    ratios = _ratios(ratio)
    key = _rng(seed).random(n)
    _, rank, size = _group_ranks(group, key)
    part = _assign((rank + 1) / np.maximum(size, 1), ratios)
    part[size < min_rating] = -1  # filtered groups: in no part
    params = {"ratio": ratios, "by": by, "min_rating": int(min_rating), "seed": int(seed)}
    return _from_parts(part, len(ratios), f"stratified_{by}", params)


def _to_micros(value: Any) -> int:
    """A cut time as int64 microseconds since the epoch (int, numpy datetime64, datetime, str)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    try:
        return int(np.datetime64(value, "us").astype(np.int64))
    except (ValueError, TypeError) as exc:
        raise SplitError(
            f"cannot read {value!r} as a time (expected ISO date or microseconds)"
        ) from exc


def temporal_split(
    timestamp: npt.ArrayLike,
    *,
    ratio: Ratio = 0.8,
    cut: Any | Sequence[Any] | None = None,
    ts_ordinal: npt.ArrayLike | None = None,
    allow_ordinal: bool = False,
) -> Split:
    """Global time cut: everything before the cut trains, everything from the cut on tests.

    With ``cut=None`` the cut times are the time quantiles given by ``ratio``: the cut is the
    timestamp of the row at sorted position ``floor(cum_ratio * n)``, and rows *at* that time go to
    the later part, so every train event strictly precedes every test event (sizes are
    approximate when many events share the cut time). ``cut`` may instead give one time
    (train / test) or two (train / valid / test) as ISO dates, ``datetime64`` or int64
    microseconds. Timestamps are int64 microseconds (or datetime64). Ordinal timestamps order
    events within a user only, so they are refused unless ``allow_ordinal``.
    """
    ts = _as_1d("timestamp", timestamp)
    if np.issubdtype(ts.dtype, np.datetime64):
        ts = ts.astype("datetime64[us]").astype(np.int64)
    ts = ts.astype(np.int64, copy=False)
    n = len(ts)
    _check_ordinal(ts_ordinal, n, allow_ordinal, "temporal_split")
    params: dict[str, Any]
    if cut is not None:
        cuts_in = list(cut) if isinstance(cut, list | tuple) else [cut]
        if len(cuts_in) not in (1, 2):
            raise SplitError(f"cut must be one time or two (valid start, test start), got {cut!r}")
        cuts = [_to_micros(c) for c in cuts_in]
        if len(cuts) == 2 and cuts[0] > cuts[1]:
            raise SplitError(f"cut times must be increasing, got {cuts_in}")
        params = {"cut": [str(np.datetime64(c, "us")) for c in cuts]}
    else:
        ratios = _ratios(ratio)
        sorted_ts = np.sort(ts)
        cum = np.cumsum(ratios)[:-1]
        pos = np.minimum(np.floor(cum * n + _EPS).astype(np.int64), max(n - 1, 0))
        cuts = [int(sorted_ts[p]) for p in pos] if n else [0] * len(pos)
        params = {"ratio": ratios, "cut": [str(np.datetime64(c, "us")) for c in cuts]}
    part = np.searchsorted(np.asarray(cuts, dtype=np.int64), ts, side="right")
    return _from_parts(part, len(cuts) + 1, "temporal", params)


def leave_last_out(
    user: npt.ArrayLike,
    timestamp: npt.ArrayLike,
    *,
    k: int = 1,
    valid_k: int = 1,
    min_train: int = 1,
) -> Split:
    """Per-user temporal hold-out: each user's last ``k`` rows test, the ``valid_k`` before valid.

    With the defaults this is the S3-Rec / SASRec leave-one-out protocol (last item test, second
    last valid, the rest train). Rows are ordered by (timestamp, row index), so ordinal
    timestamps and same-time events keep their log order. A user keeps at least ``min_train``
    train rows: test is filled first, then valid, from what is left (a user with 2 rows gets
    1 train + 1 test; a user with 1 row is train only). ``valid_k=0`` gives no valid part.
    """
    users = _as_1d("user", user)
    n = len(users)
    ts = _as_1d("timestamp", timestamp, n)
    if np.issubdtype(ts.dtype, np.datetime64):
        ts = ts.astype("datetime64[us]").astype(np.int64)
    if k < 1 or valid_k < 0 or min_train < 0:
        raise SplitError(
            f"need k >= 1, valid_k >= 0, min_train >= 0 (got {k}, {valid_k}, {min_train})"
        )
    params = {"k": int(k), "valid_k": int(valid_k), "min_train": int(min_train)}
    if _sorted_by_group(users, ts):  # a Dataset's log: no sort, one byte a row
        part8 = _last_rows_by_group(users, k, valid_k, min_train)
        return _from_parts(part8, 3 if valid_k else 2, "leave_last_out", params)
    _, rank, size = _group_ranks(users, ts)
    from_end = size - 1 - rank  # 0 for a user's last row
    n_test = np.clip(size - min_train, 0, k)
    n_valid = np.clip(size - min_train - n_test, 0, valid_k)
    part = np.zeros(n, dtype=np.int64)
    in_test = from_end < n_test
    in_valid = ~in_test & (from_end < n_test + n_valid)
    if valid_k:
        part[in_valid] = 1
        part[in_test] = 2
        return _from_parts(part, 3, "leave_last_out", params)
    part[in_test] = 1
    return _from_parts(part, 2, "leave_last_out", params)


def kfold_split(
    n_folds: int = 5,
    *,
    user: npt.ArrayLike | None = None,
    n_rows: int | None = None,
    seed: int = 0,
) -> list[Split]:
    """``n_folds`` splits whose test parts partition the rows (train = the other folds).

    Global (pass ``n_rows``): rows are shuffled and cut into ``n_folds`` near-equal folds.
    Per user (pass ``user``): each user's rows are shuffled and dealt round-robin from a random
    starting fold, so a user with at least ``n_folds`` rows appears in every fold's test part and
    fold sizes stay balanced overall.
    """
    if n_folds < 2:
        raise SplitError(f"n_folds must be >= 2, got {n_folds}")
    if (user is None) == (n_rows is None):
        raise SplitError("kfold_split needs exactly one of user= (per user) or n_rows= (global)")
    rng = _rng(seed)
    if user is not None:
        users = _as_1d("user", user)
        n = len(users)
        _, rank, _ = _group_ranks(users, rng.random(n))
        _, inverse = np.unique(users, return_inverse=True)
        offset = rng.integers(0, n_folds, size=int(inverse.max()) + 1 if n else 0)
        fold = (rank + offset[inverse]) % n_folds if n else np.zeros(0, dtype=np.int64)
        mode = "user"
    else:
        n = int(n_rows or 0)
        perm = rng.permutation(n)
        fold = np.empty(n, dtype=np.int64)
        fold[perm] = np.arange(n) * n_folds // max(n, 1)
        mode = "global"
    splits = []
    for f in range(n_folds):
        test = np.flatnonzero(fold == f).astype(np.int64)
        train = np.flatnonzero(fold != f).astype(np.int64)
        params = {"n_folds": int(n_folds), "fold": f, "by": mode, "seed": int(seed)}
        splits.append(Split(train=train, test=test, name="kfold", params=params))
    return splits


def _group_holdout(group: np.ndarray, ratio: Ratio, seed: int, name: str, by: str) -> Split:
    ratios = _ratios(ratio)
    uniq, inverse = np.unique(group, return_inverse=True)
    n_groups = len(uniq)
    perm = _rng(seed).permutation(n_groups)
    rank = np.empty(n_groups, dtype=np.int64)
    rank[perm] = np.arange(n_groups)
    group_part = _assign((rank + 1) / max(n_groups, 1), ratios)
    params = {"ratio": ratios, "by": by, "seed": int(seed), "n_groups": int(n_groups)}
    return _from_parts(group_part[inverse], len(ratios), name, params)


def cold_item_split(item: npt.ArrayLike, *, ratio: Ratio = 0.8, seed: int = 0) -> Split:
    """Cold-start items: whole items are held out, so no test (or valid) item is seen in training.

    ``ratio`` is over distinct items (not rows): with 0.8, a random 80% of the items that occur
    in the log train and all rows of the other 20% test.
    """
    return _group_holdout(_as_1d("item", item), ratio, seed, "cold_item", "item")


def cold_user_split(user: npt.ArrayLike, *, ratio: Ratio = 0.8, seed: int = 0) -> Split:
    """Cold-start users: whole users held out (ratio over distinct users)."""
    return _group_holdout(_as_1d("user", user), ratio, seed, "cold_user", "user")


# -- one entry point by name (CLI / config) ------------------------------------------------


class InteractionLog(Protocol):
    """What :func:`make_split` needs: the log's columns (a ``Dataset`` has them)."""

    @property
    def user(self) -> np.ndarray: ...
    @property
    def item(self) -> np.ndarray: ...
    @property
    def timestamp(self) -> np.ndarray: ...
    @property
    def ts_ordinal(self) -> np.ndarray: ...


def _make_random(log: InteractionLog, **kw: Any) -> Split:
    return random_split(len(log.user), **kw)


def _make_stratified(log: InteractionLog, **kw: Any) -> Split:
    return stratified_split(log.user, log.item, **kw)


def _make_temporal(log: InteractionLog, **kw: Any) -> Split:
    return temporal_split(log.timestamp, ts_ordinal=log.ts_ordinal, **kw)


def _make_llo(log: InteractionLog, **kw: Any) -> Split:
    return leave_last_out(log.user, log.timestamp, **kw)


def _make_cold_item(log: InteractionLog, **kw: Any) -> Split:
    return cold_item_split(log.item, **kw)


def _make_cold_user(log: InteractionLog, **kw: Any) -> Split:
    return cold_user_split(log.user, **kw)


SPLITTERS: dict[str, Callable[..., Split]] = {
    "random": _make_random,
    "stratified": _make_stratified,
    "temporal": _make_temporal,
    "leave_last_out": _make_llo,
    "cold_item": _make_cold_item,
    "cold_user": _make_cold_user,
}


def make_split(method: str, log: InteractionLog, **params: Any) -> Split:
    """Split ``log`` with the splitter named ``method`` (see ``SPLITTERS``) and its params.

    For k-fold use :func:`kfold_split`, which returns one split per fold.
    """
    if method not in SPLITTERS:
        known = ", ".join(sorted([*SPLITTERS, "kfold"]))
        hint = " (k-fold gives several splits: use kfold_split)" if method == "kfold" else ""
        raise SplitError(f"unknown split method {method!r}{hint} (known: {known})")
    try:
        return SPLITTERS[method](log, **params)
    except TypeError as exc:
        raise SplitError(f"split {method!r}: {exc}") from exc


__all__ = [
    "SPLITTERS",
    "InteractionLog",
    "Split",
    "SplitError",
    "cold_item_split",
    "cold_user_split",
    "kfold_split",
    "leave_last_out",
    "make_split",
    "random_split",
    "stratified_split",
    "temporal_split",
]
