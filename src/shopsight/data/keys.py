"""Content keys: a 64-bit hash of the columns that define a row's identity.

Lineage (source, line) is never part of it, so the same record arriving twice, or from two
files, is one row. DuckDB's ``hash`` is ~9x faster than ``md5`` here, but is not promised stable
across DuckDB releases; the store records which function made its keys and rekeys on change.
"""

from __future__ import annotations

import duckdb

from shopsight.data.schema import KEY_COLUMN

KEY_FUNCTION = f"duckdb-hash/{duckdb.__version__}"

CONTENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "item_id", "event_type", "timestamp", "session_id", "query", "value"),
    "items": (
        "item_id",
        "title",
        "description",
        "brand",
        "category",
        "price",
        "currency",
        "image",
        "attributes",
    ),
    "reviews": ("user_id", "item_id", "rating", "summary", "text", "timestamp"),
    "users": ("user_id", "age_band", "gender", "region", "signup_date", "attributes"),
}


def key_sql(table: str, prefix: str = "") -> str:
    """SQL expression for the content key of a row of ``table``."""
    cols = ", ".join(f"{prefix}{c}" for c in CONTENT_COLUMNS[table])
    return f"hash({cols})"


def rekey_sql(table: str) -> str:
    return f'UPDATE "{table}" SET {KEY_COLUMN[table]} = {key_sql(table)}'


def rekey_store(conn: duckdb.DuckDBPyConnection, tables: tuple[str, ...] | None = None) -> int:
    """Recompute the content keys of ``tables`` (default: every data table) in place, and carry
    each changed key into every other table holding the same key column (``*_clean`` copies,
    splits...), so joins on keys keep working. Run inside the caller's transaction.

    Used when what a key is computed over changes: a DuckDB upgrade (another ``hash``), or raw
    user ids replaced by pseudonyms (a key over the raw id would let anyone replay it).
    Returns the number of key values changed.
    """
    from shopsight.data.schema import KEY_COLUMN

    db = conn.execute("SELECT current_database()").fetchone()
    assert db is not None
    cols = conn.execute(
        """SELECT schema_name, table_name, column_name FROM duckdb_columns()
        WHERE database_name = ? AND NOT internal""",
        [db[0]],
    ).fetchall()
    views = {
        (s, v)
        for s, v in conn.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ?", [db[0]]
        ).fetchall()
    }
    holders: dict[str, list[str]] = {}
    for sch, tab, col in cols:
        if (sch, tab) in views:
            continue
        name = f'"{tab}"' if sch == "main" else f'"{sch}"."{tab}"'
        holders.setdefault(col, []).append(name)
    changed = 0
    for table in tables or tuple(CONTENT_COLUMNS):
        key = KEY_COLUMN[table]
        if f'"{table}"' not in holders.get(key, []):
            continue
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _rekey AS
            SELECT {key} AS old, {key_sql(table)} AS new FROM "{table}"
            WHERE {key} IS DISTINCT FROM {key_sql(table)}"""
        )
        row = conn.execute("SELECT count(*) FROM _rekey").fetchone()
        n = int(row[0]) if row else 0
        if n:
            for name in holders[key]:
                conn.execute(
                    f"UPDATE {name} SET {key} = r.new FROM _rekey r WHERE {name}.{key} = r.old"
                )
        changed += n
    conn.execute("DROP TABLE IF EXISTS _rekey")
    return changed
