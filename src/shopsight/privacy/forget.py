"""Right to be forgotten: remove every trace of one user from the store, caches and artefacts.

:func:`forget_users` (:func:`forget_user` for one) matches a user only as the **value** of an
id field (the raw id and, with the key at hand, its pseudonym), never as a substring: with
numeric ids, user ``414`` is not item ``414``. It works in passes, driven by a journal so that
a crash never leaves a half-forgotten user:

0. **Journal**: ``<store>.forget/<request>.json`` (folder 0700, file 0600) names the ids and
   the paths to purge; any journal left by an interrupted run is replayed first, and removed
   once its run is complete. Every pass below is idempotent, so a replay finishes the work.
1. **Store** (one transaction, with the audit row): tables are discovered from DuckDB's
   catalogue; rows whose user column (``user_id``, ``user``, ``*_user_id``...) holds the user
   are deleted; raw records (``raw``, ``*_raw``: quarantine) are parsed (JSON, or delimited
   fields) and deleted when a field equals the id; JSON text (``cleaning_log`` examples) loses
   the records whose user key holds the id.
2. **Files**, rewritten row by row, never deleted, file modes kept: the live-event spool
   (``<store>.spool``); the feature cache, through :meth:`FeatureCache.forget` (vectors of texts
   only this user wrote) and its tables; every path given (model folders: the user's row of
   the id map becomes a tombstone, their vectors are zeroed and their histories emptied, i.e.
   folded out, and the model still loads; persona folders: their rows; HTML reports: their
   page, links and map label; Parquet / JSON / JSONL / CSV / safetensors / npz: rows whose user
   field holds the id). A file that names the id where no user field can be told apart is left
   as is and listed under ``unhandled``.
3. **Audit** ``privacy_audit``: time, a random request id, tables and row counts, file counts
   and *no* id or hash of it (a hash of a guessable id re-identifies it).
4. **Store file rewrite**: DuckDB keeps deleted rows' bytes until the file is rewritten, so the
   database is copied into a fresh file that atomically replaces the old one.

:func:`forget_served` is what the server's ``POST /admin/forget/{user}`` runs: the same, over
the store's feature cache, spool and every model folder the server uses (personas included).
A trained model still carries the user's influence in its item-side parameters until it is
retrained; fold-out removes the per-user state (see docs/privacy.md).
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import os
import re
import stat
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shopsight.data.pseudonym import (
    META_KEY,
    Pseudonymizer,
    PseudonymKeyError,
    is_pseudonym,
    load_key,
)
from shopsight.data.store import Store, StoreError, fetch_one
from shopsight.errors import InputError

__all__ = [
    "AUDIT_TABLE",
    "audit_log",
    "fold_out_artifact",
    "forget_served",
    "forget_user",
    "forget_users",
    "identities",
    "journal_dir",
    "residual_matches",
    "rewrite_store",
]

AUDIT_TABLE = "privacy_audit"
TOMBSTONE = ""  # keeps a model's id map aligned with its factor rows
_USER_COLUMN = re.compile(
    r"^(user|user_?id|customer|customer_?id|visitor_?id|member_?id|reviewer_?id|uid)$|_user_?id$",
    re.IGNORECASE,
)
# Keys whose value is a list of user ids (or a mapping keyed by user id).
_USER_LIST_KEY = re.compile(
    r"^(users|user_?ids|members|member_?ids|customers|customer_?ids)$", re.IGNORECASE
)
_DELIMITED = {".csv", ".tsv", ".txt", ".dat", ".data", ".base", ".test", ".inter"}


# -- who is being forgotten --------------------------------------------------------------------
def identities(
    store: Store | None, user_id: str, pseudonymizer: Pseudonymizer | None = None
) -> list[str]:
    """The strings that identify ``user_id``: the id itself and its pseudonym (key at hand).

    A pseudonymised store cannot be searched for a raw id without its key: that is refused.
    """
    ids = [user_id]
    pz = pseudonymizer
    if pz is None and not is_pseudonym(user_id):
        try:
            pz = Pseudonymizer(load_key(create=False))
        except PseudonymKeyError:
            pz = None
    marked = store is not None and store.get_meta(META_KEY) is not None
    if pz is None:
        if marked and not is_pseudonym(user_id):
            raise PseudonymKeyError(
                f"{store.path if store else ''}: store is pseudonymised; forgetting raw id "
                "needs its key (SHOPSIGHT_PSEUDONYM_KEY or SHOPSIGHT_PSEUDONYM_KEY_FILE)"
            )
        return ids
    if store is not None and marked and pz.key_id != store.get_meta(META_KEY):
        raise PseudonymKeyError(f"{store.path}: pseudonymised with another key than the one set")
    if not is_pseudonym(user_id):
        ids.append(pz(user_id))
    return ids


# -- matching by value ------------------------------------------------------------------------
def _is_user_key(key: object) -> bool:
    return isinstance(key, str) and bool(_USER_COLUMN.search(key))


def _names(value: object, ids: set[str]) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) in ids


def _scrub_json(value: Any, ids: set[str]) -> tuple[Any, bool]:
    """``value`` without the records whose user field holds one of ``ids``.

    Only user fields count (``user_id: "414"``, ``users: ["414"]``, ``users: {"414": ..}``):
    an item ``"414"`` in a list of items, or a key ``"1"`` of some mapping, is not the user.
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for k, v in value.items():
            if _is_user_key(k) and _names(v, ids):
                out[k] = None
                changed = True
            elif _USER_LIST_KEY.match(str(k)) and isinstance(v, list):
                kept = [x for x in v if not _names(x, ids)]
                changed |= len(kept) != len(v)
                nv, c = _scrub_json(kept, ids)
                out[k] = nv
                changed |= c
            elif _USER_LIST_KEY.match(str(k)) and isinstance(v, dict):
                sub = {kk: vv for kk, vv in v.items() if kk not in ids}
                changed |= len(sub) != len(v)
                nv, c = _scrub_json(sub, ids)
                out[k] = nv
                changed |= c
            else:
                nv, c = _scrub_json(v, ids)
                out[k] = nv
                changed |= c
        return out, changed
    if isinstance(value, list):
        items: list[Any] = []
        changed = False
        for v in value:
            if isinstance(v, dict) and _record_names(v, ids):
                changed = True
                continue
            nv, c = _scrub_json(v, ids)
            items.append(nv)
            changed |= c
        return items, changed
    return value, False


