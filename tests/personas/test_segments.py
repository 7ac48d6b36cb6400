"""Segments recover the planted segments, are named after their traits, respect k_min."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from shopsight.data.pseudonym import Pseudonymizer, is_pseudonym
from shopsight.data.store import Store
from shopsight.personas import Personas, build_personas
from shopsight.personas.segments import SegmentConfig, enforce_k_min


def _planted(shop: Any, p: Personas) -> np.ndarray:
    back = Pseudonymizer().recover(p.users.column("user").to_pylist(), shop.truth["users"])
    return np.array(
        [shop.truth["users"][back[u]]["segment_name"] for u in p.users.column("user").to_pylist()]
    )


def test_segments_recover_planted_segments(shop: Any, built: Personas) -> None:
    truth = _planted(shop, built)
    labels = built.users.column("segment").to_numpy()
    ari = adjusted_rand_score(truth, labels)
    assert ari >= 0.6, (ari, built.summary())
    assert 3 <= built.meta["clustering"]["k"] <= 7
    stability = built.meta["clustering"]["stability"]
    assert stability["ari_mean"] > 0.6
    # Planted segments do not change over time: both halves of the period give similar groups.
    halves = stability["time_halves"]
    assert halves["users_both_halves"] > 300 and halves["ari"] > 0.5, halves


def _traits(seg: dict[str, Any], truth: dict[str, Any]) -> set[str]:
    """Words a name may use to state a planted trait of ``seg``."""
    styles = {s["name"]: s for s in truth["styles"]}
    words: set[str] = set()
    for name in seg["favourite_styles"]:
        s = styles[name]
        words |= {w.lower() for w in s["words"]} | {name, s["pattern"]}
        words |= {t for c in s["palette"] for t in c.split()}
    words |= {c.split(" > ")[-1].lower() for c in seg["favourite_categories"]}
    t = seg["traits"]
    if t["price_z"] <= -1:
        words.add("budget")
    if t["price_z"] >= 1:
        words.add("premium")
    peak = np.mean(t["peak_hours"])
    if peak >= 21:
        words.add("night owls")
    if peak <= 10:
        words.add("early birds")
    if t["conversion"] >= 0.5:
        words |= {"frequent buyers", "decisive buyers"}
    if t["conversion"] <= -1:
        words |= {"rare buyers", "window shoppers"}
    if t["brand_loyalty"] >= 0.5:
        words.add("brand loyalists")
    if t["brand_loyalty"] <= 0.1:
        words.add("brand hoppers")
    if t["search_rate"] >= 0.5:
        words.add("searchers")
    if t["share_rate"] >= 0.15:
        words.add("sharers")
    if t["weekend_factor"] >= 1.5:
        words.add("weekend shoppers")
    if t["views_per_session"] >= 7:
        words.add("long browsers")
    if t["sessions_per_week"] <= 1:
        words |= {"occasional visitors", "quick visitors"}
    return words


def test_names_mention_planted_traits(shop: Any, built: Personas) -> None:
    truth = _planted(shop, built)
    labels = built.users.column("segment").to_numpy()
    planted = {s["name"]: s for s in shop.truth["segments"]}
    for seg in built.segments():
        majority = Counter(truth[labels == seg["id"]].tolist()).most_common(1)[0][0]
        name = seg["name"].lower()
        hits = sorted(w for w in _traits(planted[majority], shop.truth) if w in name)
        assert len(hits) >= 2, (seg["name"], majority, hits)
        assert seg["description"] and seg["over_represented"]["category"]


def test_segment_records_are_complete(built: Personas) -> None:
    segs = built.segments()
    assert sum(s["size"] for s in segs) == len(built)
    assert abs(sum(s["share"] for s in segs) - 1) < 1e-3
    assert abs(sum(s["value_share"] for s in segs) - 1) < 1e-3
    assert len({s["name"] for s in segs}) == len(segs)
    for s in segs:
        assert s["size"] >= 20
        assert s["example_items"] and all(
            it["thumbnail"].startswith("data:image/png;base64,") for it in s["example_items"]
        )
        assert set(s["lifecycle"]) == {"new", "active", "at_risk", "churned"}
        assert s["funnel"]["views"] >= s["funnel"]["purchases"] > 0
    json.dumps(segs)  # JSON-ready


def test_profile_is_pseudonymised_and_json_ready(shop: Any, built: Personas) -> None:
    raw = next(u for u, v in shop.truth["users"].items() if not v["bot"])
    prof = built.profile(raw)
    assert prof is not None
    assert is_pseudonym(prof["user"]) and prof["user"] == Pseudonymizer()(raw)
    assert built.profile(prof["user"]) == prof  # the pseudonym works as a key too
    assert built.profile("no-such-user") is None
    text = json.dumps(prof)
    assert raw not in text
    for section in ("affinities", "price", "rhythm", "funnel", "rfm", "reviews", "prediction"):
        assert section in prof
    assert len(prof["rhythm"]["hours"]) == 24 and len(prof["rhythm"]["weekdays"]) == 7
    assert prof["rfm"]["lifecycle"] in ("new", "active", "at_risk", "churned")


def test_save_load_round_trip_without_raw_ids(shop: Any, built: Personas, tmp_path: Path) -> None:
    d = built.save(tmp_path / "personas")
    again = Personas.load(d)
    raw = next(u for u, v in shop.truth["users"].items() if not v["bot"])
    assert again.profile(raw) == built.profile(raw)
    assert again.segments() == json.loads(json.dumps(built.segments()))
    blob = b"".join(f.read_bytes() for f in d.iterdir())
    assert raw.encode() not in blob and b"u0042" not in blob
    with pytest.raises(FileNotFoundError, match="not a personas folder"):
        Personas.load(tmp_path)


def test_k_min_suppresses_small_segments(shop: Any) -> None:
    cfg = SegmentConfig(k=9, k_min=60, small="suppress", n_boot=0)
    with Store(shop.store, read_only=True) as st:
        p = build_personas(st, segment_config=cfg, use_features=False)
    labels = p.users.column("segment").to_numpy()
    sizes = Counter(labels[labels >= 0].tolist())
    assert min(sizes.values()) >= 60
    assert p.meta["clustering"]["suppressed"] == int(np.sum(labels < 0)) > 0
    assert [s["size"] for s in p.segments()] == sorted(sizes.values(), reverse=True)
    # A suppressed user has a profile but no segment name to single them out by.
    pid = p.users.column("user").to_pylist()[int(np.flatnonzero(labels < 0)[0])]
    prof = p.profile(pid)
    assert prof is not None and prof["segment"] == {"id": -1, "name": "suppressed"}


def test_k_min_merges_into_nearest() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [10.5, 0.5]])
    X = np.vstack(
        [c + rng.normal(0, 0.3, (n, 2)) for c, n in zip(centers, (50, 40, 5), strict=True)]
    )
    labels = np.repeat([0, 1, 2], (50, 40, 5))
    new, cent, merged, suppressed = enforce_k_min(X, labels, centers.copy(), 20, "merge")
    assert merged == 5 and suppressed == 0
    assert sorted(Counter(new.tolist()).values()) == [45, 50]
    assert set(new[-5:].tolist()) == {int(new[50])}  # the 5 joined the nearby segment
    assert cent.shape == (2, 2)


def test_hdbscan_option_runs(shop: Any) -> None:
    cfg = SegmentConfig(method="hdbscan", k_min=20, n_boot=0)
    with Store(shop.store, read_only=True) as st:
        p = build_personas(st, segment_config=cfg, use_features=False)
    labels = p.users.column("segment").to_numpy()
    assert p.meta["clustering"]["method"] == "hdbscan"
    assert (labels >= 0).all()  # noise merged into the nearest cluster
    assert all(s["size"] >= 20 for s in p.segments())


def test_tiny_shop_shows_no_segment(tmp_path: Path) -> None:
    """Fewer users than k_min: nobody may be singled out, so no segment is shown at all."""
    from shopsight.data.ingest import ingest_files
    from shopsight.data.synthetic import ShopConfig, generate_shop
    from shopsight.personas.report import render_report

    files = generate_shop(tmp_path / "f", ShopConfig.small(n_users=12, n_items=40, images=False))
    with Store(tmp_path / "s.duckdb") as st:
        ingest_files(st, files.data_files())
        p = build_personas(st, use_features=False)
    assert len(p) >= 10 and p.segments() == []
    assert set(p.users.column("segment").to_pylist()) == {-1}
    assert p.meta["clustering"]["suppressed"] == len(p)
    page = render_report(p, n_user_pages=3)
    assert page.count('class="segment-card"') == 0 and page.count('class="block user-page"') == 3
