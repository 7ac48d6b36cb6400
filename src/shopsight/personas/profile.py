"""Per-user profiles computed in DuckDB SQL, chunk by chunk, in bounded memory.

Every profile field is an aggregate over one user's events (and reviews), so users are
processed in independent chunks selected by ``hash(user_id) % n_chunks``: DuckDB only ever
holds one chunk's events in a temporary table, and Python only holds the per-user results
(a few dozen numbers per user plus their top affinities). The definitions of the fields are in
``docs/personas.md``; the SQL below is their reference implementation.

Sources: the cleaned tables (``events_clean``, ``items_clean``, ``reviews_clean``,
``users_clean``) when the store has been cleaned, else the raw ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from shopsight.data.clean import preferred_table
from shopsight.data.store import Store, fetch_one
from shopsight.errors import DataError

FloatArray = npt.NDArray[np.float64]

# How much one event says about a user's taste. Ratings use their value instead (1..5).
EVENT_WEIGHTS: Final[dict[str, float]] = {
    "view": 1.0,
    "click": 2.0,
    "favorite": 3.0,
    "share": 3.0,
    "add_to_cart": 4.0,
    "remove_from_cart": 0.0,
    "purchase": 8.0,
    "rate": 0.0,  # replaced by the rating value
    "review": 0.0,
    "search": 0.0,
}
# Attribute keys whose values describe an item's style (case-insensitive JSON keys).
STYLE_KEYS: Final[tuple[str, ...]] = (
    "style",
    "pattern",
    "colour",
    "color",
    "basecolour",
    "usage",
    "season",
    "genre",
)
AFFINITY_KINDS: Final[tuple[str, ...]] = ("category", "brand", "style", "keyword", "visual")
STOPWORDS: Final[frozenset[str]] = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "this",
        "that",
        "from",
        "your",
        "you",
        "are",
        "was",
        "were",
        "its",
        "it's",
        "our",
        "out",
        "has",
        "have",
        "had",
        "not",
        "but",
        "all",
        "any",
        "can",
        "will",
        "into",
        "over",
        "more",
        "most",
        "than",
        "then",
        "them",
        "they",
        "their",
        "there",
        "here",
        "what",
        "when",
        "which",
        "who",
        "why",
        "how",
        "one",
        "two",
        "per",
        "each",
        "also",
        "just",
        "very",
        "too",
        "off",
        "via",
        "pack",
        "size",
        "category",
        "made",
        "look",
        "design",
        "details",
        "finish",
        "piece",
        "brings",
        "pairs",
        "tones",
        "expect",
        "feel",
        "suit",
        "suits",
        "use",
        "gift",
        "card",
        "cards",
        "amazon",
        "item",
        "items",
        "new",
    ]
)

SCALAR_FIELDS: Final[tuple[str, ...]] = (
    "n_events",
    "n_views",
    "n_clicks",
    "n_carts",
    "n_removes",
    "n_purchases",
    "n_searches",
    "n_favorites",
    "n_shares",
    "n_ratings",
    "n_items",
    "first_ts",
    "last_ts",
    "ordinal_time",
    "spend",
    "avg_price",
    "price_z",
    "browse_price_z",
    "buy_price_z",
    "items_browsed",
    "items_carted",
    "items_abandoned",
    "items_bought",
    "n_sessions",
    "purchase_sessions",
    "session_minutes",
    "events_per_session",
    "weekend_share",
    "mean_rating",
    "rating_bias",
    "n_reviews",
    "sentiment",
)


@dataclass(frozen=True)
class ProfileConfig:
    """Knobs of the profile computation (defaults suit shops of any size)."""

    chunk_users: int = 25_000  # users per chunk: bounds DuckDB's working set
    top_n: int = 5  # top categories / brands / styles / keywords shown per user
    vocab_size: int = 40  # columns per kind in the dense matrices used for segmentation
    session_gap_minutes: float = 30.0  # sessionisation when events carry no session id
    as_of: datetime | None = None  # "now" for recency; default: the store's last event
    new_days: float | None = None  # lifecycle windows; None: derived from the time span
    at_risk_days: float | None = None
    churn_days: float | None = None
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(EVENT_WEIGHTS))
    since: datetime | None = None  # only events in [since, until) (e.g. the halves of a
    until: datetime | None = None  # time-stability check); reviews are not restricted


@dataclass
class ProfileTables:
    """Profiles of all users: scalars, rhythm histograms, dense affinities and top lists.

    Rows of every array follow ``scalars["user_id"]``. ``dense[kind]`` is ``(vocab, matrix)``
    with each row the user's share of engagement per vocabulary key; ``top`` is the long table
    ``user_id, kind, key, weight, rank`` of each user's top keys per kind.
    """

    scalars: pa.Table
    hours: npt.NDArray[np.float32]  # (n_users, 24) events per hour of day (UTC)
    weekdays: npt.NDArray[np.float32]  # (n_users, 7) Monday=0
    dense: dict[str, tuple[list[str], npt.NDArray[np.float32]]]
    top: pa.Table
    info: dict[str, Any]

    @property
    def user_ids(self) -> list[str]:
        return [str(u) for u in self.scalars.column("user_id").to_pylist()]

    def __len__(self) -> int:
        return self.scalars.num_rows


_table = preferred_table  # the name the persona modules use


def _lit(words: frozenset[str]) -> str:
    return "[" + ", ".join("'" + w.replace("'", "''") + "'" for w in sorted(words)) + "]"


def _prepare(conn: duckdb.DuckDBPyConnection, items: str | None, cfg: ProfileConfig) -> None:
    """Item-level helper tables shared by all chunks (bounded by the catalogue size)."""
    weights = ", ".join(f"('{k}', {float(v)})" for k, v in cfg.event_weights.items())
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE _p_w AS SELECT * FROM (VALUES {weights}) t(event_type, w)"
    )
    if items is None:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _p_items (item_id VARCHAR, category VARCHAR, "
            "brand VARCHAR, price DOUBLE, price_z DOUBLE, attributes VARCHAR, title VARCHAR, "
            "description VARCHAR)"
        )
    else:
        # Price position within the category: z-score of log price (robust to currencies
        # and to categories of very different price levels).
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _p_items AS
            WITH one AS (
                SELECT item_id, any_value(nullif(trim(category), '')) AS category,
                       any_value(nullif(trim(brand), '')) AS brand,
                       any_value(CASE WHEN price > 0 THEN price END) AS price,
                       any_value(attributes) AS attributes, any_value(title) AS title,
                       any_value(description) AS description
                FROM "{items}" GROUP BY item_id),
            st AS (
                SELECT coalesce(category, '') AS cat, avg(ln(price)) AS mu,
                       stddev_pop(ln(price)) AS sd
                FROM one WHERE price IS NOT NULL GROUP BY 1)
            SELECT one.*, CASE WHEN price IS NOT NULL
                               THEN (ln(price) - st.mu) / CASE WHEN st.sd > 0 THEN st.sd ELSE 1 END
                          END AS price_z
            FROM one LEFT JOIN st ON coalesce(one.category, '') = st.cat"""
        )
    # Style facets from JSON attributes (lower-cased keys in STYLE_KEYS).
    keys = ", ".join(f"'{k}'" for k in STYLE_KEYS)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _p_styles AS
        SELECT DISTINCT item_id, lower(k) || ': ' || lower(trim(v)) AS style FROM (
            SELECT item_id, k, json_extract_string(attributes, '$."' || k || '"') AS v FROM (
                SELECT item_id, unnest(json_keys(attributes)) AS k, attributes
                FROM _p_items WHERE attributes IS NOT NULL AND json_valid(attributes)
                  AND json_type(attributes) = 'OBJECT'))
        WHERE lower(k) IN ({keys}) AND v IS NOT NULL AND length(trim(v)) BETWEEN 1 AND 40
          AND NOT starts_with(trim(v), '[') AND NOT starts_with(trim(v), '{{')"""
    )
    # Genres/categories given as "A|B" (MovieLens) also count as styles.
    conn.execute(
        """INSERT INTO _p_styles
        SELECT DISTINCT item_id, 'genre: ' || lower(trim(g)) FROM (
            SELECT item_id, unnest(string_split(category, '|')) AS g
            FROM _p_items WHERE category LIKE '%|%') WHERE trim(g) <> ''"""
    )
    # Keyword tokens of each item (title, description, category), with an idf weight.
    stop = _lit(STOPWORDS)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _p_tokens AS
        WITH tok AS (
            SELECT DISTINCT item_id, t AS token FROM (
                SELECT item_id, unnest(regexp_split_to_array(lower(
                    coalesce(title, '') || ' ' || coalesce(left(description, 600), '') || ' '
                    || replace(coalesce(category, ''), '>', ' ')), '[^a-z]+')) AS t
                FROM _p_items)
            WHERE length(t) >= 3 AND NOT list_contains({stop}, t)),
        brands AS (SELECT DISTINCT lower(t) AS t FROM (
            SELECT unnest(regexp_split_to_array(brand, '[^A-Za-z]+')) AS t FROM _p_items)),
        n AS (SELECT greatest(count(*), 1) AS n FROM _p_items)
        SELECT tok.item_id, tok.token,
               ln((n.n + 1.0) / (count(*) OVER (PARTITION BY tok.token) + 1.0)) AS idf
        FROM tok, n WHERE tok.token NOT IN (SELECT t FROM brands WHERE t IS NOT NULL)"""
    )