def _record_names(record: dict[str, Any], ids: set[str]) -> bool:
    return any(_is_user_key(k) and _names(v, ids) for k, v in record.items())


_RAW_DELIMITERS = ("\t", " | ", "::", ",", ";", "|")


def _raw_names_user(text: str | None, ids: set[str]) -> bool:
    """Whether a raw record (a JSON object or a delimited line) has a field equal to an id.

    A JSON record is matched on its user fields only; a delimited line has no names, so any
    field equal to the id counts (a quarantined line naming the id is removed with it).
    """
    if not text:
        return False
    s = text.strip()
    if s[:1] in "{[":
        try:
            parsed = json.loads(s)
        except ValueError:
            parsed = None
        if parsed is not None:
            return _scrub_json([parsed], ids)[1]
    for delim in _RAW_DELIMITERS:
        if delim in s:
            try:
                fields = (
                    next(csv.reader(io.StringIO(s), delimiter=delim)) if len(delim) == 1 else []
                )
            except (csv.Error, StopIteration):
                fields = []
            if len(delim) > 1 or not fields:
                fields = s.split(delim)
            return any(f.strip().strip('"') in ids for f in fields)
    return s.strip('"') in ids


# -- the store ----------------------------------------------------------------------------------
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(store: Store) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(schema, table, [(column, type)]) of every persistent table of the store's database."""
    db = fetch_one(store.conn, "SELECT current_database()")
    assert db is not None
    rows = store.conn.execute(
        """SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
        WHERE database_name = ? AND NOT internal ORDER BY schema_name, table_name, column_index""",
        [db[0]],
    ).fetchall()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for sch, tab, col, typ in rows:
        out.setdefault((sch, tab), []).append((col, typ))
    views = {
        (s, v)
        for s, v in store.conn.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ?", [db[0]]
        ).fetchall()
    }
    return [(s, t, cols) for (s, t), cols in out.items() if (s, t) not in views]


def _column_roles(cols: list[tuple[str, str]]) -> tuple[list[str], list[str], list[str]]:
    """(user columns, raw-record columns, other text columns) among a table's VARCHAR columns.

    Raw-record columns are every text column of a table that keeps raw text (a quarantine row
    describes one raw record, and its reason may quote the id) except paths (``source``) and
    table names (``target``).
    """
    text = [c for c, t in cols if t == "VARCHAR"]
    user_cols = [c for c in text if _USER_COLUMN.search(c)]
    raw_cols = [c for c in text if c == "raw" or c.endswith("_raw")]
    token_cols = raw_cols
    if raw_cols:
        token_cols = [c for c in text if c not in user_cols and c not in ("source", "target")]
    other = [c for c in text if c not in user_cols and c not in token_cols]
    return user_cols, token_cols, other


