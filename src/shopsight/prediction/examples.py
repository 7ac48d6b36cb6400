"""Point-in-time training examples for behaviour prediction, built in DuckDB and numpy.

A *candidate* is a (user, item, time t) triple. Training candidates are impressions: the first
``view`` of an item in a session (or every view when the source has no sessions). Labels say
what the user then did with that item: ``click``, ``add_to_cart``, ``purchase`` in the same
session at or after t (without a session id: within ``window_hours`` after t).

Every feature of a candidate is computed from events with ``timestamp < t`` only. Running
totals per user, item, user x category, user x brand and user x item are accumulated once per
distinct timestamp, then attached to each candidate by an ``ASOF JOIN ... ON c.ts > e.ts``:
the latest state strictly before t. The user's recent items (for attention) come from a
vectorised merge of candidates and events sorted by (user, time) with candidates first on ties,
so an event at exactly t is never seen. The same code computes features for prediction, so
training and serving cannot drift apart. Catalogue attributes (price, category, brand) are read
as stored: the catalogue is not versioned.

Negative sampling (:class:`ExampleConfig`): ``neg_rate`` keeps that share of unclicked
impressions (the kept rate is stored so probabilities can be corrected back, see
:func:`correct_for_downsampling`); ``random_negatives`` adds that many catalogue items per
session that the session never showed, as negatives of every task at the session's start (they
teach "not shown, not wanted" but dilute the impression space; off by default).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.data.store import Store

TASKS: tuple[str, ...] = ("click", "add_to_cart", "purchase")
CONTENT_FEATURE = "hist_content_cos"


def _source(store: Store, table: str) -> str:
    clean = f"{table}_clean"
    return clean if store.has_table(clean) else table


@dataclass(frozen=True)
class ExampleConfig:
    """How candidates, labels and features are built."""

    hist_len: int = 20  # recent items kept for attention
    window_hours: float = 24.0  # label window when events carry no session id
    neg_rate: float = 1.0  # share of unclicked impressions kept (1.0: all)
    random_negatives: int = 0  # unshown catalogue items per session added as negatives
    history_types: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hist_len < 1:
            raise InputError(f"hist_len must be >= 1, got {self.hist_len}")
        if not 0.0 < self.neg_rate <= 1.0:
            raise InputError(f"neg_rate must be in (0, 1], got {self.neg_rate}")
        if self.random_negatives < 0:
            raise InputError(f"random_negatives must be >= 0, got {self.random_negatives}")
        if self.window_hours <= 0:
            raise InputError(f"window_hours must be > 0, got {self.window_hours}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history_types"] = list(self.history_types)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExampleConfig:
        d = dict(d)
        d["history_types"] = tuple(d.get("history_types", cls.history_types))
        return cls(**d)


@dataclass
class Vocab:
    """Item, category and brand vocabularies; index 0 means padding / unknown."""

    items: list[str]
    cats: list[str]
    brands: list[str]
    item_cat: np.ndarray  # (n_items + 1,) category index per item index
    item_brand: np.ndarray  # (n_items + 1,) brand index per item index

    def __post_init__(self) -> None:
        self._item_index = {x: i + 1 for i, x in enumerate(self.items)}

    @property
    def n_items(self) -> int:
        return len(self.items) + 1

    def item_index(self, ids: Sequence[Any] | np.ndarray) -> np.ndarray:
        get = self._item_index.get
        return np.fromiter((get(str(x), 0) for x in ids), dtype=np.int64, count=len(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "cats": self.cats, "brands": self.brands}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        return cls.build(d["items"], d["cats"], d["brands"], d.get("item_cat"), d.get("item_brand"))

    @classmethod
    def build(
        cls,
        items: list[str],
        cats: list[str],
        brands: list[str],
        item_cat: Sequence[int] | None = None,
        item_brand: Sequence[int] | None = None,
    ) -> Vocab:
        ic = np.zeros(len(items) + 1, dtype=np.int64)
        ib = np.zeros(len(items) + 1, dtype=np.int64)
        if item_cat is not None:
            ic[:] = np.asarray(item_cat, dtype=np.int64)
        if item_brand is not None:
            ib[:] = np.asarray(item_brand, dtype=np.int64)
        return cls(list(items), list(cats), list(brands), ic, ib)

    @classmethod
    def from_store(cls, store: Store) -> Vocab:
        """Every catalogue item (also never-seen ones) plus items that only occur in events."""
        items_t, events_t = _source(store, "items"), _source(store, "events")
        rows = store.conn.execute(
            f"""WITH it AS (
                    SELECT item_id,
                        any_value(coalesce(nullif(trim(split_part(category, ' > ', 1)), ''), ''))
                            AS top_cat,
                        any_value(coalesce(nullif(trim(brand), ''), '')) AS brand
                    FROM "{items_t}" GROUP BY item_id),
                ev AS (SELECT DISTINCT item_id FROM "{events_t}" WHERE item_id IS NOT NULL)
                SELECT coalesce(it.item_id, ev.item_id) AS item_id,
                       coalesce(top_cat, ''), coalesce(brand, '')
                FROM it FULL OUTER JOIN ev USING (item_id) ORDER BY 1"""
        ).fetchall()
        items = [str(r[0]) for r in rows]
        cats = sorted({str(r[1]) for r in rows})
        brands = sorted({str(r[2]) for r in rows})
        cat_ix = {c: i + 1 for i, c in enumerate(cats)}
        brand_ix = {b: i + 1 for i, b in enumerate(brands)}
        ic = [0] + [cat_ix[str(r[1])] for r in rows]
        ib = [0] + [brand_ix[str(r[2])] for r in rows]
        return cls.build(items, cats, brands, ic, ib)

    def to_json(self) -> str:
        d = self.to_dict()
        d["item_cat"] = self.item_cat.tolist()
        d["item_brand"] = self.item_brand.tolist()
        return json.dumps(d)


@dataclass
class Examples:
    """Aligned arrays for n candidates (features as of each candidate's time)."""

    users: np.ndarray  # (n,) object: raw user ids
    items: np.ndarray  # (n,) object: raw item ids
    ts: np.ndarray  # (n,) datetime64[us]
    sessions: np.ndarray  # (n,) object (None when unknown)
    dense: np.ndarray  # (n, d) float32
    dense_names: list[str]
    cats: np.ndarray  # (n, 3) int64: item, category, brand index (0 = unknown)
    hist: np.ndarray  # (n, L) int64 item indices, 0 = padding; most recent last
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # task -> (n,) float32

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> Examples:
        return Examples(
            self.users[rows],
            self.items[rows],
            self.ts[rows],
            self.sessions[rows],
            self.dense[rows],
            list(self.dense_names),
            self.cats[rows],
            self.hist[rows],
            {k: v[rows] for k, v in self.labels.items()},
        )


# -- dense features ----------------------------------------------------------------------------

_FEATURE_SQL = """
WITH ev AS (
    SELECT user_id, item_id, event_type, "timestamp" AS ts, value
    FROM "{events}" WHERE item_id IS NOT NULL AND user_id IS NOT NULL
),
it AS (
    SELECT item_id, any_value(price) AS price,
        any_value(coalesce(nullif(trim(split_part(category, ' > ', 1)), ''), '')) AS top_cat,
        any_value(coalesce(nullif(trim(brand), ''), '')) AS brand
    FROM "{items}" GROUP BY item_id
),
itp AS (  -- price percentile within the top-level category (static catalogue)
    SELECT item_id, price, top_cat, brand,
        CASE WHEN price > 0 THEN percent_rank() OVER (PARTITION BY top_cat ORDER BY price) END
            AS price_pct_in_cat
    FROM it
),
e AS (
    SELECT ev.*, it.top_cat, it.brand,
        CASE WHEN it.price > 0 THEN ln(it.price) END AS lp
    FROM ev LEFT JOIN it USING (item_id)
),
eu AS (  -- only the candidates' users / items matter (cheap scoring of a few pairs)
    SELECT * FROM e WHERE user_id IN (SELECT user_id FROM __shopsight_cand)
),
ei AS (
    SELECT * FROM e WHERE item_id IN (SELECT item_id FROM __shopsight_cand)
),
u AS (
    SELECT user_id, ts,
        sum(count(*)) OVER w AS u_n,
        sum(count(*) FILTER (WHERE event_type = 'view')) OVER w AS u_views,
        sum(count(*) FILTER (WHERE event_type = 'click')) OVER w AS u_clicks,
        sum(count(*) FILTER (WHERE event_type = 'add_to_cart')) OVER w AS u_carts,
        sum(count(*) FILTER (WHERE event_type = 'purchase')) OVER w AS u_purchases,
        sum(coalesce(sum(value) FILTER (WHERE event_type = 'purchase'), 0)) OVER w AS u_monetary,
        sum(sum(lp)) OVER w AS u_lp_sum,
        sum(sum(lp * lp)) OVER w AS u_lp_sq,
        sum(count(lp)) OVER w AS u_lp_n,
        min(min(ts)) OVER w AS u_first
    FROM eu GROUP BY user_id, ts
    WINDOW w AS (PARTITION BY user_id ORDER BY ts ROWS UNBOUNDED PRECEDING)
),
i AS (
    SELECT item_id, ts,
        sum(count(*) FILTER (WHERE event_type = 'view')) OVER w AS i_views,
        sum(count(*) FILTER (WHERE event_type = 'click')) OVER w AS i_clicks,
        sum(count(*) FILTER (WHERE event_type = 'add_to_cart')) OVER w AS i_carts,
        sum(count(*) FILTER (WHERE event_type = 'purchase')) OVER w AS i_purchases,
        min(min(ts)) OVER w AS i_first
    FROM ei GROUP BY item_id, ts
    WINDOW w AS (PARTITION BY item_id ORDER BY ts ROWS UNBOUNDED PRECEDING)
),
uc AS (
    SELECT user_id, top_cat, ts,
        sum(count(*)) OVER w AS uc_n,
        sum(count(*) FILTER (WHERE event_type = 'click')) OVER w AS uc_clicks,
        sum(count(*) FILTER (WHERE event_type = 'purchase')) OVER w AS uc_purchases
    FROM eu WHERE top_cat IS NOT NULL GROUP BY user_id, top_cat, ts
    WINDOW w AS (PARTITION BY user_id, top_cat ORDER BY ts ROWS UNBOUNDED PRECEDING)
),
ub AS (
    SELECT user_id, brand, ts,
        sum(count(*)) OVER w AS ub_n,
        sum(count(*) FILTER (WHERE event_type = 'click')) OVER w AS ub_clicks,
        sum(count(*) FILTER (WHERE event_type = 'purchase')) OVER w AS ub_purchases
    FROM eu WHERE brand IS NOT NULL GROUP BY user_id, brand, ts
    WINDOW w AS (PARTITION BY user_id, brand ORDER BY ts ROWS UNBOUNDED PRECEDING)
),
ui AS (
    SELECT user_id, item_id, ts,
        sum(count(*)) OVER w AS ui_n,
        sum(count(*) FILTER (WHERE event_type = 'click')) OVER w AS ui_clicks,
        sum(count(*) FILTER (WHERE event_type = 'purchase')) OVER w AS ui_purchases
    FROM eu GROUP BY user_id, item_id, ts
    WINDOW w AS (PARTITION BY user_id, item_id ORDER BY ts ROWS UNBOUNDED PRECEDING)
),
c AS (
    SELECT cand.row_id, cand.user_id, cand.item_id, cand.ts,
        itp.price, itp.price_pct_in_cat,
        coalesce(itp.top_cat, '') AS top_cat, coalesce(itp.brand, '') AS brand
    FROM __shopsight_cand cand LEFT JOIN itp USING (item_id)
)
SELECT c.row_id,
    coalesce(u.u_n, 0) AS u_n, coalesce(u.u_views, 0) AS u_views,
    coalesce(u.u_clicks, 0) AS u_clicks, coalesce(u.u_carts, 0) AS u_carts,
    coalesce(u.u_purchases, 0) AS u_purchases, coalesce(u.u_monetary, 0) AS u_monetary,
    u.u_lp_sum, u.u_lp_sq, coalesce(u.u_lp_n, 0) AS u_lp_n,
    date_diff('second', u.ts, c.ts) AS u_recency_s,
    date_diff('second', u.u_first, c.ts) AS u_tenure_s,
    coalesce(i.i_views, 0) AS i_views, coalesce(i.i_clicks, 0) AS i_clicks,
    coalesce(i.i_carts, 0) AS i_carts, coalesce(i.i_purchases, 0) AS i_purchases,
    date_diff('second', i.i_first, c.ts) AS i_age_s,
    coalesce(uc.uc_n, 0) AS uc_n, coalesce(uc.uc_clicks, 0) AS uc_clicks,
    coalesce(uc.uc_purchases, 0) AS uc_purchases,
    coalesce(ub.ub_n, 0) AS ub_n, coalesce(ub.ub_clicks, 0) AS ub_clicks,
    coalesce(ub.ub_purchases, 0) AS ub_purchases,
    coalesce(ui.ui_n, 0) AS ui_n, coalesce(ui.ui_clicks, 0) AS ui_clicks,
    coalesce(ui.ui_purchases, 0) AS ui_purchases,
    c.price, c.price_pct_in_cat,
    hour(c.ts) AS hour, isodow(c.ts) AS dow
FROM c
ASOF LEFT JOIN u ON c.user_id = u.user_id AND c.ts > u.ts
ASOF LEFT JOIN i ON c.item_id = i.item_id AND c.ts > i.ts
ASOF LEFT JOIN uc ON c.user_id = uc.user_id AND c.top_cat = uc.top_cat AND c.ts > uc.ts
ASOF LEFT JOIN ub ON c.user_id = ub.user_id AND c.brand = ub.brand AND c.ts > ub.ts
ASOF LEFT JOIN ui ON c.user_id = ui.user_id AND c.item_id = ui.item_id AND c.ts > ui.ts
ORDER BY c.row_id
"""


def _dense_from_raw(raw: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Model-ready numeric features: log counts, smoothed rates, price fit, time of day."""
    f = {k: raw[k].to_numpy(dtype=np.float64, na_value=np.nan) for k in raw.columns}

    def rate(num: np.ndarray, den: np.ndarray, prior: float, strength: float = 5.0) -> np.ndarray:
        return np.asarray((num + prior * strength) / (den + strength))

    cols: dict[str, np.ndarray] = {}
    for k in (
        "u_n",
        "u_views",
        "u_clicks",
        "u_carts",
        "u_purchases",
        "u_monetary",
        "i_views",
        "i_clicks",
        "i_carts",
        "i_purchases",
        "uc_n",
        "uc_clicks",
        "uc_purchases",
        "ub_n",
        "ub_clicks",
        "ub_purchases",
        "ui_n",
        "ui_clicks",
        "ui_purchases",
    ):
        cols[f"log_{k}"] = np.log1p(np.maximum(f[k], 0.0))
    cols["u_ctr"] = rate(f["u_clicks"], f["u_views"], 0.3)
    cols["u_cart_rate"] = rate(f["u_carts"], f["u_clicks"], 0.3)
    cols["u_buy_rate"] = rate(f["u_purchases"], f["u_carts"], 0.5)
    cols["i_ctr"] = rate(f["i_clicks"], f["i_views"], 0.3)
    cols["i_cart_rate"] = rate(f["i_carts"], f["i_clicks"], 0.3)
    cols["i_buy_rate"] = rate(f["i_purchases"], f["i_carts"], 0.5)
    cols["uc_share"] = rate(f["uc_n"], f["u_n"], 0.0, 1.0)
    cols["uc_ctr"] = rate(f["uc_clicks"], f["uc_n"], 0.15)
    cols["ub_share"] = rate(f["ub_n"], f["u_n"], 0.0, 1.0)
    cols["ub_purchase_share"] = rate(f["ub_purchases"], f["u_purchases"], 0.0, 1.0)
    cols["log_u_recency_min"] = np.log1p(np.nan_to_num(f["u_recency_s"], nan=1e8) / 60.0)
    cols["log_u_tenure_days"] = np.log1p(np.nan_to_num(f["u_tenure_s"], nan=0.0) / 86400.0)
    cols["log_i_age_days"] = np.log1p(np.nan_to_num(f["i_age_s"], nan=0.0) / 86400.0)
    cols["u_is_new"] = (f["u_n"] <= 0).astype(np.float64)
    lp = np.where(f["price"] > 0, np.log(np.where(f["price"] > 0, f["price"], 1.0)), np.nan)
    n = np.maximum(f["u_lp_n"], 1.0)
    mean = f["u_lp_sum"] / n
    var = np.maximum(f["u_lp_sq"] / n - mean**2, 0.0)
    has = (f["u_lp_n"] > 0) & np.isfinite(lp)
    cols["log_price"] = np.nan_to_num(lp, nan=0.0)
    cols["price_known"] = np.isfinite(lp).astype(np.float64)
    cols["price_pct_in_cat"] = np.nan_to_num(f["price_pct_in_cat"], nan=0.5)
    diff = np.where(has, lp - mean, 0.0)
    cols["price_gap"] = np.abs(diff)
    cols["price_gap_z"] = np.where(has, np.abs(diff) / np.sqrt(var + 0.05), 0.0)
    hour = np.nan_to_num(f["hour"], nan=0.0)
    dow = np.nan_to_num(f["dow"], nan=1.0)
    cols["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    cols["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    cols["weekend"] = (dow >= 6).astype(np.float64)
    names = list(cols)
    x = np.column_stack([np.nan_to_num(cols[k], nan=0.0, posinf=0.0, neginf=0.0) for k in names])
    return x.astype(np.float32), names


def _history(
    store: Store,
    vocab: Vocab,
    users: np.ndarray,
    ts: np.ndarray,
    hist_len: int,
    types: Sequence[str],
) -> np.ndarray:
    """Each candidate's last ``hist_len`` item events strictly before its time (0 = padding)."""
    events = _source(store, "events")
    placeholders = ", ".join(f"'{t}'" for t in types if t.isidentifier())
    store.conn.register("__shopsight_users", pd.DataFrame({"user_id": pd.unique(users)}))
    try:
        ev = store.conn.execute(
            f"""SELECT user_id, item_id, "timestamp" FROM "{events}"
                WHERE item_id IS NOT NULL AND user_id IS NOT NULL
                  AND event_type IN ({placeholders})
                  AND user_id IN (SELECT user_id FROM __shopsight_users)"""
        ).df()
    finally:
        store.conn.unregister("__shopsight_users")
    n = len(users)
    out = np.zeros((n, hist_len), dtype=np.int64)
    if n == 0 or ev.empty:
        return out
    codes, _ = pd.factorize(
        np.concatenate([ev["user_id"].to_numpy(dtype=object), users.astype(object)])
    )
    ev_u = codes[: len(ev)]
    c_u = codes[len(ev) :]
    ev_t = ev["timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    c_t = ts.astype("datetime64[us]").astype(np.int64)
    ev_item = vocab.item_index(ev["item_id"].to_numpy(dtype=object))
    # Merge events and candidates by (user, time); on a tie the candidate comes first, so an
    # event at exactly t is not part of t's history (strictly before).
    u_all = np.concatenate([ev_u, c_u])
    t_all = np.concatenate([ev_t, c_t])
    is_ev = np.concatenate([np.ones(len(ev), dtype=np.int8), np.zeros(n, dtype=np.int8)])
    order = np.lexsort((is_ev, t_all, u_all))
    ev_before = np.cumsum(is_ev[order]) - is_ev[order]  # events strictly before each position
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    end = ev_before[pos[len(ev) :]]  # per candidate: index into the sorted event list
    ev_order = np.lexsort((ev_t, ev_u))
    sorted_items = ev_item[ev_order]
    sorted_users = ev_u[ev_order]
    start = np.searchsorted(sorted_users, c_u, side="left")
    idx = end[:, None] - hist_len + np.arange(hist_len)[None, :]
    valid = idx >= start[:, None]
    out[valid] = sorted_items[np.clip(idx, 0, max(len(sorted_items) - 1, 0))][valid]
    return out


def compute_features(
    store: Store,
    vocab: Vocab,
    users: Sequence[Any] | np.ndarray,
    items: Sequence[Any] | np.ndarray,
    ts: np.ndarray,
    config: ExampleConfig | None = None,
    sessions: np.ndarray | None = None,
) -> Examples:
    """Features of candidates (user, item, time), each from events strictly before its time."""
    cfg = config or ExampleConfig()
    u = np.asarray([str(x) for x in users], dtype=object)
    it = np.asarray([str(x) for x in items], dtype=object)
    t = np.asarray(ts).astype("datetime64[us]")
    if not (len(u) == len(it) == len(t)):
        raise ValueError(f"users, items, ts differ in length: {len(u)}, {len(it)}, {len(t)}")
    cand = pd.DataFrame(
        {"row_id": np.arange(len(u), dtype=np.int64), "user_id": u, "item_id": it, "ts": t}
    )
    sql = _FEATURE_SQL.format(events=_source(store, "events"), items=_source(store, "items"))
    store.conn.register("__shopsight_cand", cand)
    try:
        raw = store.conn.execute(sql).df()
    finally:
        store.conn.unregister("__shopsight_cand")
    dense, names = _dense_from_raw(raw.drop(columns=["row_id"]))
    item_ix = vocab.item_index(it)
    cats = np.column_stack([item_ix, vocab.item_cat[item_ix], vocab.item_brand[item_ix]])
    hist = _history(store, vocab, u, t, cfg.hist_len, cfg.history_types)
    sess = sessions if sessions is not None else np.full(len(u), None, dtype=object)
    return Examples(u, it, t, sess, dense, names, cats.astype(np.int64), hist)


_CANDIDATE_SQL = """
WITH ev AS (
    SELECT user_id, item_id, event_type, "timestamp" AS ts, session_id
    FROM "{events}" WHERE item_id IS NOT NULL AND user_id IS NOT NULL
),
imp AS (  -- first view of an item per session; every view when there is no session
    SELECT user_id, item_id, session_id, min(ts) AS ts FROM ev
    WHERE event_type = 'view' AND session_id IS NOT NULL GROUP BY ALL
    UNION ALL
    SELECT user_id, item_id, NULL, ts FROM ev WHERE event_type = 'view' AND session_id IS NULL
),
act AS (
    SELECT user_id, item_id, session_id, event_type, ts FROM ev
    WHERE event_type IN ('click', 'add_to_cart', 'purchase')
)
SELECT imp.user_id, imp.item_id, imp.session_id, imp.ts,
    coalesce(bool_or(act.event_type = 'click'), false) AS click,
    coalesce(bool_or(act.event_type = 'add_to_cart'), false) AS add_to_cart,
    coalesce(bool_or(act.event_type = 'purchase'), false) AS purchase
FROM imp LEFT JOIN act
  ON act.user_id = imp.user_id AND act.item_id = imp.item_id AND act.ts >= imp.ts
 AND CASE WHEN imp.session_id IS NOT NULL AND act.session_id IS NOT NULL
          THEN act.session_id = imp.session_id
          ELSE act.ts < imp.ts + to_microseconds(CAST($window_us AS BIGINT)) END
GROUP BY imp.user_id, imp.item_id, imp.session_id, imp.ts
ORDER BY imp.ts, imp.user_id, imp.item_id
"""


def candidates(store: Store, config: ExampleConfig | None = None) -> pd.DataFrame:
    """Impressions with their funnel labels (and negatives as configured), in time order."""
    cfg = config or ExampleConfig()
    sql = _CANDIDATE_SQL.format(events=_source(store, "events"))
    df = store.conn.execute(sql, {"window_us": int(cfg.window_hours * 3600e6)}).df()
    rng = np.random.default_rng(cfg.seed)
    if cfg.neg_rate < 1.0 and len(df):
        keep = df["click"].to_numpy(dtype=bool) | (rng.random(len(df)) < cfg.neg_rate)
        df = df[keep].reset_index(drop=True)
    if cfg.random_negatives > 0 and len(df):
        df = _add_random_negatives(store, df, cfg.random_negatives, rng)
    return df


def _add_random_negatives(
    store: Store, df: pd.DataFrame, k: int, rng: np.random.Generator
) -> pd.DataFrame:
    items = np.array(Vocab.from_store(store).items, dtype=object)
    if not len(items):
        return df
    key = df["session_id"].astype(object).where(df["session_id"].notna(), df["user_id"])
    first = df.assign(_key=key).sort_values("ts").groupby("_key", sort=False).head(1)
    shown = set(zip(key, df["item_id"], strict=True))
    reps = first.loc[first.index.repeat(k)].reset_index(drop=True)
    reps["item_id"] = items[rng.integers(0, len(items), len(reps))]
    ok = [
        (s, i) not in shown
        for s, i in zip(
            reps["session_id"].astype(object).where(reps["session_id"].notna(), reps["user_id"]),
            reps["item_id"],
            strict=True,
        )
    ]
    reps = reps[np.asarray(ok, dtype=bool)].drop_duplicates(["user_id", "item_id", "ts"])
    for t in TASKS:
        reps[t] = False
    out = pd.concat([df, reps], ignore_index=True)
    return out.sort_values(["ts", "user_id", "item_id"], kind="stable").reset_index(drop=True)


def build_examples(
    store: Store, vocab: Vocab | None = None, config: ExampleConfig | None = None
) -> tuple[Examples, Vocab]:
    """Labelled impressions with point-in-time features, in time order."""
    cfg = config or ExampleConfig()
    voc = vocab or Vocab.from_store(store)
    cand = candidates(store, cfg)
    ex = compute_features(
        store,
        voc,
        cand["user_id"].to_numpy(dtype=object),
        cand["item_id"].to_numpy(dtype=object),
        cand["ts"].to_numpy(dtype="datetime64[us]"),
        cfg,
        sessions=cand["session_id"].to_numpy(dtype=object),
    )
    ex.labels = {t: cand[t].to_numpy(dtype=np.float32) for t in TASKS}
    return ex, voc


def temporal_split(
    ts: np.ndarray, fractions: tuple[float, float] = (0.8, 0.9)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train / valid / test cut at time quantiles (no future in training)."""
    t = np.asarray(ts).astype("datetime64[us]").astype(np.int64)
    if not len(t):
        e = np.array([], dtype=np.int64)
        return e, e, e
    a, b = np.quantile(t, fractions[0]), np.quantile(t, fractions[1])
    return np.flatnonzero(t < a), np.flatnonzero((t >= a) & (t < b)), np.flatnonzero(t >= b)


def correct_for_downsampling(p: np.ndarray, neg_rate: float) -> np.ndarray:
    """Undo negative downsampling: ``p' = p / (p + (1 - p) / r)`` (He et al., 2014)."""
    if neg_rate >= 1.0:
        return p
    out: np.ndarray = p / (p + (1.0 - p) / neg_rate)
    return out
