"""Row validation rules, written once as SQL (bulk ingest) and once in Python (live events).

The two must agree on every row; a property test fuzzes both with the same inputs. Each rule
returns the *first* problem found, as a short reason naming the field and what was expected.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from shopsight.data.schema import (
    EARLIEST_TIMESTAMP,
    EVENT_TYPE_ALIASES,
    EVENT_TYPES,
    ITEMLESS_EVENT_TYPES,
)

# Clock skew we tolerate before calling a timestamp "in the future".
FUTURE_SLACK = timedelta(days=1)
RATED_EVENT_TYPES = ("rate", "review")
_EXPECTED_TYPES = "|".join(EVENT_TYPES)


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _blank(col: str) -> str:
    # trim() only runs on values that start with a space: the common case stays cheap.
    return f"({col} IS NULL OR {col} = '' OR (starts_with({col}, ' ') AND trim({col}) = ''))"


# Control characters (NUL included) in an id: never a real id, and they break logs, paths and
# terminals downstream (an id is echoed in reports and URLs).
_CONTROL_RE = r"[\x00-\x1f\x7f]"
_CONTROL = re.compile(_CONTROL_RE)


def _control_sql(col: str) -> str:
    return (
        f"WHEN regexp_matches({col}, '{_CONTROL_RE}') "
        f"THEN '{col}: control character in id (not allowed)'"
    )


def control_reason(
    row: dict[str, Any], cols: tuple[str, ...] = ("user_id", "item_id")
) -> str | None:
    """Python twin of the control-character rule of the reason SQL."""
    for c in cols:
        v = row.get(c)
        if isinstance(v, str) and _CONTROL.search(v):
            return f"{c}: control character in id (not allowed)"
    return None


def trimmed_id_sql(col: str) -> str:
    """Id with surrounding spaces removed, NULL when blank; trim() only where needed."""
    return (
        f"(CASE WHEN {col} IS NULL OR NOT (starts_with({col}, ' ') OR ends_with({col}, ' ')) "
        f"THEN nullif({col}, '') ELSE nullif(trim({col}), '') END)"
    )


def normalise_event_type_sql(col: str = "event_type") -> str:
    """Lower-case, trimmed, aliases mapped to canonical names (SQL expression).

    Canonical spellings (nearly every row) pass through one IN test; only the rest pay for
    lower/trim and the alias lookup.
    """
    canon = ", ".join(_q(t) for t in EVENT_TYPES)
    norm = f"lower(trim({col}))"
    cases = " ".join(f"WHEN {_q(a)} THEN {_q(t)}" for a, t in EVENT_TYPE_ALIASES.items())
    return (
        f"(CASE WHEN {col} IN ({canon}) THEN {col} ELSE (CASE {norm} {cases} ELSE {norm} END) END)"
    )


def normalise_event_type(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip(" ").lower()  # SQL trim() strips spaces only
    return EVENT_TYPE_ALIASES.get(v, v)


def _sql_str(expr: str) -> str:
    """Quote a value for a reason message, cut to 60 characters."""
    return f"'''' || left({expr}, 60) || ''''"


def _py_str(value: object) -> str:
    return "'" + str(value)[:60] + "'"


def event_reason_sql(now_sql: str, lo: float, hi: float) -> str:
    """SQL CASE giving the reason an events staging row is invalid, NULL when valid."""
    et = "event_type"  # already normalised by the engine
    itemless = ", ".join(_q(t) for t in ITEMLESS_EVENT_TYPES)
    known = ", ".join(_q(t) for t in EVENT_TYPES)
    rated = ", ".join(_q(t) for t in RATED_EVENT_TYPES)
    return f"""CASE
  WHEN error IS NOT NULL THEN error
  WHEN {_blank("user_id")} THEN 'user_id: missing'
  {_control_sql("user_id")}
  {_control_sql("item_id")}
  WHEN {_blank(et)} THEN 'event_type: missing (expected one of {_EXPECTED_TYPES})'
  WHEN {et} NOT IN ({known}) THEN 'event_type: unknown ' || {_sql_str(et)} || ' (expected one of {_EXPECTED_TYPES})'
  WHEN {_blank("item_id")} AND {et} NOT IN ({itemless}) THEN 'item_id: missing for a ' || {et} || ' event'
  WHEN {_blank("item_id")} AND {_blank("query")} THEN 'query: missing for a search event without item'
  WHEN {et} = 'tag' AND {_blank("query")} THEN 'query: missing for a tag event (the tag text)'
  WHEN timestamp IS NULL AND {_blank("timestamp_raw")} THEN 'timestamp: missing'
  WHEN timestamp IS NULL THEN 'timestamp: cannot parse ' || {_sql_str("timestamp_raw")} || ' (expected ISO-8601 or epoch seconds/ms)'
  WHEN timestamp < TIMESTAMP '{EARLIEST_TIMESTAMP}' THEN 'timestamp: ' || CAST(timestamp AS VARCHAR) || ' is before {EARLIEST_TIMESTAMP}'
  WHEN timestamp > {now_sql} THEN 'timestamp: ' || CAST(timestamp AS VARCHAR) || ' is in the future'
  WHEN value IS NULL AND NOT {_blank("value_raw")} THEN 'value: not a number ' || {_sql_str("value_raw")}
  WHEN isnan(value) OR isinf(value) THEN 'value: not a finite number'
  WHEN {et} IN ({rated}) AND value IS NOT NULL AND (value < {lo} OR value > {hi}) THEN 'value: rating ' || CAST(value AS VARCHAR) || ' out of range [{lo:g}, {hi:g}]'
  WHEN value < 0 THEN 'value: negative (' || CAST(value AS VARCHAR) || '), expected a price or rating >= 0'
  ELSE NULL END"""


def event_reason(
    row: dict[str, Any], now: datetime, lo: float = 0.0, hi: float = 5.0
) -> str | None:
    """Python twin of :func:`event_reason_sql` for one staging row (event_type normalised)."""

    def blank(key: str) -> bool:
        v = row.get(key)
        return v is None or str(v).strip(" ") == ""

    et = row.get("event_type")
    ts = row.get("timestamp")
    value = row.get("value")
    if row.get("error") is not None:
        return str(row["error"])
    if blank("user_id"):
        return "user_id: missing"
    if (bad := control_reason(row)) is not None:
        return bad
    if blank("event_type"):
        return f"event_type: missing (expected one of {_EXPECTED_TYPES})"
    if et not in EVENT_TYPES:
        return f"event_type: unknown {_py_str(et)} (expected one of {_EXPECTED_TYPES})"
    if blank("item_id") and et not in ITEMLESS_EVENT_TYPES:
        return f"item_id: missing for a {et} event"
    if blank("item_id") and blank("query"):
        return "query: missing for a search event without item"
    if et == "tag" and blank("query"):
        return "query: missing for a tag event (the tag text)"
    if ts is None and blank("timestamp_raw"):
        return "timestamp: missing"
    if ts is None:
        return (
            f"timestamp: cannot parse {_py_str(row.get('timestamp_raw'))} "
            "(expected ISO-8601 or epoch seconds/ms)"
        )
    assert isinstance(ts, datetime)
    if ts < datetime.fromisoformat(EARLIEST_TIMESTAMP):
        return f"timestamp: {ts} is before {EARLIEST_TIMESTAMP}"
    if ts > now:
        return f"timestamp: {ts} is in the future"
    if value is None and not blank("value_raw"):
        return f"value: not a number {_py_str(row.get('value_raw'))}"
    if value is not None:
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return "value: not a finite number"
        if et in RATED_EVENT_TYPES and (v < lo or v > hi):
            return f"value: rating {v} out of range [{lo:g}, {hi:g}]"
        if v < 0:
            return f"value: negative ({v}), expected a price or rating >= 0"
    return None


def item_reason_sql() -> str:
    return f"""CASE
  WHEN error IS NOT NULL THEN error
  WHEN {_blank("item_id")} THEN 'item_id: missing'
  WHEN price IS NULL AND NOT {_blank("price_raw")} THEN 'price: not a number ' || {_sql_str("price_raw")}
  WHEN isnan(price) OR isinf(price) THEN 'price: not a finite number'
  WHEN price < 0 THEN 'price: negative (' || CAST(price AS VARCHAR) || ')'
  WHEN attributes IS NOT NULL AND NOT json_valid(attributes) THEN 'attributes: not a JSON object'
  ELSE NULL END"""


def review_reason_sql(now_sql: str, lo: float, hi: float) -> str:
    return f"""CASE
  WHEN error IS NOT NULL THEN error
  WHEN {_blank("user_id")} THEN 'user_id: missing'
  WHEN {_blank("item_id")} THEN 'item_id: missing'
  {_control_sql("user_id")}
  {_control_sql("item_id")}
  WHEN rating IS NULL AND NOT {_blank("rating_raw")} THEN 'rating: not a number ' || {_sql_str("rating_raw")}
  WHEN isnan(rating) OR isinf(rating) THEN 'rating: not a finite number'
  WHEN rating < {lo} OR rating > {hi} THEN 'rating: ' || CAST(rating AS VARCHAR) || ' out of range [{lo:g}, {hi:g}]'
  WHEN rating IS NULL AND {_blank("text")} AND {_blank("summary")} THEN 'review: no rating and no text'
  WHEN timestamp IS NULL AND NOT {_blank("timestamp_raw")} THEN 'timestamp: cannot parse ' || {_sql_str("timestamp_raw")}
  WHEN timestamp < TIMESTAMP '{EARLIEST_TIMESTAMP}' THEN 'timestamp: ' || CAST(timestamp AS VARCHAR) || ' is before {EARLIEST_TIMESTAMP}'
  WHEN timestamp > {now_sql} THEN 'timestamp: ' || CAST(timestamp AS VARCHAR) || ' is in the future'
  WHEN helpful_votes < 0 THEN 'helpful_votes: negative'
  ELSE NULL END"""


def user_reason_sql(now_sql: str) -> str:
    return f"""CASE
  WHEN error IS NOT NULL THEN error
  WHEN {_blank("user_id")} THEN 'user_id: missing'
  {_control_sql("user_id")}
  WHEN signup_date > {now_sql} THEN 'signup_date: in the future'
  WHEN attributes IS NOT NULL AND NOT json_valid(attributes) THEN 'attributes: not a JSON object'
  ELSE NULL END"""


def now_bound() -> datetime:
    """Latest acceptable timestamp (naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None) + FUTURE_SLACK