_REASON_ID = re.compile(r"^[a-z_]*user_id: (.*?) (already stored|repeated) with different content")


def _text_hits(
    store: Store,
    name: str,
    cols: list[str],
    ids: list[str],
    json_only: bool,
    has_target: bool = False,
) -> Iterator[tuple[int, str, str]]:
    """(rowid, column, text) of text cells that may name an id (a cheap ``contains`` filter).

    In a table of raw records with a ``target`` (quarantine), records meant for a table that
    holds no user (``items``) cannot name one: an item ``414`` is not user ``414``.
    """
    if not cols:
        return
    for c in cols:
        needles = [json.dumps(i) for i in ids] if json_only else ids
        cond = " OR ".join(f"contains({_q(c)}, ?)" for _ in needles)
        if has_target:
            cond = f"({cond}) AND target IN ('events', 'reviews', 'users')"
        rows = store.conn.execute(
            f"SELECT rowid, {_q(c)} FROM {name} WHERE {cond}", needles
        ).fetchall()
        for rowid, val in rows:
            yield int(rowid), c, str(val)


def _raw_cell_names(col: str, text: str, ids: set[str]) -> bool:
    if col == "reason":
        m = _REASON_ID.match(text)
        return bool(m and m.group(1) in ids)
    return _raw_names_user(text, ids)


def _forget_in_store(store: Store, ids: list[str]) -> dict[str, int]:
    """Delete/scrub the user's rows in every table (caller holds the transaction)."""
    removed: dict[str, int] = {}
    conn = store.conn
    wanted = set(ids)
    marks = ", ".join("?" for _ in ids)
    for sch, tab, cols in _tables(store):
        if tab == AUDIT_TABLE:
            continue
        name = f"{_q(sch)}.{_q(tab)}" if sch != "main" else _q(tab)
        label = tab if sch == "main" else f"{sch}.{tab}"
        user_cols, raw_cols, other = _column_roles(cols)
        n = 0
        if user_cols:
            conds = " OR ".join(f"{_q(c)} IN ({marks})" for c in user_cols)
            row = fetch_one(
                conn, f"DELETE FROM {name} WHERE {conds}", [i for _ in user_cols for i in ids]
            )
            n += int(row[0]) if row else 0
        has_target = any(c == "target" for c, _ in cols)
        doomed = {
            rowid
            for rowid, c, text in _text_hits(store, name, raw_cols, ids, False, has_target)
            if _raw_cell_names(c, text, wanted)
        }
        for rowid in sorted(doomed):
            conn.execute(f"DELETE FROM {name} WHERE rowid = ?", [rowid])
        n += len(doomed)
        # JSON text in the other columns (e.g. cleaning_log examples): scrub user records.
        for rowid, c, text in list(_text_hits(store, name, other, ids, True)):
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            scrubbed, changed = _scrub_json(parsed, wanted)
            if changed:
                conn.execute(
                    f"UPDATE {name} SET {_q(c)} = ? WHERE rowid = ?", [json.dumps(scrubbed), rowid]
                )
                n += 1
        if n:
            removed[label] = n
    return removed


def residual_matches(store: Store, ids: Sequence[str]) -> dict[str, int]:
    """Cells still naming the user as a value, per ``table.column`` (empty after a forget)."""
    out: dict[str, int] = {}
    wanted = set(ids)
    marks = ", ".join("?" for _ in ids)
    for sch, tab, cols in _tables(store):
        name = f"{_q(sch)}.{_q(tab)}" if sch != "main" else _q(tab)
        user_cols, raw_cols, other = _column_roles(cols)
        for c in user_cols:
            row = fetch_one(
                store.conn, f"SELECT count(*) FROM {name} WHERE {_q(c)} IN ({marks})", list(ids)
            )
            if row and row[0]:
                out[f"{tab}.{c}"] = int(row[0])
        has_target = any(c == "target" for c, _ in cols)
        for _, c, text in _text_hits(store, name, raw_cols, list(ids), False, has_target):
            if _raw_cell_names(c, text, wanted):
                out[f"{tab}.{c}"] = out.get(f"{tab}.{c}", 0) + 1
        for _, c, text in _text_hits(store, name, other, list(ids), True):
            with contextlib.suppress(ValueError):
                if _scrub_json(json.loads(text), wanted)[1]:
                    out[f"{tab}.{c}"] = out.get(f"{tab}.{c}", 0) + 1
    return out


