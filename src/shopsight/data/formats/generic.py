"""Generic events / items / reviews / users files: CSV (or TSV), Parquet and JSON lines.

Columns are matched to the canonical schema by name (after ``--map canonical=column``), so a
shop's own export loads without code. CSV and Parquet are scanned by DuckDB itself (the fast
path: no Python per row); JSON lines are parsed in Python so a broken line is quarantined with
its line number instead of failing the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path, PurePath

from shopsight.data.formats import ReadOptions, read_head, register
from shopsight.data.formats._util import (
    clip,
    iter_lines,
    parse_bool,
    parse_int,
    parse_number,
    parse_timestamp,
)
from shopsight.data.staging import STAGING, FormatError, StagedSource, batched, empty_row

# Short or common names accepted for canonical columns without an explicit --map.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "user", "userid", "customer_id", "visitorid", "visitor_id", "uid"),
    "item_id": ("item_id", "item", "itemid", "product_id", "productid", "sku", "asin", "iid"),
    "event_type": ("event_type", "event", "type", "action", "behavior", "behaviour"),
    "timestamp": ("timestamp", "ts", "time", "event_time", "datetime", "date"),
    "session_id": ("session_id", "session", "sessionid"),
    "query": ("query", "search_query", "search"),
    "value": ("value", "price_paid", "amount"),
    "title": ("title", "name", "product_name"),
    "description": ("description", "desc"),
    "brand": ("brand",),
    "category": ("category", "category_path", "categories"),
    "price": ("price",),
    "currency": ("currency",),
    "image": ("image", "image_path", "image_url", "img"),
    "attributes": ("attributes", "attrs"),
    "first_seen": ("first_seen",),
    "last_seen": ("last_seen",),
    "rating": ("rating", "stars", "score", "overall"),
    "summary": ("summary", "review_title", "headline"),
    "text": ("text", "review_text", "body", "review"),
    "helpful_votes": ("helpful_votes", "helpful", "votes"),
    "verified": ("verified", "verified_purchase"),
    "age_band": ("age_band", "age"),
    "gender": ("gender", "sex"),
    "region": ("region", "country", "zip", "location"),
    "signup_date": ("signup_date", "signup", "registered"),
}

# What each table needs at the least, to tell the target from the header.
REQUIRED: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "event_type", "timestamp"),
    "reviews": ("user_id", "item_id", "rating"),
    "items": ("item_id",),
    "users": ("user_id",),
}
_TYPED = {  # canonical typed column -> its raw twin in staging
    "timestamp": "timestamp_raw",
    "value": "value_raw",
    "price": "price_raw",
    "rating": "rating_raw",
}
_TIMESTAMP_COLS = ("timestamp", "first_seen", "last_seen", "signup_date")


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def resolve_columns(header: list[str], options: ReadOptions) -> dict[str, str]:
    """canonical name -> file column, from explicit --map first, then synonyms."""
    lower = {h.strip().lower(): h for h in header}
    out: dict[str, str] = {}
    for canon, col in options.mapping.items():
        if col not in header and col.lower() not in lower:
            raise FormatError(
                f"--map {canon}={col}: no column {col!r} in the file (columns: {', '.join(header)})"
            )
        out[canon] = col if col in header else lower[col.lower()]
    taken = set(out.values())
    for canon, names in SYNONYMS.items():
        if canon in out:
            continue
        for n in names:
            if n in lower and lower[n] not in taken:
                out[canon] = lower[n]
                taken.add(lower[n])
                break
    return out


def guess_target(path: PurePath, cols: dict[str, str], options: ReadOptions) -> str:
    if options.target:
        if options.target not in STAGING:
            raise FormatError(f"--target {options.target!r}: expected one of {', '.join(STAGING)}")
        return options.target
    name = path.name.lower()
    for t in ("events", "reviews", "items", "users"):
        if t in name or (t == "items" and ("catalog" in name or "product" in name)):
            return t
    have = set(cols) | set(options.defaults)
    if {"event_type", "timestamp"} <= have:
        return "events"
    if {"rating", "text"} <= have or ({"rating", "user_id", "item_id"} <= have):
        return "reviews"
    if "item_id" in have and have & {"title", "price", "category", "description", "brand"}:
        return "items"
    if "user_id" in have and have & {"age_band", "gender", "region", "signup_date"}:
        return "users"
    raise FormatError(
        f"{path}: cannot tell whether this is events, items, reviews or users from its columns "
        f"({', '.join(cols.values()) or 'none recognised'}); pass --target or --map"
    )


def check_required(path: PurePath, target: str, cols: dict[str, str], options: ReadOptions) -> None:
    missing = [c for c in REQUIRED[target] if c not in cols and c not in options.defaults]
    if missing:
        raise FormatError(
            f"{path}: missing column(s) {', '.join(missing)} for {target} "
            f"(map them with --map {missing[0]}=COLUMN)"
        )


def timestamp_sql(expr: str) -> str:
    """Parse ISO-8601 (offsets honoured, naive read as UTC), epoch seconds or epoch milliseconds.

    Whole-second UTC (``...Z``) and naive stamps, nearly every row of a typical log, take the
    cheap ``TIMESTAMP`` cast: their shape leaves no room for an offset, which that cast would
    ignore. Anything else, or anything that cast rejects, takes the full path. The full path sits
    inside ``CASE`` so DuckDB does not hoist its repeated sub-expressions into a projection that
    would evaluate them for every row.
    """
    shapes = " OR ".join(
        f"{expr} LIKE '{p}'"
        for p in ("____-__-__T__:__:__Z", "____-__-__ __:__:__", "____-__-__T__:__:__")
    )
    fast = f"CASE WHEN {shapes} THEN try_cast({expr} AS TIMESTAMP) END"
    iso = f"timezone('UTC', try_cast({expr} AS TIMESTAMPTZ))"
    d = f"try_cast(trim({expr}) AS DOUBLE)"
    epoch = f"""(CASE WHEN {d} IS NULL OR isnan({d}) OR isinf({d}) OR abs({d}) > 1e15 THEN NULL
             WHEN abs({d}) >= 1e11 THEN make_timestamp(CAST({d} * 1000 AS BIGINT))
             ELSE make_timestamp(CAST({d} * 1000000 AS BIGINT)) END)"""
    full = f"coalesce({iso}, {epoch}, timezone('UTC', try_cast(trim({expr}) AS TIMESTAMPTZ)))"
    return f"coalesce({fast}, CASE WHEN {expr} IS NOT NULL THEN {full} END)"


def number_sql(expr: str) -> str:
    """A plain number, or one written like ``$1,299.00``; NULL when it is neither."""
    return (
        f"coalesce(try_cast({expr} AS DOUBLE), "
        f"try_cast(replace(replace(trim({expr}), '$', ''), ',', '') AS DOUBLE))"
    )


def staging_select(
    target: str,
    cols: dict[str, str],
    options: ReadOptions,
    raw_sql: str,
    line_sql: str = "CAST(_ordinal + 2 AS BIGINT)",  # 0-based data row + 1 + the header line
) -> str:
    """The staging columns of ``target`` as SQL over a scan with typed-as-text columns ``cols``
    (canonical -> column), defaults, the raw record ``raw_sql`` and the line ``line_sql``."""
    sel: dict[str, str] = {}

    def src(canon: str) -> str:
        if canon in cols:
            return f"CAST({_ident(cols[canon])} AS VARCHAR)"
        if canon in options.defaults:
            return _q(options.defaults[canon])
        return "CAST(NULL AS VARCHAR)"

    for f in STAGING[target]:
        name = f.name
        if name in ("line", "raw", "error"):
            continue
        if name.endswith("_raw"):
            continue
        if name in _TIMESTAMP_COLS:
            sel[name] = timestamp_sql(src(name))
        elif name in ("value", "price", "rating"):
            sel[name] = number_sql(src(name))
        elif name == "helpful_votes":
            sel[name] = f"try_cast(replace({src(name)}, ',', '') AS BIGINT)"
        elif name == "verified":
            sel[name] = f"try_cast({src(name)} AS BOOLEAN)"
        elif name == "ts_ordinal":
            sel[name] = "false"
        else:
            sel[name] = src(name)
        if name in _TYPED:
            sel[_TYPED[name]] = src(name)
    sel["line"] = line_sql
    sel["raw"] = raw_sql
    sel["error"] = "CAST(NULL AS VARCHAR)"
    return ", ".join(f"{v} AS {k}" for k, v in sel.items())


class _DelimitedBase:
    priority = 90

    def _header(self, path: Path) -> tuple[list[str], str]:
        head = read_head(path).decode("utf-8", errors="replace")
        first = head.splitlines()[0] if head.strip() else ""
        if not first:
            raise FormatError(f"{path}: empty file, expected a header line")
        delim = "\t" if first.count("\t") > first.count(",") else ","
        header = next(csv.reader(io.StringIO(first), delimiter=delim))
        return [h.strip() for h in header], delim


class CsvFormat(_DelimitedBase):
    name = "csv"
    description = "generic events/items/reviews/users CSV or TSV with a header (optionally .gz)"

    def sniff(self, path: Path, head: bytes) -> bool:
        n = path.name.lower().removesuffix(".gz")
        if not n.endswith((".csv", ".tsv", ".txt")):
            return False
        try:
            header, _ = self._header(path)
        except FormatError:
            return False
        cols = resolve_columns(header, ReadOptions())
        return any(all(c in cols for c in req) for req in REQUIRED.values())

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        header, delim = self._header(path)
        cols = resolve_columns(header, options)
        target = guess_target(path, cols, options)
        check_required(path, target, cols, options)
        # The scan names columns by position: a header may repeat a name, or say ``_ordinal``.
        position = {h: f"c{i}" for i, h in reversed(list(enumerate(header)))}
        cols = {canon: position[h] for canon, h in cols.items()}
        fields = ", ".join(f"coalesce(c{i}, '')" for i in range(len(header)))
        raw_sql = f"concat_ws({_q(delim)}, {fields})"
        colspec = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header)))
        scan = (
            f"read_csv({_q(str(path))}, "
            f"header=true, auto_detect=false, columns={{{colspec}}}, delim={_q(delim)}, "
            "quote='\"', escape='\"', "
            "store_rejects=true, rejects_table='{rejects_table}', rejects_scan='{rejects_scan}', "
            "parallel=true)"
        )
        sql = f"SELECT {staging_select(target, cols, options, raw_sql)} FROM {{scan}}"
        return [StagedSource(target=target, sql=sql, scan=scan, rejects=True)]


class ParquetFormat:
    name = "parquet"
    description = "generic events/items/reviews/users Parquet file"
    priority = 80
    binary = True

    def sniff(self, path: Path, head: bytes) -> bool:
        return head[:4] == b"PAR1"

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        import pyarrow.parquet as pq

        try:
            header = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for a bad footer
            raise FormatError(f"{path}: not a readable Parquet file ({exc})") from exc
        cols = resolve_columns(header, options)
        target = guess_target(path, cols, options)
        check_required(path, target, cols, options)
        fields = ", ".join(f"{_q(h)}: {_ident(h)}" for h in header)
        raw_sql = f"to_json({{{fields}}})"
        sql = (
            f"SELECT {staging_select(target, cols, options, raw_sql)} FROM "
            f"(SELECT *, file_row_number AS _ordinal "
            f"FROM read_parquet({_q(str(path))}, file_row_number=true))"
        )
        return [StagedSource(target=target, sql=sql)]


class JsonLinesFormat:
    name = "jsonl"
    description = (
        "generic events/items/reviews/users as JSON lines, one object a line (optionally .gz)"
    )
    priority = 85

    def sniff(self, path: Path, head: bytes) -> bool:
        n = path.name.lower().removesuffix(".gz")
        if not n.endswith((".jsonl", ".ndjson", ".json")):
            return False
        first = head.split(b"\n", 1)[0].strip()
        try:
            obj = json.loads(first)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        cols = resolve_columns(list(obj), ReadOptions())
        return any(all(c in cols for c in req) for req in REQUIRED.values())

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = read_head(path).split(b"\n", 1)[0]
        try:
            keys = list(json.loads(head))
        except ValueError as exc:
            raise FormatError(f"{path}: line 1 is not a JSON object ({exc})") from exc
        cols = resolve_columns(keys, options)
        target = guess_target(path, cols, options)
        check_required(path, target, cols, options)
        rows = self._rows(path, target, cols, options)
        return [StagedSource(target=target, batches=batched(target, rows))]

    def _rows(
        self, path: Path, target: str, cols: dict[str, str], options: ReadOptions
    ) -> Iterator[dict[str, object]]:
        for line in iter_lines(path):
            if line.error is not None:
                yield {"line": line.number, "raw": line.text, "error": line.error}
                continue
            if not line.text.strip():
                continue
            try:
                obj = json.loads(line.text)
            except ValueError as exc:
                yield {
                    "line": line.number,
                    "raw": clip(line.text),
                    "error": f"json: invalid ({exc})",
                }
                continue
            if not isinstance(obj, dict):
                yield {
                    "line": line.number,
                    "raw": clip(line.text),
                    "error": "json: expected an object",
                }
                continue
            yield python_row(target, obj, cols, options, line.number, line.text)


def python_row(
    target: str,
    obj: dict[str, object],
    cols: dict[str, str],
    options: ReadOptions,
    lineno: int,
    text: str,
) -> dict[str, object]:
    """Staging row from a parsed record, by the same rules as the SQL fast path."""
    row = empty_row(target)
    names = set(STAGING[target].names)

    def get(canon: str) -> object:
        if canon in cols:
            return obj.get(cols[canon])
        return options.defaults.get(canon)

    for canon in names - {"line", "raw", "error"}:
        if canon.endswith("_raw"):
            continue
        v = get(canon)
        if canon in _TIMESTAMP_COLS:
            row[canon] = parse_timestamp(v)
        elif canon in ("value", "price", "rating"):
            row[canon] = (
                parse_number(str(v).replace("$", "").strip())
                if isinstance(v, str)
                else parse_number(v)
            )
        elif canon == "helpful_votes":
            row[canon] = parse_int(v)
        elif canon == "verified":
            row[canon] = parse_bool(v)
        elif canon == "ts_ordinal":
            row[canon] = False
        else:
            row[canon] = to_text(v)
        if f"{canon}_raw" in names:
            row[f"{canon}_raw"] = to_text(v)
    row["line"] = lineno
    row["raw"] = clip(text)
    return row


def to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


register(CsvFormat())
register(ParquetFormat())
register(JsonLinesFormat())
