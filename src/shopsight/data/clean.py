"""Cleaning: raw tables in, ``*_clean`` tables out, every change counted and logged.

Raw tables are never modified, so cleaning is reversible and can be redone with other settings.
``clean_store`` copies ``events``, ``items``, ``reviews`` and ``users`` into working tables,
runs the enabled steps in a fixed order, and (re)writes ``events_clean``, ``items_clean``,
``reviews_clean``, ``users_clean`` and ``cleaning_log`` in one transaction. The result depends
only on the raw tables and the config (all tie-breaks are on content, never on physical row
order), so running it twice gives the same tables.

Steps, in order (each can be switched off in :class:`CleanConfig`):

``exact_duplicates``
    events identical on ``user_id, item_id, event_type, timestamp, ts_ordinal, value, query``:
    ``event_key``, ``session_id`` and lineage (``source``, ``line``) are ignored, because two
    exports of the same event may carry different session ids (sessionisation is a property of
    the exporter) and the ingest's content key can differ with them. Reviews identical on all
    content columns (everything but ``review_key`` and lineage). The first ingested copy is kept.
``duplicate_ids``
    items and users: one row per id, the latest ingested row (by ``ingest_log`` order, then
    source and line) wins, as a catalogue re-export supersedes the older one.
``near_duplicates``
    events of the same user, item, type (and search query) less than or at
    ``near_duplicate_window_s`` after the previous one (double clicks, double-submitted forms):
    a burst collapses to its first event. Ordinal-time events are exempt (no real time).
``duplicate_reviews``
    the same user reviewing (or rating) the same item more than once: one review per
    (user, item) remains in ``reviews_clean``, and one ``review``/``rate`` event per
    (user, item, type) in ``events_clean``; ``"latest"`` (default: a user's current opinion) or
    ``"first"``; ties on time are broken by ingest order, then line.
``bots``
    users (anonymous session ids included: the actor is whatever ``user_id`` holds) whose
    behavioural events (not reviews/ratings, which are often day-resolution) look automated:
    a robust z-score of log(events per active hour) far above the population *and* an absolute
    minimum rate, or a peak hour above an absolute cap, or a median gap between consecutive
    same-type events below a human floor, or very many views and not a single cart/purchase
    (only when the store has conversions at all). Only users with at least ``bot_min_events``
    behavioural events can be flagged. Their events, reviews and user rows are removed.
``shilling``
    coordinated fake accounts pushing one item, which rate rules miss (few events, human pace):
    one-visit accounts that together are an outsized share of an item's converters and copy
    one browsing recipe (:func:`shopsight.data.shilling.detect_shilling`). Their events,
    reviews and user rows are removed.
``outlier_prices``
    prices outside ``[price_min, price_max]`` or whose log lies more than ``price_mad_k`` robust
    deviations (1.4826 * MAD, at least ``price_mad_floor``) from their (category, currency)
    median. With the defaults a price is flagged at about 85x (or 1/85) of its category median
    in a tight category: a cents-for-dollars slip (x100) is caught, while Amazon's real
    "pack of 50" gift cards at 42x the median are not. A category with fewer than
    ``price_min_category_items`` priced items gets the absolute bounds only (too little evidence
    of its price level). The item is kept (dropping it would lose its interactions) and its
    price set to NULL in ``items_clean``; every change is logged with the original value.
``k_core``
    off by default: iteratively drop users and items with fewer than ``k_core`` distinct
    interaction partners until none is left (the unique k-core), then remove their events and
    reviews. Catalogue rows stay (an item can be cold without being wrong).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Literal

import duckdb
import pyarrow as pa

from shopsight.data import schema
from shopsight.data.schema import BEHAVIOUR_TYPES
from shopsight.data.store import Store, StoreError
from shopsight.errors import InputError
from shopsight.progress import task

CLEAN_SUFFIX: Final[str] = "_clean"
LOG_TABLE: Final[str] = "cleaning_log"

RATING_TYPES: Final[tuple[str, ...]] = ("review", "rate")
CONVERSION_TYPES: Final[tuple[str, ...]] = ("add_to_cart", "purchase")

# Below this scale (natural-log units) a spread is treated as this scale: when most users (or
# items of a category) share one value the MAD is 0 and any difference would be "infinite".
_RATE_SCALE_FLOOR: Final[float] = 0.25
_MAD_TO_SIGMA: Final[float] = 1.4826  # MAD of a normal distribution is 0.6745 sigma
_N_EXAMPLES: Final[int] = 3


def clean_name(table: str) -> str:
    """Name of the cleaned copy of a raw data table (``events`` -> ``events_clean``)."""
    return f"{table}{CLEAN_SUFFIX}"


class CleanConfigError(InputError):
    """An invalid cleaning setting (one-line message naming the field)."""


@dataclass(frozen=True)
class CleanConfig:
    """Which cleaning steps run and their thresholds. All steps but ``k_core`` are on."""

    exact_duplicates: bool = True
    duplicate_ids: bool = True
    near_duplicates: bool = True
    near_duplicate_window_s: float = 1.0
    near_duplicate_types: tuple[str, ...] = BEHAVIOUR_TYPES
    duplicate_reviews: Literal["latest", "first"] | None = "latest"
    bots: bool = True
    bot_min_events: int = 50
    bot_rate_z: float | None = 5.0
    bot_min_rate_per_hour: float = 60.0
    bot_max_events_per_hour: float | None = 1000.0
    bot_min_median_gap_s: float | None = 1.0
    bot_views_without_conversion: int | None = 1000
    # Coordinated one-visit accounts pushing one item (see shopsight.data.shilling).
    shilling: bool = True
    shilling_max_span_hours: float = 24.0
    shilling_min_group: int = 5
    shilling_min_share: float = 0.3
    shilling_min_lift: float = 3.0
    shilling_min_similarity: float = 0.2
    outlier_prices: bool = True
    price_mad_k: float = 6.0
    price_mad_floor: float = 0.5
    price_min_category_items: int = 10
    price_min: float = 0.0
    price_max: float = 1_000_000.0
    k_core: int = 0
    k_core_types: tuple[str, ...] | None = None  # None: every item event type and reviews

    def __post_init__(self) -> None:
        for name in ("near_duplicate_types",):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.k_core_types is not None:
            object.__setattr__(self, "k_core_types", tuple(self.k_core_types))
        for name, types in (
            ("near_duplicate_types", self.near_duplicate_types),
            ("k_core_types", self.k_core_types or ()),
        ):
            unknown = sorted(set(types) - set(schema.EVENT_TYPES))
            if unknown:
                raise CleanConfigError(
                    f"clean.{name}: unknown event types {unknown} "
                    f"(expected some of {', '.join(schema.EVENT_TYPES)})"
                )
        if self.duplicate_reviews not in ("latest", "first", None):
            raise CleanConfigError(
                f"clean.duplicate_reviews: expected 'latest', 'first' or null, got {self.duplicate_reviews!r}"
            )
        checks: list[tuple[str, bool]] = [
            ("near_duplicate_window_s", self.near_duplicate_window_s >= 0),
            ("bot_min_events", self.bot_min_events >= 1),
            ("bot_rate_z", self.bot_rate_z is None or self.bot_rate_z > 0),
            ("bot_min_rate_per_hour", self.bot_min_rate_per_hour >= 0),
            (
                "bot_max_events_per_hour",
                self.bot_max_events_per_hour is None or self.bot_max_events_per_hour > 0,
            ),
            (
                "bot_min_median_gap_s",
                self.bot_min_median_gap_s is None or self.bot_min_median_gap_s > 0,
            ),
            (
                "bot_views_without_conversion",
                self.bot_views_without_conversion is None or self.bot_views_without_conversion >= 1,
            ),
            ("price_mad_k", self.price_mad_k > 0),
            ("price_mad_floor", self.price_mad_floor >= 0),
            ("price_min_category_items", self.price_min_category_items >= 1),
            ("price_max", self.price_max > self.price_min),
            ("k_core", self.k_core >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise CleanConfigError(f"clean.{name}: invalid value {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleanConfig:
        """Build from a mapping (YAML section / CLI overrides); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CleanConfigError(
                f"clean: unknown settings {unknown} (known: {', '.join(sorted(known))})"
            )
        kw = dict(data)
        for name in ("near_duplicate_types", "k_core_types"):
            if isinstance(kw.get(name), str):
                kw[name] = tuple(t.strip() for t in kw[name].split(",") if t.strip())
        try:
            return cls(**kw)
        except TypeError as exc:
            raise CleanConfigError(f"clean: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


@dataclass
class StepReport:
    """What one step did to one table: rows removed, values changed, and why (``detail``)."""

    step: str
    table: str
    removed: int = 0
    modified: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CleanReport:
    """Per-step counts plus row totals before (raw) and after (clean); JSON-serialisable."""

    steps: list[StepReport]
    before: dict[str, int]
    after: dict[str, int]
    config: dict[str, Any]
    run_at: str
    # events per type, before -> after: tags, ratings and clicks are counted apart
    event_types: dict[str, list[int]] = field(default_factory=dict)

    @property
    def removed(self) -> dict[str, int]:
        """Rows removed per table over all steps."""
        out = {t: 0 for t in schema.DATA_TABLES}
        for s in self.steps:
            out[s.table] = out.get(s.table, 0) + s.removed
        return out

    def removed_by_step(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.step] = out.get(s.step, 0) + s.removed
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_at": self.run_at,
            "before": self.before,
            "after": self.after,
            "removed": self.removed,
            "event_types": self.event_types,
            "steps": [s.to_dict() for s in self.steps],
            "config": self.config,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)


