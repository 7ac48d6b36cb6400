"""The contract between format readers and the ingest engine.

A reader turns one input file into one or more :class:`StagedSource` objects. Each source holds
rows for one canonical table in *staging* columns: values already parsed to their canonical type
where the reader could (NULL where it could not), the raw text beside every parsed field so a
failure can be explained, and ``line``/``raw``/``error`` for lineage and quarantine. The engine
then validates every row in SQL, quarantines the bad ones with a reason, deduplicates by content
key, and appends the rest, all inside one transaction per file.

A source is either a SQL ``SELECT`` (for files DuckDB can scan itself, the fast path) or an
iterator of Arrow record batches (for formats that need Python parsing), never both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from shopsight.errors import DataError

_S = pa.string()
_TS = pa.timestamp("us")

# Staging columns per target table. ``*_raw`` columns keep the unparsed text of a typed field.
STAGING: dict[str, pa.Schema] = {
    "events": pa.schema(
        [
            ("user_id", _S),
            ("item_id", _S),
            ("event_type", _S),
            ("timestamp", _TS),
            ("timestamp_raw", _S),
            ("ts_ordinal", pa.bool_()),
            ("session_id", _S),
            ("query", _S),
            ("value", pa.float64()),
            ("value_raw", _S),
            ("line", pa.int64()),
            ("raw", _S),
            ("error", _S),
        ]
    ),
    "items": pa.schema(
        [
            ("item_id", _S),
            ("title", _S),
            ("description", _S),
            ("brand", _S),
            ("category", _S),
            ("price", pa.float64()),
            ("price_raw", _S),
            ("currency", _S),
            ("image", _S),
            ("attributes", _S),
            ("first_seen", _TS),
            ("last_seen", _TS),
            ("line", pa.int64()),
            ("raw", _S),
            ("error", _S),
        ]
    ),
    "reviews": pa.schema(
        [
            ("user_id", _S),
            ("item_id", _S),
            ("rating", pa.float64()),
            ("rating_raw", _S),
            ("summary", _S),
            ("text", _S),
            ("timestamp", _TS),
            ("timestamp_raw", _S),
            ("helpful_votes", pa.int64()),
            ("verified", pa.bool_()),
            ("line", pa.int64()),
            ("raw", _S),
            ("error", _S),
        ]
    ),
    "users": pa.schema(
        [
            ("user_id", _S),
            ("age_band", _S),
            ("gender", _S),
            ("region", _S),
            ("signup_date", _TS),
            ("attributes", _S),
            ("line", pa.int64()),
            ("raw", _S),
            ("error", _S),
        ]
    ),
}


@dataclass
class StagedSource:
    """Rows bound for one canonical table, as produced by a reader.

    ``sql`` must select exactly the staging columns of ``target`` (any order, by name).
    ``batches`` must yield record batches with exactly those columns (use :func:`batch_from_rows`).
    ``rating_range`` bounds ratings (reviews) and ``rate``/``review`` event values.
    ``primary``: this source's rows are the file's records and count toward the file's totals;
    a non-primary source (e.g. users derived from a ratings file) is reported per table only.
    ``reviews_as_events``: each stored review also becomes a ``review`` event carrying its rating.
    ``scan``: a table function call (e.g. ``read_csv(...)``) the engine copies, in file order,
    into a temporary table before running ``sql``, which reads it as ``{scan}``: the scan's
    columns plus ``_ordinal``, the row's 0-based position among the rows read. Numbering with
    ``row_number() OVER ()`` instead puts a window over the whole scan, which made staging 10M
    rows slower than this copy does (``bench/ingest_profile.py``).
    ``rejects``: ``scan`` reads CSV with ``store_rejects=true, rejects_table='{rejects_table}',
    rejects_scan='{rejects_scan}'`` (placeholders the engine fills with fresh names); lines DuckDB
    rejects for their structure go to quarantine, and ``line`` (a data-row ordinal + the header
    offset) is corrected for the rejected lines before it.
    """

    target: str
    sql: str | None = None
    scan: str | None = None
    batches: Iterable[pa.RecordBatch] | None = None
    rating_range: tuple[float, float] = (0.0, 5.0)
    primary: bool = True
    reviews_as_events: bool = False
    rejects: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target not in STAGING:
            raise ValueError(f"unknown target table {self.target!r}")
        if (self.sql is None) == (self.batches is None):
            raise ValueError("a StagedSource needs exactly one of sql or batches")
        if self.scan is not None and (self.sql is None or "{scan}" not in self.sql):
            raise ValueError("a StagedSource with a scan needs sql that reads {scan}")


def empty_row(target: str) -> dict[str, object]:
    return {name: None for name in STAGING[target].names}


def batch_from_rows(target: str, rows: list[dict[str, object]]) -> pa.RecordBatch:
    """Build a staging batch from dicts; missing keys are NULL, unknown keys are an error."""
    schema = STAGING[target]
    cols: dict[str, list[object]] = {name: [] for name in schema.names}
    for row in rows:
        extra = set(row) - set(cols)
        if extra:
            raise KeyError(f"not a staging column of {target}: {sorted(extra)}")
        for name in schema.names:
            cols[name].append(row.get(name))
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def batched(
    target: str, rows: Iterable[dict[str, object]], size: int = 50_000
) -> Iterator[pa.RecordBatch]:
    """Stream dict rows as staging batches of at most ``size`` rows (bounded memory)."""
    buf: list[dict[str, object]] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= size:
            yield batch_from_rows(target, buf)
            buf = []
    if buf:
        yield batch_from_rows(target, buf)


class FormatError(DataError):
    """The input cannot be read at all (missing, unreadable, or not the format claimed).

    The message is one line naming the file and the problem; the CLI prints it without a
    traceback and exits non-zero. Nothing is written to the store.
    """
