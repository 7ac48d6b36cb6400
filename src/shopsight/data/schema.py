"""The canonical shop data model: one typed Arrow schema per table, and the DuckDB DDL made from it.

Every reader produces these columns; every later stage reads only these tables. Timestamps are
UTC (naive ``timestamp[us]`` meaning UTC). ``source``/``line`` keep lineage back to the raw file.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

EVENT_TYPES: Final[tuple[str, ...]] = (
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "search",
    "review",
    "rate",
    "favorite",
    "share",
    "tag",
)
# Annotations, not preference signals: stored as events (``query`` holds the tag's text) but
# left out of the interaction log unless asked for (a MovieLens tag is a word a user attached
# to a movie; the rating is the preference).
ANNOTATION_EVENT_TYPES: Final[tuple[str, ...]] = ("tag",)

# Common spellings in shop exports, mapped to the canonical type at ingest.
EVENT_TYPE_ALIASES: Final[dict[str, str]] = {
    "pageview": "view",
    "page_view": "view",
    "detail": "view",
    "impression": "view",
    "addtocart": "add_to_cart",
    "add-to-cart": "add_to_cart",
    "cart": "add_to_cart",
    "addtobasket": "add_to_cart",
    "removefromcart": "remove_from_cart",
    "remove-from-cart": "remove_from_cart",
    "transaction": "purchase",
    "buy": "purchase",
    "order": "purchase",
    "checkout": "purchase",
    "rating": "rate",
    "wishlist": "favorite",
    "like": "favorite",
}

# Event types that may legitimately have no item (a search is about a query, not an item).
ITEMLESS_EVENT_TYPES: Final[frozenset[str]] = frozenset({"search"})

# Clickstream event types: what the near-duplicate and bot rules look at. Reviews and ratings are
# explicit feedback with their own duplicate rule and often only day-resolution timestamps.
BEHAVIOUR_TYPES: Final[tuple[str, ...]] = (
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "search",
    "favorite",
    "share",
)


RATING_MIN: Final[float] = 0.0
RATING_MAX: Final[float] = (
    10.0  # wide enough for 1-5, 0-5 and 1-10 scales; per-format checks are tighter
)
EARLIEST_TIMESTAMP: Final[str] = "1990-01-01"

LINEAGE = [
    pa.field("source", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
]

EVENTS = pa.schema(
    [
        pa.field("event_key", pa.uint64(), nullable=False),  # content hash: idempotent re-ingest
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us"), nullable=False),
        pa.field("ts_ordinal", pa.bool_(), nullable=False),  # True: order only, not a real time
        pa.field("session_id", pa.string()),
        pa.field("query", pa.string()),
        pa.field("value", pa.float64()),  # price paid for purchases, rating for rate events
        *LINEAGE,
    ]
)

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("category", pa.string()),  # path joined with " > "
        pa.field("price", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("image", pa.string()),  # local path or URL
        pa.field("attributes", pa.string()),  # JSON object of free key/value pairs
        pa.field("first_seen", pa.timestamp("us")),
        pa.field("last_seen", pa.timestamp("us")),
        pa.field("item_key", pa.uint64(), nullable=False),
        *LINEAGE,
    ]
)

REVIEWS = pa.schema(
    [
        pa.field("review_key", pa.uint64(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("rating", pa.float64()),
        pa.field("summary", pa.string()),
        pa.field("text", pa.string()),
        pa.field("timestamp", pa.timestamp("us")),
        pa.field("helpful_votes", pa.int64()),
        pa.field("verified", pa.bool_()),
        *LINEAGE,
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("age_band", pa.string()),
        pa.field("gender", pa.string()),
        pa.field("region", pa.string()),
        pa.field("signup_date", pa.timestamp("us")),
        pa.field("attributes", pa.string()),  # JSON object
        pa.field("user_key", pa.uint64(), nullable=False),
        *LINEAGE,
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("ingest_id", pa.int64(), nullable=False),
        pa.field("target", pa.string(), nullable=False),  # table the row was meant for
        pa.field("source", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)

INGEST_LOG = pa.schema(
    [
        pa.field("ingest_id", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),  # sha256 of the file bytes
        pa.field("format", pa.string(), nullable=False),
        pa.field("read", pa.int64(), nullable=False),
        pa.field("stored", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
        pa.field("quarantined", pa.int64(), nullable=False),
        pa.field("started_at", pa.timestamp("us"), nullable=False),
        pa.field("finished_at", pa.timestamp("us"), nullable=False),
        # Incremental database reads: the watermark column and the highest value read so far.
        pa.field("watermark_column", pa.string()),
        pa.field("watermark", pa.string()),
    ]
)

# Canonical tables, in the order they are created. The key column makes appends idempotent.
TABLES: Final[dict[str, pa.Schema]] = {
    "events": EVENTS,
    "items": ITEMS,
    "reviews": REVIEWS,
    "users": USERS,
    "quarantine": QUARANTINE,
    "ingest_log": INGEST_LOG,
}
DATA_TABLES: Final[tuple[str, ...]] = ("events", "items", "reviews", "users")
KEY_COLUMN: Final[dict[str, str]] = {
    "events": "event_key",
    "items": "item_key",
    "reviews": "review_key",
    "users": "user_key",
}
# Natural identity of an entity: a second row with the same id but other content is a conflict.
ENTITY_ID: Final[dict[str, str]] = {"items": "item_id", "users": "user_id"}

_DUCK_TYPES: Final[dict[str, str]] = {
    "string": "VARCHAR",
    "uint64": "UBIGINT",
    "int64": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp[us]": "TIMESTAMP",
}


def duckdb_type(field: pa.Field) -> str:
    """DuckDB column type for an Arrow field of the canonical schema."""
    return _DUCK_TYPES[str(field.type)]


def create_table_sql(name: str, schema: pa.Schema) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one canonical table."""
    cols = []
    for f in schema:
        col = f'"{f.name}" {duckdb_type(f)}'
        if not f.nullable:
            col += " NOT NULL"
        cols.append(col)
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)})"


def column_names(table: str) -> list[str]:
    return [f.name for f in TABLES[table]]
