"""Behaviour features on a small hand-made store, with values worked out by hand."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shopsight.data.store import Store
from shopsight.features.behavior import item_features, lexicon_sentiment, user_features
from shopsight.features.text import TfidfEncoder

AS_OF = dt.datetime(2024, 1, 10)


def _ev(
    store: Store,
    user: str,
    item: str | None,
    kind: str,
    ts: str,
    *,
    session: str | None = None,
    query: str | None = None,
    value: float | None = None,
    ordinal: bool = False,
    table: str = "events",
) -> None:
    n = store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    line = int(n[0]) if n else 0
    store.conn.execute(
        f"""INSERT INTO {table} (event_key, user_id, item_id, event_type, "timestamp", ts_ordinal,
            session_id, query, value, source, line)
        VALUES (hash(?), ?, ?, ?, ?, ?, ?, ?, ?, 'hand', ?)""",
        [f"k{line}-{user}-{kind}-{ts}", user, item, kind, ts, ordinal, session, query, value, line],
    )


def _item(
    store: Store, iid: str, title: str, brand: str | None, cat: str | None, price: float | None
) -> None:
    store.conn.execute(
        """INSERT INTO items (item_id, title, brand, category, price, currency, item_key, source,
            line) VALUES (?, ?, ?, ?, ?, 'USD', hash(?), 'hand', 0)""",
        [iid, title, brand, cat, price, f"key-{iid}"],
    )


def _review(store: Store, user: str, item: str, rating: float, text: str | None, ts: str) -> None:
    store.conn.execute(
        """INSERT INTO reviews (review_key, user_id, item_id, rating, "text", "timestamp",
            helpful_votes, verified, source, line)
        VALUES (hash(?), ?, ?, ?, ?, ?, 0, true, 'hand', 0)""",
        [f"r-{user}-{item}-{ts}", user, item, rating, text, ts],
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.duckdb")
    _item(s, "i1", "Red Shirt", "Acme", "Apparel > Shirts", 20.0)
    _item(s, "i2", "Blue Shirt", "Acme", "Apparel > Shirts", 40.0)
    _item(s, "i3", "Running Shoe", "Fleet", "Shoes > Running", 100.0)
    _item(s, "i4", "Sandal", "Fleet", "Shoes > Sandals", 30.0)
    _item(s, "i5", "Mystery", None, None, None)
    # u1: one full funnel on Monday 1 Jan, two views and a search on Friday 5 Jan.
    _ev(s, "u1", "i1", "view", "2024-01-01 10:00:00", session="s1")
    _ev(s, "u1", "i1", "click", "2024-01-01 10:05:00", session="s1")
    _ev(s, "u1", "i1", "add_to_cart", "2024-01-01 10:06:00", session="s1")
    _ev(s, "u1", "i1", "purchase", "2024-01-01 10:10:00", session="s1", value=18.0)
    _ev(s, "u1", "i3", "view", "2024-01-05 20:00:00")
    _ev(s, "u1", "i2", "view", "2024-01-05 20:10:00")
    _ev(s, "u1", None, "search", "2024-01-05 21:00:00", query="running shoes")
    # ... and the future, which no feature as of 10 Jan may see.
    _ev(s, "u1", "i4", "view", "2024-01-12 09:00:00")
    _ev(s, "u1", "i3", "purchase", "2024-01-12 09:05:00", value=100.0)
    # u2 views, buys and rates i3 the day before as_of.
    _ev(s, "u2", "i3", "view", "2024-01-09 12:00:00")
    _ev(s, "u2", "i3", "purchase", "2024-01-09 12:30:00", value=90.0)
    _ev(s, "u2", "i3", "rate", "2024-01-09 13:00:00", value=4.0)
    _review(s, "u1", "i1", 5.0, "Great shirt, love it", "2024-01-02 08:00:00")
    _review(s, "u2", "i3", 2.0, "not good, broke after a week", "2024-01-09 12:00:00")
    _review(s, "u1", "i2", 1.0, "terrible", "2024-01-15 08:00:00")  # after as_of
    yield s
    s.close()


def _row(table, key: str, kid: str) -> dict:
    df = table.to_pandas()
    return df.loc[kid].to_dict()


def test_user_rfm_funnel_price_and_affinity(store: Store) -> None:
    u = _row(user_features(store, AS_OF), "user_id", "u1")
    assert u["n_events"] == 7
    assert u["frequency"] == 1
    assert u["monetary"] == pytest.approx(18.0)
    assert u["mean_order_value"] == pytest.approx(18.0)
    assert u["recency_days"] == pytest.approx(4 + 3 / 24)  # last event Fri 21:00
    assert u["tenure_days"] == pytest.approx(8 + 14 / 24)
    assert u["active_days"] == 2
    assert u["items_viewed"] == 3 and u["items_purchased"] == 1
    assert u["view_to_click"] == pytest.approx(1 / 3)
    assert u["click_to_cart"] == pytest.approx(1.0)
    assert u["cart_to_purchase"] == pytest.approx(1.0)
    assert u["view_to_purchase"] == pytest.approx(1 / 3)
    # Item events: i1 x4 (20), i3 (100), i2 (40); paid 18 against an Apparel median of 30.
    assert u["mean_item_price"] == pytest.approx((4 * 20 + 100 + 40) / 6)
    assert u["price_sensitivity"] == pytest.approx(18 / 30)
    assert 0 <= u["price_band"] <= 4
    assert u["cat:Apparel"] == pytest.approx(5 / 6)
    assert u["cat:Shoes"] == pytest.approx(1 / 6)
    assert u["brand:Acme"] == pytest.approx(5 / 6)
    assert u["cat_entropy"] == pytest.approx(-(5 / 6 * np.log(5 / 6) + 1 / 6 * np.log(1 / 6)))
    assert u["n_searches"] == 1


def test_user_rhythm_sessions_reviews(store: Store) -> None:
    u = _row(user_features(store, AS_OF), "user_id", "u1")
    assert u["hour_10"] == pytest.approx(4 / 7)
    assert u["hour_20"] == pytest.approx(2 / 7)
    assert u["hour_21"] == pytest.approx(1 / 7)
    assert sum(u[f"hour_{h:02d}"] for h in range(24)) == pytest.approx(1.0)
    assert u["dow_0"] == pytest.approx(4 / 7)  # Monday 1 Jan 2024
    assert u["dow_4"] == pytest.approx(3 / 7)  # Friday
    # Session s1 (4 events, 10 min); without ids: [20:00, 20:10] then [21:00] after a 50-min gap.
    assert u["n_sessions"] == 3
    assert u["events_per_session"] == pytest.approx(7 / 3)
    assert u["session_minutes"] == pytest.approx(20 / 3)
    # Ratings before as_of: 5 (u1), 2 and 4 (u2); global mean 11/3.
    assert u["rating_bias"] == pytest.approx(5 - 11 / 3)
    assert u["review_sentiment"] == pytest.approx(1.0)
    u2 = _row(user_features(store, AS_OF), "user_id", "u2")
    assert u2["rating_bias"] == pytest.approx(3 - 11 / 3)
    assert u2["review_sentiment"] == pytest.approx(-1.0)  # "not good", "broke"


def test_item_popularity_conversion_price_rating(store: Store) -> None:
    items = item_features(store, AS_OF).to_pandas()
    assert set(items.index) == {"i1", "i2", "i3", "i4", "i5"}
    i3 = items.loc["i3"]
    assert i3["n_view_7d"] == 2 and i3["n_view_30d"] == 2 and i3["n_view_all"] == 2
    assert i3["n_purchase_all"] == 1  # u1's purchase on 12 Jan is in the future
    assert i3["conversion_rate"] == pytest.approx(0.5)
    assert i3["price_position"] == pytest.approx(1.0)
    assert items.loc["i4", "price_position"] == pytest.approx(0.0)
    assert i3["mean_rating"] == pytest.approx(3.0) and i3["n_ratings"] == 2
    i1 = items.loc["i1"]
    assert i1["n_view_7d"] == 0 and i1["n_view_30d"] == 1  # 9 days before as_of
    # Untouched items exist with zero counts, and undefined values stay NULL in the table.
    assert items.loc["i5", "n_view_all"] == 0
    assert np.isnan(items.loc["i5"].to_dict()["price_position"])


def test_as_of_excludes_the_future(store: Store) -> None:
    before_u = user_features(store, AS_OF).table
    before_i = item_features(store, AS_OF).table
    # Events after (and exactly at) as_of, a late review: none may change a feature.
    _ev(store, "u1", "i2", "purchase", "2024-01-10 00:00:00", value=999.0)
    _ev(store, "u2", "i1", "view", "2024-02-01 10:00:00", session="late")
    _ev(store, "u1", None, "search", "2024-03-01 10:00:00", query="sandals")
    _review(store, "u2", "i2", 5.0, "love love love", "2024-01-11 00:00:00")
    assert user_features(store, AS_OF).table.equals(before_u)
    assert item_features(store, AS_OF).table.equals(before_i)
    # ...while a later as_of does see them.
    later = user_features(store, "2024-03-02").to_pandas()
    assert later.loc["u1"].to_dict()["monetary"] > 18.0


def test_user_appears_only_once_active(store: Store) -> None:
    early = user_features(store, "2024-01-03").to_pandas()
    assert "u1" in early.index and "u2" not in early.index


def test_clean_table_is_preferred(store: Store) -> None:
    store.conn.execute("CREATE TABLE events_clean AS SELECT * FROM events WHERE user_id = 'u2'")
    users = user_features(store, AS_OF).to_pandas()
    assert "u1" not in users.index or users.loc["u1", "n_events"] == 0


def test_ordinal_timestamps_have_no_rhythm(store: Store) -> None:
    _ev(store, "u3", "i1", "view", "2000-01-01 00:00:01", ordinal=True)
    _ev(store, "u3", "i2", "view", "2000-01-01 00:00:02", ordinal=True)
    u3 = _row(user_features(store, AS_OF), "user_id", "u3")
    assert u3["n_events"] == 2
    assert sum(u3[f"hour_{h:02d}"] for h in range(24)) == 0
    assert u3["n_sessions"] == 0


def test_query_embeddings_and_matrix_view(store: Store) -> None:
    enc = TfidfEncoder(dim=None).fit(["running shoes", "sandals", "red shirt"])
    feats = user_features(store, AS_OF, text_encoder=enc)
    ids, x, cols = feats.matrix()
    assert x.dtype == np.float32 and x.shape == (len(ids), len(cols))
    assert np.isfinite(x).all()
    qcols = [c for c in cols if c.startswith("query_emb_")]
    assert len(qcols) == enc.dim
    q = x[ids.index("u1"), [cols.index(c) for c in qcols]]
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)
    expected = enc.encode(["running shoes"]).vectors[0]
    assert np.allclose(q, expected, atol=1e-5)
    assert not x[ids.index("u2"), [cols.index(c) for c in qcols]].any()


def test_lexicon_sentiment() -> None:
    assert lexicon_sentiment("Great product, works perfectly, love it") == 1.0
    assert lexicon_sentiment("not good at all, broken") == -1.0
    assert lexicon_sentiment("never disappointed") == 1.0
    assert lexicon_sentiment("a gift card") is None
    assert lexicon_sentiment(None) is None


def test_bad_as_of(store: Store) -> None:
    with pytest.raises(ValueError, match="as_of"):
        user_features(store, "not a date")


def test_matrix_columns_line_up_across_as_of(store: Store) -> None:
    late = user_features(store, AS_OF)
    _, _, cols = late.matrix()
    early = user_features(store, "2024-01-02")
    assert "cat:Shoes" not in early.table.column_names  # nobody had touched a shoe yet
    ids, x, cols_early = early.matrix(columns=cols)
    assert cols_early == cols and x.shape == (len(ids), len(cols))
    assert (x[:, cols.index("cat:Shoes")] == 0).all()
    assert x[ids.index("u1"), cols.index("cat:Apparel")] == 1.0


def test_empty_store_gives_empty_tables_with_fixed_columns(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.duckdb") as s:
        users = user_features(s, AS_OF)
        items = item_features(s, AS_OF)
    assert len(users) == 0 and len(items) == 0
    for c in ("recency_days", "hour_00", "dow_6", "n_sessions", "rating_bias", "review_sentiment"):
        assert c in users.table.column_names, c
    assert items.matrix()[1].shape[0] == 0