# -- SQL helpers ---------------------------------------------------------------------------


def _w(table: str) -> str:
    """Working copy of a raw table during a cleaning run."""
    return f"_clean_work_{table}"


def _in_list(values: Sequence[str]) -> str:
    """A SQL ``IN`` list of string literals (values come from the fixed EVENT_TYPES vocabulary)."""
    return (
        "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"
        if values
        else "(NULL)"
    )


def ingest_order_sql() -> str:
    """``(source, ord)``: the latest ingest id of each source file (for "latest row wins")."""
    return "SELECT source, max(ingest_id) AS ord FROM ingest_log GROUP BY source"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _examples(conn: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = conn.execute(sql)
    cols = [d[0] for d in cur.description or []]
    return [{c: _json_safe(v) for c, v in zip(cols, row, strict=True)} for row in cur.fetchall()]


def _scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open and then refuses
    # conn.sql()/register() on the connection until it is finished.
    rows = conn.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


_EXAMPLE_COLS: Final[dict[str, str]] = {
    "events": "user_id, item_id, event_type, timestamp, session_id, value, source, line",
    "reviews": "user_id, item_id, rating, timestamp, summary, source, line",
    "items": "item_id, title, category, price, source, line",
    "users": "user_id, source, line",
}
_ORDER_COLS: Final[dict[str, str]] = {
    "events": "user_id, timestamp, event_type, item_id, source, line, event_key",
    "reviews": "user_id, item_id, timestamp, source, line, review_key",
    "items": "item_id, source, line, item_key",
    "users": "user_id, source, line, user_key",
}


def _drop(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    table: str,
    rids_sql: str,
    detail: dict[str, Any] | None = None,
    work: str | None = None,
) -> StepReport:
    """Remove the working rows whose ``_rid`` the query selects; report count and examples.

    For window-based steps on a working table small enough to hold (one user bucket of events,
    or the reviews / items / users copies)."""
    work = work or _w(table)
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _clean_drop AS {rids_sql}")
    n = int(_scalar(conn, "SELECT count(*) FROM _clean_drop") or 0)
    d = dict(detail or {})
    if n:
        d["examples"] = _examples(
            conn,
            f"SELECT {_EXAMPLE_COLS[table]} FROM {work} WHERE _rid IN (SELECT _rid FROM _clean_drop) "
            f"ORDER BY {_ORDER_COLS[table]} LIMIT {_N_EXAMPLES}",
        )
        conn.execute(f"DELETE FROM {work} WHERE _rid IN (SELECT _rid FROM _clean_drop)")
    conn.execute("DROP TABLE _clean_drop")
    return StepReport(step=step, table=table, removed=n, detail=d)


def _drop_where(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    table: str,
    where: str,
    detail: dict[str, Any] | None = None,
) -> StepReport:
    """Remove the working rows matching ``where`` (a condition on a small id set, e.g.
    ``user_id IN (SELECT user_id FROM flagged)``): no row-id set is materialised, so this works
    on the full events table."""
    work = _w(table)
    n = int(_scalar(conn, f"SELECT count(*) FROM {work} WHERE {where}") or 0)
    d = dict(detail or {})
    if n:
        d["examples"] = _examples(
            conn,
            f"SELECT {_EXAMPLE_COLS[table]} FROM {work} WHERE {where} "
            f"ORDER BY {_ORDER_COLS[table]} LIMIT {_N_EXAMPLES}",
        )
        conn.execute(f"DELETE FROM {work} WHERE {where}")
    return StepReport(step=step, table=table, removed=n, detail=d)


def _merge_reports(parts: Sequence[StepReport]) -> StepReport:
    """One step's report over user buckets taken in user-id order: counts add up, and the
    first examples of the earliest buckets are the first examples overall (examples are ordered
    by user id first)."""
    first = parts[0]
    detail = {k: v for k, v in first.detail.items() if k != "examples"}
    examples = [e for p in parts for e in p.detail.get("examples", [])][:_N_EXAMPLES]
    removed = sum(p.removed for p in parts)
    if removed:
        detail["examples"] = examples
    return StepReport(
        step=first.step,
        table=first.table,
        removed=removed,
        modified=sum(p.modified for p in parts),
        detail=detail,
    )


# -- steps ---------------------------------------------------------------------------------

_EVENT_IDENTITY: Final[str] = "user_id, item_id, event_type, timestamp, ts_ordinal, value, query"
_REVIEW_IDENTITY: Final[str] = (
    "user_id, item_id, rating, summary, text, timestamp, helpful_votes, verified"
)


def _exact_duplicate_events(conn: duckdb.DuckDBPyConnection, work: str) -> StepReport:
    return _drop(
        conn,
        "exact_duplicates",
        "events",
        f"""SELECT _rid FROM (
              SELECT _rid, row_number() OVER (PARTITION BY {_EVENT_IDENTITY}
                  ORDER BY _ord, source, line, event_key) AS rn
              FROM {work}) WHERE rn > 1""",
        {"identity": _EVENT_IDENTITY.split(", "), "keep": "first ingested"},
        work,
    )


def _exact_duplicate_reviews(conn: duckdb.DuckDBPyConnection) -> StepReport:
    return _drop(
        conn,
        "exact_duplicates",
        "reviews",
        f"""SELECT _rid FROM (
              SELECT _rid, row_number() OVER (PARTITION BY {_REVIEW_IDENTITY}
                  ORDER BY _ord, source, line, review_key) AS rn
              FROM {_w("reviews")}) WHERE rn > 1""",
        {"identity": _REVIEW_IDENTITY.split(", "), "keep": "first ingested"},
    )


def _step_duplicate_ids(conn: duckdb.DuckDBPyConnection) -> list[StepReport]:
    out = []
    for table, id_col in schema.ENTITY_ID.items():
        key = schema.KEY_COLUMN[table]
        content = [
            c for c in schema.column_names(table) if c not in (key, "source", "line", id_col)
        ]
        # Rows with the same id; "conflicting" counts those whose content differs from the kept row.
        differ = " OR ".join(f'"{c}" IS DISTINCT FROM first_value("{c}") OVER w' for c in content)
        rids = f"""SELECT _rid FROM (
              SELECT _rid, row_number() OVER w AS rn
              FROM {_w(table)}
              WINDOW w AS (PARTITION BY {id_col} ORDER BY _ord DESC, source DESC, line DESC, {key} DESC))
            WHERE rn > 1"""
        n_conflict = int(
            _scalar(
                conn,
                f"""SELECT count(*) FROM (
                  SELECT row_number() OVER w AS rn, ({differ}) AS differs FROM {_w(table)}
                  WINDOW w AS (PARTITION BY {id_col} ORDER BY _ord DESC, source DESC, line DESC, {key} DESC))
                WHERE rn > 1 AND differs""",
            )
            or 0
        )
        out.append(
            _drop(
                conn,
                "duplicate_ids",
                table,
                rids,
                {"keep": "latest ingested row per id", "with_other_content": n_conflict},
            )
        )
    return out


def _near_duplicate_events(
    conn: duckdb.DuckDBPyConnection, cfg: CleanConfig, work: str
) -> StepReport:
    window_us = round(cfg.near_duplicate_window_s * 1_000_000)
    return _drop(
        conn,
        "near_duplicates",
        "events",
        f"""SELECT _rid FROM (
              SELECT _rid, epoch_us(timestamp) - lag(epoch_us(timestamp)) OVER (
                  PARTITION BY user_id, item_id, event_type, query
                  ORDER BY timestamp, _ord, source, line, event_key) AS gap_us
              FROM {work}
              WHERE NOT ts_ordinal AND event_type IN {_in_list(cfg.near_duplicate_types)})
            WHERE gap_us IS NOT NULL AND gap_us <= {window_us}""",
        {
            "window_s": cfg.near_duplicate_window_s,
            "event_types": list(cfg.near_duplicate_types),
            "keep": "first event of each burst",
        },
        work,
    )


def _lineage_order(keep: str) -> tuple[str, str]:
    direction = "DESC" if keep == "latest" else "ASC"
    lineage = "_ord DESC, source DESC, line DESC" if keep == "latest" else "_ord, source, line"
    return direction, lineage


def _duplicate_reviews_reviews(conn: duckdb.DuckDBPyConnection, keep: str) -> StepReport:
    direction, lineage = _lineage_order(keep)
    return _drop(
        conn,
        "duplicate_reviews",
        "reviews",
        f"""SELECT _rid FROM (
              SELECT _rid, row_number() OVER (PARTITION BY user_id, item_id
                  ORDER BY timestamp {direction} NULLS LAST, {lineage}, review_key {direction}) AS rn
              FROM {_w("reviews")}) WHERE rn > 1""",
        {"keep": keep, "per": ["user_id", "item_id"]},
    )


def _duplicate_reviews_events(conn: duckdb.DuckDBPyConnection, keep: str, work: str) -> StepReport:
    direction, lineage = _lineage_order(keep)
    return _drop(
        conn,
        "duplicate_reviews",
        "events",
        f"""SELECT _rid FROM (
              SELECT _rid, row_number() OVER (PARTITION BY user_id, item_id, event_type
                  ORDER BY timestamp {direction}, {lineage}, event_key {direction}) AS rn
              FROM {work} WHERE event_type IN {_in_list(RATING_TYPES)} AND item_id IS NOT NULL)
            WHERE rn > 1""",
        {
            "keep": keep,
            "per": ["user_id", "item_id", "event_type"],
            "event_types": list(RATING_TYPES),
        },
        work,
    )


def _step_shilling(store: Store, cfg: CleanConfig) -> list[StepReport]:
    """Users :func:`~shopsight.data.shilling.detect_shilling` flags, from every user table."""
    from shopsight.data.shilling import detect_shilling

    conn = store.conn
    found = detect_shilling(
        store,
        table=_w("events"),
        max_span_hours=cfg.shilling_max_span_hours,
        min_group=cfg.shilling_min_group,
        min_share=cfg.shilling_min_share,
        min_lift=cfg.shilling_min_lift,
        min_similarity=cfg.shilling_min_similarity,
    )
    conn.register("_clean_shill", pa.table({"user_id": pa.array(found.flagged, pa.string())}))
    try:
        steps = []
        for table in ("events", "reviews", "users"):
            detail = found.to_dict() if table == "events" else {"users_flagged": len(found.flagged)}
            steps.append(
                _drop_where(
                    conn,
                    "shilling",
                    table,
                    "user_id IN (SELECT user_id FROM _clean_shill)",
                    detail,
                )
            )
        return steps
    finally:
        conn.unregister("_clean_shill")


def _bot_stats_sql(work: str) -> str:
    """Per-user behaviour statistics of the bot rules (one row per user with behaviour events)."""
    return f"""
        WITH ev AS (
            SELECT user_id, event_type, timestamp FROM {work}
            WHERE NOT ts_ordinal AND event_type IN {_in_list(BEHAVIOUR_TYPES)}),
        per_hour AS (
            SELECT user_id, date_trunc('hour', timestamp) AS h, count(*) AS n FROM ev GROUP BY ALL),
        hours AS (
            SELECT user_id, count(*) AS active_hours, max(n) AS peak_hour FROM per_hour GROUP BY ALL),
        gaps AS (
            SELECT user_id, median(gap_us) / 1e6 AS median_gap_s FROM (
                SELECT user_id, epoch_us(timestamp) - lag(epoch_us(timestamp)) OVER (
                    PARTITION BY user_id, event_type ORDER BY timestamp) AS gap_us FROM ev)
            WHERE gap_us IS NOT NULL GROUP BY ALL),
        kinds AS (
            SELECT user_id, count(*) AS n_events,
                   count(*) FILTER (WHERE event_type = 'view') AS n_views,
                   count(*) FILTER (WHERE event_type IN {_in_list(CONVERSION_TYPES)}) AS n_conversions
            FROM ev GROUP BY ALL)
        SELECT k.*, h.active_hours, h.peak_hour, k.n_events / h.active_hours AS rate_per_hour,
               g.median_gap_s
        FROM kinds k JOIN hours h USING (user_id) LEFT JOIN gaps g USING (user_id)"""


def _step_bots(conn: duckdb.DuckDBPyConnection, cfg: CleanConfig) -> list[StepReport]:
    """Flag and remove bots from ``_clean_bot_stats`` (filled bucket by bucket beforehand)."""
    med_row = _scalar(conn, "SELECT median(ln(rate_per_hour)) FROM _clean_bot_stats")
    med = float(med_row) if med_row is not None else 0.0
    mad_row = _scalar(
        conn, "SELECT median(abs(ln(rate_per_hour) - ?)) FROM _clean_bot_stats", [med]
    )
    mad = float(mad_row) if mad_row is not None else 0.0
    scale = max(_MAD_TO_SIGMA * mad, _RATE_SCALE_FLOOR)
    any_conversions = (
        _scalar(
            conn,
            f"SELECT 1 FROM {_w('events')} WHERE event_type IN {_in_list(CONVERSION_TYPES)} LIMIT 1",
        )
        is not None
    )
    rules: dict[str, str] = {}
    if cfg.bot_rate_z is not None:
        rules["rate_z"] = (
            f"(ln(rate_per_hour) - {med!r}) / {scale!r} > {cfg.bot_rate_z!r} "
            f"AND rate_per_hour >= {cfg.bot_min_rate_per_hour!r}"
        )
    if cfg.bot_max_events_per_hour is not None:
        rules["peak_hour"] = f"peak_hour > {cfg.bot_max_events_per_hour!r}"
    if cfg.bot_min_median_gap_s is not None:
        rules["median_gap"] = f"coalesce(median_gap_s < {cfg.bot_min_median_gap_s!r}, false)"
    if cfg.bot_views_without_conversion is not None and any_conversions:
        rules["views_without_conversion"] = (
            f"n_views >= {cfg.bot_views_without_conversion} AND n_conversions = 0"
        )
    reasons = (
        # No lambdas: their syntax differs between DuckDB versions.
        "list_concat("
        + ", ".join(
            f"CASE WHEN {c} THEN ['{name}'] ELSE []::VARCHAR[] END" for name, c in rules.items()
        )
        + ")"
        if rules
        else "[]::VARCHAR[]"
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _clean_bots AS
        SELECT *, {reasons} AS reasons FROM _clean_bot_stats
        WHERE n_events >= {cfg.bot_min_events} AND len({reasons}) > 0"""
    )
    n_bots = int(_scalar(conn, "SELECT count(*) FROM _clean_bots") or 0)
    by_reason = dict(
        conn.execute(
            "SELECT r, count(*) FROM (SELECT unnest(reasons) AS r FROM _clean_bots) GROUP BY r ORDER BY r"
        ).fetchall()
    )
    examples = _examples(
        conn,
        f"""SELECT user_id, n_events, n_views, n_conversions, active_hours, peak_hour,
                   round(rate_per_hour, 2) AS rate_per_hour, median_gap_s, reasons
            FROM _clean_bots ORDER BY n_events DESC, user_id LIMIT {_N_EXAMPLES}""",
    )
    detail = {
        "users_flagged": n_bots,
        "by_reason": by_reason,
        "population_median_rate_per_hour": round(math.exp(med), 4),
        "rate_scale_log": round(scale, 4),
        "rules": rules,
        "bots": examples,
    }
    out = []
    for table in ("events", "reviews", "users"):
        out.append(
            _drop_where(
                conn,
                "bots",
                table,
                "user_id IN (SELECT user_id FROM _clean_bots)",
                detail if table == "events" else {"users_flagged": n_bots},
            )
        )
    conn.execute("DROP TABLE _clean_bot_stats")
    conn.execute("DROP TABLE _clean_bots")
    return out


def _step_outlier_prices(conn: duckdb.DuckDBPyConnection, cfg: CleanConfig) -> list[StepReport]:
    floor = cfg.price_mad_floor
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _clean_price_flags AS
        WITH p AS (
            SELECT _rid, category, currency, price, ln(price) AS lp
            FROM {_w("items")} WHERE price > 0 AND isfinite(price)),
        c AS (SELECT category, currency, count(*) AS n, median(lp) AS med FROM p GROUP BY ALL),
        cm AS (
            SELECT p.category, p.currency, median(abs(p.lp - c.med)) AS mad
            FROM p JOIN c ON p.category IS NOT DISTINCT FROM c.category
                          AND p.currency IS NOT DISTINCT FROM c.currency
            GROUP BY ALL),
        ref AS (
            SELECT c.category, c.currency, c.n, c.med, cm.mad
            FROM c JOIN cm ON c.category IS NOT DISTINCT FROM cm.category
                          AND c.currency IS NOT DISTINCT FROM cm.currency
            WHERE c.n >= {cfg.price_min_category_items})
        SELECT i._rid, i.item_id, i.category, i.currency, i.price,
               round(exp(r.med), 2) AS reference_price, r.n AS category_items,
               CASE WHEN NOT isfinite(i.price) OR i.price < {cfg.price_min!r} OR i.price > {cfg.price_max!r}
                    THEN 'absurd' ELSE 'robust_outlier' END AS reason
        FROM {_w("items")} i
        LEFT JOIN ref r ON i.category IS NOT DISTINCT FROM r.category
                       AND i.currency IS NOT DISTINCT FROM r.currency
        WHERE i.price IS NOT NULL AND (
            NOT isfinite(i.price) OR i.price < {cfg.price_min!r} OR i.price > {cfg.price_max!r}
            OR coalesce(CASE WHEN i.price > 0 THEN abs(ln(i.price) - r.med) END
                > {cfg.price_mad_k!r} * {_MAD_TO_SIGMA!r} * greatest(r.mad, {floor!r}), false))"""
    )
    n = int(_scalar(conn, "SELECT count(*) FROM _clean_price_flags") or 0)
    detail: dict[str, Any] = {
        "action": "price set to NULL, item kept",
        "rule": f"price outside [{cfg.price_min}, {cfg.price_max}] or |ln(price) - median| > "
        f"{cfg.price_mad_k} * 1.4826 * max(MAD, {floor}) per (category, currency) with at least "
        f"{cfg.price_min_category_items} priced items",
        "by_reason": dict(
            conn.execute(
                "SELECT reason, count(*) FROM _clean_price_flags GROUP BY reason ORDER BY reason"
            ).fetchall()
        ),
    }
    if n:
        # Every nulled price is kept in the log (not only examples): the change must be reversible
        # by reading the log, without going back to the raw table.
        detail["changes"] = _examples(
            conn,
            """SELECT item_id, category, currency, price AS original_price, reference_price,
                      category_items, reason FROM _clean_price_flags ORDER BY item_id""",
        )
        conn.execute(
            f"UPDATE {_w('items')} SET price = NULL WHERE _rid IN (SELECT _rid FROM _clean_price_flags)"
        )
    conn.execute("DROP TABLE _clean_price_flags")
    return [StepReport(step="outlier_prices", table="items", modified=n, detail=detail)]


def _step_k_core(conn: duckdb.DuckDBPyConnection, cfg: CleanConfig) -> list[StepReport]:
    k = cfg.k_core
    types = cfg.k_core_types or tuple(
        t
        for t in schema.EVENT_TYPES
        if t not in schema.ITEMLESS_EVENT_TYPES and t not in schema.ANNOTATION_EVENT_TYPES
    )
    parts = [
        f"SELECT user_id, item_id FROM {_w('events')} WHERE item_id IS NOT NULL AND event_type IN {_in_list(types)}"
    ]
    if "review" in types:
        parts.append(f"SELECT user_id, item_id FROM {_w('reviews')}")
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _clean_kcore AS {' UNION '.join(parts)}")
    pairs_before = int(_scalar(conn, "SELECT count(*) FROM _clean_kcore") or 0)
    iterations = 0
    while True:
        iterations += 1
        deleted = _scalar(
            conn,
            f"""DELETE FROM _clean_kcore
            WHERE user_id IN (SELECT user_id FROM _clean_kcore GROUP BY user_id HAVING count(*) < {k})
               OR item_id IN (SELECT item_id FROM _clean_kcore GROUP BY item_id HAVING count(*) < {k})""",
        )
        if not deleted:
            break
    pairs_after = int(_scalar(conn, "SELECT count(*) FROM _clean_kcore") or 0)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _clean_kusers AS SELECT DISTINCT user_id FROM _clean_kcore"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _clean_kitems AS SELECT DISTINCT item_id FROM _clean_kcore"
    )
    detail = {
        "k": k,
        "interaction_types": list(types),
        "iterations": iterations,
        "pairs_before": pairs_before,
        "pairs_after": pairs_after,
        "users_kept": int(_scalar(conn, "SELECT count(*) FROM _clean_kusers") or 0),
        "items_kept": int(_scalar(conn, "SELECT count(*) FROM _clean_kitems") or 0),
    }
    outside = """(user_id NOT IN (SELECT user_id FROM _clean_kusers)
        OR (item_id IS NOT NULL AND item_id NOT IN (SELECT item_id FROM _clean_kitems)))"""
    out = [
        _drop_where(conn, "k_core", "events", outside, detail),
        _drop_where(conn, "k_core", "reviews", outside, {"k": k}),
    ]
    for t in ("_clean_kcore", "_clean_kusers", "_clean_kitems"):
        conn.execute(f"DROP TABLE {t}")
    return out


