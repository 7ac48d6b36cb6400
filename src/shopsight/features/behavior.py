"""Behaviour features per user and per item, computed in SQL over the store, as of a time.

Every query reads only events with ``timestamp < as_of`` (and reviews with a known timestamp
before ``as_of``), so features for time *t* never see the future: a predictor trained on
``(features as of t, what happened after t)`` pairs is free of leakage. The cleaned tables
(``events_clean``, ``items_clean``, ``reviews_clean``) are used when they exist. Catalogue
attributes (price, category, brand) are read as stored: the catalogue is not versioned.

Per user: recency / frequency / monetary, the item funnel view -> click -> cart -> purchase
(share of distinct items that reached the next stage), category and brand affinities (shares of
item events over the ``top_k`` most frequent categories and brands, the rest in ``__other__``,
plus their entropy), price level and band and price sensitivity (mean paid price relative to
its category's median), time-of-day and weekday rhythm (24 + 7 normalised histograms, real
timestamps only), session statistics (``session_id`` where given, else a new session after a
gap), search count and optionally the mean embedding of the user's search queries, review
sentiment (a small negation-aware lexicon) and rating bias (user mean rating minus the global
mean).

Per item: counts of each event type over the 7 and 30 days before ``as_of`` and all time,
distinct users, conversion (share of viewers who bought), price position within its top-level
category (percentile), mean rating, age and days since the last event.

Results are :class:`FeatureTable` objects: an Arrow table keyed by ``user_id``/``item_id`` and a
dense ``matrix()`` view with column names.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from shopsight.data.schema import ANNOTATION_EVENT_TYPES, EVENT_TYPES, ITEMLESS_EVENT_TYPES
from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.data.store import Store
    from shopsight.features.base import Encoder

log = logging.getLogger("shopsight.features.behavior")

ITEM_EVENT_TYPES: tuple[str, ...] = tuple(
    t for t in EVENT_TYPES if t not in ITEMLESS_EVENT_TYPES and t not in ANNOTATION_EVENT_TYPES
)
FUNNEL = ("view", "click", "add_to_cart", "purchase")
WINDOWS_DAYS = (7, 30)
OTHER = "__other__"


# -- small helpers -----------------------------------------------------------------------
def _source(store: Store, table: str) -> str:
    clean = f"{table}_clean"
    return clean if store.has_table(clean) else table


def _as_of(value: dt.datetime | dt.date | str | pd.Timestamp) -> dt.datetime:
    """A naive UTC datetime (the store's convention) from whatever the caller has."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"as_of: cannot read {value!r} as a timestamp") from exc
    if ts is pd.NaT:
        raise InputError("as_of: must be a timestamp, got NaT")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _df(store: Store, sql: str, as_of: dt.datetime) -> pd.DataFrame:
    return store.conn.execute(sql, {"as_of": as_of}).df()


def _entropy(shares: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(shares > 0, -shares * np.log(shares), 0.0)
    return terms.sum(axis=1)


def _slug(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip() or "(none)"


@dataclass
class FeatureTable:
    """Features keyed by ``key`` (``user_id`` or ``item_id``), computed as of ``as_of``."""

    table: pa.Table
    key: str
    as_of: dt.datetime

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def ids(self) -> list[str]:
        return [str(x) for x in self.table.column(self.key).to_pylist()]

    @property
    def feature_names(self) -> list[str]:
        """Numeric columns (everything but the key), in table order."""
        return [
            f.name
            for f in self.table.schema
            if f.name != self.key and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
        ]

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas().set_index(self.key)

    def matrix(
        self, fill: float = 0.0, columns: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray, list[str]]:
        """``(ids, X, columns)``: a dense float32 matrix, undefined values (NULL) -> ``fill``.

        ``columns`` fixes the column list and order (e.g. the ones a model was trained with);
        columns this table lacks (a category nobody had touched yet at ``as_of``) are ``fill``.
        """
        cols = self.feature_names if columns is None else list(columns)
        present = set(self.table.column_names)
        x = np.full((len(self), len(cols)), fill, dtype=np.float64)
        for j, c in enumerate(cols):
            if c in present and c != self.key:
                x[:, j] = self.table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        x = np.where(np.isfinite(x), x, fill).astype(np.float32)
        return self.ids, x, cols


# -- review sentiment ----------------------------------------------------------------------
_POSITIVE = frozenset(
    """good great excellent amazing awesome love loved loves lovely perfect best nice happy
    pleased fantastic wonderful recommend recommended easy beautiful favorite favourite fast
    quick works worked useful glad enjoy enjoyed superb outstanding satisfied comfortable
    convenient reliable quality fun cute sturdy helpful smooth brilliant impressive value
    worth terrific thanks thank appreciated delighted ideal fine""".split()  # noqa: SIM905
)
_NEGATIVE = frozenset(
    """bad poor terrible awful horrible hate hated worst broken broke useless disappointed
    disappointing disappointment waste refund return returned returning cheap flimsy slow
    problem problems issue issues difficult hard defective damaged wrong missing fake scam
    never annoying unhappy unusable fail failed fails junk mess overpriced expensive
    uncomfortable fraud stolen error invalid declined rude late sad""".split()  # noqa: SIM905
)
_NEGATORS = frozenset(
    ["not", "no", "never", "nothing", "hardly", "barely", "without", "isn't", "wasn't", "don't"]
)
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:!?]")


def lexicon_sentiment(text: object) -> float | None:
    """Polarity in [-1, 1] from a small negation-aware lexicon; None when no word is known.

    "not good" counts as negative, "never disappointed" as positive: a negator flips the next
    three words, up to the next punctuation mark.
    """
    if not isinstance(text, str) or not text:
        return None
    pos = neg = 0
    flip_left = 0
    for word in _TOKEN.findall(text.lower()):
        if not word[0].isalpha():
            flip_left = 0
            continue
        if word in _NEGATORS or word.endswith("n't"):
            flip_left = 3
            continue
        polarity = 1 if word in _POSITIVE else -1 if word in _NEGATIVE else 0
        if polarity and flip_left:
            polarity = -polarity
        if polarity > 0:
            pos += 1
        elif polarity < 0:
            neg += 1
        flip_left = max(0, flip_left - 1)
    if pos + neg == 0:
        return None
    return (pos - neg) / (pos + neg)


# -- shared SQL pieces ---------------------------------------------------------------------
def _ctes(store: Store) -> str:
    events, items = _source(store, "events"), _source(store, "items")
    return f"""
    ev AS (
        SELECT user_id, item_id, event_type, "timestamp" AS ts, ts_ordinal, session_id,
               query, value
        FROM "{events}" WHERE "timestamp" < $as_of
    ),
    it AS (
        SELECT item_id,
               any_value(price) AS price,
               any_value(nullif(trim(brand), '')) AS brand,
               any_value(coalesce(nullif(trim(split_part(category, ' > ', 1)), ''), ''))
                   AS top_cat
        FROM "{items}" GROUP BY item_id
    ),
    ui AS (  -- which funnel stages each (user, item) reached
        SELECT user_id, item_id,
               bool_or(event_type = 'view') AS v, bool_or(event_type = 'click') AS c,
               bool_or(event_type = 'add_to_cart') AS a, bool_or(event_type = 'purchase') AS p
        FROM ev WHERE item_id IS NOT NULL GROUP BY user_id, item_id
    )"""


def _ratings_cte(store: Store) -> str:
    reviews = _source(store, "reviews")
    # UNION (not ALL): a rating ingested both as a review row and as an event counts once.
    return f"""
    ratings AS (
        SELECT user_id, item_id, rating, "timestamp" AS ts FROM "{reviews}"
        WHERE rating IS NOT NULL AND "timestamp" IS NOT NULL AND "timestamp" < $as_of
        UNION
        SELECT user_id, item_id, value AS rating, ts FROM ev
        WHERE event_type IN ('rate', 'review') AND value IS NOT NULL AND item_id IS NOT NULL
    )"""


def _merge(base: pd.DataFrame, key: str, *parts: pd.DataFrame) -> pd.DataFrame:
    out = base
    for p in parts:
        if len(p.columns) > 1:
            out = out.merge(p, on=key, how="left")
    return out


# -- users -----------------------------------------------------------------------------------
def user_features(
    store: Store,
    as_of: dt.datetime | dt.date | str | pd.Timestamp,
    *,
    top_k: int = 20,
    session_gap_minutes: float = 30.0,
    text_encoder: Encoder | None = None,
) -> FeatureTable:
    """Per-user behaviour features from events strictly before ``as_of``.

    ``text_encoder`` (e.g. :class:`~shopsight.features.text.TextEncoder`) adds ``query_emb_*``
    columns: the normalised mean embedding of the user's search queries.
    """
    if top_k < 0:
        raise InputError(f"top_k must be >= 0, got {top_k}")
    if session_gap_minutes <= 0:
        raise InputError(f"session_gap_minutes must be > 0, got {session_gap_minutes}")
    t = _as_of(as_of)
    ctes = _ctes(store)
    users_src = _source(store, "users")

    base = _df(
        store,
        f"""WITH {ctes}, {_ratings_cte(store)}
        SELECT DISTINCT user_id FROM (
            SELECT user_id FROM ev
            UNION SELECT user_id FROM ratings
            UNION SELECT user_id FROM "{users_src}"
                  WHERE signup_date IS NULL OR signup_date < $as_of
        ) ORDER BY user_id""",
        t,
    )

    rfm = _df(
        store,
        f"""WITH {ctes}
        SELECT ev.user_id,
            count(*) AS n_events,
            count(*) FILTER (WHERE event_type = 'purchase') AS frequency,
            date_diff('second', max(ts), $as_of) / 86400.0 AS recency_days,
            date_diff('second', min(ts), $as_of) / 86400.0 AS tenure_days,
            count(DISTINCT CAST(ts AS DATE)) AS active_days,
            coalesce(sum(coalesce(value, price)) FILTER (WHERE event_type = 'purchase'), 0)
                AS monetary,
            avg(coalesce(value, price)) FILTER (WHERE event_type = 'purchase')
                AS mean_order_value,
            count(*) FILTER (WHERE event_type = 'search') AS n_searches,
            count(DISTINCT ev.item_id) AS n_items
        FROM ev LEFT JOIN it USING (item_id)
        GROUP BY ev.user_id""",
        t,
    )

    funnel = _df(
        store,
        f"""WITH {ctes}
        SELECT user_id,
            count(*) FILTER (WHERE v) AS items_viewed,
            count(*) FILTER (WHERE c) AS items_clicked,
            count(*) FILTER (WHERE a) AS items_carted,
            count(*) FILTER (WHERE p) AS items_purchased,
            (count(*) FILTER (WHERE v AND c)) / nullif(count(*) FILTER (WHERE v), 0)
                AS view_to_click,
            (count(*) FILTER (WHERE c AND a)) / nullif(count(*) FILTER (WHERE c), 0)
                AS click_to_cart,
            (count(*) FILTER (WHERE a AND p)) / nullif(count(*) FILTER (WHERE a), 0)
                AS cart_to_purchase,
            (count(*) FILTER (WHERE v AND p)) / nullif(count(*) FILTER (WHERE v), 0)
                AS view_to_purchase
        FROM ui GROUP BY user_id""",
        t,
    )

    # Price: the user's mean item price as a percentile of catalogue prices, and the paid
    # price relative to the category median (< 1: buys the cheaper end of a category).
    prices = _df(
        store,
        f"""WITH {ctes},
        med AS (SELECT top_cat, median(price) AS med FROM it WHERE price > 0 GROUP BY top_cat)
        SELECT ev.user_id,
            avg(it.price) FILTER (WHERE it.price IS NOT NULL) AS mean_item_price,
            avg(coalesce(ev.value, it.price) / med.med)
                FILTER (WHERE ev.event_type = 'purchase' AND coalesce(ev.value, it.price) > 0)
                AS price_sensitivity
        FROM ev JOIN it USING (item_id) LEFT JOIN med USING (top_cat)
        WHERE ev.event_type <> 'search'
        GROUP BY ev.user_id""",
        t,
    )
    catalogue_prices = np.sort(
        _df(store, f"WITH {ctes} SELECT price FROM it WHERE price IS NOT NULL", t)[
            "price"
        ].to_numpy(dtype=np.float64)
    )
    if len(catalogue_prices) and len(prices):
        mp = prices["mean_item_price"].to_numpy(dtype=np.float64)
        level = np.searchsorted(catalogue_prices, mp, side="right") / len(catalogue_prices)
        level = np.where(np.isfinite(mp), level, np.nan)
        prices["price_level"] = level
        prices["price_band"] = np.where(
            np.isfinite(level), np.minimum(np.floor(level * 5), 4), np.nan
        )
    else:
        prices["price_level"] = np.nan
        prices["price_band"] = np.nan

    affinity_parts = [
        _affinity(store, ctes, t, "top_cat", "cat", top_k),
        _affinity(store, ctes, t, "brand", "brand", top_k),
    ]
    rhythm = _rhythm(store, ctes, t)
    sessions = _sessions(store, ctes, t, session_gap_minutes)
    reviews = _review_features(store, ctes, t)

    df = _merge(base, "user_id", rfm, funnel, prices, *affinity_parts, rhythm, sessions, reviews)
    if text_encoder is not None:
        df = _merge(df, "user_id", _query_embeddings(store, ctes, t, text_encoder))
    # Counts are 0 (not NULL) for users with no events of a kind; rates stay NULL (undefined).
    count_cols = [
        c
        for c in df.columns
        if c.startswith(("n_", "items_", "cat:", "brand:", "hour_", "dow_"))
        or c in ("frequency", "monetary", "active_days", "n_sessions")
    ]
    df[count_cols] = df[count_cols].fillna(0)
    return FeatureTable(pa.Table.from_pandas(df, preserve_index=False), "user_id", t)


def _affinity(
    store: Store, ctes: str, t: dt.datetime, column: str, prefix: str, top_k: int
) -> pd.DataFrame:
    counts = _df(
        store,
        f"""WITH {ctes}
        SELECT ev.user_id, coalesce(it.{column}, '') AS k, count(*) AS n
        FROM ev JOIN it USING (item_id) WHERE ev.event_type <> 'search'
        GROUP BY ALL""",
        t,
    )
    if counts.empty:
        return pd.DataFrame({"user_id": pd.Series([], dtype=object)})
    # Most frequent first, ties broken by name, so the columns are the same on every run.
    totals = counts.groupby("k")["n"].sum().to_dict()
    keep = sorted((k for k in totals if k), key=lambda k: (-totals[k], k))[:top_k]
    counts["col"] = np.where(counts["k"].isin(keep), counts["k"], OTHER)
    wide = counts.pivot_table(index="user_id", columns="col", values="n", aggfunc="sum").fillna(0)
    ordered = [k for k in keep if k in wide.columns] + ([OTHER] if OTHER in wide.columns else [])
    wide = wide[ordered]
    full = counts.pivot_table(index="user_id", columns="k", values="n", aggfunc="sum").fillna(0)
    shares = wide.to_numpy(dtype=np.float64) / wide.to_numpy().sum(axis=1, keepdims=True)
    full_shares = full.to_numpy(dtype=np.float64) / full.to_numpy().sum(axis=1, keepdims=True)
    out = pd.DataFrame(
        shares, index=wide.index, columns=[f"{prefix}:{_slug(str(c))}" for c in ordered]
    )
    out[f"{prefix}_entropy"] = pd.Series(_entropy(full_shares), index=full.index)
    return out.reset_index()


def _rhythm(store: Store, ctes: str, t: dt.datetime) -> pd.DataFrame:
    # Ordinal timestamps carry order only: their clock time means nothing, so they are skipped.
    hours = _df(
        store,
        f"""WITH {ctes}
        SELECT user_id, hour(ts) AS h, count(*) AS n FROM ev WHERE NOT ts_ordinal GROUP BY ALL""",
        t,
    )
    days = _df(
        store,
        f"""WITH {ctes}
        SELECT user_id, isodow(ts) - 1 AS d, count(*) AS n FROM ev WHERE NOT ts_ordinal
        GROUP BY ALL""",
        t,
    )
    hour_cols = [f"hour_{i:02d}" for i in range(24)]
    dow_cols = [f"dow_{i}" for i in range(7)]  # 0 = Monday
    if hours.empty:  # the same columns every time, so feature matrices line up across as_of
        return pd.DataFrame(columns=["user_id", *hour_cols, *dow_cols]).astype(
            {c: "float64" for c in hour_cols + dow_cols}
        )
    h = hours.pivot_table(index="user_id", columns="h", values="n", aggfunc="sum")
    h = h.reindex(columns=range(24), fill_value=0).fillna(0)
    d = days.pivot_table(index="user_id", columns="d", values="n", aggfunc="sum")
    d = d.reindex(columns=range(7), fill_value=0).fillna(0)
    h = h.div(h.sum(axis=1), axis=0)
    d = d.div(d.sum(axis=1), axis=0)
    h.columns = hour_cols
    d.columns = dow_cols
    return h.join(d, how="outer").reset_index()


def _sessions(store: Store, ctes: str, t: dt.datetime, gap_minutes: float) -> pd.DataFrame:
    return _df(
        store,
        f"""WITH {ctes},
        marked AS (
            SELECT user_id, ts, session_id,
                CASE WHEN lag(ts) OVER w IS NULL
                       OR date_diff('second', lag(ts) OVER w, ts) > {float(gap_minutes) * 60.0}
                     THEN 1 ELSE 0 END AS new_session
            FROM ev WHERE session_id IS NOT NULL OR NOT ts_ordinal
            WINDOW w AS (PARTITION BY user_id ORDER BY ts)
        ),
        keyed AS (
            SELECT user_id, ts,
                coalesce('s:' || session_id,
                         'g:' || sum(new_session) OVER (PARTITION BY user_id ORDER BY ts
                                                       ROWS UNBOUNDED PRECEDING)) AS skey
            FROM marked
        ),
        per AS (
            SELECT user_id, skey, count(*) AS n,
                   date_diff('second', min(ts), max(ts)) / 60.0 AS minutes
            FROM keyed GROUP BY user_id, skey
        )
        SELECT user_id, count(*) AS n_sessions, avg(n) AS events_per_session,
               avg(minutes) AS session_minutes
        FROM per GROUP BY user_id""",
        t,
    )


def _review_features(store: Store, ctes: str, t: dt.datetime) -> pd.DataFrame:
    ratings = _df(
        store,
        f"""WITH {ctes}, {_ratings_cte(store)},
        g AS (SELECT avg(rating) AS mu FROM ratings)
        SELECT user_id, count(*) AS n_ratings, avg(rating) AS mean_rating,
               avg(rating) - any_value(g.mu) AS rating_bias
        FROM ratings, g GROUP BY user_id""",
        t,
    )
    reviews_src = _source(store, "reviews")
    texts = store.conn.execute(
        f"""SELECT user_id, concat_ws('. ', summary, "text") AS body FROM "{reviews_src}"
        WHERE "timestamp" IS NOT NULL AND "timestamp" < $as_of
          AND (summary IS NOT NULL OR "text" IS NOT NULL)""",
        {"as_of": t},
    ).df()
    if texts.empty:
        sentiment = pd.DataFrame(
            {
                "user_id": pd.Series([], dtype=object),
                "n_reviews": pd.Series([], dtype="int64"),
                "review_sentiment": pd.Series([], dtype="float64"),
            }
        )
    else:
        texts["s"] = [lexicon_sentiment(b) for b in texts["body"]]
        texts["s"] = texts["s"].astype("float64")
        sentiment = (
            texts.groupby("user_id")
            .agg(n_reviews=("body", "size"), review_sentiment=("s", "mean"))
            .reset_index()
        )
    return _merge(ratings, "user_id", sentiment) if len(ratings.columns) else sentiment


def _query_embeddings(store: Store, ctes: str, t: dt.datetime, encoder: Encoder) -> pd.DataFrame:
    q = _df(
        store,
        f"""WITH {ctes}
        SELECT user_id, trim(query) AS q FROM ev
        WHERE event_type = 'search' AND query IS NOT NULL AND trim(query) <> ''""",
        t,
    )
    cols = [f"query_emb_{i}" for i in range(encoder.dim)]
    if q.empty:
        return pd.DataFrame(columns=["user_id", *cols]).astype({c: "float32" for c in cols})
    uniq = sorted(set(q["q"]))
    enc = encoder.encode(uniq)
    index = {s: i for i, s in enumerate(uniq)}
    rows = q["q"].map(index).to_numpy()
    vecs = enc.vectors[rows] * enc.mask[rows, None]
    users, inverse = np.unique(q["user_id"].to_numpy(dtype=object), return_inverse=True)
    sums = np.zeros((len(users), encoder.dim), dtype=np.float64)
    np.add.at(sums, inverse, vecs)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    mean = np.where(norms > 0, sums / np.maximum(norms, 1e-12), np.nan).astype(np.float32)
    out = pd.DataFrame(mean, columns=cols)
    out.insert(0, "user_id", users)
    return out


# -- items -----------------------------------------------------------------------------------
def item_features(
    store: Store,
    as_of: dt.datetime | dt.date | str | pd.Timestamp,
    *,
    event_types: Sequence[str] = ITEM_EVENT_TYPES,
) -> FeatureTable:
    """Per-item popularity, conversion, price position and rating from events before ``as_of``.

    Every catalogue item gets a row (zeros for items nobody touched yet), plus items that only
    appear in events.
    """
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise InputError(f"event_types: unknown {unknown}; expected some of {list(EVENT_TYPES)}")
    t = _as_of(as_of)
    ctes = _ctes(store)
    windows = []
    for et in event_types:
        for w in WINDOWS_DAYS:
            windows.append(
                f"count(*) FILTER (WHERE event_type = '{et}' "
                f'AND ts >= $as_of - INTERVAL {w} DAY) AS "n_{et}_{w}d"'
            )
        windows.append(f"count(*) FILTER (WHERE event_type = '{et}') AS \"n_{et}_all\"")
    base = _df(
        store,
        f"""WITH {ctes}
        SELECT DISTINCT item_id FROM (
            SELECT item_id FROM it UNION SELECT item_id FROM ev WHERE item_id IS NOT NULL
        ) ORDER BY item_id""",
        t,
    )
    pop = _df(
        store,
        f"""WITH {ctes}
        SELECT item_id, {", ".join(windows)},
            count(DISTINCT user_id) AS n_users,
            date_diff('second', min(ts), $as_of) / 86400.0 AS age_days,
            date_diff('second', max(ts), $as_of) / 86400.0 AS days_since_last_event
        FROM ev WHERE item_id IS NOT NULL GROUP BY item_id""",
        t,
    )
    conv = _df(
        store,
        f"""WITH {ctes}
        SELECT item_id,
            count(*) FILTER (WHERE p) AS n_buyers,
            (count(*) FILTER (WHERE v AND p)) / nullif(count(*) FILTER (WHERE v), 0)
                AS conversion_rate,
            (count(*) FILTER (WHERE a AND p)) / nullif(count(*) FILTER (WHERE a), 0)
                AS cart_conversion_rate
        FROM ui GROUP BY item_id""",
        t,
    )
    price = _df(
        store,
        f"""WITH {ctes}
        SELECT item_id, price,
            CASE WHEN count(*) OVER (PARTITION BY top_cat) > 1
                 THEN percent_rank() OVER (PARTITION BY top_cat ORDER BY price) END
                AS price_position
        FROM it WHERE price IS NOT NULL""",
        t,
    )
    rating = _df(
        store,
        f"""WITH {ctes}, {_ratings_cte(store)}
        SELECT item_id, count(*) AS n_ratings, avg(rating) AS mean_rating
        FROM ratings GROUP BY item_id""",
        t,
    )
    df = _merge(base, "item_id", pop, conv, price, rating)
    count_cols = [c for c in df.columns if c.startswith("n_")]
    df[count_cols] = df[count_cols].fillna(0)
    return FeatureTable(pa.Table.from_pandas(df, preserve_index=False), "item_id", t)


__all__ = [
    "FUNNEL",
    "ITEM_EVENT_TYPES",
    "WINDOWS_DAYS",
    "FeatureTable",
    "item_features",
    "lexicon_sentiment",
    "user_features",
]
