"""Right to be forgotten: remove every trace of one user from the store, caches and artefacts.

:func:`forget_user` (and :func:`forget_users` for a batch) works in four passes:

1. **Store tables**, discovered from DuckDB's catalogue (so tables added later are covered):
   rows whose user column (``user_id``, ``customer_id``, ``*_user_id``... of type VARCHAR)
   holds the user are deleted; rows of raw-text columns (``raw``, ``*_raw``: quarantine) that
   contain the id as a whole token are deleted; JSON text elsewhere (``cleaning_log`` examples)
   loses the records whose user key holds the id. Both the raw id and its pseudonym are looked
   for when the pseudonymisation key is at hand (required for a pseudonymised store).
2. **Audit**: one row in ``privacy_audit`` with the time, a random request id, the tables and
   row counts, and *no* id or hash of it: a hash of a guessable id re-identifies it, and a
   keyed hash would itself be personal data kept after the user asked to be forgotten.
3. **File rewrite**: DuckDB marks deleted rows but keeps their bytes in the file (CHECKPOINT
   and VACUUM do not rewrite the blocks), so the database is copied table by table into a
   fresh file (``COPY FROM DATABASE``) that atomically replaces the old one; the store's
   connection is reopened. The test searches the file's bytes for the id afterwards.
4. **Files**: the feature cache (vectors of texts only this user wrote: search queries,
   reviews) and any ``extra_paths`` (model folders: the user's row of the id map becomes a
   tombstone, their factor rows and seen items are zeroed, i.e. folded out; JSON, JSONL, CSV,
   parquet and safetensors files are rewritten without the user; other files that still
   contain the id are deleted, as derived data).

A trained factor model still carries the user's influence in its item-side parameters until
it is retrained; fold-out only removes the per-user state (see docs/privacy.md).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shopsight.data.store import Store, StoreError, fetch_one
from shopsight.errors import InputError
from shopsight.privacy.pseudonym import (
    META_KEY,
    Pseudonymizer,
    PseudonymKeyError,
    id_pattern,
    is_pseudonym,
    load_key,
)

__all__ = [
    "AUDIT_TABLE",
    "audit_log",
    "fold_out_artifact",
    "forget_user",
    "forget_users",
    "identities",
    "rewrite_store",
]

AUDIT_TABLE = "privacy_audit"
TOMBSTONE = ""  # keeps a model's id map aligned with its factor rows
_USER_COLUMN = re.compile(
    r"^(user|user_?id|customer|customer_?id|visitor_?id|member_?id|reviewer_?id|uid)$|_user_?id$",
    re.IGNORECASE,
)
_TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".dat", ".data", ".log", ".base", ".test", ".inter"}


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


def _re2_escape(text: str) -> str:
    """Literal text for RE2: every non-alphanumeric character as ``\\x{hex}`` (RE2 rejects some
    of Python's escapes, e.g. an escaped space)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


def _token_regex(ids: Sequence[str]) -> str:
    """RE2 (DuckDB) pattern: any of ``ids`` as a whole token."""
    alt = "|".join(_re2_escape(i) for i in ids)
    return rf"(^|[^A-Za-z0-9_\-])({alt})($|[^A-Za-z0-9_\-])"


def _scrub_json(value: Any, ids: set[str]) -> tuple[Any, bool]:
    """``value`` without records that name a user in ``ids`` under a user key."""
    changed = False
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ids:
                changed = True
                continue
            if _USER_COLUMN.match(k) and isinstance(v, str) and v in ids:
                out[k] = None
                changed = True
                continue
            nv, c = _scrub_json(v, ids)
            out[k] = nv
            changed |= c
        return out, changed
    if isinstance(value, list):
        items: list[Any] = []
        for v in value:
            if isinstance(v, str) and v in ids:
                changed = True
                continue
            if isinstance(v, dict) and any(
                _USER_COLUMN.match(k) and isinstance(x, str) and x in ids for k, x in v.items()
            ):
                changed = True
                continue
            nv, c = _scrub_json(v, ids)
            items.append(nv)
            changed |= c
        return items, changed
    return value, False


def _column_roles(cols: list[tuple[str, str]]) -> tuple[list[str], list[str], list[str]]:
    """(user columns, token columns, JSON-candidate columns) among a table's VARCHAR columns.

    Token columns are searched for the id as a whole token: raw text, and every other text
    column of a table that keeps raw text (a quarantine row describes one raw record, and its
    reason may quote the id); never paths (``source``) or table names (``target``).
    """
    text = [c for c, t in cols if t == "VARCHAR"]
    user_cols = [c for c in text if _USER_COLUMN.search(c)]
    raw_cols = [c for c in text if c == "raw" or c.endswith("_raw")]
    token_cols = raw_cols
    if raw_cols:
        token_cols = [c for c in text if c not in user_cols and c not in ("source", "target")]
    other = [c for c in text if c not in user_cols and c not in token_cols]
    return user_cols, token_cols, other


def _forget_in_store(store: Store, ids: list[str]) -> dict[str, int]:
    """Delete/scrub the user's rows in every table; returns affected rows per table."""
    removed: dict[str, int] = {}
    conn = store.conn
    pattern = _token_regex(ids)
    marks = ", ".join("?" for _ in ids)
    with store.transaction():
        for sch, tab, cols in _tables(store):
            if tab == AUDIT_TABLE:
                continue
            name = f"{_q(sch)}.{_q(tab)}" if sch != "main" else _q(tab)
            label = tab if sch == "main" else f"{sch}.{tab}"
            user_cols, token_cols, other = _column_roles(cols)
            conds = [f"{_q(c)} IN ({marks})" for c in user_cols]
            params: list[Any] = [i for _ in user_cols for i in ids]
            for c in token_cols:
                conds.append(f"regexp_matches({_q(c)}, ?)")
                params.append(pattern)
            n = 0
            if conds:
                row = fetch_one(conn, f"DELETE FROM {name} WHERE {' OR '.join(conds)}", params)
                n += int(row[0]) if row else 0
            # JSON text in the other columns (e.g. cleaning_log examples): scrub user records.
            for c in other:
                hits = conn.execute(
                    f"""SELECT rowid, {_q(c)} FROM {name}
                    WHERE {" OR ".join(f"contains({_q(c)}, ?)" for _ in ids)}""",
                    [json.dumps(i) for i in ids],
                ).fetchall()
                for rowid, val in hits:
                    try:
                        parsed = json.loads(val)
                    except (TypeError, ValueError):
                        continue
                    scrubbed, changed = _scrub_json(parsed, set(ids))
                    if changed:
                        conn.execute(
                            f"UPDATE {name} SET {_q(c)} = ? WHERE rowid = ?",
                            [json.dumps(scrubbed), rowid],
                        )
                        n += 1
            if n:
                removed[label] = n
    return removed


def residual_matches(store: Store, ids: Sequence[str]) -> dict[str, int]:
    """Rows still naming the user, per ``table.column`` (empty after a complete forget)."""
    out: dict[str, int] = {}
    pattern = _token_regex(ids)
    for sch, tab, cols in _tables(store):
        name = f"{_q(sch)}.{_q(tab)}" if sch != "main" else _q(tab)
        _, token_cols, _ = _column_roles(cols)
        for c, t in cols:
            if t != "VARCHAR":
                continue
            cond = f"{_q(c)} IN ({', '.join('?' for _ in ids)})"
            params: list[Any] = list(ids)
            if c in token_cols:
                cond += f" OR regexp_matches({_q(c)}, ?)"
                params.append(pattern)
            else:
                cond += "".join(f" OR contains({_q(c)}, ?)" for _ in ids)
                params += [json.dumps(i) for i in ids]
            row = fetch_one(store.conn, f"SELECT count(*) FROM {name} WHERE {cond}", params)
            if row and row[0]:
                out[f"{tab}.{c}"] = int(row[0])
    return out


def _write_audit(store: Store, entry: dict[str, Any]) -> None:
    store.conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
            done_at TIMESTAMP NOT NULL, request_id VARCHAR NOT NULL, action VARCHAR NOT NULL,
            users BIGINT NOT NULL, rows_removed BIGINT NOT NULL, tables VARCHAR NOT NULL,
            files VARCHAR NOT NULL)"""
    )
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

    Returns the new file size. The old file is replaced atomically (``os.replace``); a crash
    before that leaves the old file and a stray ``*.rewrite`` file, never a half store.
    """
    if store.read_only:
        raise StoreError(f"{store.path}: opened read-only; forgetting rewrites the store")
    path = store.path.resolve()
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
    os.replace(tmp, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)  # checkpointed above; stale now
    store.reopen()
    return path.stat().st_size


