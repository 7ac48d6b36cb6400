"""Profiles: every field is computed per user in SQL, chunk by chunk, and makes sense."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest

from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.personas.profile import ProfileConfig, compute_profiles, derived_fields


@pytest.fixture(scope="module")
def tables(shop: Any) -> Any:
    with Store(shop.store, read_only=True) as st:
        return compute_profiles(st, ProfileConfig(chunk_users=120))


def test_counts_match_the_store(shop: Any, tables: Any) -> None:
    with Store(shop.store, read_only=True) as st:
        rows = st.conn.execute(
            """SELECT user_id, count(*), count(*) FILTER (event_type = 'purchase'),
                      count(DISTINCT item_id)
               FROM events_clean GROUP BY 1"""
        ).fetchall()
    truth = {r[0]: r[1:] for r in rows}
    assert tables.info["n_chunks"] == 5  # 495 users / 120 per chunk
    assert set(tables.user_ids) == set(truth)  # every user with an event, once (bots cleaned)
    s = tables.scalars.to_pydict()
    for u, n, n_p, n_i in zip(
        s["user_id"], s["n_events"], s["n_purchases"], s["n_items"], strict=True
    ):
        assert (n, n_p, n_i) == truth[u]
    bots = set(shop.truth["bot_user_ids"])
    assert not bots & set(tables.user_ids)


def test_chunking_does_not_change_results(shop: Any, tables: Any) -> None:
    with Store(shop.store, read_only=True) as st:
        one = compute_profiles(st, ProfileConfig(chunk_users=1_000_000))
    assert one.info["n_chunks"] == 1
    a = tables.scalars.sort_by("user_id")
    b = one.scalars.sort_by("user_id")
    for col in ("n_events", "spend", "price_z", "session_minutes", "n_sessions", "rating_bias"):
        x = np.array(a.column(col).to_pylist(), dtype=float)
        y = np.array(b.column(col).to_pylist(), dtype=float)
        np.testing.assert_allclose(x, y, rtol=1e-9, equal_nan=True)
    # Dense affinities follow the users' order in each run.
    order_a = np.argsort(tables.user_ids)
    order_b = np.argsort(one.user_ids)
    for kind in ("category", "keyword", "style"):
        assert tables.dense[kind][0] == one.dense[kind][0]
        np.testing.assert_allclose(
            tables.dense[kind][1][order_a], one.dense[kind][1][order_b], atol=1e-6
        )


def test_fields_are_in_range(tables: Any) -> None:
    d = derived_fields(tables, ProfileConfig())
    n = len(tables)
    assert set(d["lifecycle"]) <= {"new", "active", "at_risk", "churned"}
    assert set(d["price_band"]) <= {"budget", "mid", "premium", "unknown"}
    for key in ("r_score", "f_score", "m_score"):
        assert d[key].min() >= 1 and d[key].max() <= 5
        assert len(set(d[key].tolist())) == 5  # quintiles really spread users
    for key in ("view_to_buy", "cart_abandonment", "purchase_propensity", "search_share"):
        v = d[key][np.isfinite(d[key])]
        assert len(v) > n // 2 and v.min() >= 0 and v.max() <= 1
    peak = d["peak_hour"][np.isfinite(d["peak_hour"])]
    assert peak.min() >= 0 and peak.max() < 24
    # Price band follows the price position.
    pz = np.array(tables.scalars.column("price_z").to_pylist(), dtype=float)
    assert np.all(pz[d["price_band"] == "budget"] < -0.43)
    assert np.all(pz[d["price_band"] == "premium"] > 0.43)
    # Shares are shares.
    for _, mat in tables.dense.values():
        assert mat.min() >= 0 and mat.sum(axis=1).max() <= 1 + 1e-5
    top = tables.top
    assert set(top.column("kind").to_pylist()) == {"category", "brand", "style", "keyword"}
    assert pc.max(top.column("rank")).as_py() <= 5
    assert tables.hours.sum() > 0 and tables.hours.shape == (n, 24)


def test_profiles_recover_planted_traits(shop: Any, tables: Any) -> None:
    """Planted rhythm, price position and activity show up in the segment means."""
    d = derived_fields(tables, ProfileConfig())
    seg = np.array([shop.truth["users"][u]["segment_name"] for u in tables.user_ids])
    pz = np.array(tables.scalars.column("price_z").to_pylist(), dtype=float)

    def mean(x: np.ndarray, name: str) -> float:
        return float(np.nanmean(x[seg == name]))

    assert mean(pz, "premium_buyers") > 0.5 > -0.3 > mean(pz, "bargain_hunters")
    night = tables.hours[:, [21, 22, 23, 0, 1]].sum(axis=1) / tables.hours.sum(axis=1)
    assert mean(night, "trend_followers") > 2 * mean(night, "brand_loyalists")
    prop = d["purchase_propensity"]
    assert mean(prop, "premium_buyers") > 2 * mean(prop, "casual_browsers")
    search = d["search_share"]
    assert mean(search, "bargain_hunters") > mean(search, "casual_browsers")
    brand = d["brand_concentration"]
    assert mean(brand, "brand_loyalists") > mean(brand, "casual_browsers") + 0.1
    # Keywords: the trend followers' items carry streetwear / glam words.
    words = {
        w for s in shop.truth["styles"] if s["name"] in ("streetwear", "glam") for w in s["words"]
    }
    kw = tables.top.filter(pc.equal(tables.top.column("kind"), "keyword")).to_pydict()
    followers = set(np.array(tables.user_ids)[seg == "trend_followers"])
    hits = [k in words for u, k in zip(kw["user_id"], kw["key"], strict=True) if u in followers]
    assert np.mean(hits) > 0.2


def test_raw_tables_are_used_when_not_cleaned(shop: Any, tmp_path: Path) -> None:
    files = shop.root / "files"
    store = tmp_path / "raw.duckdb"
    with Store(store) as st:
        ingest_files(st, [files / "items.csv", files / "events.csv"])
        t = compute_profiles(st)
    assert t.info["events_table"] == "events"
    assert t.info["reviews_table"] in ("reviews", None)
    # The raw table still holds the bots the cleaning would remove.
    assert set(shop.truth["bot_user_ids"]) <= set(t.user_ids)


def test_empty_store_is_an_error(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.duckdb") as st, pytest.raises(ValueError, match="no events"):
        compute_profiles(st)
