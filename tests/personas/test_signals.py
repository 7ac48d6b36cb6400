"""Signals, review text, names, comparison and drill-down: personas claim only what data has.

A tiny Amazon-style review dump (dates stamped 00:00, ratings and review text, no prices, no
clicks, two planted groups of reviewers) is built here; the synthetic shop has every signal.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.personas import Personas, build_personas
from shopsight.personas.core import assign_examples
from shopsight.personas.reviews import sentiment_scores
from shopsight.personas.segments import SegmentConfig, unique_names
from shopsight.personas.signals import SIGNALS, signal_inventory

MIDNIGHT = 1_500_000_000 - 1_500_000_000 % 86400  # a date without a time of day
PRAISE = [
    "Arrived fast, the delivery was quick and the code worked instantly.",
    "Fast delivery by email, I love how quickly it came.",
    "Great gift, the email delivery was fast and easy.",
]
COMPLAINT = [
    "The package arrived damaged and the tin was dented.",
    "Terrible packaging, the box was crushed and broken.",
    "Awful, the tin came damaged and scratched in a crushed box.",
]


def _review_dump(root: Path) -> list[Path]:
    """60 + 50 reviewers of two item groups, 5 reviews each, date-only times, no prices."""
    meta, reviews = root / "meta_Tiny.json.gz", root / "Tiny_5.json.gz"
    with gzip.open(meta, "wt") as fh:
        for i in range(20):
            kind = "Coffee" if i < 10 else "Tea"
            fh.write(
                json.dumps(
                    {
                        "asin": f"B{i:04d}",
                        "title": f"{kind} gift tin no. {i}",
                        "category": ["Gift Cards", kind],
                        "brand": f"{kind}House",
                    }
                )
                + "\n"
            )
    rng = np.random.default_rng(0)
    with gzip.open(reviews, "wt") as fh:
        for u in range(110):
            happy = u < 60
            items = rng.choice(10, size=5, replace=False) + (0 if happy else 10)
            for j, it in enumerate(items):
                text = str(rng.choice(PRAISE if happy or j == 0 else COMPLAINT))
                fh.write(
                    json.dumps(
                        {
                            "reviewerID": f"R{u:04d}",
                            "asin": f"B{int(it):04d}",
                            "overall": 5.0 if happy else 2.0,
                            "reviewText": text,
                            "summary": "Five Stars" if happy else "Disappointed",
                            "unixReviewTime": MIDNIGHT + 86400 * int(rng.integers(0, 300)),
                        }
                    )
                    + "\n"
                )
    return [meta, reviews]


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Personas]:
    root = tmp_path_factory.mktemp("review_dump")
    store = root / "s.duckdb"
    with Store(store) as st:
        rep = ingest_files(st, _review_dump(root))
        assert rep.ok, [f.error for f in rep.files]
    with Store(store, read_only=True) as st:
        p = build_personas(st, segment_config=SegmentConfig(n_boot=3), use_features=False)
    return store, p


def test_inventory_of_a_review_dump(dump: tuple[Path, Personas]) -> None:
    store, p = dump
    with Store(store, read_only=True) as st:
        sig = signal_inventory(st)
    assert list(sig) == list(SIGNALS)
    assert all(set(v) == {"available", "reason"} and v["reason"] for v in sig.values())
    off = {k for k, v in sig.items() if not v["available"]}
    assert {"time_of_day", "sessions", "price", "funnel", "searches", "demographics"} <= off
    assert {"ratings", "review_text", "categories", "brands"}.isdisjoint(off)
    assert "00:00" in sig["time_of_day"]["reason"]
    assert p.summary()["signals"] == sig


def test_review_dump_claims_only_present_signals(dump: tuple[Path, Personas]) -> None:
    _, p = dump
    segs = p.segments()
    assert len(segs) >= 2
    names = [s["name"] for s in segs]
    assert len(set(names)) == len(names) and not any(re.search(r"\d", n) for n in names)
    banned = ("weekend", "weekday", "visitor", "night", "early bird", "spender", "buyer", "budget")
    assert not any(b in n.lower() for n in names for b in banned), names
    assert all(s["value_share"] is None and s["funnel"] == {} for s in segs)
    for s in segs:  # no trait of a missing signal, and the radar's traits all have data
        assert {"night_share", "weekend_share", "price_z", "view_to_buy"}.isdisjoint(s["traits"])
    prof = p.profile(p.users.column("user")[0].as_py())
    assert prof is not None
    assert prof["rhythm"]["peak_hour"] is None and prof["rhythm"]["weekend_share"] is None
    assert prof["price"]["avg_price"] is None and prof["funnel"]["view_to_buy"] is None
    keys = {m["key"] for m in p.meta["comparison"]["metrics"]}
    assert {"sentiment", "mean_rating", "stability"} <= keys
    assert keys.isdisjoint({"view_to_cart", "peak_hour", "price", "share_value", "sessions"})


def test_review_text_sentiment_topics_and_aspects(dump: tuple[Path, Personas]) -> None:
    _, p = dump
    assert sentiment_scores(["I love it, great!", "Awful, broken and useless."]).tolist()[0] > 0.5
    assert sentiment_scores(["Awful, broken and useless."])[0] < -0.5
    u = p.users.to_pydict()
    sent = np.array(u["sentiment"], dtype=float)
    assert np.isfinite(sent).all()  # every reviewer has a sentiment from their text
    assert p.meta["review_text"]["topics"] >= 2
    # The unhappy group: complaints about the damaged tins, quoted from their reviews.
    unhappy = max(p.segments(), key=lambda s: len(s["aspects"]["complaint"]))
    complaint = unhappy["aspects"]["complaint"][0]
    assert complaint["reviews"] >= 10
    assert any(complaint["example"].rstrip(".") in c for c in COMPLAINT), complaint
    happy = next(s for s in p.segments() if s["id"] != unhappy["id"])
    assert happy["aspects"]["praise"] and not happy["aspects"]["complaint"]
    topics = {k for k, kind in zip(p.affinities["key"].to_pylist(), p.affinities["kind"].to_pylist(), strict=True) if kind == "topic"}  # fmt: skip
    assert topics and not any(w in t for t in topics for w in ("love", "awful", "great"))


def test_examples_are_titles_and_not_shared(dump: tuple[Path, Personas], built: Personas) -> None:
    for p in (dump[1], built):
        seen: set[str] = set()
        for s in p.segments():
            ids = [e["item_id"] for e in s["example_items"]]
            assert not seen & set(ids)
            seen |= set(ids)
            assert all(e["title"] for e in s["example_items"])
    cands = {0: [("a", 3.0, 5), ("b", 2.0, 5)], 1: [("a", 4.0, 5), ("c", 1.5, 5)]}
    assert assign_examples(cands) == {0: [("b", 2.0)], 1: [("a", 4.0), ("c", 1.5)]}


def test_unique_names_use_facts_not_numbers() -> None:
    names = unique_names(
        ["Brand hoppers", "Brand hoppers", "Tea lovers"],
        [["food", "delivery"], ["food", "tins"], ["x"]],
    )
    assert names == ["Brand hoppers, delivery", "Brand hoppers, tins", "Tea lovers"]
    out = unique_names(["A", "A"], [[], []])
    assert len(set(out)) == 2 and not any(re.search(r"\d", n) for n in out)


def test_comparison_with_baseline_and_conversion(shop: Any, built: Personas) -> None:
    rows = {m["key"]: m for m in built.meta["comparison"]["metrics"]}
    segs = built.segments()
    for key in ("view_to_cart", "cart_to_purchase", "view_to_purchase", "peak_hour", "price"):
        assert rows[key]["baseline"] is not None and len(rows[key]["segments"]) == len(segs)
    # Pooled rates: the baseline is the members' weighted mix, so it lies within the segments.
    v = rows["view_to_purchase"]
    assert min(v["segments"]) <= v["baseline"] <= max(v["segments"])
    with Store(shop.store, read_only=True) as st:
        bought, browsed = st.conn.execute(
            """SELECT count(DISTINCT (user_id, item_id)) FILTER (event_type = 'purchase'
                   AND (user_id, item_id) IN (SELECT (user_id, item_id) FROM events_clean
                                              WHERE event_type IN ('view', 'click'))),
                      count(DISTINCT (user_id, item_id)) FILTER (event_type IN ('view', 'click'))
               FROM events_clean"""
        ).fetchall()[0]
    assert v["baseline"] == pytest.approx(bought / browsed, abs=0.02)
    assert rows["stability"]["segments"] == [s["stability_jaccard"] for s in segs]
    # The busiest hour is an hour with activity (a circular mean need not be).
    hours = np.array(built.users.column("hours").to_pylist(), dtype=float)
    peaks = np.array(built.users.column("peak_hour").to_pylist(), dtype=float)
    ok = np.isfinite(peaks)
    assert (hours[ok, peaks[ok].astype(int)] > 0).all()


def test_segment_csv_is_pseudonymised(shop: Any, built: Personas, tmp_path: Path) -> None:
    seg = built.segments()[0]
    text = built.segment_csv(seg["id"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == seg["size"]
    assert all(r["user"].startswith("p_") and r["segment"] == str(seg["id"]) for r in rows)
    raw = set(shop.truth["users"])
    assert not any(cell in raw for r in rows for cell in r.values())
    assert "age_band" not in rows[0] and "gender" not in rows[0]
    out = built.export_segment(seg["id"], tmp_path / "s.csv")
    assert out.read_text() == text
    with pytest.raises(KeyError):
        built.segment_csv(99)


def test_topics_missing_encoder_keeps_sentiment(dump: tuple[Path, Personas]) -> None:
    from shopsight.personas.reviews import review_text

    class Broken:
        def encode(self, texts: Any) -> Any:
            raise OSError("no model files")

    store, _ = dump
    users = [str(u) for u in range(3)]
    with Store(store, read_only=True) as st:
        ids = [r[0] for r in st.conn.execute("SELECT DISTINCT user_id FROM reviews").fetchall()]
        rt = review_text(st, "reviews", ids + users, encoder=Broken())
    assert rt.topics == [] and "no model files" in rt.info["topics_reason"]
    assert np.isfinite(rt.sentiment[: len(ids)]).all() and np.isnan(rt.sentiment[len(ids) :]).all()
    assert rt.aspects(np.ones(len(ids) + 3, bool)) == {"praise": [], "complaint": []}