def _vocab(
    conn: duckdb.DuckDBPyConnection, events: str, cfg: ProfileConfig, visual: bool
) -> dict[str, list[str]]:
    """Global vocabularies of the dense matrices: the most engaged-with keys per kind."""
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _p_item_w AS
        SELECT e.item_id, sum(CASE WHEN e.event_type IN ('rate', 'review')
                                   THEN coalesce(e.value, 3) ELSE w.w END) AS w,
               count(DISTINCT e.user_id) AS users
        FROM "{events}" e JOIN _p_w w USING (event_type)
        WHERE e.item_id IS NOT NULL GROUP BY 1"""
    )
    v = cfg.vocab_size
    n_items = max(1, int((fetch_one(conn, "SELECT count(*) FROM _p_items") or (1,))[0]))
    sql = {
        "category": "SELECT i.category, sum(w.w) FROM _p_item_w w JOIN _p_items i USING (item_id) "
        "WHERE i.category IS NOT NULL GROUP BY 1",
        "brand": "SELECT i.brand, sum(w.w) FROM _p_item_w w JOIN _p_items i USING (item_id) "
        "WHERE i.brand IS NOT NULL GROUP BY 1",
        "style": "SELECT s.style, sum(w.w) FROM _p_item_w w JOIN _p_styles s USING (item_id) "
        "GROUP BY 1",
        # Keywords present in at most half of the catalogue: the rest do not discriminate.
        "keyword": "SELECT t.token, sum(w.w * t.idf) FROM _p_item_w w JOIN _p_tokens t "
        f"USING (item_id) WHERE t.idf > ln(({n_items} + 1.0) / ({n_items} * 0.5 + 1.0)) "
        "GROUP BY 1",
    }
    if visual:
        sql["visual"] = (
            "SELECT s.visual, sum(w.w) FROM _p_item_w w JOIN _p_visual s USING (item_id) GROUP BY 1"
        )
    out: dict[str, list[str]] = {}
    for kind, q in sql.items():
        # Rounded: parallel float sums differ in the last bits from run to run, and a near tie
        # must not reorder the vocabulary.
        rows = conn.execute(
            f"SELECT * FROM ({q}) t(key, w) ORDER BY round(w, 6) DESC, key LIMIT {v}"
        ).fetchall()
        out[kind] = [str(r[0]) for r in rows]
    return out


def _chunk_sql(events: str, n_chunks: int, c: int, gap_min: float) -> str:
    where = f"WHERE hash(e.user_id) % {n_chunks} = {c}" if n_chunks > 1 else ""
    return f"""CREATE OR REPLACE TEMP TABLE _pe AS
        WITH base AS (
            SELECT e.user_id, e.item_id, e.event_type, e.timestamp, e.ts_ordinal,
                   e.session_id, e.query, e.value,
                   CASE WHEN e.event_type IN ('rate', 'review') THEN coalesce(e.value, 3)
                        ELSE coalesce(w.w, 0) END AS weight,
                   i.category, i.brand, i.price, i.price_z
            FROM "{events}" e LEFT JOIN _p_w w USING (event_type)
            LEFT JOIN _p_items i USING (item_id) {where}),
        gaps AS (
            SELECT *, CASE WHEN lag(timestamp) OVER u IS NULL
                             OR timestamp - lag(timestamp) OVER u > INTERVAL {gap_min} MINUTE
                           THEN 1 ELSE 0 END AS new_session
            FROM base WINDOW u AS (PARTITION BY user_id ORDER BY timestamp))
        SELECT * EXCLUDE (new_session),
               coalesce(session_id, 'gap:' || CAST(sum(new_session) OVER (
                   PARTITION BY user_id ORDER BY timestamp
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS VARCHAR)) AS sess
        FROM gaps"""


_SCALARS_SQL: Final[str] = """
WITH ev AS (
    SELECT user_id,
        count(*) AS n_events,
        count(*) FILTER (event_type = 'view') AS n_views,
        count(*) FILTER (event_type = 'click') AS n_clicks,
        count(*) FILTER (event_type = 'add_to_cart') AS n_carts,
        count(*) FILTER (event_type = 'remove_from_cart') AS n_removes,
        count(*) FILTER (event_type = 'purchase') AS n_purchases,
        count(*) FILTER (event_type = 'search') AS n_searches,
        count(*) FILTER (event_type = 'favorite') AS n_favorites,
        count(*) FILTER (event_type = 'share') AS n_shares,
        count(*) FILTER (event_type IN ('rate', 'review')) AS n_ratings,
        count(DISTINCT item_id) AS n_items,
        min(timestamp) AS first_ts, max(timestamp) AS last_ts,
        bool_or(ts_ordinal) AS ordinal_time,
        coalesce(sum(coalesce(value, price)) FILTER (event_type = 'purchase'), 0) AS spend,
        sum(price * weight) FILTER (price IS NOT NULL AND weight > 0)
            / nullif(sum(weight) FILTER (price IS NOT NULL AND weight > 0), 0) AS avg_price,
        sum(price_z * weight) FILTER (price_z IS NOT NULL AND weight > 0)
            / nullif(sum(weight) FILTER (price_z IS NOT NULL AND weight > 0), 0) AS price_z,
        avg(price_z) FILTER (event_type IN ('view', 'click')) AS browse_price_z,
        avg(price_z) FILTER (event_type IN ('add_to_cart', 'purchase')) AS buy_price_z,
        avg(CASE WHEN isodow(timestamp) >= 6 THEN 1.0 ELSE 0.0 END)
            FILTER (NOT ts_ordinal) AS weekend_share
    FROM _pe GROUP BY user_id),
fun AS (
    SELECT user_id,
        count(*) FILTER (browsed) AS items_browsed,
        count(*) FILTER (carted) AS items_carted,
        count(*) FILTER (carted AND NOT bought) AS items_abandoned,
        count(*) FILTER (bought) AS items_bought
    FROM (SELECT user_id, item_id,
                 bool_or(event_type IN ('view', 'click')) AS browsed,
                 bool_or(event_type = 'add_to_cart') AS carted,
                 bool_or(event_type = 'purchase') AS bought
          FROM _pe WHERE item_id IS NOT NULL GROUP BY 1, 2)
    GROUP BY user_id),
ses AS (
    SELECT user_id, count(*) AS n_sessions,
        count(*) FILTER (has_purchase) AS purchase_sessions,
        avg(minutes) FILTER (NOT ordinal) AS session_minutes,
        avg(n) AS events_per_session
    FROM (SELECT user_id, sess, count(*) AS n, bool_or(ts_ordinal) AS ordinal,
                 bool_or(event_type = 'purchase') AS has_purchase,
                 epoch(max(timestamp) - min(timestamp)) / 60.0 AS minutes
          FROM _pe GROUP BY 1, 2)
    GROUP BY user_id),
rat AS (
    SELECT p.user_id, avg(p.value) AS mean_rating,
        avg(p.value - (r.s + 5 * g.m) / (r.n + 5)) AS rating_bias
    FROM _pe p JOIN _p_item_rating r USING (item_id), _p_global_rating g
    WHERE p.event_type IN ('rate', 'review') AND p.value IS NOT NULL
    GROUP BY p.user_id)
SELECT ev.*, fun.* EXCLUDE (user_id), ses.* EXCLUDE (user_id), rat.* EXCLUDE (user_id)
FROM ev LEFT JOIN fun USING (user_id) LEFT JOIN ses USING (user_id)
LEFT JOIN rat USING (user_id)
"""


def _review_sql(reviews: str, n_chunks: int, c: int) -> str:
    # Sentiment comes from the review text model (personas/reviews.py), not from SQL.
    where = f"WHERE hash(user_id) % {n_chunks} = {c}" if n_chunks > 1 else ""
    return f"""SELECT user_id, count(*) AS n_reviews, CAST(NULL AS DOUBLE) AS sentiment
    FROM "{reviews}" {where} GROUP BY user_id"""


_AFFINITY_SQL: Final[dict[str, str]] = {
    "category": "SELECT user_id, category AS key, sum(weight) AS w FROM _pe "
    "WHERE category IS NOT NULL AND weight > 0 GROUP BY 1, 2",
    "brand": "SELECT user_id, brand AS key, sum(weight) AS w FROM _pe "
    "WHERE brand IS NOT NULL AND weight > 0 GROUP BY 1, 2",
    "style": "SELECT p.user_id, s.style AS key, sum(p.weight) AS w FROM _pe p "
    "JOIN _p_styles s USING (item_id) WHERE p.weight > 0 GROUP BY 1, 2",
    "visual": "SELECT p.user_id, s.visual AS key, sum(p.weight) AS w FROM _pe p "
    "JOIN _p_visual s USING (item_id) WHERE p.weight > 0 GROUP BY 1, 2",
    # Item text weighted by engagement and idf, plus the user's own search words (x2: intent).
    "keyword": """SELECT user_id, key, sum(w) AS w FROM (
        SELECT ui.user_id, t.token AS key, ui.w * t.idf AS w
        FROM (SELECT user_id, item_id, sum(weight) AS w FROM _pe
              WHERE item_id IS NOT NULL AND weight > 0 GROUP BY 1, 2) ui
        JOIN _p_tokens t USING (item_id)
        UNION ALL
        SELECT q.user_id, q.t, 2.0 * coalesce(idf.idf, mx.mx)
        FROM (SELECT user_id, unnest(regexp_split_to_array(lower(query), '[^a-z]+')) AS t
              FROM _pe WHERE query IS NOT NULL) q
        LEFT JOIN (SELECT token, max(idf) AS idf FROM _p_tokens GROUP BY 1) idf
            ON q.t = idf.token
        CROSS JOIN (SELECT coalesce(max(idf), 1.0) AS mx FROM _p_tokens) mx
        WHERE length(q.t) >= 3 AND NOT list_contains(__STOP__, q.t))
    GROUP BY 1, 2""",
}


def compute_profiles(
    store: Store,
    config: ProfileConfig | None = None,
    *,
    item_visual: Mapping[str, str] | None = None,
    vocab: Mapping[str, list[str]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProfileTables:
    """Profiles of every user with at least one event, chunk by chunk (see module docstring).

    ``item_visual`` maps item ids to a visual-style label (nearest image-embedding cluster);
    when given, each user also gets a ``visual`` affinity. ``vocab`` fixes the columns of the
    dense matrices (to compare two computations, e.g. two time windows).
    """
    cfg = config or ProfileConfig()
    conn = store.conn
    events = _table(store, "events")
    if events is None or store.count(events) == 0:
        raise DataError(f"{store.path}: events: no events to profile (ingest some first)")
    if cfg.since is not None or cfg.until is not None:
        conds = [
            f"timestamp {op} TIMESTAMP '{t.replace(tzinfo=None).isoformat(sep=' ')}'"
            for op, t in ((">=", cfg.since), ("<", cfg.until))
            if t is not None
        ]
        conn.execute(
            f'CREATE OR REPLACE TEMP VIEW _p_events_window AS SELECT * FROM "{events}" '
            f"WHERE {' AND '.join(conds)}"
        )
        events = "_p_events_window"
        if store.count(events) == 0:
            raise DataError(f"{store.path}: events: none between {cfg.since} and {cfg.until}")
    items, reviews, users = _table(store, "items"), _table(store, "reviews"), _table(store, "users")
    _prepare(conn, items, cfg)
    has_visual = bool(item_visual)
    if has_visual and item_visual is not None:
        conn.execute("CREATE OR REPLACE TEMP TABLE _p_visual (item_id VARCHAR, visual VARCHAR)")
        conn.executemany("INSERT INTO _p_visual VALUES (?, ?)", list(item_visual.items()))
    # Item mean ratings, shrunk to the global mean (5 pseudo-ratings) for the rating bias.
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _p_item_rating AS
        SELECT item_id, sum(value) AS s, count(*) AS n FROM "{events}"
        WHERE event_type IN ('rate', 'review') AND value IS NOT NULL GROUP BY 1"""
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _p_global_rating AS
        SELECT coalesce(avg(value), 0) AS m FROM "{events}"
        WHERE event_type IN ('rate', 'review') AND value IS NOT NULL"""
    )
    found = _vocab(conn, events, cfg, has_visual)
    vocab = {k: list(vocab.get(k, [])) for k in found} if vocab is not None else found
    # Share of a keyword's items in its most common category: product nouns ("hoodie") sit in
    # one category, style words ("vintage") spread over many; names prefer the latter.
    conc_rows = conn.execute(
        """SELECT token, max(n) / sum(n) FROM (
               SELECT t.token, coalesce(i.category, '') AS cat, count(*) AS n
               FROM _p_tokens t JOIN _p_items i USING (item_id) GROUP BY 1, 2)
           GROUP BY 1"""
    ).fetchall()
    conc = {str(r[0]): float(r[1]) for r in conc_rows}
    keyword_concentration = {k: round(conc.get(k, 1.0), 4) for k in vocab.get("keyword", [])}
    stats = fetch_one(
        conn,
        f'SELECT count(DISTINCT user_id), min(timestamp), max(timestamp) FROM "{events}"',
    )
    assert stats is not None
    n_users_total = int(stats[0])
    n_chunks = max(1, math.ceil(n_users_total / cfg.chunk_users))
    kinds = [k for k in AFFINITY_KINDS if k != "visual" or has_visual]

    scal_parts: list[pa.Table] = []
    top_parts: list[pa.Table] = []
    hours_parts: list[npt.NDArray[np.float32]] = []
    wd_parts: list[npt.NDArray[np.float32]] = []
    dense_parts: dict[str, list[npt.NDArray[np.float32]]] = {k: [] for k in kinds}
    stop = _lit(STOPWORDS)
    for c in range(n_chunks):
        if progress is not None:
            progress(f"profiles: chunk {c + 1}/{n_chunks}")
        conn.execute(_chunk_sql(events, n_chunks, c, cfg.session_gap_minutes))
        scal = conn.sql(_SCALARS_SQL + " ORDER BY user_id").to_arrow_table()
        uids = [str(u) for u in scal.column("user_id").to_pylist()]
        pos = {u: i for i, u in enumerate(uids)}
        n = len(uids)
        if reviews is not None and store.count(reviews) > 0:
            rv = conn.sql(_review_sql(reviews, n_chunks, c)).to_arrow_table()
            n_rev = np.zeros(n)
            sent = np.full(n, np.nan)
            for u, k, s in zip(
                rv.column("user_id").to_pylist(),
                rv.column("n_reviews").to_pylist(),
                rv.column("sentiment").to_pylist(),
                strict=True,
            ):
                if u in pos:
                    n_rev[pos[u]] = k
                    sent[pos[u]] = np.nan if s is None else s
        else:
            n_rev, sent = np.zeros(n), np.full(n, np.nan)
        scal = scal.append_column("n_reviews", pa.array(n_rev, pa.float64()))
        scal = scal.append_column("sentiment", pa.array(sent, pa.float64()))
        scal_parts.append(scal)

        hw = np.zeros((n, 24), np.float32)
        wd = np.zeros((n, 7), np.float32)
        uid_set = pa.array(uids, pa.string())
        rh = conn.sql(
            "SELECT user_id, hour(timestamp) AS h, isodow(timestamp) - 1 AS d, count(*) AS k "
            "FROM _pe WHERE NOT ts_ordinal GROUP BY 1, 2, 3"
        ).to_arrow_table()
        if rh.num_rows:
            row = pc.index_in(rh.column("user_id"), value_set=uid_set).to_numpy()
            h = rh.column("h").to_numpy().astype(np.int64)
            dd = rh.column("d").to_numpy().astype(np.int64)
            k = rh.column("k").to_numpy().astype(np.float32)
            np.add.at(hw, (row, h), k)
            np.add.at(wd, (row, dd), k)
        hours_parts.append(hw)
        wd_parts.append(wd)

        for kind in kinds:
            q = _AFFINITY_SQL[kind].replace("__STOP__", stop)
            aff = conn.sql(
                f"""SELECT user_id, key, w / sum(w) OVER (PARTITION BY user_id) AS weight,
                       row_number() OVER (PARTITION BY user_id ORDER BY round(w, 9) DESC, key) AS rank
                FROM ({q}) WHERE w > 0"""
            ).to_arrow_table()
            mat = np.zeros((n, len(vocab[kind])), np.float32)
            w_col = aff.column("weight").to_numpy()
            r_col = aff.column("rank").to_numpy()
            if aff.num_rows and vocab[kind]:
                row = pc.index_in(aff.column("user_id"), value_set=uid_set).to_numpy(
                    zero_copy_only=False
                )
                col = pc.index_in(
                    aff.column("key"), value_set=pa.array(vocab[kind], pa.string())
                ).to_numpy(zero_copy_only=False)
                ok = ~np.isnan(col.astype(np.float64))
                mat[row[ok].astype(np.int64), col[ok].astype(np.int64)] = w_col[ok]
            dense_parts[kind].append(mat)
            keep = pa.array(r_col <= cfg.top_n)
            top_parts.append(
                pa.table(
                    {
                        "user_id": aff.column("user_id").filter(keep).cast(pa.string()),
                        "kind": pa.array([kind] * int(np.sum(r_col <= cfg.top_n)), pa.string()),
                        "key": aff.column("key").filter(keep).cast(pa.string()),
                        "weight": aff.column("weight").filter(keep).cast(pa.float64()),
                        "rank": aff.column("rank").filter(keep).cast(pa.int64()),
                    }
                )
            )
    conn.execute("DROP TABLE IF EXISTS _pe")

    scalars = pa.concat_tables(scal_parts, promote_options="permissive")
    demo = _demographics(conn, users, scalars)
    for name, col in demo.items():
        scalars = scalars.append_column(name, col)
    first_ts, last_ts = stats[1], stats[2]
    as_of = cfg.as_of or last_ts
    span_days = max((last_ts - first_ts).total_seconds() / 86400.0, 1.0) if first_ts else 1.0
    info = {
        "events_table": events,
        "items_table": items,
        "reviews_table": reviews,
        "users_table": users,
        "n_users": scalars.num_rows,
        "n_chunks": n_chunks,
        "first_event": first_ts.isoformat() if first_ts else None,
        "as_of": as_of.isoformat() if as_of else None,
        "span_days": span_days,
        "vocab": vocab,
        "keyword_concentration": keyword_concentration,
    }
    top = (
        pa.concat_tables(top_parts)
        if top_parts
        else pa.table(
            {
                "user_id": pa.array([], pa.string()),
                "kind": pa.array([], pa.string()),
                "key": pa.array([], pa.string()),
                "weight": pa.array([], pa.float64()),
                "rank": pa.array([], pa.int64()),
            }
        )
    )
    return ProfileTables(
        scalars=scalars,
        hours=np.concatenate(hours_parts) if hours_parts else np.zeros((0, 24), np.float32),
        weekdays=np.concatenate(wd_parts) if wd_parts else np.zeros((0, 7), np.float32),
        dense={k: (vocab[k], np.concatenate(dense_parts[k])) for k in kinds},
        top=top,
        info=info,
    )


def _demographics(
    conn: duckdb.DuckDBPyConnection, users: str | None, scalars: pa.Table
) -> dict[str, pa.Array]:
    """Age band, gender, region and (MovieLens) occupation, aligned with ``scalars``."""
    names = ("age_band", "gender", "region", "occupation")
    n = scalars.num_rows
    if users is None:
        return {k: pa.nulls(n, pa.string()) for k in names}
    conn.register("_p_uids", pa.table({"user_id": scalars.column("user_id")}))
    try:
        rows = conn.execute(
            f"""SELECT x.user_id, any_value(u.age_band), any_value(u.gender), any_value(u.region),
                   any_value(json_extract_string(u.attributes, '$.occupation'))
            FROM _p_uids x LEFT JOIN "{users}" u USING (user_id) GROUP BY 1"""
        ).fetchall()
    finally:
        conn.unregister("_p_uids")
    by = {str(r[0]): r[1:] for r in rows}
    ids = [str(u) for u in scalars.column("user_id").to_pylist()]
    return {
        name: pa.array([by.get(u, (None,) * 4)[j] for u in ids], pa.string())
        for j, name in enumerate(names)
    }


# -- derived fields (numpy over all users) ------------------------------------------------------


def _col(t: pa.Table, name: str) -> FloatArray:
    arr = t.column(name).to_numpy(zero_copy_only=False)
    return np.asarray(
        [np.nan if v is None else v for v in arr] if arr.dtype == object else arr, np.float64
    )


def quintile_scores(x: FloatArray, higher_is_better: bool = True) -> npt.NDArray[np.int64]:
    """1..5 by rank quintile (ties share their average rank; NaN gets 1)."""
    v = np.where(np.isfinite(x), x, -np.inf if higher_is_better else np.inf)
    v = v if higher_is_better else -v
    ranks = np.empty(len(v))
    ranks[np.argsort(v, kind="stable")] = np.arange(1, len(v) + 1)
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inv, weights=ranks) / counts)[inv]  # ties share their mean rank
    r = ranks / max(len(v), 1)
    out: npt.NDArray[np.int64] = np.clip(np.ceil(r * 5), 1, 5).astype(np.int64)
    return out


def derived_fields(
    t: ProfileTables, cfg: ProfileConfig, signals: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, np.ndarray]:
    """RFM, lifecycle, price band and sensitivity, funnel rates, rhythm, propensity.

    ``signals`` (from :func:`shopsight.personas.signals.signal_inventory`): fields whose signal
    the store lacks are NaN ("unknown"), not a number computed from what is not there.
    """
    from shopsight.personas.signals import available

    sig = dict(signals or {})
    s = t.scalars
    n = s.num_rows
    as_of = datetime.fromisoformat(t.info["as_of"]) if t.info.get("as_of") else None
    last = s.column("last_ts").to_pylist()
    first = s.column("first_ts").to_pylist()
    span = float(t.info["span_days"])
    recency = np.array(
        [(as_of - lt).total_seconds() / 86400.0 if as_of and lt else np.nan for lt in last]
    )
    tenure = np.array(
        [(as_of - ft).total_seconds() / 86400.0 if as_of and ft else np.nan for ft in first]
    )
    n_purch = _col(s, "n_purchases")
    has_purchases = bool(np.nansum(n_purch) > 0)
    # Frequency counts conversions when the shop has them, else visits, else events (a review
    # dump has neither purchases nor real sessions).
    if has_purchases:
        frequency = n_purch
    elif available(sig, "sessions"):
        frequency = _col(s, "n_sessions")
    else:
        frequency = _col(s, "n_events")
    spend = _col(s, "spend")
    if not has_purchases:  # no transactions: value = price of what the user rated/reviewed
        spend = np.nan_to_num(_col(s, "avg_price")) * _col(s, "n_ratings")
        t.info["value_basis"] = "reviewed_price"
        if not np.nansum(spend) > 0 or not available(sig, "price"):
            # no prices either: value = number of ratings
            spend = _col(s, "n_ratings")
            t.info["value_basis"] = "ratings"
    else:
        t.info["value_basis"] = "spend"
    r_score = quintile_scores(recency, higher_is_better=False)
    f_score = quintile_scores(frequency)
    m_score = quintile_scores(spend)
    new_days = cfg.new_days if cfg.new_days is not None else max(1.0, min(30.0, 0.15 * span))
    risk_days = (
        cfg.at_risk_days if cfg.at_risk_days is not None else max(1.0, min(60.0, 0.2 * span))
    )
    churn_days = (
        cfg.churn_days if cfg.churn_days is not None else max(2 * risk_days, min(180.0, 0.4 * span))
    )
    sessions = _col(s, "n_sessions")
    # A user's own rhythm: mean days between sessions; absent for single-session users.
    own_gap = np.where(sessions > 1, (tenure - recency) / np.maximum(sessions - 1, 1), np.nan)
    at_risk = (recency > risk_days) | (np.isfinite(own_gap) & (recency > 3 * own_gap + 1))
    stage = np.where(
        recency > churn_days,
        "churned",
        np.where(tenure <= new_days, "new", np.where(at_risk, "at_risk", "active")),
    )
    pz = _col(s, "price_z")
    band = np.where(
        ~np.isfinite(pz),
        "unknown",
        np.where(pz < -0.43, "budget", np.where(pz > 0.43, "premium", "mid")),
    )
    sensitivity = _col(s, "browse_price_z") - _col(s, "buy_price_z")
    browsed = _col(s, "items_browsed")
    carted = _col(s, "items_carted")
    view_to_buy = np.where(browsed > 0, _col(s, "items_bought") / np.maximum(browsed, 1), np.nan)
    abandonment = np.where(carted > 0, _col(s, "items_abandoned") / np.maximum(carted, 1), np.nan)
    # Peak hour: the busiest hour (a circular mean can fall in an hour without any activity);
    # concentration: the resultant length of the hours on the clock circle.
    ang = 2 * np.pi * (np.arange(24) + 0.5) / 24
    tot = t.hours.sum(axis=1)
    sx, cx = t.hours @ np.sin(ang), t.hours @ np.cos(ang)
    peak = np.where(tot > 0, np.argmax(t.hours, axis=1).astype(np.float64), np.nan)
    hour_concentration = np.where(tot > 0, np.hypot(sx, cx) / np.maximum(tot, 1), np.nan)
    # Purchase propensity: share of sessions with a purchase, shrunk to the population rate
    # (beta prior of strength 4 sessions), so one lucky session does not read as 100%.
    ps = _col(s, "purchase_sessions")
    prior = float(np.nansum(ps) / max(np.nansum(sessions), 1))
    propensity = (np.nan_to_num(ps) + 4 * prior) / (np.nan_to_num(sessions) + 4)
    brand_top = np.zeros(n)
    if "brand" in t.dense and t.dense["brand"][1].shape[1]:
        brand_top = t.dense["brand"][1].max(axis=1).astype(np.float64)
    ev = np.maximum(_col(s, "n_events"), 1)
    nan = np.full(n, np.nan)
    if not available(sig, "time_of_day"):
        peak, hour_concentration = nan, nan
    if not available(sig, "funnel"):
        view_to_buy, abandonment, propensity = nan, nan, nan
    if not available(sig, "price"):
        band = np.full(n, "unknown")
        sensitivity = nan
    if not available(sig, "brands"):
        brand_top = nan
    return {
        "recency_days": recency,
        "tenure_days": tenure,
        "frequency": frequency,
        "monetary": spend,
        "r_score": r_score,
        "f_score": f_score,
        "m_score": m_score,
        "rfm_score": (r_score + f_score + m_score) / 3.0,
        "lifecycle": stage,
        "price_band": band,
        "price_sensitivity": sensitivity,
        "view_to_buy": view_to_buy,
        "cart_abandonment": abandonment,
        "peak_hour": peak,
        "hour_concentration": hour_concentration,
        "purchase_propensity": propensity,
        "brand_concentration": brand_top,
        "search_share": _col(s, "n_searches") / ev if available(sig, "searches") else nan,
        "social_share": (_col(s, "n_favorites") + _col(s, "n_shares")) / ev,
        "lifecycle_windows": np.array([new_days, risk_days, churn_days]),
    }
