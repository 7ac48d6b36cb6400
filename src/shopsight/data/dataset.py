"""The one object every model gets: id maps, the interaction log, matrices, sequences, side data.

``Dataset.from_store`` builds it with a handful of SQL queries; everything after that is numpy /
scipy on whole arrays. Interaction rows are kept sorted by (user, time, event type, lineage), so a
user's history is a contiguous slice (``seq_indptr``), and ``subset(rows)`` with sorted rows keeps
that order. Subsets (train / valid / test) share the full dataset's id maps and side data, so an
index means the same user or item everywhere.

Ids: users and items are indexed by their sorted string ids, which makes the maps independent of
ingest order and of the ``event_types`` filter. Every catalogue item gets an index, also one with
no interactions (a cold item); so does every user in the users table.

Reviews: the interaction log holds each review as a ``review`` event carrying its rating. Reviews
that the ingest already stored as ``review`` events (same user, item and time) are not added
twice. Review texts are in ``reviews``, linked to their interaction row (``row``), so a subset keeps
exactly the texts of its own rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from shopsight.data import schema
from shopsight.data.clean import clean_name, has_clean_tables, ingest_order_sql
from shopsight.errors import DataError

if TYPE_CHECKING:
    from shopsight.data.split import Split
    from shopsight.data.store import Store

EVENT_TYPES: Final[tuple[str, ...]] = schema.EVENT_TYPES
EVENT_CODE: Final[dict[str, int]] = {t: i for i, t in enumerate(EVENT_TYPES)}

# Weight of one event in the implicit matrix. "value": the event's value (its rating), 1 if none.
DEFAULT_WEIGHTS: Final[dict[str, float | str]] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "remove_from_cart": 0.0,
    "purchase": 8.0,
    "search": 0.0,
    "review": "value",
    "rate": "value",
    "favorite": 4.0,
    "share": 4.0,
    "tag": 0.0,
}
# Event types in the interaction log when no ``event_types`` filter is given: all but
# annotations (tags), which say what a user wrote about an item, not that they chose it.
INTERACTION_TYPES: Final[tuple[str, ...]] = tuple(
    t for t in EVENT_TYPES if t not in schema.ANNOTATION_EVENT_TYPES
)

# The interaction log's columns and dtypes, as stored in a snapshot (one ``.npy`` file each).
LOG_COLUMNS: Final[tuple[tuple[str, Any], ...]] = (
    ("user", np.int64),
    ("item", np.int64),
    ("event", np.int8),
    ("timestamp", np.int64),
    ("value", np.float64),
    ("ts_ordinal", np.bool_),
)
LOG_FETCH_ROWS = 1 << 20  # rows per Arrow batch when streaming the log out of DuckDB
SNAPSHOT_FORMAT = 1


def event_weight(
    event_type: str, value: float | None, weights: Mapping[str, float | str] = DEFAULT_WEIGHTS
) -> float:
    """The implicit weight of one event: the rule of :meth:`Dataset.row_weights`, for one row.

    ``"value"`` event types (ratings, reviews) weigh their value, 1 when they have none; unknown
    event types weigh 0 (not an interaction).
    """
    w = weights.get(event_type, 0.0)
    if w == "value":
        v = None if value is None else float(value)
        return v if v is not None and math.isfinite(v) else 1.0
    return float(w)


ITEM_COLUMNS: Final[tuple[str, ...]] = (
    "item_id",
    "title",
    "description",
    "brand",
    "category",
    "price",
    "currency",
    "image",
    "attributes",
    "first_seen",
    "last_seen",
)
USER_COLUMNS: Final[tuple[str, ...]] = (
    "user_id",
    "age_band",
    "gender",
    "region",
    "signup_date",
    "attributes",
)
REVIEW_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        ("user", pa.int64()),
        ("item", pa.int64()),
        ("row", pa.int64()),  # interaction row of the review event; -1 when not in the log
        ("rating", pa.float64()),
        ("summary", pa.string()),
        ("text", pa.string()),
        ("timestamp", pa.int64()),  # microseconds since the epoch, NULL when unknown
        ("helpful_votes", pa.int64()),
        ("verified", pa.bool_()),
    ]
)


CSR_CHUNK_ROWS = 1 << 22  # log rows per step of user_sorted_csr


def user_sorted_csr(
    user: npt.NDArray[np.int64],
    item: npt.NDArray[np.int64],
    shape: tuple[int, int],
    data: npt.NDArray[np.float32] | None = None,
    *,
    chunk_rows: int = CSR_CHUNK_ROWS,
) -> sp.csr_matrix:
    """Users x items float32 CSR of ``(user, item, data)`` rows (``data`` 1 when None), summing
    duplicate pairs, with sorted indices: scipy's ``csr_matrix((data, (user, item)))`` +
    ``sum_duplicates`` for a log whose rows are sorted by user.

    Built a run of whole users at a time, so the memory is the result plus one chunk: the
    scipy route converts the whole log to COO and CSR first, some 5 GB of temporaries for
    200 M rows, on every rank. Rows not sorted by user take the scipy route."""
    n = len(user)
    n_users, n_items = shape
    if n and np.any(np.diff(user[:: max(1, n // 4096)]) < 0):  # cheap pre-check; exact below
        return _scipy_csr(user, item, shape, data)
    counts = np.zeros(n_users, np.int64)
    idx_parts: list[npt.NDArray[np.int32]] = []
    val_parts: list[npt.NDArray[np.float32]] = []
    start = 0
    while start < n:
        stop = min(n, start + chunk_rows)
        if stop < n:  # end on a user boundary, so no pair spans two chunks
            stop = int(np.searchsorted(user, user[stop - 1], side="right"))
        u = np.asarray(user[start:stop], np.int64)
        if (len(u) > 1 and np.any(u[1:] < u[:-1])) or (start and u[0] < user[start - 1]):
            return _scipy_csr(user, item, shape, data)
        key = (u - u[0]) * np.int64(n_items) + np.asarray(item[start:stop], np.int64)
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
        if data is None:
            vals = np.diff(np.append(first, len(key))).astype(np.float32)
        else:
            d = np.asarray(data[start:stop], np.float64)[order]
            vals = np.add.reduceat(d, first).astype(np.float32)
        pair_key = key[first]
        counts += np.bincount(u[0] + pair_key // n_items, minlength=n_users)
        idx_parts.append((pair_key % n_items).astype(np.int32))
        val_parts.append(vals)
        start = stop
    idx_dtype = np.int32 if int(counts.sum()) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n_users + 1, idx_dtype)
    np.cumsum(counts, out=indptr[1:])
    indices = (
        np.concatenate(idx_parts).astype(idx_dtype, copy=False)
        if idx_parts
        else (np.zeros(0, idx_dtype))
    )
    del idx_parts
    values = np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32)
    del val_parts
    m = sp.csr_matrix((values, indices, indptr), shape=shape, copy=False)
    m.has_sorted_indices = True
    m.has_canonical_format = True
    return m


def _scipy_csr(
    user: npt.NDArray[np.int64],
    item: npt.NDArray[np.int64],
    shape: tuple[int, int],
    data: npt.NDArray[np.float32] | None,
) -> sp.csr_matrix:
    d = np.ones(len(user), np.float32) if data is None else np.asarray(data, np.float32)
    m = sp.csr_matrix((d, (user, item)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    return m


class DatasetError(DataError):
    """A dataset cannot be built or used as asked (one-line message)."""


@dataclass(frozen=True)
class Ratings:
    """Explicit feedback as COO arrays: one (latest) rating per user-item pair."""

    user: npt.NDArray[np.int64]
    item: npt.NDArray[np.int64]
    rating: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]  # interaction row the rating comes from

    def __len__(self) -> int:
        return len(self.user)

    def to_csr(self, shape: tuple[int, int]) -> sp.csr_matrix:
        return sp.csr_matrix((self.rating, (self.user, self.item)), shape=shape, dtype=np.float32)


def _validate_weights(weights: Mapping[str, float | str] | None) -> dict[str, float | str]:
    out: dict[str, float | str] = dict(DEFAULT_WEIGHTS)
    for k, v in (weights or {}).items():
        if k not in EVENT_CODE:
            raise DatasetError(
                f"weights: unknown event type {k!r} (expected one of {', '.join(EVENT_TYPES)})"
            )
        if isinstance(v, str):
            if v != "value":
                raise DatasetError(f"weights[{k!r}]: expected a number >= 0 or 'value', got {v!r}")
        elif not (isinstance(v, int | float) and np.isfinite(v) and v >= 0):
            raise DatasetError(f"weights[{k!r}]: expected a number >= 0 or 'value', got {v!r}")
        out[k] = v if isinstance(v, str) else float(v)
    return out


def _check_event_types(event_types: Sequence[str] | None) -> tuple[str, ...] | None:
    if event_types is None:
        return None
    if isinstance(event_types, str):
        event_types = [event_types]
    unknown = sorted(set(event_types) - set(EVENT_CODE))
    if unknown:
        raise DatasetError(
            f"event_types: unknown {unknown} (expected some of {', '.join(EVENT_TYPES)})"
        )
    return tuple(t for t in EVENT_TYPES if t in set(event_types))


def _empty_side(columns: Sequence[str], ids: np.ndarray, id_col: str, ref: pa.Schema) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for c in columns:
        if c == id_col:
            cols[c] = pa.array(ids.tolist() if ids.dtype == object else ids, type=pa.string())
        else:
            cols[c] = pa.nulls(len(ids), type=ref.field(c).type)
    return pa.table(cols)


class Dataset:
    """Interactions, id maps and side data of one shop, ready for models.

    Interaction columns (one entry per row, rows sorted by user then time):
    ``user``, ``item`` (int64 indices), ``event`` (int8 code into ``EVENT_TYPES``), ``timestamp``
    (int64 microseconds since the epoch; for ordinal rows a position, comparable within a user
    only), ``value`` (float64, NaN when absent: rating or price paid), ``ts_ordinal`` (bool).
    """

    def __init__(
        self,
        *,
        user_ids: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        user: npt.ArrayLike,
        item: npt.ArrayLike,
        event: npt.ArrayLike,
        timestamp: npt.ArrayLike,
        value: npt.ArrayLike | None = None,
        ts_ordinal: npt.ArrayLike | None = None,
        items: pa.Table | None = None,
        users: pa.Table | None = None,
        reviews: pa.Table | None = None,
        weights: Mapping[str, float | str] | None = None,
        meta: Mapping[str, Any] | None = None,
        check: bool = True,
    ) -> None:
        self.user_ids = np.asarray(user_ids, dtype=object)
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.user = np.ascontiguousarray(user, dtype=np.int64)
        self.item = np.ascontiguousarray(item, dtype=np.int64)
        self.event = np.ascontiguousarray(event, dtype=np.int8)
        self.timestamp = np.ascontiguousarray(timestamp, dtype=np.int64)
        n = len(self.user)
        self.value = (
            np.full(n, np.nan) if value is None else np.ascontiguousarray(value, dtype=np.float64)
        )
        self.ts_ordinal = (
            np.zeros(n, dtype=bool)
            if ts_ordinal is None
            else np.ascontiguousarray(ts_ordinal, dtype=bool)
        )
        self.weights = _validate_weights(weights)
        self.meta: dict[str, Any] = dict(meta or {})
        if check:  # off only for a snapshot, which was checked when it was built
            self._check()
        self.items = (
            items
            if items is not None
            else _empty_side(ITEM_COLUMNS, self.item_ids, "item_id", schema.ITEMS)
        )
        self.users = (
            users
            if users is not None
            else _empty_side(USER_COLUMNS, self.user_ids, "user_id", schema.USERS)
        )
        self.reviews = reviews if reviews is not None else REVIEW_SCHEMA.empty_table()
        if self.items.num_rows != self.n_items or self.users.num_rows != self.n_users:
            raise DatasetError(
                f"side data not aligned: {self.items.num_rows} item rows for {self.n_items} items, "
                f"{self.users.num_rows} user rows for {self.n_users} users"
            )
        self._matrices: dict[str, sp.csr_matrix] = {}
        self.snapshot: Path | None = None  # the folder its log is mapped from, if any

    def _check(self) -> None:
        n = len(self.user)
        for name in ("item", "event", "timestamp", "value", "ts_ordinal"):
            if len(getattr(self, name)) != n:
                raise DatasetError(
                    f"column {name} has {len(getattr(self, name))} rows, expected {n}"
                )
        if n:
            if self.user.min() < 0 or self.user.max() >= self.n_users:
                raise DatasetError(f"user indices outside [0, {self.n_users})")
            if self.item.min() < 0 or self.item.max() >= self.n_items:
                raise DatasetError(f"item indices outside [0, {self.n_items})")
            if self.event.min() < 0 or self.event.max() >= len(EVENT_TYPES):
                raise DatasetError("event codes outside the EVENT_TYPES vocabulary")
            du = np.diff(self.user)
            if (du < 0).any() or ((du == 0) & (np.diff(self.timestamp) < 0)).any():
                raise DatasetError(
                    "interaction rows must be sorted by (user, timestamp); use Dataset.from_arrays"
                )

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        *,
        user_ids: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        user: npt.ArrayLike,
        item: npt.ArrayLike,
        event: npt.ArrayLike | None = None,
        timestamp: npt.ArrayLike | None = None,
        value: npt.ArrayLike | None = None,
        ts_ordinal: npt.ArrayLike | None = None,
        **kwargs: Any,
    ) -> Dataset:
        """Build from unsorted arrays (sorted here by user, time, event type, input order).

        ``event`` may be codes or event type names (default all ``view``); ``timestamp``
        defaults to the input order, marked ordinal. ``reviews`` rows (if given) must refer to
        input row numbers; they are remapped to the sorted order.
        """
        u = np.asarray(user, dtype=np.int64)
        n = len(u)
        if event is None:
            ev = np.zeros(n, dtype=np.int8)
        else:
            ev_in = np.asarray(event)
            if ev_in.dtype.kind in "OUS":
                unknown = sorted(set(ev_in.tolist()) - set(EVENT_CODE))
                if unknown:
                    raise DatasetError(f"unknown event types {unknown}")
                ev = np.array([EVENT_CODE[e] for e in ev_in.tolist()], dtype=np.int8)
            else:
                ev = ev_in.astype(np.int8)
        if timestamp is None:
            ts = np.arange(n, dtype=np.int64)
            ts_ordinal = np.ones(n, dtype=bool) if ts_ordinal is None else ts_ordinal
        else:
            ts_arr = np.asarray(timestamp)
            if np.issubdtype(ts_arr.dtype, np.datetime64):
                ts_arr = ts_arr.astype("datetime64[us]").astype(np.int64)
            ts = ts_arr.astype(np.int64)
        order = np.lexsort((np.arange(n), ev, ts, u))
        val = None if value is None else np.asarray(value, dtype=np.float64)[order]
        ordn = None if ts_ordinal is None else np.asarray(ts_ordinal, dtype=bool)[order]
        reviews = kwargs.pop("reviews", None)
        if reviews is not None and reviews.num_rows:
            inv = np.empty(n, dtype=np.int64)
            inv[order] = np.arange(n)
            old = reviews.column("row").to_numpy(zero_copy_only=False)
            new = np.where(old >= 0, inv[np.clip(old, 0, max(n - 1, 0))], -1)
            reviews = reviews.set_column(
                reviews.schema.get_field_index("row"), "row", pa.array(new)
            )
        return cls(
            user_ids=user_ids,
            item_ids=item_ids,
            user=u[order],
            item=np.asarray(item, dtype=np.int64)[order],
            event=ev[order],
            timestamp=ts[order],
            value=val,
            ts_ordinal=ordn,
            reviews=reviews,
            **kwargs,
        )

    @classmethod
    def from_store(
        cls,
        store: Store,
        *,
        clean: bool = True,
        event_types: Sequence[str] | None = None,
        weights: Mapping[str, float | str] | None = None,
        snapshot: str | Path | None = None,
    ) -> Dataset:
        """Build from the store: ``*_clean`` tables when ``clean`` and they exist, else raw.

        ``event_types`` restricts the interaction log (the id maps stay those of the whole
        store, so datasets built with different filters share indices). ``weights`` overrides
        ``DEFAULT_WEIGHTS`` for the implicit matrix. Itemless events (searches) are not
        interactions and are left out; so are annotations (``tag`` events) unless
        ``event_types`` names them.

        ``snapshot``: a new folder to write the dataset to (see :meth:`open_snapshot`); the log
        streams from DuckDB straight into its files and the dataset returned maps them, so the
        log is never held in memory. Inside :func:`shared_datasets` (every ``--nproc`` job) the
        main process builds each dataset once and every process maps that one snapshot.
        """
        types = _check_event_types(event_types)
        shared = _SHARED.get()
        if shared is not None and snapshot is None:
            return shared.dataset(store, clean=clean, event_types=types, weights=weights)
        folder = None if snapshot is None else Path(snapshot)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            if any(folder.iterdir()):
                raise DatasetError(f"{folder}: a snapshot needs a new, empty folder")
        use_clean = clean and has_clean_tables(store)
        store_fp = store.fingerprint()  # before our own queries, which close what it leaves open
        t = {name: (clean_name(name) if use_clean else name) for name in schema.DATA_TABLES}
        ev, it, rv, us = (f'"{t[k]}"' for k in ("events", "items", "reviews", "users"))
        conn = store.conn
        kept_types = types if types is not None else INTERACTION_TYPES
        type_list = "[" + ", ".join(f"'{x}'" for x in EVENT_TYPES) + "]"
        type_filter = f" AND event_type IN ({', '.join(repr(x) for x in kept_types)})"
        with_reviews = "review" in kept_types
        review_code = EVENT_CODE["review"]

        # Id maps live in temp tables (not registered Arrow tables): registering fails on a
        # connection that still holds an unfetched result, which callers may have left behind.
        temp_tables = ("_ds_uid", "_ds_iid", "_ds_log")
        try:
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ds_uid AS
                SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS idx FROM (
                    SELECT user_id FROM {us} UNION SELECT user_id FROM {ev}
                    UNION SELECT user_id FROM {rv})"""
            )
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ds_iid AS
                SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS idx FROM (
                    SELECT item_id FROM {it} UNION SELECT item_id FROM {ev} WHERE item_id IS NOT NULL
                    UNION SELECT item_id FROM {rv})"""
            )
            user_ids = store.arrow("SELECT user_id FROM _ds_uid ORDER BY idx").column(0)
            item_ids = store.arrow("SELECT item_id FROM _ds_iid ORDER BY idx").column(0)
            conn.execute(f"CREATE OR REPLACE TEMP VIEW _ds_order AS {ingest_order_sql()}")
            review_rows = ""
            if with_reviews:
                review_rows = f"""
                UNION ALL
                SELECT r.user_id, r.item_id, 'review', coalesce(r.timestamp, TIMESTAMP '1970-01-01'),
                       r.timestamp IS NULL, r.rating, r.source, r.line, 1, r.review_key, r.review_key
                FROM {rv} r
                WHERE NOT EXISTS (
                    SELECT 1 FROM {ev} e WHERE e.event_type = 'review' AND e.user_id = r.user_id
                      AND e.item_id = r.item_id AND e.timestamp IS NOT DISTINCT FROM r.timestamp)"""
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ds_log AS
                WITH log AS (
                    SELECT user_id, item_id, event_type, timestamp, ts_ordinal, value,
                           source, line, 0 AS origin, NULL::UBIGINT AS review_key, event_key AS k
                    FROM {ev} WHERE item_id IS NOT NULL{type_filter}
                    {review_rows})
                SELECT u.idx AS "user", i.idx AS item,
                       list_position({type_list}, log.event_type) - 1 AS event,
                       epoch_us(log.timestamp) AS ts, log.value, log.ts_ordinal, log.review_key,
                       row_number() OVER (ORDER BY u.idx, epoch_us(log.timestamp),
                           list_position({type_list}, log.event_type), log.origin,
                           coalesce(o.ord, -1), log.source, log.line, log.k) - 1 AS "row"
                FROM log JOIN _ds_uid u USING (user_id) JOIN _ds_iid i USING (item_id)
                LEFT JOIN _ds_order o ON o.source = log.source"""
            )
            bad = conn.execute("SELECT count(*) FROM _ds_log WHERE event IS NULL").fetchall()
            if bad[0][0]:
                raise DatasetError(
                    f"{t['events']}: {bad[0][0]} events have a type outside {', '.join(EVENT_TYPES)}"
                )
            log: dict[str, Any] = _fetch_log(
                store,
                'SELECT "user", item, event, ts AS "timestamp", value, ts_ordinal '
                'FROM _ds_log ORDER BY "row"',
                folder,
            )
            items = store.arrow(
                f"""SELECT {", ".join("i.item_id" if c == "item_id" else f'x."{c}"' for c in ITEM_COLUMNS)}
                FROM _ds_iid i LEFT JOIN (
                    SELECT x.* FROM {it} x LEFT JOIN _ds_order o ON o.source = x.source
                    QUALIFY row_number() OVER (PARTITION BY x.item_id
                        ORDER BY coalesce(o.ord, -1) DESC, x.source DESC, x.line DESC, x.item_key DESC) = 1
                ) x USING (item_id) ORDER BY i.idx"""
            )
            users = store.arrow(
                f"""SELECT {", ".join("u.user_id" if c == "user_id" else f'x."{c}"' for c in USER_COLUMNS)}
                FROM _ds_uid u LEFT JOIN (
                    SELECT x.* FROM {us} x LEFT JOIN _ds_order o ON o.source = x.source
                    QUALIFY row_number() OVER (PARTITION BY x.user_id
                        ORDER BY coalesce(o.ord, -1) DESC, x.source DESC, x.line DESC, x.user_key DESC) = 1
                ) x USING (user_id) ORDER BY u.idx"""
            )
            link = (
                f"""LEFT JOIN (SELECT review_key, "row" FROM _ds_log WHERE review_key IS NOT NULL) l1
                      ON l1.review_key = r.review_key
                    LEFT JOIN (SELECT "user", item, ts, min("row") AS "row" FROM _ds_log
                               WHERE event = {review_code} AND review_key IS NULL GROUP BY ALL) l2
                      ON l2."user" = u.idx AND l2.item = i.idx
                     AND l2.ts = epoch_us(r.timestamp)"""
                if with_reviews
                else ""
            )
            row_expr = 'coalesce(l1."row", l2."row", -1)' if with_reviews else "-1::BIGINT"
            reviews = store.arrow(
                f"""SELECT u.idx AS "user", i.idx AS item, {row_expr} AS "row", r.rating,
                           r.summary, r.text, epoch_us(r.timestamp) AS "timestamp",
                           r.helpful_votes, r.verified
                FROM {rv} r JOIN _ds_uid u USING (user_id) JOIN _ds_iid i USING (item_id) {link}
                ORDER BY u.idx, i.idx, "timestamp", r.review_key"""
            ).cast(REVIEW_SCHEMA)
        finally:
            for name in temp_tables:
                conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute("DROP VIEW IF EXISTS _ds_order")

        meta = {
            "tables": dict(t),
            "clean": use_clean,
            "event_types": list(kept_types),
            "store_fingerprint": store_fp,
        }
        ds = cls(
            user_ids=np.asarray(user_ids.to_pylist(), dtype=object),
            item_ids=np.asarray(item_ids.to_pylist(), dtype=object),
            items=items,
            users=users,
            reviews=reviews,
            weights=weights,
            meta=meta,
            **log,
        )
        if folder is None:
            return ds
        for arr in log.values():
            if isinstance(arr, np.memmap):
                arr.flush()
        ds._write_snapshot(folder)
        del ds, log
        return cls.open_snapshot(folder, weights=weights)

    # -- snapshots ---------------------------------------------------------------------------
    def _write_snapshot(self, folder: Path) -> None:
        """Side data and manifest beside the log's ``.npy`` files (written by ``from_store``).
        The manifest goes last: a folder with ``dataset.json`` is complete."""
        for name, _ in LOG_COLUMNS:
            if not (folder / f"{name}.npy").exists():  # else streamed there by ``_fetch_log``
                np.save(folder / f"{name}.npy", getattr(self, name))
        for name, ids in (("user_ids", self.user_ids), ("item_ids", self.item_ids)):
            pq.write_table(
                pa.table({name: pa.array(ids.tolist(), pa.string())}), folder / f"{name}.parquet"
            )
        for name in ("items", "users", "reviews"):
            pq.write_table(getattr(self, name), folder / f"{name}.parquet")
        manifest = {
            "format": SNAPSHOT_FORMAT,
            "rows": len(self),
            "users": self.n_users,
            "items": self.n_items,
            "meta": self.meta,
        }
        tmp = folder / "dataset.json.tmp"
        tmp.write_text(json.dumps(manifest, default=str), encoding="utf-8")
        os.replace(tmp, folder / "dataset.json")

    @classmethod
    def open_snapshot(
        cls, folder: str | Path, *, weights: Mapping[str, float | str] | None = None
    ) -> Dataset:
        """A dataset written by ``from_store(snapshot=folder)``, its log memory-mapped read-only:
        processes that open the same snapshot share one copy of it in the page cache."""
        folder = Path(folder)
        try:
            manifest = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{folder}: not a complete dataset snapshot ({exc})") from exc
        if manifest.get("format") != SNAPSHOT_FORMAT:
            raise DatasetError(
                f"{folder}/dataset.json: snapshot format {manifest.get('format')!r}, "
                f"expected {SNAPSHOT_FORMAT}"
            )
        log: dict[str, Any] = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r") for name, _ in LOG_COLUMNS
        }
        if any(len(a) != manifest["rows"] for a in log.values()):
            raise DatasetError(f"{folder}: log files do not hold {manifest['rows']} rows each")

        def ids(name: str) -> np.ndarray:
            column = pq.read_table(folder / f"{name}.parquet").column(0)
            return np.asarray(column.to_pylist(), dtype=object)

        ds = cls(
            user_ids=ids("user_ids"),
            item_ids=ids("item_ids"),
            items=pq.read_table(folder / "items.parquet"),
            users=pq.read_table(folder / "users.parquet"),
            reviews=pq.read_table(folder / "reviews.parquet"),
            weights=weights,
            meta=manifest["meta"],
            check=False,  # checked when it was built
            **log,
        )
        ds.snapshot = folder
        return ds

    def rows_in_parent(self) -> npt.NDArray[np.int64] | None:
        """A subset kept as a shared snapshot: its rows in the parent dataset, memory-mapped
        (one copy per machine instead of one per process); otherwise None."""
        if self.snapshot is None or not (self.snapshot / "rows.npy").exists():
            return None
        rows: npt.NDArray[np.int64] = np.load(self.snapshot / "rows.npy", mmap_mode="r")
        return rows

    # -- sizes and id lookups --------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    def __len__(self) -> int:
        return len(self.user)

    def __repr__(self) -> str:
        return (
            f"Dataset(users={self.n_users}, items={self.n_items}, interactions={len(self)}, "
            f"reviews={self.reviews.num_rows})"
        )

    @cached_property
    def user_index(self) -> dict[str, int]:
        """Raw user id -> index."""
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Raw item id -> index."""
        return {u: i for i, u in enumerate(self.item_ids.tolist())}

    def user_idx(self, ids: str | Sequence[str], *, missing: int | None = None) -> Any:
        """Index of one id or an int64 array for many; unknown ids raise, or map to ``missing``."""
        return _lookup(self.user_index, ids, missing, "user")

    def item_idx(self, ids: str | Sequence[str], *, missing: int | None = None) -> Any:
        return _lookup(self.item_index, ids, missing, "item")

    # -- matrices --------------------------------------------------------------------------
    def matrix(self, event_type: str | None = None) -> sp.csr_matrix:
        """Users x items counts of one event type (all types when None), float32 CSR."""
        key = event_type or "*"
        if key not in self._matrices:
            if event_type is None:
                u, i = self.user, self.item
            else:
                if event_type not in EVENT_CODE:
                    raise DatasetError(f"unknown event type {event_type!r}")
                mask = self.event == EVENT_CODE[event_type]
                u, i = self.user[mask], self.item[mask]
            self._matrices[key] = user_sorted_csr(u, i, self.shape)
        return self._matrices[key]

    def release_caches(self) -> None:
        """Drop the matrices and per-user arrays built on demand (rebuilt if asked again): on
        a log of 10^8 rows each is a gigabyte, kept alive by the dataset after a model's fit."""
        self._matrices = {}
        for name in ("implicit", "ratings", "seq_indptr"):
            self.__dict__.pop(name, None)

    @property
    def matrices(self) -> dict[str, sp.csr_matrix]:
        """Count matrices for every event type present in the log."""
        present = np.unique(self.event)
        return {EVENT_TYPES[c]: self.matrix(EVENT_TYPES[c]) for c in present.tolist()}

    def row_weights(self) -> npt.NDArray[np.float32]:
        """The implicit-feedback weight of each interaction row (see ``weights``)."""
        # float32 throughout (each value rounded once, as a float64 pass then a cast would):
        # on a log of 10^8 rows a float64 pass is gigabytes more
        fixed = np.array(
            [0.0 if isinstance(w, str) else w for w in (self.weights[t] for t in EVENT_TYPES)],
            dtype=np.float64,
        ).astype(np.float32)
        by_value = np.array([self.weights[t] == "value" for t in EVENT_TYPES])
        w = fixed[self.event]
        use_value = by_value[self.event]
        if use_value.any():
            v = self.value[use_value]
            w[use_value] = np.where(np.isfinite(v), v, 1.0)
        return w

    @cached_property
    def implicit(self) -> sp.csr_matrix:
        """Weighted users x items matrix: the sum of the row weights per pair (zeros removed)."""
        m = user_sorted_csr(self.user, self.item, self.shape, self.row_weights())
        m.eliminate_zeros()
        return m

    # -- explicit feedback ------------------------------------------------------------------
    @cached_property
    def ratings(self) -> Ratings:
        """Ratings from ``rate``/``review`` rows with a value; the latest per user-item pair."""
        rows = np.flatnonzero(
            np.isin(self.event, [EVENT_CODE["rate"], EVENT_CODE["review"]])
            & np.isfinite(self.value)
        )
        if len(rows):
            key = self.user[rows] * np.int64(self.n_items) + self.item[rows]
            # Rows are time-ordered within a user, so the last row of a pair is the latest.
            _, last_rev = np.unique(key[::-1], return_index=True)
            rows = np.sort(rows[len(rows) - 1 - last_rev])
        return Ratings(
            user=self.user[rows],
            item=self.item[rows],
            rating=self.value[rows].astype(np.float32),
            timestamp=self.timestamp[rows],
            row=rows.astype(np.int64),
        )

    # -- sequences --------------------------------------------------------------------------
    @cached_property
    def seq_indptr(self) -> npt.NDArray[np.int64]:
        """Row range of each user: user ``u``'s rows are ``seq_indptr[u]:seq_indptr[u+1]``."""
        counts = np.bincount(self.user, minlength=self.n_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def user_rows(self, u: int) -> slice:
        return slice(int(self.seq_indptr[u]), int(self.seq_indptr[u + 1]))

    def user_sequence(self, u: int) -> dict[str, np.ndarray]:
        """User ``u``'s time-ordered history: items, event codes, timestamps, values."""
        s = self.user_rows(u)
        return {
            "item": self.item[s],
            "event": self.event[s],
            "timestamp": self.timestamp[s],
            "value": self.value[s],
        }

    def _per_user(self, column: np.ndarray, event_types: Sequence[str] | None) -> list[np.ndarray]:
        types = _check_event_types(event_types)
        if types is None:
            return np.split(column, self.seq_indptr[1:-1])
        mask = np.isin(self.event, [EVENT_CODE[t] for t in types])
        counts = np.bincount(self.user[mask], minlength=self.n_users)
        return np.split(column[mask], np.cumsum(counts)[:-1])

    def sequences(self, event_types: Sequence[str] | None = None) -> list[npt.NDArray[np.int64]]:
        """Per-user time-ordered item sequences (one array per user index, possibly empty)."""
        return self._per_user(self.item, event_types)

    def event_sequences(
        self, event_types: Sequence[str] | None = None
    ) -> list[npt.NDArray[np.int8]]:
        """The event type codes aligned with :meth:`sequences` (same filter, same order)."""
        return self._per_user(self.event, event_types)

    # -- subsets and splits -----------------------------------------------------------------
    def subset(self, rows: npt.ArrayLike) -> Dataset:
        """The same id maps and side data, restricted to the given interaction rows."""
        idx = np.asarray(rows, dtype=np.int64)
        if idx.ndim != 1 or not (idx[1:] > idx[:-1]).all():  # splits give sorted rows: no sort
            idx = np.unique(idx)  # sorted: keeps (user, time) order
        if len(idx) and (idx[0] < 0 or idx[-1] >= len(self)):
            raise DatasetError(f"row indices outside [0, {len(self)})")
        reviews = self.reviews
        if reviews.num_rows:
            old = reviews.column("row").to_numpy(zero_copy_only=False)
            pos = np.searchsorted(idx, old)
            if len(idx):
                keep = (old >= 0) & (idx[np.minimum(pos, len(idx) - 1)] == old)
            else:
                keep = np.zeros(len(old), dtype=bool)
            reviews = reviews.filter(pa.array(keep))
            reviews = reviews.set_column(
                reviews.schema.get_field_index("row"), "row", pa.array(pos[keep].astype(np.int64))
            )
        meta = {**self.meta, "parent": self.fingerprint, "rows": len(idx)}
        shared = _SHARED.get()
        if shared is not None and self.snapshot is not None:
            return shared.subset(self, idx, reviews, meta)
        return Dataset(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            user=self.user[idx],
            item=self.item[idx],
            event=self.event[idx],
            timestamp=self.timestamp[idx],
            value=self.value[idx],
            ts_ordinal=self.ts_ordinal[idx],
            items=self.items,
            users=self.users,
            reviews=reviews,
            weights=self.weights,
            meta=meta,
        )

    def split(self, split: Split) -> tuple[Dataset, Dataset | None, Dataset]:
        """(train, valid or None, test) datasets for a :class:`~shopsight.data.split.Split`."""
        n = len(self)
        for name, part in split.parts.items():
            if len(part) and (part.min() < 0 or part.max() >= n):
                raise DatasetError(f"split {split.name!r}: {name} rows outside [0, {n})")
        valid = None if split.valid is None else self.subset(split.valid)
        return self.subset(split.train), valid, self.subset(split.test)

    # -- identity and description -----------------------------------------------------------
    @cached_property
    def fingerprint(self) -> str:
        """Content hash of ids, interactions, weights and side data (16 hex digits)."""
        h = hashlib.sha256()
        for ids in (self.user_ids, self.item_ids):
            h.update("\x1f".join(map(str, ids.tolist())).encode())
            h.update(b"\x1e")
        for arr in (self.user, self.item, self.event, self.timestamp, self.value, self.ts_ordinal):
            h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))  # type: ignore[arg-type]  # no copy of the log
        h.update(json.dumps(self.weights, sort_keys=True).encode())
        for table in (self.items, self.users, self.reviews):
            _hash_table(h, table)
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description: sizes, density, event mix, time range, fingerprint."""
        n = len(self)
        active_users = int(np.count_nonzero(np.bincount(self.user, minlength=self.n_users)))
        item_counts = np.bincount(self.item, minlength=self.n_items)
        pairs = self.matrix().nnz
        cells = self.n_users * self.n_items
        real = ~self.ts_ordinal
        by_type = np.bincount(self.event, minlength=len(EVENT_TYPES))

        def iso(us: int) -> str:
            return str(np.datetime64(int(us), "us"))

        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "active_users": active_users,
            "active_items": int(np.count_nonzero(item_counts)),
            "cold_items": int(np.count_nonzero(item_counts == 0)),
            "user_item_pairs": int(pairs),
            "density": pairs / cells if cells else 0.0,
            "events_by_type": {EVENT_TYPES[c]: int(k) for c, k in enumerate(by_type) if k},
            "ratings": len(self.ratings),
            "reviews": self.reviews.num_rows,
            "ordinal_rows": int(self.ts_ordinal.sum()),
            "time_min": iso(self.timestamp[real].min()) if real.any() else None,
            "time_max": iso(self.timestamp[real].max()) if real.any() else None,
            "fingerprint": self.fingerprint,
            **{k: v for k, v in self.meta.items() if k in ("tables", "clean", "event_types")},
        }


def _fetch_log(store: Store, sql: str, folder: Path | None) -> dict[str, np.ndarray]:
    from shopsight.data.store import fetch_one

    """The log query's columns as arrays (``.npy`` files in ``folder`` when given), filled batch
    by batch: the whole log is never held twice, nor as Arrow."""
    count = fetch_one(store.conn, f"SELECT count(*) FROM ({sql})")
    n = int(count[0]) if count else 0
    out: dict[str, np.ndarray] = {}
    for name, dtype in LOG_COLUMNS:
        if folder is None:
            out[name] = np.empty(n, dtype=dtype)
        else:
            out[name] = np.lib.format.open_memmap(
                folder / f"{name}.npy", mode="w+", dtype=dtype, shape=(n,)
            )
    at = 0
    for batch in store.conn.sql(sql).to_arrow_reader(LOG_FETCH_ROWS):
        m = batch.num_rows
        if at + m > n:
            raise DatasetError(f"the interaction log grew while it was read ({n} rows counted)")
        for name, _ in LOG_COLUMNS:
            col = batch.column(name)
            if col.null_count:  # NULL value -> NaN; NULL ts_ordinal -> a real timestamp
                col = col.fill_null(False if name == "ts_ordinal" else float("nan"))
            out[name][at : at + m] = col.to_numpy(zero_copy_only=False)
        at += m
    if at != n:
        raise DatasetError(f"the interaction log shrank while it was read ({at} of {n} rows)")
    return out


class SharedDatasets:
    """Datasets built once per job and mapped by every process of it (see :func:`shared_datasets`).

    Each distinct request (store file name, clean or raw, event types) becomes one snapshot
    folder. The main process builds it; the others wait for its manifest (or the main process's
    failure note) and map it. The store must not change during the job.
    """

    def __init__(self, folder: Path, *, is_main: bool, wait_s: float) -> None:
        self.folder, self.is_main, self.wait_s = folder, is_main, wait_s

    def dataset(
        self,
        store: Store,
        *,
        clean: bool,
        event_types: tuple[str, ...] | None,
        weights: Mapping[str, float | str] | None,
    ) -> Dataset:
        target = self.target(store, clean=clean, event_types=event_types)
        failed = target.with_name(target.name + ".failed")
        if self.is_main and not (target / "dataset.json").exists():
            try:
                Dataset.from_store(
                    store, clean=clean, event_types=event_types, weights=weights, snapshot=target
                )
            except Exception as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
                raise
        else:
            self._wait(target, failed)
        return Dataset.open_snapshot(target, weights=weights)

    def subset(
        self, parent: Dataset, idx: npt.NDArray[np.int64], reviews: pa.Table, meta: dict[str, Any]
    ) -> Dataset:
        """``parent.subset(idx)`` (a snapshot) as a snapshot of its own: the main process copies
        the rows chunk by chunk into new files, every process maps them."""
        h = hashlib.sha256(str(parent.snapshot).encode())
        h.update(memoryview(idx).cast("B"))  # type: ignore[arg-type]
        target = self.folder / f"subset-{h.hexdigest()[:12]}"
        failed = target.with_name(target.name + ".failed")
        if self.is_main and not (target / "dataset.json").exists():
            try:
                target.mkdir(parents=True, exist_ok=True)
                log = {}
                for name, dtype in LOG_COLUMNS:
                    src = getattr(parent, name)
                    out = np.lib.format.open_memmap(
                        target / f"{name}.npy", mode="w+", dtype=dtype, shape=(len(idx),)
                    )
                    for start in range(0, len(idx), LOG_FETCH_ROWS):
                        part = idx[start : start + LOG_FETCH_ROWS]
                        out[start : start + len(part)] = src[part]
                    out.flush()
                    log[name] = out
                np.save(target / "rows.npy", idx)  # the subset's rows in the parent
                Dataset(
                    user_ids=parent.user_ids,
                    item_ids=parent.item_ids,
                    items=parent.items,
                    users=parent.users,
                    reviews=reviews,
                    weights=parent.weights,
                    meta=meta,
                    check=False,  # rows of a checked log, in order
                    **log,
                )._write_snapshot(target)
            except Exception as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
                raise
        else:
            self._wait(target, failed)
        return Dataset.open_snapshot(target, weights=parent.weights)

    def target(self, store: Store, *, clean: bool, event_types: Sequence[str] | None) -> Path:
        """The snapshot folder of one request."""
        types = None if event_types is None else list(event_types)
        request = {"store": Path(store.path).name, "clean": clean, "event_types": types}
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
        return self.folder / f"dataset-{key}"

    def _wait(self, target: Path, failed: Path) -> None:
        import time

        deadline = time.monotonic() + self.wait_s
        while not (target / "dataset.json").exists():
            if failed.exists():
                reason = failed.read_text(encoding="utf-8").strip()
                raise DatasetError(f"the main process could not build the dataset: {reason}")
            if time.monotonic() > deadline:
                raise DatasetError(
                    f"{target}: no dataset from the main process after {self.wait_s:.0f} s"
                )
            time.sleep(0.2)


_SHARED: ContextVar[SharedDatasets | None] = ContextVar("shopsight_shared_datasets", default=None)


@contextmanager
def shared_datasets(
    folder: str | Path, *, is_main: bool, wait_s: float = 4 * 3600.0
) -> Iterator[SharedDatasets]:
    """Inside, :meth:`Dataset.from_store` returns a dataset built once into ``folder`` (on
    storage every process sees) by the main process and memory-mapped by all, instead of each
    process building its own copy. The caller removes ``folder`` afterwards."""
    shared = SharedDatasets(Path(folder), is_main=is_main, wait_s=wait_s)
    if is_main:
        shared.folder.mkdir(parents=True, exist_ok=True)
    token = _SHARED.set(shared)
    try:
        yield shared
    finally:
        _SHARED.reset(token)


def _hash_table(h: Any, table: pa.Table) -> None:
    """Feed a table's values (not its memory layout) to a hash.

    Arrow IPC bytes are not canonical: the bytes under null slots are arbitrary, so the same
    values can serialise differently. Nulls are hashed as a mask and their slots as a constant.
    """
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        h.update(name.encode() + b"\x1d" + str(col.type).encode())
        h.update(np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool).tobytes())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            h.update("\x1f".join(col.fill_null("").to_pylist()).encode())
        else:
            if pa.types.is_timestamp(col.type) or pa.types.is_boolean(col.type):
                col = col.cast(pa.int64())
            filled = col.fill_null(pa.scalar(0, type=col.type))
            h.update(np.ascontiguousarray(filled.to_numpy(zero_copy_only=False)).tobytes())


def _lookup(index: dict[str, int], ids: str | Sequence[str], missing: int | None, what: str) -> Any:
    if isinstance(ids, str):
        if ids in index:
            return index[ids]
        if missing is None:
            raise KeyError(f"unknown {what} id {ids!r}")
        return missing
    out = np.fromiter(
        (index.get(x, -1 if missing is None else missing) for x in ids), dtype=np.int64
    )
    if missing is None and (out < 0).any():
        bad = [x for x, o in zip(ids, out.tolist(), strict=True) if o < 0][:5]
        raise KeyError(f"unknown {what} ids {bad}")
    return out


# -- store statistics ----------------------------------------------------------------------

FUNNEL: Final[tuple[str, ...]] = ("view", "click", "add_to_cart", "purchase")


# Reasons embed the offending value ("timestamp: cannot parse '32/13/2024' ..."); counts are per
# kind of problem, so quoted values and numbers are replaced by placeholders.
_REASON_CLASS_SQL = """regexp_replace(regexp_replace(reason, '''[^'']*''', '<value>', 'g'),
    '(^|[ ([,])-?[0-9]([0-9:.+T -]*[0-9])?', '\\1<n>', 'g')"""


def stats(store: Store, *, clean: bool = False) -> dict[str, Any]:
    """Descriptive statistics of the store for ``shopsight stats`` (JSON-friendly).

    Reads the raw tables, or the ``*_clean`` ones with ``clean=True`` (raw when none exist).
    Contains: row counts of every table, events by type, the view -> click -> cart -> purchase
    funnel (events and distinct users, each step as a ratio of the previous), users / items /
    sessions, the sparsity of the user x item matrix, time ranges per table (ordinal events
    counted apart: their times are positions, not dates), and quarantined rows by reason.
    """
    use_clean = clean and has_clean_tables(store)
    t = {name: (clean_name(name) if use_clean else name) for name in schema.DATA_TABLES}
    ev, it, rv, us = (f'"{t[k]}"' for k in ("events", "items", "reviews", "users"))
    conn = store.conn

    def one(sql: str) -> tuple[Any, ...]:
        rows = conn.execute(sql).fetchall()  # fetchall: leave no half-read result open
        return tuple(rows[0]) if rows else ()

    def iso(v: Any) -> str | None:
        return None if v is None else v.isoformat()

    all_tables = [
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
    ]
    counts = {name: store.count(name) for name in all_tables}
    by_type = dict(
        conn.execute(
            f"SELECT event_type, count(*) FROM {ev} GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    funnel_rows = dict(
        (r[0], (int(r[1]), int(r[2])))
        for r in conn.execute(
            f"SELECT event_type, count(*), count(DISTINCT user_id) FROM {ev} "
            f"WHERE event_type IN {tuple(FUNNEL)} GROUP BY 1"
        ).fetchall()
    )
    stages = []
    prev: tuple[int, int] | None = None
    for step in FUNNEL:
        n_ev, n_us = funnel_rows.get(step, (0, 0))
        stages.append(
            {
                "stage": step,
                "events": n_ev,
                "users": n_us,
                "event_ratio": (n_ev / prev[0]) if prev and prev[0] else None,
                "user_ratio": (n_us / prev[1]) if prev and prev[1] else None,
            }
        )
        prev = (n_ev, n_us)

    n_users_all = one(
        f"SELECT count(*) FROM (SELECT user_id FROM {us} UNION SELECT user_id FROM {ev} "
        f"UNION SELECT user_id FROM {rv})"
    )[0]
    n_items_all = one(
        f"SELECT count(*) FROM (SELECT item_id FROM {it} UNION SELECT item_id FROM {ev} "
        f"WHERE item_id IS NOT NULL UNION SELECT item_id FROM {rv})"
    )[0]
    pu, pi, pairs = one(
        f"""SELECT count(DISTINCT user_id), count(DISTINCT item_id), count(*) FROM (
            SELECT user_id, item_id FROM {ev} WHERE item_id IS NOT NULL
            UNION SELECT user_id, item_id FROM {rv})"""
    )
    sessions = one(f"SELECT count(DISTINCT session_id) FROM {ev}")[0]
    n_ordinal = one(f"SELECT count(*) FILTER (WHERE ts_ordinal) FROM {ev}")[0]
    ev_min, ev_max = one(f"SELECT min(timestamp), max(timestamp) FROM {ev} WHERE NOT ts_ordinal")
    rv_min, rv_max = one(f"SELECT min(timestamp), max(timestamp) FROM {rv}")
    it_min, it_max = one(f"SELECT min(first_seen), max(last_seen) FROM {it}")
    us_min, us_max = one(f"SELECT min(signup_date), max(signup_date) FROM {us}")
    cells = pu * pi
    density = pairs / cells if cells else 0.0
    quarantine = (
        [
            {"target": r[0], "reason": r[1], "count": int(r[2]), "example": r[3]}
            for r in conn.execute(
                f"""SELECT target, {_REASON_CLASS_SQL} AS cls, count(*), min(reason)
                FROM quarantine GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"""
            ).fetchall()
        ]
        if "quarantine" in all_tables
        else []
    )
    return {
        "tables": dict(t),
        "clean": use_clean,
        "counts": counts,
        "events_by_type": {k: int(v) for k, v in by_type.items()},
        "funnel": stages,
        "users": int(n_users_all),
        "items": int(n_items_all),
        "catalogue_items": counts.get(t["items"], 0),
        "sessions": int(sessions),
        "interaction_matrix": {
            "users": int(pu),
            "items": int(pi),
            "pairs": int(pairs),
            "density": density,
            "sparsity": 1.0 - density if cells else None,
        },
        "time_range": {
            "events": {
                "min": iso(ev_min),
                "max": iso(ev_max),
                "ordinal_events": int(n_ordinal or 0),
            },
            "reviews": {"min": iso(rv_min), "max": iso(rv_max)},
            "items": {"first_seen": iso(it_min), "last_seen": iso(it_max)},
            "users": {"signup_min": iso(us_min), "signup_max": iso(us_max)},
        },
        "quarantine": {"total": sum(q["count"] for q in quarantine), "by_reason": quarantine},
    }


__all__ = [
    "DEFAULT_WEIGHTS",
    "EVENT_CODE",
    "EVENT_TYPES",
    "FUNNEL",
    "INTERACTION_TYPES",
    "Dataset",
    "DatasetError",
    "Ratings",
    "stats",
]
