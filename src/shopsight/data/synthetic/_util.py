"""Small vectorised helpers: ids, times, Arrow string columns, CSV writing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .world import EVENTS_HEADER, FloatArray, IntArray

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _ids(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _a(word: str) -> str:
    """The indefinite article for ``word``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return out


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_utc_array(seconds: IntArray) -> pa.Array:
    """ISO-8601 UTC strings for epoch seconds, fast: a date lookup joined to a time lookup.

    (Arrow's strftime runs at ~0.5 M rows/s here; two table lookups and a join are ~20x faster.)
    """
    days = seconds // 86400
    tod = seconds - days * 86400
    d0 = int(days.min()) if len(days) else 0
    n_days = int(days.max()) - d0 + 1 if len(days) else 1
    day_strs = np.datetime_as_string(
        (np.arange(n_days, dtype=np.int64) + d0).astype("datetime64[D]"), unit="D"
    )
    day_lut = pa.array([f"{s}T" for s in day_strs])
    tod_lut = pa.array([f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)])  # fmt: skip
    return pc.binary_join_element_wise(
        day_lut.take(pa.array(days - d0)), tod_lut.take(pa.array(tod)), ""
    )


def _write_events_table(writer_sink: Any, table: pa.Table) -> None:
    # quoting "none": no event field contains a comma, quote or newline (checked upstream), and
    # an unquoted file is what most exports look like. Nulls become empty fields.
    pacsv.write_csv(
        table,
        writer_sink,
        pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=65536),
    )


def _events_table(
    user: pa.Array,
    item: pa.Array,
    etype: pa.Array,
    ts: pa.Array,
    session: pa.Array,
    query: pa.Array,
    value: pa.Array,
) -> pa.Table:
    return pa.table(
        [user, item, etype, ts, session, query, value],
        names=list(EVENTS_HEADER),
    )


def _take(lut: Sequence[str] | pa.Array, idx: IntArray) -> pa.Array:
    """``lut[idx]`` as a string array, null where ``idx < 0``."""
    arr = lut if isinstance(lut, pa.Array) else pa.array(list(lut), pa.string())
    return arr.take(pa.array(idx, mask=idx < 0))
