"""Pseudonymised exports and reports, and converting a raw-id store to pseudonyms.

Everything that leaves the store (exports, persona reports, dashboards) shows pseudonyms by
default: :func:`pseudonymize_table` and :func:`pseudonymize_records` replace the values of
user-id columns/keys, :func:`export_table` writes a store table to Parquet or CSV through
them. :func:`pseudonymize_store` rewrites a store ingested with raw ids (every table's user
columns, raw ids in quarantined raw text and in cleaning-log examples) and records the key's
fingerprint, after which every ingest into it pseudonymises too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from shopsight.data.pseudonym import (
    META_KEY,
    Pseudonymizer,
    PseudonymKeyError,
    is_pseudonym,
    mark_store_pseudonymized,
)
from shopsight.data.store import Store, StoreError, fetch_one
from shopsight.errors import InputError

__all__ = [
    "export_table",
    "pseudonymize_records",
    "pseudonymize_store",
    "pseudonymize_table",
    "user_columns",
]

_USER_COLUMN = re.compile(
    r"^(user|user_?id|customer|customer_?id|visitor_?id|member_?id|reviewer_?id|uid)$|_user_?id$",
    re.IGNORECASE,
)


def user_columns(names: Iterable[str]) -> list[str]:
    """The names that hold user ids (``user_id``, ``customer_id``, ``*_user_id``...)."""
    return [n for n in names if _USER_COLUMN.search(n)]


def pseudonymize_table(
    table: pa.Table, pseudonymizer: Pseudonymizer, columns: Sequence[str] | None = None
) -> pa.Table:
    """``table`` with its user-id columns (auto-detected unless given) pseudonymised."""
    cols = list(columns) if columns is not None else user_columns(table.column_names)
    for c in cols:
        if c not in table.column_names:
            raise InputError(f"pseudonymize: no column {c!r} (have {table.column_names})")
        values = table.column(c).to_pylist()
        new = pa.array([None if v is None else pseudonymizer(str(v)) for v in values], pa.string())
        table = table.set_column(table.column_names.index(c), c, new)
    return table


def pseudonymize_records(
    records: Iterable[Mapping[str, Any]], pseudonymizer: Pseudonymizer
) -> list[dict[str, Any]]:
    """Records (JSON-ready dicts) with every user-id key's value pseudonymised, recursively."""

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: (
                    pseudonymizer(str(v))
                    if _USER_COLUMN.search(str(k)) and isinstance(v, str | int) and v != ""
                    else walk(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return [walk(r) for r in records]


# Columns holding text copied from raw records or describing them (quarantined lines, the
# reasons quoting their values, cleaning-log examples): left out of exports unless asked for.
_TEXT_COLUMN = re.compile(r"^(raw|.*_raw|reason|detail)$")
# Content keys hashed over the user id (items' keys are not): see shopsight.data.keys.
_USER_KEYS = ("event_key", "review_key", "user_key")


def export_table(
    store: Store,
    table: str,
    path: str | Path,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    raw_ids: bool = False,
    include_text: bool = False,
) -> dict[str, Any]:
    """Write ``table`` to ``path`` (``.parquet`` or ``.csv``) with nothing that gives back a
    raw user id without the key:

    - user-id columns hold pseudonyms;
    - content keys hashed over the user id (``event_key``, ``review_key``, ``user_key``) are
      re-keyed with a keyed hash unless the store's keys are already over pseudonyms (equal
      keys stay equal, so the export's tables still join);
    - raw-record text (``raw``, ``*_raw``, ``reason``, ``detail``) is left out, or with
      ``include_text`` kept with every known raw id replaced by its pseudonym.

    ``raw_ids=True`` exports the table as stored (a pseudonymised store holds pseudonyms anyway).
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from shopsight.data.pseudonym import keys_are_pseudonymised

    if not store.has_table(table):
        raise StoreError(f"{store.path}: no table {table!r}")
    out = Path(path)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"{out}: export format must be .parquet or .csv")
    data = store.table(table)
    cols = user_columns(data.column_names)
    done = store.get_meta(META_KEY) is not None
    rekeyed: list[str] = []
    text_cols = [c for c in data.column_names if _TEXT_COLUMN.match(c)]
    dropped: list[str] = []
    if not raw_ids:
        pz = pseudonymizer
        if cols and not done:
            pz = pz or Pseudonymizer()
            data = pseudonymize_table(data, pz, cols)
        if not keys_are_pseudonymised(store):
            for c in (c for c in _USER_KEYS if c in data.column_names):
                pz = pz or Pseudonymizer()
                new = pz.keyed_u64(data.column(c).to_pylist(), f"export:{c}")
                data = data.set_column(
                    data.column_names.index(c), c, pa.array(new, data.schema.field(c).type)
                )
                rekeyed.append(c)
        if text_cols and not include_text:
            data = data.drop_columns(text_cols)
            dropped = text_cols
        elif text_cols and not done:
            pz = pz or Pseudonymizer()
            data = _redact_arrow_text(data, text_cols, _known_raw_ids(store), pz)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        pacsv.write_csv(data, out)
    else:
        pq.write_table(data, out)
    return {
        "table": table,
        "path": str(out),
        "rows": data.num_rows,
        "user_columns": cols,
        "pseudonymized": bool(cols) and (done or not raw_ids),
        "keys_rekeyed": rekeyed,
        "text_columns_left_out": dropped,
    }


def _known_raw_ids(store: Store) -> set[str]:
    known: set[str] = set()
    for t in ("events", "reviews", "users"):
        if store.has_table(t):
            rows = store.conn.execute(f'SELECT DISTINCT user_id FROM "{t}"').fetchall()
            known.update(str(r[0]) for r in rows if r[0] and not is_pseudonym(str(r[0])))
    return known


def _id_replacer(known: set[str], pz: Pseudonymizer) -> Any:
    """A function replacing every known raw id (as a whole token, or as the value under a user
    key in JSON text) by its pseudonym."""
    if not known:
        return lambda v: v
    alternation = "|".join(re.escape(k) for k in sorted(known, key=len, reverse=True))
    token = re.compile(rf"(?<![A-Za-z0-9_\-])({alternation})(?![A-Za-z0-9_\-])")

    def replace(value: str | None) -> str | None:
        if value is None:
            return None
        if value[:1] in "{[":
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if parsed is not None:
                value = json.dumps(pseudonymize_records([{"_": parsed}], pz)[0]["_"])
        return token.sub(lambda m: pz(m.group(1)), value)

    return replace


def _redact_arrow_text(
    data: pa.Table, columns: Sequence[str], known: set[str], pz: Pseudonymizer
) -> pa.Table:
    replace = _id_replacer(known, pz)
    for c in columns:
        new = pa.array([replace(v) for v in data.column(c).to_pylist()], pa.string())
        data = data.set_column(data.column_names.index(c), c, new)
    return data


def pseudonymize_store(store: Store, pseudonymizer: Pseudonymizer) -> dict[str, Any]:
    """Replace raw user ids by pseudonyms in every table of a store (one transaction).

    Idempotent: pseudonyms are never pseudonymised again, so a second run changes nothing.
    Afterwards the store records the key's fingerprint and later ingests pseudonymise too.
    Deleted raw ids still sit in the file's old blocks until the file is rewritten, which is
    done here (see :func:`shopsight.privacy.forget.rewrite_store`).
    """
    from duckdb.func import ARROW, SPECIAL

    from shopsight.data.keys import rekey_store
    from shopsight.privacy.forget import _column_roles, _q, _tables, rewrite_store

    if store.read_only:
        raise StoreError(f"{store.path}: opened read-only; pseudonymising rewrites it")
    recorded = store.get_meta(META_KEY)
    if recorded is not None and recorded != pseudonymizer.key_id:
        raise PseudonymKeyError(f"{store.path}: already pseudonymised with another key")
    conn = store.conn
    fn = "_shopsight_pseudonym_store"

    def pseudo(col: Any) -> Any:
        return pa.array(
            [None if v is None or v == "" else pseudonymizer(v) for v in col.to_pylist()],
            pa.string(),
        )

    changed: dict[str, int] = {}
    # Raw ids known to the store, for redacting free text (quarantine raw records, logs).
    known: set[str] = set()
    for t in ("events", "reviews", "users"):
        if store.has_table(t):
            rows = conn.execute(f'SELECT DISTINCT user_id FROM "{t}"').fetchall()
            known.update(str(r[0]) for r in rows if r[0] and not str(r[0]).startswith("p_"))
    conn.create_function(fn, pseudo, ["VARCHAR"], "VARCHAR", type=ARROW, null_handling=SPECIAL)
    try:
        with store.transaction():
            for sch, tab, cols in _tables(store):
                name = f"{_q(sch)}.{_q(tab)}" if sch != "main" else _q(tab)
                user_cols, token_cols, other = _column_roles(cols)
                n = 0
                for c in user_cols:
                    row = fetch_one(
                        conn,
                        f"UPDATE {name} SET {_q(c)} = {fn}({_q(c)}) "
                        f"WHERE {_q(c)} IS NOT NULL AND NOT regexp_full_match({_q(c)}, "
                        "'p_[0-9a-f]{24}')",
                    )
                    n += int(row[0]) if row else 0
                n += _redact_text_columns(store, name, token_cols, other, known, pseudonymizer)
                if n:
                    changed[tab] = n
            # Keys hashed over raw ids would give the ids back to anyone hashing candidates:
            # recompute them over the pseudonyms, as an ingest into this store now computes them
            # (so re-ingesting the original file still finds every row already stored).
            rekeyed = rekey_store(conn, ("events", "reviews", "users"))
            mark_store_pseudonymized(store, pseudonymizer, rekeyed=True)
    finally:
        conn.remove_function(fn)
    size = rewrite_store(store)
    return {
        "tables": changed,
        "rows_changed": sum(changed.values()),
        "keys_recomputed": rekeyed,
        "key_id": pseudonymizer.key_id,
        "store_bytes": size,
    }


def _redact_text_columns(
    store: Store,
    name: str,
    token_cols: Sequence[str],
    json_cols: Sequence[str],
    known: set[str],
    pz: Pseudonymizer,
) -> int:
    """Raw ids inside free text: whole tokens in raw records (quarantine), values under user
    keys in JSON text (cleaning-log examples). Other text (titles, reviews) is left alone."""
    if not known:
        return 0
    alternation = "|".join(re.escape(k) for k in sorted(known, key=len, reverse=True))
    token = re.compile(rf"(?<![A-Za-z0-9_\-])({alternation})(?![A-Za-z0-9_\-])")
    n = 0
    for c, is_token in [*((c, True) for c in token_cols), *((c, False) for c in json_cols)]:
        where = f"{_quote(c)} IS NOT NULL"
        if not is_token:
            where += f" AND (starts_with({_quote(c)}, '{{') OR starts_with({_quote(c)}, '['))"
        rows = store.conn.execute(f"SELECT rowid, {_quote(c)} FROM {name} WHERE {where}").fetchall()
        for rowid, val in rows:
            if is_token:
                new = token.sub(lambda m: pz(m.group(1)), val)
            else:
                try:
                    parsed = json.loads(val)
                except ValueError:
                    continue
                new = json.dumps(pseudonymize_records([{"_": parsed}], pz)[0]["_"])
                if json.loads(new) == parsed:
                    continue
            if new != val:
                store.conn.execute(
                    f"UPDATE {name} SET {_quote(c)} = ? WHERE rowid = ?", [new, rowid]
                )
                n += 1
    return n


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