# -- files --------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-forget-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _contains(path: Path, needles: Sequence[bytes]) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(n in data for n in needles)


def fold_out_artifact(model_dir: Path, ids: Iterable[str]) -> dict[str, Any] | None:
    """Drop the users' state from a model folder written by ``save_artifact``.

    The user's entry in ``users.parquet`` becomes a tombstone (indices stay aligned), their
    rows of per-user arrays (``*user*``: factors, embeddings) are zeroed and their rows of
    per-user sparse matrices (seen items, histories) emptied; they are cold users afterwards.
    Returns None when the folder is not a model artifact or does not know the users.
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
    for key in list(arrays):
        base = key[: -len(".indptr")] if key.endswith(".indptr") else None
        if base is not None and len(arrays[key]) == n_users + 1:
            if not any(w in base for w in ("seen", "history", "user")):
                continue
            indptr = arrays[key].astype(np.int64)
            lengths = np.diff(indptr)
            keep = np.repeat(~np.isin(np.arange(n_users), idx), lengths)
            lengths[idx] = 0
            arrays[key] = np.concatenate([[0], np.cumsum(lengths)]).astype(arrays[key].dtype)
            for part in ("indices", "data"):
                if f"{base}.{part}" in arrays:
                    arrays[f"{base}.{part}"] = np.ascontiguousarray(arrays[f"{base}.{part}"][keep])
            touched.append(base)
        elif "user" in key and arrays[key].ndim >= 1 and arrays[key].shape[0] == n_users:
            arr = arrays[key].copy()
            arr[idx] = 0
            arrays[key] = arr
            touched.append(key)
    buf_users = [TOMBSTONE if i in set(rows) else u for i, u in enumerate(users)]
    tmp = weights.with_name(".tmp-forget-model.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    os.replace(tmp, weights)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"user_id": pa.array(buf_users, pa.string())}), sink)
    _atomic_write(users_file, sink.getvalue().to_pybytes())
    privacy = config.setdefault("privacy", {})
    privacy["folded_out_users"] = int(privacy.get("folded_out_users", 0)) + len(rows)
    privacy["retrain_recommended"] = True
    _atomic_write(cfg_file, (json.dumps(config, indent=2, default=str) + "\n").encode())
    return {"path": str(d), "action": "folded_out", "users": len(rows), "arrays": touched}


def _user_field_indices(header: list[str]) -> list[int]:
    return [i for i, h in enumerate(header) if _USER_COLUMN.search(h.strip().strip('"'))]


def _purge_delimited(path: Path, ids: set[str]) -> int:
    """Drop lines of a delimited text file naming the user (user column if the header has one,
    else any field equal to the id)."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.splitlines(keepends=True)
    if not lines:
        return 0
    first = lines[0]
    delim = max(("\t", ",", ";", "|"), key=first.count)
    if "::" in first:
        delim = "::"

    def fields(line: str) -> list[str]:
        if delim == "::":
            return line.rstrip("\r\n").split("::")
        return next(csv.reader(io.StringIO(line), delimiter=delim), [])

    header = fields(first)
    cols = _user_field_indices(header)
    kept, dropped = [], 0
    for n, line in enumerate(lines):
        f = [x.strip() for x in fields(line)]
        if n == 0 and cols:
            kept.append(line)
            continue
        named = [f[i] for i in cols if i < len(f)] if cols else f
        if any(x in ids for x in named):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        _atomic_write(path, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return dropped


def _purge_jsonl(path: Path, ids: set[str]) -> int:
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if rec is None:
            if any(id_pattern(i).search(line) for i in ids):
                dropped += 1
                continue
            kept.append(line)
            continue
        if isinstance(rec, dict) and any(
            _USER_COLUMN.match(k) and isinstance(v, str) and v in ids for k, v in rec.items()
        ):
            dropped += 1
            continue
        new, changed = _scrub_json(rec, ids)
        if changed:
            dropped += 1
            kept.append(json.dumps(new) + "\n")
        else:
            kept.append(line)
    if dropped:
        _atomic_write(path, "".join(kept).encode())
    return dropped


def _purge_json(path: Path, ids: set[str]) -> int:
    data = json.loads(path.read_text(encoding="utf-8"))
    new, changed = _scrub_json(data, ids)
    if changed:
        _atomic_write(path, json.dumps(new).encode())
    return int(changed)


def _purge_parquet(path: Path, ids: set[str]) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    mask = pa.array(np.zeros(table.num_rows, bool))
    value_set = pa.array(sorted(ids), pa.string())
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            mask = pc.or_(mask, pc.fill_null(pc.is_in(col, value_set=value_set), False))
    n = int(pc.sum(mask).as_py() or 0)
    if n:
        sink = pa.BufferOutputStream()
        pq.write_table(table.filter(pc.invert(mask)), sink)
        _atomic_write(path, sink.getvalue().to_pybytes())
    return n


def _purge_safetensors(path: Path, ids: set[str]) -> int:
    """Rows named in a metadata id list (aligned with the tensors' first axis) are dropped."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    for key, raw in meta.items():
        try:
            listed = json.loads(raw)
        except ValueError:
            continue
        if not (isinstance(listed, list) and any(x in ids for x in listed)):
            continue
        keep = np.array([x not in ids for x in listed])
        for name, arr in tensors.items():
            if arr.ndim and arr.shape[0] == len(listed):
                tensors[name] = np.ascontiguousarray(arr[keep])
        meta[key] = json.dumps([x for x in listed if x not in ids])
        tmp = path.with_name(".tmp-forget-" + path.name)
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return int((~keep).sum())
    return 0


def _purge_file(path: Path, ids: set[str]) -> dict[str, Any] | None:
    needles = [i.encode() for i in ids]
    if not _contains(path, needles):
        return None
    suffix = path.suffix.lower()
    action, n = "rewritten", 0
    with contextlib.suppress(ValueError, OSError, UnicodeDecodeError, RuntimeError):
        if suffix == ".parquet":
            n = _purge_parquet(path, ids)
        elif suffix == ".json":
            n = _purge_json(path, ids)
        elif suffix in (".jsonl", ".ndjson"):
            n = _purge_jsonl(path, ids)
        elif suffix == ".safetensors":
            n = _purge_safetensors(path, ids)
        elif suffix in _TEXT_SUFFIXES:
            n = _purge_delimited(path, ids)
    if _contains(path, needles):
        # Derived data we cannot rewrite precisely (or an id left in a field we do not parse):
        # a cache or artefact is rebuilt, a trace of the user is not acceptable.
        path.unlink()
        action = "deleted"
    return {"path": str(path), "action": action, "records": n}


def _user_texts(store: Store, ids: Sequence[str]) -> set[str]:
    """Free texts the user wrote (search queries, reviews): their cached vectors are theirs."""
    texts: set[str] = set()
    marks = ", ".join("?" for _ in ids)
    for table, cols in (("events", ("query",)), ("reviews", ("summary", "text"))):
        for t in (table, f"{table}_clean"):
            if not store.has_table(t):
                continue
            for c in cols:
                rows = store.conn.execute(
                    f'SELECT DISTINCT "{c}" FROM "{t}" WHERE user_id IN ({marks}) AND "{c}" IS NOT NULL',
                    list(ids),
                ).fetchall()
                texts.update(str(r[0]) for r in rows if str(r[0]).strip())
    return texts


def _still_used(store: Store, texts: set[str]) -> set[str]:
    """Of ``texts``, those another user also wrote (their cached vectors are not personal)."""
    used: set[str] = set()
    if not texts:  # (DuckDB's executemany refuses an empty list)
        return used
    for table, cols in (("events", ("query",)), ("reviews", ("summary", "text"))):
        if not store.has_table(table):
            continue
        for c in cols:
            store.conn.execute("CREATE OR REPLACE TEMP TABLE _forget_texts (t VARCHAR)")
            store.conn.executemany("INSERT INTO _forget_texts VALUES (?)", [[t] for t in texts])
            rows = store.conn.execute(
                f'SELECT DISTINCT t FROM _forget_texts WHERE t IN (SELECT "{c}" FROM "{table}")'
            ).fetchall()
            used.update(r[0] for r in rows)
    store.conn.execute("DROP TABLE IF EXISTS _forget_texts")
    return used


def _purge_cache_texts(root: Path, texts: set[str]) -> int:
    """Remove feature-cache vectors whose content is one of ``texts`` (any encoder)."""
    from safetensors.numpy import load_file, save_file

    from shopsight.features.text import clean_text

    removed = 0
    variants = {v for t in texts for v in (t, t.strip(), clean_text(t)) if v}
    for directory in {p.parent for p in root.rglob("shard-*.safetensors")}:
        name, version = directory.parent.name, directory.name
        keys = set()
        for v in variants:
            h = hashlib.sha256()
            for part in (name.encode(), version.encode()):
                h.update(len(part).to_bytes(4, "little"))
                h.update(part)
            h.update(v.encode("utf-8"))
            keys.add(h.digest())
        for shard in sorted(directory.glob("shard-*.safetensors")):
            data = load_file(str(shard))
            hit = np.array([k.tobytes() in keys for k in data["keys"]], dtype=bool)
            if not hit.any():
                continue
            removed += int(hit.sum())
            if hit.all():
                shard.unlink()
                continue
            tmp = shard.with_name(".tmp-forget-" + shard.name)
            save_file({k: np.ascontiguousarray(v[~hit]) for k, v in data.items()}, str(tmp))
            os.replace(tmp, shard)
    return removed


def _purge_paths(paths: Iterable[Path], ids: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            folded = fold_out_artifact(p, ids)
            if folded is not None:
                out.append(folded)
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                if folded is not None and f.parent == p and f.name == "users.parquet":
                    continue  # the tombstoned id map, handled by fold-out
                r = _purge_file(f, ids)
                if r is not None:
                    out.append(r)
        elif p.is_file():
            r = _purge_file(p, ids)
            if r is not None:
                out.append(r)
    return out


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
    texts = _user_texts(store, ids) if feature_cache is not None else set()
    tables = _forget_in_store(store, ids)
    residual = residual_matches(store, ids)
    files: list[dict[str, Any]] = []
    cache_vectors = 0
    if feature_cache is not None and Path(feature_cache).exists():
        cache_vectors = _purge_cache_texts(Path(feature_cache), texts - _still_used(store, texts))
        files += _purge_paths([Path(feature_cache)], set(ids))
    files += _purge_paths(extra_paths, set(ids))
    at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    entry: dict[str, Any] = {
        "at": at,
        "request_id": uuid.uuid4().hex,
        "action": "forget",
        "users": len(wanted),
        "rows_removed": sum(tables.values()),
        "tables": tables,
        "files": {
            "rewritten": sum(f["action"] == "rewritten" for f in files),
            "deleted": sum(f["action"] == "deleted" for f in files),
            "folded_out": sum(f["action"] == "folded_out" for f in files),
            "cache_vectors": cache_vectors,
        },
    }
    _write_audit(store, entry)
    size = rewrite_store(store) if rewrite else None
    return {
        "request_id": entry["request_id"],
        "at": at.isoformat(),
        "users": len(wanted),
        "identities_searched": len(ids),
        "tables": tables,
        "rows_removed": entry["rows_removed"],
        "residual": residual,
        "files": files,
        "cache_vectors_removed": cache_vectors,
        "store_rewritten": rewrite,
        "store_bytes": size,
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
    """Remove every trace of ``user_id`` from the store, the feature cache and ``extra_paths``.

    ``user_id`` is a raw id (its pseudonym is forgotten too when the key is set; required for a
    pseudonymised store) or a pseudonym. Returns a JSON-ready report: rows per table
    (``tables``), what happened to each file (``files``), ``residual`` rows still naming the
    user (empty unless a table keeps the id in a column we cannot recognise), and the audit
    ``request_id``. The store's connection is reopened when the file is rewritten
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
