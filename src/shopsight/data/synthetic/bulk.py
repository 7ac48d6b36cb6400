"""Bulk events for ingest benchmarks: plausible rows at tens of millions, no planted structure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopsight.errors import InputError

from ._util import _epoch, _events_table, _ids, _iso_utc_array, _take, _write_events_table
from .world import CATEGORIES, EVENTS_HEADER, STYLES

# --------------------------------------------------------------------------------------------
# Bulk events for ingest benchmarks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkEventsSummary:
    """What :func:`write_events_csv` wrote: ``rows`` data lines (header excluded)."""

    path: Path
    rows: int
    duplicates: int  # rows that exactly repeat an earlier row
    invalid: int  # rows that validation must reject
    invalid_by_kind: dict[str, int]

    @property
    def valid_unique(self) -> int:
        return self.rows - self.duplicates - self.invalid


_BULK_TYPES = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "favorite", "share", "rate", "search")  # fmt: skip
_BULK_P = np.array([0.6, 0.18, 0.06, 0.015, 0.025, 0.02, 0.005, 0.01, 0.085])
_BULK_INVALID = ("bad_timestamp", "unknown_event_type", "negative_value", "missing_user_id")


def write_events_csv(
    path: str | Path,
    n_events: int,
    seed: int = 0,
    n_users: int = 100_000,
    n_items: int = 20_000,
    *,
    start_date: str = "2025-01-01",
    days: int = 90,
    duplicate_fraction: float = 0.001,
    invalid_fraction: float = 0.001,
    chunk_size: int = 1_000_000,
) -> BulkEventsSummary:
    """Write ``n_events`` rows of plausible events in the generic ``events.csv`` format, fast.

    Vectorised and chunked (memory is bounded by ``chunk_size``): about 10 M rows in well under
    a minute on one core. Users and items follow Zipf-like popularity, rows come in sessions of a
    few seconds-apart events, and the file is in time order chunk by chunk. A
    ``duplicate_fraction`` of rows exactly repeat an earlier row of the same chunk and an
    ``invalid_fraction`` carry one defect each (bad timestamp, unknown type, negative value,
    missing user id). Deterministic in ``seed``.
    """
    if n_events < 0:
        raise InputError(f"n_events={n_events}: expected >= 0")
    if n_users < 1 or n_items < 1:
        raise InputError(f"n_users={n_users}, n_items={n_items}: expected >= 1 each")
    for name, frac in (("duplicate_fraction", duplicate_fraction), ("invalid_fraction", invalid_fraction)):  # fmt: skip
        if not 0.0 <= frac < 0.25:
            raise InputError(f"{name}={frac}: expected a fraction in [0, 0.25)")
    if chunk_size < 1000:
        raise InputError(f"chunk_size={chunk_size}: expected >= 1000")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = _epoch(date.fromisoformat(start_date))
    span = days * 86400
    n_chunks = max(1, math.ceil(n_events / chunk_size))
    streams = np.random.SeedSequence(seed).spawn(n_chunks + 1)
    base_rng = np.random.default_rng(streams[-1])
    user_lut = pa.array(_ids("u", n_users))
    item_lut = pa.array(_ids("i", n_items))
    type_lut = pa.array([*_BULK_TYPES, "teleport"])
    # Popularity: a fixed random permutation of Zipf-ish weights (sampled via CDF).
    user_cdf = np.cumsum(base_rng.permutation(1.0 / np.arange(1, n_users + 1) ** 0.8))
    user_cdf /= user_cdf[-1]
    item_cdf = np.cumsum(base_rng.permutation(1.0 / np.arange(1, n_items + 1) ** 0.9))
    item_cdf /= item_cdf[-1]
    item_price = np.round(base_rng.lognormal(3.5, 0.8, n_items), 2) + 0.01
    words = [w for s in STYLES for w in s.words[:2]]
    nouns = [n for c in CATEGORIES for n in c.nouns]
    query_lut = pa.array([f"{w} {n}" for w in words for n in nouns])
    type_cdf = np.cumsum(_BULK_P / _BULK_P.sum())
    search_code = _BULK_TYPES.index("search")
    purchase_code = _BULK_TYPES.index("purchase")
    rate_code = _BULK_TYPES.index("rate")

    total_dup = 0
    by_kind = dict.fromkeys(_BULK_INVALID, 0)
    session_base = 0
    with out.open("wb") as fh:
        fh.write((",".join(EVENTS_HEADER) + "\n").encode())
        for c in range(n_chunks):
            rng = np.random.default_rng(streams[c])
            n = min(chunk_size, n_events - c * chunk_size)
            # Sessions of geometric length (mean ~8) until n rows are covered.
            lens = rng.geometric(1 / 8.0, n // 4 + 16)
            lens = lens[: int(np.searchsorted(np.cumsum(lens), n)) + 1]
            lens[-1] -= int(lens.sum()) - n
            lens = lens[lens > 0]
            n_s = len(lens)
            sess = np.repeat(np.arange(n_s, dtype=np.int64), lens)
            lo = t0 + span * c // n_chunks
            hi = t0 + span * (c + 1) // n_chunks
            s_start = np.sort(rng.integers(lo, max(lo + 1, hi - 3600), n_s))
            gap = 1 + rng.geometric(1 / 20.0, n)
            first = np.r_[True, sess[1:] != sess[:-1]]
            gap[first] = 0
            cs = np.cumsum(gap)
            fi = np.flatnonzero(first)
            ts = s_start[sess] + cs - np.repeat(cs[fi], lens)
            user = np.searchsorted(user_cdf, rng.random(n_s), side="right")[sess]
            item = np.searchsorted(item_cdf, rng.random(n), side="right").astype(np.int64)
            etype = np.searchsorted(type_cdf, rng.random(n), side="right").astype(np.int64)
            np.minimum(etype, len(_BULK_TYPES) - 1, out=etype)
            np.minimum(item, n_items - 1, out=item)
            np.minimum(user, n_users - 1, out=user)
            is_search = etype == search_code
            item[is_search] = -1
            query = np.where(is_search, rng.integers(0, len(query_lut), n), -1)
            value = np.full(n, np.nan)
            pur = etype == purchase_code
            value[pur] = item_price[item[pur]]
            rt = etype == rate_code
            value[rt] = rng.integers(1, 6, int(rt.sum()))
            # Time order inside the chunk (sessions interleave); (session, ts) stays unique.
            order = np.lexsort((sess, ts))
            ts, sess, user, item = ts[order], sess[order], user[order], item[order]
            etype, query, value = etype[order], query[order], value[order]

            # Defects on distinct rows; duplicates copy a clean row that is not itself changed.
            n_dup = round(duplicate_fraction * n)
            n_bad = round(invalid_fraction * n)
            touched = rng.choice(n, size=min(n, n_dup + n_bad), replace=False)
            dup_rows, bad_rows = touched[:n_dup], touched[n_dup:]
            clean = np.ones(n, dtype=bool)
            clean[touched] = False
            src = rng.integers(0, n, n_dup)
            for _ in range(100):
                redo = ~clean[src]
                if not redo.any():
                    break
                src[redo] = rng.integers(0, n, int(redo.sum()))
            src = src[clean[src]]
            dup_rows = dup_rows[: len(src)]
            for arr in (ts, sess, user, item, etype, query, value):
                arr[dup_rows] = arr[src]
            kind = np.arange(len(bad_rows)) % len(_BULK_INVALID)
            bad_ts = bad_rows[kind == 0]
            etype[bad_rows[kind == 1]] = len(_BULK_TYPES)  # "teleport"
            neg = bad_rows[kind == 2]
            etype[neg] = purchase_code
            item[neg] = np.maximum(item[neg], 0)
            query[neg] = -1
            value[neg] = -item_price[item[neg]]
            user[bad_rows[kind == 3]] = -1
            for k, name in enumerate(_BULK_INVALID):
                by_kind[name] += int(np.sum(kind == k))
            total_dup += len(dup_rows)

            ts_str = _iso_utc_array(ts)
            if len(bad_ts):
                mask = np.zeros(n, dtype=bool)
                mask[bad_ts] = True
                ts_str = pc.if_else(pa.array(mask), pa.scalar("not-a-timestamp"), ts_str)
            sess_str = pc.binary_join_element_wise(
                "s", pc.utf8_lpad(pa.array(sess + session_base).cast(pa.string()), 9, "0"), ""
            )
            table = _events_table(
                _take(user_lut, user.astype(np.int64)),
                _take(item_lut, item),
                _take(type_lut, etype),
                ts_str,
                sess_str,
                _take(query_lut, query.astype(np.int64)),
                pa.array(value, pa.float64(), from_pandas=True).cast(pa.string()),
            )
            _write_events_table(fh, table)
            session_base += n_s
    return BulkEventsSummary(
        path=out,
        rows=n_events,
        duplicates=total_dup,
        invalid=sum(by_kind.values()),
        invalid_by_kind=by_kind,
    )