# -- entry points --------------------------------------------------------------------------


def _create_log_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        f"""CREATE OR REPLACE TABLE {LOG_TABLE} (
            run_at TIMESTAMP NOT NULL, seq INTEGER NOT NULL, step VARCHAR NOT NULL,
            "table" VARCHAR NOT NULL, removed BIGINT NOT NULL, modified BIGINT NOT NULL,
            detail VARCHAR NOT NULL)"""
    )


def _memory_limit_bytes(conn: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's memory limit in bytes (``'1.3 GiB'``, ``'500.0 MiB'``, ``'6.0 GB'``...)."""
    text = str(_scalar(conn, "SELECT current_setting('memory_limit')") or "").strip()
    units = {
        "bytes": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
        "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    }  # fmt: skip
    num, _, unit = text.partition(" ")
    try:
        return int(float(num) * units[unit.strip().lower() or "b"])
    except (KeyError, ValueError):
        return 1 << 30  # unparseable (a future format): assume 1 GiB


# Working memory a bucket of events may use per row (the row, its window sort keys and the
# step's temporaries): buckets hold about memory_limit / this many rows, so a bucket's windows
# run in memory while the whole events table can be many times larger than the limit.
_BUCKET_BYTES_PER_ROW: Final[int] = 500
_MIN_BUCKET_ROWS: Final[int] = 100_000


def _user_buckets(conn: duckdb.DuckDBPyConnection, n_rows: int, buckets: int | None) -> list[str]:
    """Lower user-id bounds of consecutive user-id ranges holding about equal numbers of events.

    Every per-user step (exact and near duplicates, duplicate rating events, bot statistics)
    partitions by ``user_id``, so it gives the same result range by range; ranges (not hashes)
    keep the output in ``user_id`` order without a final sort of the whole table."""
    if buckets is None:
        per = max(_MIN_BUCKET_ROWS, _memory_limit_bytes(conn) // _BUCKET_BYTES_PER_ROW)
        buckets = -(-n_rows // per)
    if buckets <= 1 or n_rows == 0:
        return []
    rows = conn.execute(
        f"""WITH u AS (SELECT user_id, count(*) AS n FROM events GROUP BY user_id),
        c AS (SELECT user_id, sum(n) OVER (ORDER BY user_id) - n AS before FROM u)
        SELECT min(user_id) AS lo FROM c GROUP BY floor(before * {int(buckets)} / {int(n_rows)})
        ORDER BY lo"""
    ).fetchall()
    return [str(r[0]) for r in rows]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _clean_events(
    conn: duckdb.DuckDBPyConnection, cfg: CleanConfig, bounds: Sequence[str]
) -> dict[str, StepReport]:
    """The per-user event steps, one user-id range at a time, into ``_clean_work_events``.

    Each range is copied from ``events`` into a small temporary table, deduplicated there, its
    bot statistics appended to ``_clean_bot_stats``, and its survivors appended (in the final
    order) to ``_clean_work_events``, a table of the store (compressed, on disk): no step holds
    or sorts the whole events table. Returns the merged report of each step."""
    work = _w("events")
    conn.execute(f"DROP TABLE IF EXISTS main.{work}")
    conn.execute(schema.create_table_sql(f"main.{work}", schema.TABLES["events"]))
    ranges: list[str] = []
    for k, lo in enumerate(bounds):
        cond = f"x.user_id >= {_sql_str(lo)}"
        if k + 1 < len(bounds):
            cond += f" AND x.user_id < {_sql_str(bounds[k + 1])}"
        ranges.append(cond)
    parts: dict[str, list[StepReport]] = {}
    with task("clean events", total=len(ranges or ["true"])) as bar:
        for k, cond in enumerate(ranges or ["true"]):
            _clean_event_range(conn, cfg, k, cond, parts)
            bar.advance(1)
    return {step: _merge_reports(p) for step, p in parts.items()}


def _clean_event_range(
    conn: duckdb.DuckDBPyConnection,
    cfg: CleanConfig,
    k: int,
    cond: str,
    parts: dict[str, list[StepReport]],
) -> None:
    """One user-id range of :func:`_clean_events` (``k``: its position, ``cond``: its filter)."""
    work = _w("events")
    bucket = "_clean_bucket_events"
    cols = ", ".join(f'"{c}"' for c in schema.column_names("events"))
    # _rid identifies a working row; it never decides which duplicate is kept.
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE {bucket} AS
        SELECT row_number() OVER () AS _rid, coalesce(o.ord, -1) AS _ord, x.*
        FROM events x LEFT JOIN _clean_ingest_order o ON o.source = x.source
        WHERE {cond}"""
    )
    found: list[StepReport] = []
    if cfg.exact_duplicates:
        found.append(_exact_duplicate_events(conn, bucket))
    if cfg.near_duplicates and cfg.near_duplicate_types:
        found.append(_near_duplicate_events(conn, cfg, bucket))
    if cfg.duplicate_reviews is not None:
        found.append(_duplicate_reviews_events(conn, cfg.duplicate_reviews, bucket))
    for r in found:
        parts.setdefault(r.step, []).append(r)
    if cfg.bots:
        into = "INSERT INTO" if k else "CREATE OR REPLACE TEMP TABLE"
        conn.execute(f"{into} _clean_bot_stats {'' if k else 'AS'} {_bot_stats_sql(bucket)}")
    conn.execute(
        f"INSERT INTO main.{work} SELECT {cols} FROM {bucket} ORDER BY {_ORDER_COLS['events']}"
    )
    conn.execute(f"DROP TABLE {bucket}")


def clean_store(
    store: Store, config: CleanConfig | None = None, *, buckets: int | None = None
) -> CleanReport:
    """Rebuild the ``*_clean`` tables and ``cleaning_log`` from the raw tables (one transaction).

    Returns the report also written to ``cleaning_log``. Raw tables are not touched. Events are
    cleaned in ``buckets`` user-id ranges (default: as many as DuckDB's memory limit needs);
    the result does not depend on their number.
    """
    cfg = config or CleanConfig()
    if store.read_only:
        raise StoreError(f"{store.path}: opened read-only; cleaning writes *_clean tables")
    if buckets is not None and buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    run_at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    steps: list[StepReport] = []
    with store.transaction() as conn:
        before = {t: store.count(t) for t in schema.DATA_TABLES}
        types_before = _type_counts(conn, "events")
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _clean_ingest_order AS {ingest_order_sql()}")
        for t in ("items", "reviews", "users"):
            # _rid identifies a working row; it never decides which duplicate is kept.
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE {_w(t)} AS
                SELECT row_number() OVER () AS _rid, coalesce(o.ord, -1) AS _ord, x.*
                FROM "{t}" x LEFT JOIN _clean_ingest_order o ON o.source = x.source"""
            )
        # The per-user event steps do not depend on the other tables: run them first, range by
        # range, and report them in the documented step order.
        ev = _clean_events(conn, cfg, _user_buckets(conn, before["events"], buckets))
        if cfg.exact_duplicates:
            steps += [ev["exact_duplicates"], _exact_duplicate_reviews(conn)]
        if cfg.duplicate_ids:
            steps += _step_duplicate_ids(conn)
        if cfg.near_duplicates and cfg.near_duplicate_types:
            steps.append(ev["near_duplicates"])
        if cfg.duplicate_reviews is not None:
            steps += [
                _duplicate_reviews_reviews(conn, cfg.duplicate_reviews),
                ev["duplicate_reviews"],
            ]
        if cfg.bots:
            steps += _step_bots(conn, cfg)
        if cfg.shilling:
            steps += _step_shilling(store, cfg)
        if cfg.outlier_prices:
            steps += _step_outlier_prices(conn, cfg)
        if cfg.k_core > 1:
            steps += _step_k_core(conn, cfg)

        after: dict[str, int] = {}
        # Events are already in the final order: the working table becomes events_clean.
        conn.execute(f'DROP TABLE IF EXISTS "{clean_name("events")}"')
        conn.execute(f'ALTER TABLE main.{_w("events")} RENAME TO "{clean_name("events")}"')
        after["events"] = store.count(clean_name("events"))
        for t in ("items", "reviews", "users"):
            name = clean_name(t)
            cols = ", ".join(f'"{c}"' for c in schema.column_names(t))
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            conn.execute(schema.create_table_sql(name, schema.TABLES[t]))
            conn.execute(
                f'INSERT INTO "{name}" SELECT {cols} FROM {_w(t)} ORDER BY {_ORDER_COLS[t]}'
            )
            conn.execute(f"DROP TABLE {_w(t)}")
            after[t] = store.count(name)
        after = {t: after[t] for t in schema.DATA_TABLES}
        conn.execute("DROP TABLE _clean_ingest_order")
        types_after = _type_counts(conn, clean_name("events"))
        event_types = {
            t: [types_before.get(t, 0), types_after.get(t, 0)]
            for t in schema.EVENT_TYPES
            if t in types_before or t in types_after
        }

        _create_log_table(conn)
        for seq, s in enumerate(steps):
            conn.execute(
                f"INSERT INTO {LOG_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    run_at,
                    seq,
                    s.step,
                    s.table,
                    s.removed,
                    s.modified,
                    json.dumps(s.detail, default=str),
                ],
            )
        report = CleanReport(
            steps=steps,
            before=before,
            after=after,
            config=cfg.to_dict(),
            run_at=run_at.isoformat(),
            event_types=event_types,
        )
        store.set_meta("clean_config", json.dumps(report.config))
        store.set_meta(
            "clean_summary", json.dumps({"before": before, "after": after, "run_at": report.run_at})
        )
    return report


def _type_counts(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    rows = conn.execute(f'SELECT event_type, count(*) FROM "{table}" GROUP BY ALL').fetchall()
    return {str(t): int(n) for t, n in rows}


def load_report(store: Store) -> CleanReport | None:
    """The report of the last cleaning run, read back from ``cleaning_log`` (None if never run)."""
    if not store.has_table(LOG_TABLE):
        return None
    summary_raw = store.get_meta("clean_summary")
    config_raw = store.get_meta("clean_config")
    # Last query fully fetched, so the connection is left with no open result.
    rows = store.conn.execute(
        f'SELECT run_at, step, "table", removed, modified, detail FROM {LOG_TABLE} ORDER BY seq'
    ).fetchall()
    summary = json.loads(summary_raw) if summary_raw else {}
    steps = [
        StepReport(
            step=r[1], table=r[2], removed=int(r[3]), modified=int(r[4]), detail=json.loads(r[5])
        )
        for r in rows
    ]
    run_at = rows[0][0].isoformat() if rows else summary.get("run_at", "")
    return CleanReport(
        steps=steps,
        before=summary.get("before", {}),
        after=summary.get("after", {}),
        config=json.loads(config_raw) if config_raw else {},
        run_at=run_at,
    )


def preferred_table(store: Store, name: str) -> str | None:
    """``<name>_clean`` when it has rows, else ``name`` when it has rows; else whichever exists
    (the clean one first), None when neither does."""
    for t in (f"{name}_clean", name):
        if store.has_table(t) and store.count(t) > 0:
            return t
    if store.has_table(f"{name}_clean"):
        return f"{name}_clean"
    return name if store.has_table(name) else None


def has_clean_tables(store: Store) -> bool:
    """True when every data table has a cleaned copy."""
    return all(store.has_table(clean_name(t)) for t in schema.DATA_TABLES)


__all__ = [
    "BEHAVIOUR_TYPES",
    "CLEAN_SUFFIX",
    "LOG_TABLE",
    "CleanConfig",
    "CleanConfigError",
    "CleanReport",
    "StepReport",
    "clean_name",
    "clean_store",
    "has_clean_tables",
    "ingest_order_sql",
    "load_report",
    "preferred_table",
]