def _user_texts(store: Store, ids: Sequence[str]) -> set[str]:
    """Free texts only this user wrote (search queries, reviews): their cached vectors are
    theirs. Texts another user also wrote are shared, and stay."""
    texts: set[str] = set()
    marks = ", ".join("?" for _ in ids)
    for table, cols in (("events", ("query",)), ("reviews", ("summary", "text"))):
        tabs = [t for t in (table, f"{table}_clean") if store.has_table(t)]
        for c in cols:
            for t in tabs:
                rows = store.conn.execute(
                    f"""SELECT DISTINCT {_q(c)} FROM {_q(t)} a
                    WHERE user_id IN ({marks}) AND {_q(c)} IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM {_q(t)} b WHERE b.{_q(c)} = a.{_q(c)}
                                      AND b.user_id NOT IN ({marks}))""",
                    [*ids, *ids],
                ).fetchall()
                texts.update(str(r[0]) for r in rows if str(r[0]).strip())
    return texts


def _write_audit(store: Store, entry: dict[str, Any]) -> None:
    store.conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
            done_at TIMESTAMP NOT NULL, request_id VARCHAR NOT NULL, action VARCHAR NOT NULL,
            users BIGINT NOT NULL, rows_removed BIGINT NOT NULL, tables VARCHAR NOT NULL,
            files VARCHAR NOT NULL)"""
    )
    done = fetch_one(
        store.conn, f"SELECT 1 FROM {AUDIT_TABLE} WHERE request_id = ?", [entry["request_id"]]
    )
    if done is not None:
        return
    store.conn.execute(
        f"INSERT INTO {AUDIT_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            entry["at"],
            entry["request_id"],
            entry["action"],
            entry["users"],
            entry["rows_removed"],
            json.dumps(entry["tables"]),
            json.dumps(entry["files"]),
        ],
    )


def audit_log(store: Store) -> list[dict[str, Any]]:
    """Every recorded deletion, oldest first (no ids in it by construction)."""
    if not store.has_table(AUDIT_TABLE):
        return []
    rows = store.conn.execute(
        f"""SELECT done_at, request_id, action, users, rows_removed, tables, files
        FROM {AUDIT_TABLE} ORDER BY done_at"""
    ).fetchall()
    return [
        {
            "at": r[0].isoformat(),
            "request_id": r[1],
            "action": r[2],
            "users": int(r[3]),
            "rows_removed": int(r[4]),
            "tables": json.loads(r[5]),
            "files": json.loads(r[6]),
        }
        for r in rows
    ]


def rewrite_store(store: Store) -> int:
    """Copy the database into a fresh file and swap it in: deleted rows' bytes are gone.

    Returns the new file size. The old file is replaced atomically (``os.replace``), with its
    mode; a crash before that leaves the old file and a stray ``*.rewrite`` file.
    """
    if store.read_only:
        raise StoreError(f"{store.path}: opened read-only; forgetting rewrites the store")
    path = store.path.resolve()
    mode = stat.S_IMODE(path.stat().st_mode)
    tmp = path.with_name(path.name + ".rewrite")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    db = fetch_one(store.conn, "SELECT current_database()")
    assert db is not None
    store.conn.execute("CHECKPOINT")
    lit = str(tmp).replace("'", "''")
    store.conn.execute(f"ATTACH '{lit}' AS _shopsight_rewrite")
    try:
        store.conn.execute(f"COPY FROM DATABASE {_q(db[0])} TO _shopsight_rewrite")
    finally:
        store.conn.execute("DETACH _shopsight_rewrite")
    store.conn.close()
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)  # checkpointed above; stale now
    store.reopen()
    return path.stat().st_size


# -- files --------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path``'s content atomically, keeping its mode."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=".tmp-forget-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _parquet_bytes(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _csr_groups(arrays: dict[str, np.ndarray], n_rows: int) -> list[tuple[str, list[str]]]:
    """Per-user sparse blocks: ``<base>.indptr`` / ``<base>_indptr`` of ``n_rows + 1`` entries,
    with the arrays of the same base whose length is the number of stored entries."""
    out: list[tuple[str, list[str]]] = []
    for key, arr in arrays.items():
        for suffix in (".indptr", "_indptr"):
            if not key.endswith(suffix) or arr.ndim != 1 or len(arr) != n_rows + 1:
                continue
            base = key[: -len(suffix)]
            nnz = int(arr[-1]) if len(arr) else 0
            parts = [
                k
                for k, a in arrays.items()
                if k != key
                and (k.startswith(base + ".") or k.startswith(base + "_"))
                and a.ndim >= 1
                and a.shape[0] == nnz
            ]
            out.append((key, parts))
    return out


def fold_out_artifact(model_dir: Path, ids: Iterable[str]) -> dict[str, Any] | None:
    """Drop the users' state from a model folder written by ``save_artifact``.

    The user's entry in ``users.parquet`` becomes a tombstone (indices stay aligned), their
    rows of per-user arrays (``*user*``: factors, embeddings) are zeroed and their rows of
    per-user sparse blocks (seen items, histories) emptied; they are cold users afterwards and
    the folder still loads. Returns None when the folder is not a model artifact or does not
    know the users.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import load_file, save_file

    d = Path(model_dir)
    users_file, weights, cfg_file = d / "users.parquet", d / "model.safetensors", d / "config.json"
    if not (users_file.exists() and weights.exists() and cfg_file.exists()):
        return None
    wanted = set(ids)
    users = pq.read_table(users_file).column("user_id").to_pylist()
    rows = [i for i, u in enumerate(users) if u in wanted]
    if not rows:
        return None
    config = json.loads(cfg_file.read_text())
    n_users = int(config.get("n_users", len(users)))
    arrays = dict(load_file(str(weights)))
    touched: list[str] = []
    idx = np.asarray(rows, dtype=np.int64)
    in_block: set[str] = set()
    for key, parts in _csr_groups(arrays, n_users):
        indptr = arrays[key].astype(np.int64)
        lengths = np.diff(indptr)
        keep = np.repeat(~np.isin(np.arange(n_users), idx), lengths)
        lengths[idx] = 0
        arrays[key] = np.concatenate([[0], np.cumsum(lengths)]).astype(arrays[key].dtype)
        for part in parts:
            arrays[part] = np.ascontiguousarray(arrays[part][keep])
        in_block.update([key, *parts])
        touched.append(key)
    for key in list(arrays):
        arr = arrays[key]
        if key in in_block or "user" not in key.lower() or arr.ndim < 1:
            continue
        if arr.shape[0] == n_users:
            arr = arr.copy()
            arr[idx] = 0
            arrays[key] = arr
            touched.append(key)
    mode = stat.S_IMODE(weights.stat().st_mode)
    tmp = weights.with_name(".tmp-forget-model.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    os.chmod(tmp, mode)
    os.replace(tmp, weights)
    gone = set(rows)
    kept_users = [TOMBSTONE if i in gone else u for i, u in enumerate(users)]
    _atomic_write(
        users_file, _parquet_bytes(pa.table({"user_id": pa.array(kept_users, pa.string())}))
    )
    privacy = config.setdefault("privacy", {})
    privacy["folded_out_users"] = int(privacy.get("folded_out_users", 0)) + len(rows)
    privacy["retrain_recommended"] = True
    _atomic_write(cfg_file, (json.dumps(config, indent=2, default=str) + "\n").encode())
    return {"path": str(d), "action": "folded_out", "users": len(rows), "arrays": touched}


def _purge_delimited(path: Path, ids: set[str]) -> int | None:
    """Drop lines whose user column holds the id; None when the header names no user column
    (a headerless file cannot tell a user ``414`` from an item ``414``)."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.splitlines(keepends=True)
    if not lines:
        return 0
    first = lines[0]
    delim = "::" if "::" in first else max(("\t", ",", ";", "|"), key=first.count)

    def fields(line: str) -> list[str]:
        if delim == "::":
            return line.rstrip("\r\n").split("::")
        return next(csv.reader(io.StringIO(line), delimiter=delim), [])

    cols = [i for i, h in enumerate(fields(first)) if _USER_COLUMN.search(h.strip().strip('"'))]
    if not cols:
        return None
    kept, dropped = [first], 0
    for line in lines[1:]:
        f = [x.strip() for x in fields(line)]
        if any(f[i] in ids for i in cols if i < len(f)):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        _atomic_write(path, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return dropped


def _purge_jsonl(path: Path, ids: set[str]) -> int | None:
    kept, dropped, opaque = [], 0, False
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(
        keepends=True
    ):
        try:
            rec = json.loads(line)
        except ValueError:
            kept.append(line)
            opaque |= bool(line.strip())
            continue
        if isinstance(rec, dict) and _record_names(rec, ids):
            dropped += 1
            continue
        new, changed = _scrub_json(rec, ids)
        if changed:
            dropped += 1
            kept.append(json.dumps(new) + "\n")
        else:
            kept.append(line)
    if dropped:
        _atomic_write(path, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return None if opaque and not dropped else dropped


def _purge_json(path: Path, ids: set[str]) -> int:
    data = json.loads(path.read_text(encoding="utf-8"))
    new, changed = _scrub_json(data, ids)
    if changed:
        _atomic_write(path, json.dumps(new).encode())
    return int(changed)


def _purge_parquet(path: Path, ids: set[str]) -> int | None:
    """Drop rows whose user column holds the id; None when no column is a user column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = [c for c in table.column_names if _USER_COLUMN.search(c)]
    if not cols:
        return None
    value_set = pa.array(sorted(ids), pa.string())
    mask = pa.array(np.zeros(table.num_rows, bool))
    for name in cols:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        mask = pc.or_(mask, pc.fill_null(pc.is_in(col, value_set=value_set), False))
    n = int(pc.sum(mask).as_py() or 0)
    if n:
        _atomic_write(path, _parquet_bytes(table.filter(pc.invert(mask))))
    return n


def _drop_aligned(arrays: dict[str, np.ndarray], listed: list[Any], ids: set[str]) -> int:
    keep = np.array([str(x) not in ids for x in listed], bool)
    for name, arr in arrays.items():
        if arr.ndim and arr.shape[0] == len(listed):
            arrays[name] = np.ascontiguousarray(arr[keep])
    return int((~keep).sum())


def _purge_safetensors(path: Path, ids: set[str]) -> int | None:
    """Rows named in a user-id list of the metadata (aligned with the tensors' first axis)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    for key, raw in meta.items():
        if not (_USER_LIST_KEY.match(key) or _USER_COLUMN.search(key)):
            continue
        with contextlib.suppress(ValueError):
            listed = json.loads(raw)
            if isinstance(listed, list) and any(_names(x, ids) for x in listed):
                n = _drop_aligned(tensors, listed, ids)
                meta[key] = json.dumps([x for x in listed if not _names(x, ids)])
                mode = stat.S_IMODE(path.stat().st_mode)
                tmp = path.with_name(".tmp-forget-" + path.name)
                save_file(tensors, str(tmp), metadata=meta)
                os.chmod(tmp, mode)
                os.replace(tmp, path)
                return n
    return None


def _purge_npz(path: Path, ids: set[str]) -> int | None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, arr in arrays.items():
        if (_USER_LIST_KEY.match(key) or _USER_COLUMN.search(key)) and arr.dtype.kind in "UOSi":
            listed = [x.decode() if isinstance(x, bytes) else x for x in arr.tolist()]
            if any(_names(x, ids) for x in listed):
                n = _drop_aligned(arrays, listed, ids)
                buf = io.BytesIO()
                np.savez(buf, **arrays)  # type: ignore[arg-type]
                _atomic_write(path, buf.getvalue())
                return n
    return None


def _purge_html(path: Path, ids: set[str]) -> int | None:
    """A report page: drop the user's page (any element carrying ``data-user="<id>"``), links to
    it and its search option, and blank the id where it labels a point of a chart."""
    text = path.read_text(encoding="utf-8")
    n = 0
    for i in ids:
        e = re.escape(html.escape(i, quote=True))
        block = re.compile(
            rf'<(section|article|div|tr|li)\b[^>]*\bdata-user="{e}"[^>]*>.*?</\1>', re.DOTALL
        )
        for pattern in (
            block,
            re.compile(rf'<a\b[^>]*href="#user-{e}"[^>]*>.*?</a>\s?', re.DOTALL),
            re.compile(rf'<option\b[^>]*value="{e}"[^>]*>(</option>)?'),
        ):
            text, k = pattern.subn("", text)
            n += k
        label = re.compile(rf'([\[,]\s*)"{re.escape(json.dumps(i)[1:-1])}"(\s*[,\]])')
        text, k = label.subn(r'\1""\2', text)
        n += k
    if n:
        _atomic_write(path, text.encode("utf-8"))
    return n


def _mentions(path: Path, ids: set[str]) -> bool:
    """Whether the file's bytes hold an id as a whole token (a cheap pre-check, and the test for
    what is left after a rewrite)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    for i in ids:
        b = i.encode()
        if re.search(rb"(?<![A-Za-z0-9_\-])" + re.escape(b) + rb"(?![A-Za-z0-9_\-])", data):
            return True
    return False


