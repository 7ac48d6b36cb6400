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