def _compressed(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".safetensors", ".npz")


def _purge_file(path: Path, ids: set[str]) -> dict[str, Any] | None:
    suffix = path.suffix.lower()
    # Parquet pages are compressed, so bytes say nothing: those are always read as data.
    if not _compressed(path) and not _mentions(path, ids):
        return None
    n: int | None = None
    try:
        if suffix == ".parquet":
            n = _purge_parquet(path, ids)
        elif suffix == ".json":
            n = _purge_json(path, ids)
        elif suffix in (".jsonl", ".ndjson"):
            n = _purge_jsonl(path, ids)
        elif suffix == ".safetensors":
            n = _purge_safetensors(path, ids)
        elif suffix == ".npz":
            n = _purge_npz(path, ids)
        elif suffix in (".html", ".htm"):
            n = _purge_html(path, ids)
        elif suffix in _DELIMITED:
            n = _purge_delimited(path, ids)
    except (ValueError, OSError, UnicodeDecodeError, RuntimeError) as exc:
        return {"path": str(path), "action": "unhandled", "records": 0, "why": str(exc)[:200]}
    if n:
        return {"path": str(path), "action": "rewritten", "records": n}
    if n is None and not _compressed(path) and _mentions(path, ids):
        # Named where no user field can be told apart (free text, a headerless table, a binary):
        # never deleted (it may be anything), reported.
        return {"path": str(path), "action": "unhandled", "records": 0}
    return None


def _is_personas_dir(d: Path) -> bool:
    return all((d / f).exists() for f in ("users.parquet", "affinities.parquet", "meta.json"))


def _purge_paths(paths: Iterable[Path], ids: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            models = [p, *(x for x in sorted(p.rglob("*")) if x.is_dir())]
            folded: set[Path] = set()
            for d in models:
                r = fold_out_artifact(d, ids)
                if r is not None:
                    out.append(r)
                    folded.update({d / "users.parquet", d / "model.safetensors", d / "config.json"})
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                if f in folded or f.name.startswith(".tmp-"):
                    continue
                r = _purge_file(f, ids)
                if r is not None:
                    out.append(r)
        elif p.is_file():
            r = _purge_file(p, ids)
            if r is not None:
                out.append(r)
    return out


def _forget_cache(root: Path, texts: Iterable[str]) -> int:
    from shopsight.features.cache import FeatureCache
    from shopsight.features.text import clean_text

    contents = {v.encode("utf-8") for t in texts for v in (t, t.strip(), clean_text(t)) if v}
    return FeatureCache(root).forget(contents) if contents else 0


# -- journal ------------------------------------------------------------------------------------
def journal_dir(store_path: str | Path) -> Path:
    """Where pending forget requests wait (``<store>.forget``, owner-only)."""
    p = Path(store_path)
    return p.with_name(p.name + ".forget")


def _write_journal(store: Store, entry: dict[str, Any]) -> Path:
    d = journal_dir(store.path)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    path = d / f"{entry['request_id']}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(entry, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _pending(store: Store) -> list[Path]:
    d = journal_dir(store.path)
    return sorted(d.glob("*.json"), key=lambda p: p.stat().st_mtime) if d.is_dir() else []


def _run(store: Store, job: dict[str, Any], rewrite: bool) -> dict[str, Any]:
    """Carry out one journalled request (fresh or replayed); every step is idempotent."""
    ids: list[str] = job["ids"]
    wanted = set(ids)
    at = datetime.fromisoformat(job["at"])
    with store.transaction():
        tables = _forget_in_store(store, ids)
        _write_audit(
            store,
            {
                "at": at,
                "request_id": job["request_id"],
                "action": "forget",
                "users": job["users"],
                "rows_removed": sum(tables.values()),
                "tables": tables,
                "files": {},
            },
        )
    files: list[dict[str, Any]] = []
    spool = Path(str(store.path) + ".spool")
    if spool.is_dir():
        files += _purge_paths([spool], wanted)
    cache_vectors = 0
    cache = job.get("feature_cache")
    if cache and Path(cache).exists():
        cache_vectors = _forget_cache(Path(cache), job.get("texts", []))
        files += _purge_paths([Path(cache)], wanted)
    files += _purge_paths([Path(p) for p in job.get("paths", [])], wanted)
    summary = {
        a: sum(f["action"] == a for f in files) for a in ("rewritten", "folded_out", "unhandled")
    }
    summary["cache_vectors"] = cache_vectors
    store.conn.execute(
        f"UPDATE {AUDIT_TABLE} SET files = ? WHERE request_id = ? AND files = '{{}}'",
        [json.dumps(summary), job["request_id"]],
    )
    residual = residual_matches(store, ids)
    size = rewrite_store(store) if rewrite else None
    return {
        "tables": tables,
        "files": files,
        "cache_vectors_removed": cache_vectors,
        "residual": residual,
        "store_bytes": size,
    }


def _finish(store: Store, path: Path) -> None:
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty


def replay_pending(store: Store) -> list[str]:
    """Finish forget requests a crash interrupted (their journals); returns their request ids."""
    done: list[str] = []
    for path in _pending(store):
        try:
            job = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # torn write: the request never started (its journal is written first)
        _run(store, job, rewrite=True)
        _finish(store, path)
        done.append(str(job["request_id"]))
    return done


# -- entry points -------------------------------------------------------------------------------
def forget_users(
    store: Store,
    user_ids: Sequence[str],
    *,
    feature_cache: Path | None = None,
    extra_paths: Sequence[Path] = (),
    pseudonymizer: Pseudonymizer | None = None,
    rewrite: bool = True,
) -> dict[str, Any]:
    """Forget several users at once (one audit row, one file rewrite). See :func:`forget_user`."""
    if store.read_only:
        raise StoreError(f"{store.path}: opened read-only; forgetting deletes rows")
    wanted = [u.strip() for u in user_ids if u and u.strip()]
    if not wanted:
        raise InputError("forget: no user id given")
    ids: list[str] = []
    for u in wanted:
        ids += [i for i in identities(store, u, pseudonymizer) if i not in ids]
    replayed = replay_pending(store)
    at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    job = {
        "request_id": uuid.uuid4().hex,
        "at": at.isoformat(),
        "users": len(wanted),
        "ids": ids,
        "texts": sorted(_user_texts(store, ids)) if feature_cache is not None else [],
        "feature_cache": str(feature_cache) if feature_cache is not None else None,
        "paths": [str(Path(p)) for p in extra_paths],
    }
    journal = _write_journal(store, job)
    result = _run(store, job, rewrite)
    _finish(store, journal)
    files = result["files"]
    found = bool(result["tables"]) or any(f["action"] != "unhandled" for f in files)
    return {
        "request_id": job["request_id"],
        "at": job["at"],
        "users": len(wanted),
        "identities_searched": len(ids),
        "found": found or result["cache_vectors_removed"] > 0,
        "tables": result["tables"],
        "rows_removed": sum(result["tables"].values()),
        "residual": result["residual"],
        "files": files,
        "unhandled": [f["path"] for f in files if f["action"] == "unhandled"],
        "cache_vectors_removed": result["cache_vectors_removed"],
        "store_rewritten": rewrite,
        "store_bytes": result["store_bytes"],
        "replayed": replayed,
    }


def forget_user(
    store: Store,
    user_id: str,
    *,
    feature_cache: Path | None = None,
    extra_paths: Sequence[Path] = (),
    pseudonymizer: Pseudonymizer | None = None,
    rewrite: bool = True,
) -> dict[str, Any]:
    """Remove every trace of ``user_id`` from the store, the feature cache, the store's live
    spool and ``extra_paths`` (model folders, persona folders, reports, exports).

    ``user_id`` is a raw id (its pseudonym is forgotten too when the key is set; required for a
    pseudonymised store) or a pseudonym. Returns a JSON-ready report: rows per table
    (``tables``), what happened to each file (``files``), ``found`` (False for an unknown or
    already forgotten id: nothing changed but the audit row), ``residual`` cells still naming
    the user (empty unless a table keeps the id in a column we cannot recognise),
    ``unhandled`` files naming the id where no user field can be told apart (left as they are),
    and the audit ``request_id``. The store's connection is reopened when the file is rewritten
    (``rewrite=True``, the default: without it the deleted bytes stay in the file).
    """
    return forget_users(
        store,
        [user_id],
        feature_cache=feature_cache,
        extra_paths=extra_paths,
        pseudonymizer=pseudonymizer,
        rewrite=rewrite,
    )


def forget_served(
    store: Store,
    user_id: str,
    *,
    store_path: str | Path,
    model_dirs: Sequence[str | Path],
    pseudonymizer: Pseudonymizer | None = None,
) -> dict[str, Any]:
    """What the server's forget route runs: :func:`forget_user` over the store, its feature
    cache and live spool, and every model folder it serves (with its ``personas/`` and
    ``predictor/``), persisted so that after a restart the model does not know the user and
    their persona is gone. The caller reloads its model afterwards."""
    from shopsight.features.pipeline import features_dir

    cache = features_dir(store_path)
    dirs = list(dict.fromkeys(Path(d) for d in model_dirs if Path(d).exists()))
    return forget_user(
        store,
        user_id,
        feature_cache=cache if cache.exists() else None,
        extra_paths=dirs,
        pseudonymizer=pseudonymizer,
    )
