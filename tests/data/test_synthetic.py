"""The synthetic shop: formats, determinism, and that every planted signal is really there."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from shopsight.data.synthetic import (
    EVENTS_HEADER,
    ITEMS_HEADER,
    REVIEW_KEYS,
    USERS_HEADER,
    ShopConfig,
    ShopFiles,
    generate_shop,
    write_events_csv,
)

KNOWN_TYPES = {
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
}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# Independent of the generator's phrase banks: a plain sentiment lexicon.
POSITIVE = {"love", "excellent", "perfect", "fantastic", "amazing", "recommend", "happy", "good"}
NEGATIVE = {"terrible", "awful", "waste", "disappointed", "disappointing", "poor", "avoid", "not"}

# Noise raised above the defaults so a small shop still has enough of each kind to count.
CONFIG = ShopConfig.small(
    seed=7,
    bot_fraction=0.02,
    duplicate_fraction=0.005,
    malformed_fraction=0.002,
    outlier_price_fraction=0.03,
)


def _row_problem(row: dict[str, str]) -> str | None:
    """A minimal validator with the canonical rules, independent of the ingest engine."""
    if not row["user_id"]:
        return "user"
    if row["event_type"] not in KNOWN_TYPES:
        return "type"
    if not row["item_id"] and row["event_type"] != "search":
        return "item"
    if not ISO_Z.match(row["timestamp"]):
        return "timestamp"
    try:
        datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return "timestamp"
    if row["value"] and float(row["value"]) < 0:
        return "value"
    return None


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> ShopFiles:
    return generate_shop(tmp_path_factory.mktemp("shop"), CONFIG)


@pytest.fixture(scope="module")
def gt(shop: ShopFiles) -> dict[str, Any]:
    return shop.load_ground_truth()


@pytest.fixture(scope="module")
def raw_rows(shop: ShopFiles) -> list[dict[str, str]]:
    with shop.events.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def events(shop: ShopFiles, gt: dict[str, Any], raw_rows: list[dict[str, str]]) -> pd.DataFrame:
    """Valid, de-duplicated human events with item facts from the catalogue and ground truth."""
    ev = pd.DataFrame([r for r in raw_rows if _row_problem(r) is None]).drop_duplicates()
    ev = ev[~ev.user_id.isin(set(gt["bot_user_ids"]))].copy()
    items = pd.read_csv(shop.items, dtype=str, keep_default_na=False).set_index("item_id")
    ev["category"] = ev.item_id.map(items.category)
    ev["style"] = ev.item_id.map({k: v["style"] for k, v in gt["items"].items()})
    true_price = pd.Series({k: v["true_price"] for k, v in gt["items"].items()})
    ev["log_price"] = np.log(ev.item_id.map(true_price).astype(float))
    ev["segment"] = ev.user_id.map({k: v["segment"] for k, v in gt["users"].items()})
    ev["ts"] = pd.to_datetime(ev.timestamp, format="%Y-%m-%dT%H:%M:%SZ")
    return ev


# -- formats ---------------------------------------------------------------------------------


def test_headers_and_file_formats(shop: ShopFiles, gt: dict[str, Any]) -> None:
    first = shop.events.read_text(encoding="utf-8").split("\n", 1)[0]
    assert first == "user_id,item_id,event_type,timestamp,session_id,query,value"
    assert tuple(first.split(",")) == EVENTS_HEADER
    with shop.items.open(newline="", encoding="utf-8") as fh:
        items = list(csv.reader(fh))
    assert tuple(items[0]) == ITEMS_HEADER
    assert len(items) - 1 == CONFIG.n_items
    for row in items[1:]:
        rec = dict(zip(ITEMS_HEADER, row, strict=True))
        assert " > " in rec["category"]
        assert rec["brand"] and rec["title"].startswith(rec["brand"])
        assert float(rec["price"]) > 0
        assert rec["currency"] == "EUR"
        assert rec["image"] == f"images/{rec['item_id']}.png"
        attrs = json.loads(rec["attributes"])
        assert isinstance(attrs, dict) and {"colour", "material", "size"} <= set(attrs)
        assert attrs["colour"] in rec["title"].lower()
        img = Image.open(shop.root / rec["image"])
        assert img.format == "PNG" and img.size == (CONFIG.image_size, CONFIG.image_size)
    with shop.users.open(newline="", encoding="utf-8") as fh:
        users = list(csv.reader(fh))
    assert tuple(users[0]) == USERS_HEADER
    assert len(users) - 1 == CONFIG.n_users
    for row in users[1:]:
        datetime.strptime(row[4], "%Y-%m-%d")
    lines = shop.reviews.read_text(encoding="utf-8").splitlines()
    assert len(lines) == gt["counts"]["reviews"] > 20
    for line in lines:
        rev = json.loads(line)
        assert tuple(rev) == REVIEW_KEYS
        assert rev["rating"] in {1, 2, 3, 4, 5}
        assert ISO_Z.match(rev["timestamp"])
        assert isinstance(rev["verified"], bool) and rev["helpful_votes"] >= 0


def test_event_rows_are_well_formed(raw_rows: list[dict[str, str]], gt: dict[str, Any]) -> None:
    assert len(raw_rows) == gt["counts"]["rows"]
    start, end = gt["period"]["start"], gt["period"]["end"]
    for row in raw_rows:
        if _row_problem(row) is not None:
            continue
        assert start <= row["timestamp"] < end
        if row["event_type"] == "search":
            assert row["query"] and not row["item_id"]
        else:
            assert not row["query"]
        if row["event_type"] in {"purchase", "rate"}:
            assert row["value"]
        else:
            assert row["value"] == ""
        if row["event_type"] == "rate":
            assert not row["session_id"] and row["value"] in {"1", "2", "3", "4", "5"}
        else:
            assert row["session_id"]


def test_same_config_gives_identical_bytes(shop: ShopFiles, tmp_path: Path) -> None:
    again = generate_shop(tmp_path / "again", CONFIG)
    assert _tree_hash(again.root) == _tree_hash(shop.root)
    other = generate_shop(tmp_path / "other", CONFIG.with_(seed=8, images=False))
    assert other.events.read_bytes() != shop.events.read_bytes()


def test_images_can_be_skipped_without_changing_data(shop: ShopFiles, tmp_path: Path) -> None:
    plain = generate_shop(tmp_path / "noimg", CONFIG.with_(images=False))
    assert plain.images is None and not (tmp_path / "noimg" / "images").exists()
    for name in ("events.csv", "items.csv", "users.csv", "reviews.jsonl"):
        assert (plain.root / name).read_bytes() == (shop.root / name).read_bytes(), name


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="n_segments"):
        ShopConfig(n_segments=9)
    with pytest.raises(ValueError, match="start_date"):
        ShopConfig(start_date="March")
    with pytest.raises(ValueError, match="bogus"):
        ShopConfig.from_dict({"bogus": 1})
    assert ShopConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_fewer_segments_and_categories(tmp_path: Path) -> None:
    cfg = ShopConfig.small(n_segments=4, n_categories=5, n_styles=6, images=False, seed=3)
    g = generate_shop(tmp_path, cfg).load_ground_truth()
    assert [s["name"] for s in g["segments"]] == [
        "bargain_hunters",
        "brand_loyalists",
        "trend_followers",
        "premium_buyers",
    ]
    segs = {u["segment"] for u in g["users"].values() if not u["bot"]}
    assert segs == {0, 1, 2, 3}
    assert len(g["categories"]) == 5 and len({i["style"] for i in g["items"].values()}) == 6


# -- planted behaviour -----------------------------------------------------------------------


def test_funnel_is_ordered_and_consistent(events: pd.DataFrame, gt: dict[str, Any]) -> None:
    n = events.event_type.value_counts()
    assert n["view"] > n["click"] > n["add_to_cart"] > n["purchase"] > 0
    assert n["add_to_cart"] > n["remove_from_cart"]
    # Every purchase follows an add_to_cart of the same item, in the same session, earlier.
    key = ["session_id", "item_id"]
    carts = events[events.event_type == "add_to_cart"].groupby(key).ts.min()
    buys = events[events.event_type == "purchase"].set_index(key).ts
    assert buys.index.isin(carts.index).all()
    first_buy = buys.groupby(level=[0, 1]).min()
    assert (first_buy > carts.reindex(first_buy.index)).all()
    # Purchase value is the true price of the item.
    pur = events[events.event_type == "purchase"]
    true_price = {k: v["true_price"] for k, v in gt["items"].items()}
    assert np.allclose(pur.value.astype(float), pur.item_id.map(true_price))


def test_affinity_drives_conversion(events: pd.DataFrame, gt: dict[str, Any]) -> None:
    fav = {s["index"]: {st["index"] for st in gt["styles"] if st["name"] in s["favourite_styles"]} for s in gt["segments"]}  # fmt: skip
    ev = events[events.item_id != ""].copy()
    ev["fav_style"] = [s in fav[g] for s, g in zip(ev["style"], ev.segment, strict=True)]
    views = ev[ev.event_type == "view"]
    buys = ev[ev.event_type == "purchase"]
    # Users look at, and buy, their segment's styles far more than a uniform share.
    uniform = 2 / len(gt["styles"])
    assert views.fav_style.mean() > 1.5 * uniform
    # And conversion is higher on the items that match their taste.
    conv_fav = len(buys[buys.fav_style]) / len(views[views.fav_style])
    conv_other = len(buys[~buys.fav_style]) / len(views[~views.fav_style])
    assert conv_fav > 1.2 * conv_other


def test_sessions_have_sequential_structure(events: pd.DataFrame) -> None:
    v = events[events.event_type == "view"].sort_values(["session_id", "ts"])
    same_session = v.session_id.to_numpy()[1:] == v.session_id.to_numpy()[:-1]
    cat = v.category.to_numpy()
    observed = np.mean(cat[1:][same_session] == cat[:-1][same_session])
    # Baseline: the same users' views paired at random (taste without sequence).
    rng = np.random.default_rng(0)
    shuffled = v.groupby("user_id").category.transform(
        lambda s: s.to_numpy()[rng.permutation(len(s))]
    )
    sc = shuffled.to_numpy()
    baseline = np.mean(sc[1:][same_session] == sc[:-1][same_session])
    assert observed > baseline + 0.1, (observed, baseline)


def test_segment_traits_show_in_behaviour(events: pd.DataFrame, gt: dict[str, Any]) -> None:
    idx = {s["name"]: s["index"] for s in gt["segments"]}
    ev = events.copy()
    ev["price_z"] = ev.groupby("category").log_price.transform(lambda x: (x - x.mean()) / x.std())
    buys = ev[ev.event_type == "purchase"]
    price = buys.groupby("segment").price_z.mean()
    assert price[idx["premium_buyers"]] > price.drop(idx["premium_buyers"]).max()
    assert price[idx["bargain_hunters"]] < price.drop(idx["bargain_hunters"]).min()
    counts = ev.groupby(["segment", "event_type"]).size().unstack(fill_value=0)
    conv = counts["purchase"] / counts["view"]
    assert conv.idxmin() == idx["casual_browsers"]
    share = counts["share"] / counts["click"]
    assert share.idxmax() == idx["trend_followers"]
    # Brand loyalists buy their favourite brands most.
    fav_brand = {u: set(v["favourite_brands"]) for u, v in gt["users"].items()}
    brand = {k: v["brand"] for k, v in gt["items"].items()}
    loyal = buys.apply(lambda r: brand[r.item_id] in fav_brand[r.user_id], axis=1)
    loyal_share = loyal.groupby(buys.segment).mean()
    assert loyal_share.idxmax() == idx["brand_loyalists"]
    # Trend followers are the night owls.
    hours = ev[ev.event_type == "view"].ts.dt.hour
    late = ((hours >= 21) | (hours <= 1)).groupby(ev.segment).mean()
    assert late.idxmax() == idx["trend_followers"]


def test_segments_are_recoverable_by_clustering(events: pd.DataFrame, gt: dict[str, Any]) -> None:
    v = events[events.event_type == "view"].copy()
    v["price_z"] = v.groupby("category").log_price.transform(lambda x: (x - x.mean()) / x.std())
    cat_share = pd.crosstab(v.user_id, v.category, normalize="index")
    style_share = pd.crosstab(v.user_id, v["style"], normalize="index").add_prefix("style_")
    counts = events.groupby(["user_id", "event_type"]).size().unstack(fill_value=0)
    feats = pd.concat(
        [
            cat_share,
            style_share,
            v.groupby("user_id").price_z.median().rename("price"),
            (np.log1p(counts["purchase"]) - np.log1p(counts["view"])).rename("conversion"),
            np.log1p(counts["view"]).rename("activity"),
        ],
        axis=1,
    ).fillna(0.0)
    truth = feats.index.map(lambda u: gt["users"][u]["segment"])
    k = len(gt["segments"])
    labels = KMeans(k, n_init=10, random_state=0).fit_predict(StandardScaler().fit_transform(feats))
    ari = adjusted_rand_score(truth, labels)
    assert ari >= 0.6, ari


def test_ratings_follow_text_sentiment(shop: ShopFiles) -> None:
    reviews = [json.loads(line) for line in shop.reviews.read_text(encoding="utf-8").splitlines()]
    ratings, scores = [], []
    for r in reviews:
        words = re.findall(r"[a-z]+", (r["summary"] + " " + r["text"]).lower())
        scores.append(sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words))
        ratings.append(r["rating"])
    rho = spearmanr(ratings, scores).statistic
    assert rho > 0.6, rho
    r, sc = np.array(ratings), np.array(scores)
    assert sc[r <= 2].mean() < 0 < sc[r >= 4].mean()
    assert sc[r <= 2].mean() < sc[r == 3].mean() < sc[r >= 4].mean()
    assert len(set(ratings)) == 5  # every level is used
    assert np.mean(ratings) > 3.0  # skewed positive, like real shops


def test_ratings_follow_planted_quality(shop: ShopFiles, gt: dict[str, Any]) -> None:
    reviews = [json.loads(line) for line in shop.reviews.read_text(encoding="utf-8").splitlines()]
    quality = [gt["items"][r["item_id"]]["quality"] for r in reviews]
    assert spearmanr([r["rating"] for r in reviews], quality).statistic > 0.2


# -- content ---------------------------------------------------------------------------------


def test_item_images_differ_by_style(shop: ShopFiles, gt: dict[str, Any]) -> None:
    ids = sorted(gt["items"])
    style = np.array([gt["items"][i]["style"] for i in ids])
    pix = np.stack(
        [np.asarray(Image.open(shop.root / "images" / f"{i}.png"), dtype=np.float64) for i in ids]
    )
    mean_rgb = pix.mean(axis=(1, 2))
    centroids = np.stack([mean_rgb[style == s].mean(axis=0) for s in np.unique(style)])
    within = np.mean(np.linalg.norm(mean_rgb - centroids[np.searchsorted(np.unique(style), style)], axis=1))  # fmt: skip
    diffs = centroids[:, None] - centroids[None]
    between = np.linalg.norm(diffs, axis=2)[np.triu_indices(len(centroids), 1)].mean()
    assert between > within, (between, within)
    # Style is learnable from small thumbnails alone (what an image encoder will see).
    thumbs = np.stack(
        [
            np.asarray(Image.open(shop.root / "images" / f"{i}.png").resize((8, 8)), np.float64)
            for i in ids
        ]
    ).reshape(len(ids), -1)
    model = LogisticRegression(C=10.0, max_iter=3000)
    acc = cross_val_score(model, thumbs / 255.0, style, cv=3).mean()
    assert acc > 0.85, acc


def test_item_text_encodes_style_and_category(shop: ShopFiles, gt: dict[str, Any]) -> None:
    items = pd.read_csv(shop.items, dtype=str, keep_default_na=False)
    text = (
        items.title + " " + items.description.str.replace(r"Category: .*", "", regex=True)
    ).tolist()
    x = TfidfVectorizer().fit_transform(text)
    style = items.item_id.map(lambda i: gt["items"][i]["style"])
    cat = items.category
    model = LogisticRegression(C=10.0, max_iter=2000)
    assert cross_val_score(model, x, style, cv=3).mean() > 0.9
    assert cross_val_score(model, x, cat, cv=3).mean() > 0.9


# -- noise -----------------------------------------------------------------------------------


def test_duplicates_match_ground_truth(shop: ShopFiles, gt: dict[str, Any]) -> None:
    lines = shop.events.read_text(encoding="utf-8").splitlines()
    seen: set[str] = set()
    repeats = []
    for no, line in enumerate(lines, start=1):
        if line in seen:
            repeats.append(no)
        seen.add(line)
    noise = gt["noise"]
    assert noise["n_duplicate_rows"] > 50
    assert len(repeats) == noise["n_duplicate_rows"]
    assert repeats == noise["duplicate_lines"]


def test_malformed_rows_match_ground_truth(
    raw_rows: list[dict[str, str]], gt: dict[str, Any]
) -> None:
    bad = {no: p for no, row in enumerate(raw_rows, start=2) if (p := _row_problem(row))}
    noise = gt["noise"]
    assert noise["n_malformed_rows"] >= 25
    assert sorted(bad) == [m["line"] for m in noise["malformed"]]
    expected = {
        "bad_timestamp": "timestamp",
        "unknown_event_type": "type",
        "negative_value": "value",
        "missing_user_id": "user",
        "missing_item_id": "item",
    }
    for m in noise["malformed"]:
        assert bad[m["line"]] == expected[m["kind"]]
    assert set(expected) == {m["kind"] for m in noise["malformed"]}


def test_outlier_prices_match_ground_truth(shop: ShopFiles, gt: dict[str, Any]) -> None:
    items = pd.read_csv(shop.items, dtype={"item_id": str}).set_index("item_id")
    true_price = pd.Series({k: v["true_price"] for k, v in gt["items"].items()})
    ratio = items.price / true_price.reindex(items.index)
    off = set(ratio.index[(ratio > 10) | (ratio < 0.1)])
    assert off == set(gt["noise"]["outlier_prices"])
    assert len(off) == gt["noise"]["n_outlier_prices"] >= 3
    assert np.allclose(ratio.drop(list(off)), 1.0)


def test_bots_are_extreme_and_never_buy(raw_rows: list[dict[str, str]], gt: dict[str, Any]) -> None:
    bots = set(gt["bot_user_ids"])
    assert len(bots) == gt["noise"]["n_bot_users"] == round(CONFIG.bot_fraction * CONFIG.n_users)
    assert all(gt["users"][b]["bot"] and gt["users"][b]["segment"] == -1 for b in bots)
    per_user = Counter(r["user_id"] for r in raw_rows if r["user_id"])
    human = [n for u, n in per_user.items() if u not in bots]
    assert min(per_user[b] for b in bots) > 5 * np.median(human)
    assert not any(r["user_id"] in bots and r["event_type"] == "purchase" for r in raw_rows)
    # Bots browse the whole catalogue uniformly.
    bot_items = {r["item_id"] for r in raw_rows if r["user_id"] in bots}
    assert len(bot_items) > 0.9 * CONFIG.n_items


# -- bulk events -----------------------------------------------------------------------------


def test_write_events_csv(tmp_path: Path) -> None:
    path = tmp_path / "bulk.csv"
    n = 25_000
    summary = write_events_csv(path, n, seed=5, n_users=500, n_items=300, chunk_size=10_000)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == ",".join(EVENTS_HEADER)
    assert len(lines) - 1 == summary.rows == n
    rows = list(csv.DictReader(text.splitlines()))
    assert all(len(r) == len(EVENTS_HEADER) and None not in r for r in rows)
    problems = Counter(p for r in rows if (p := _row_problem(r)))
    assert sum(problems.values()) == summary.invalid == 25
    assert set(problems) == {"timestamp", "type", "value", "user"}
    dup = sum(c - 1 for c in Counter(lines[1:]).values())
    assert dup == summary.duplicates == 25
    assert summary.valid_unique == n - 50
    good = [r for r in rows if _row_problem(r) is None]
    assert {r["event_type"] for r in good} >= {"view", "click", "add_to_cart", "purchase", "search"}
    assert all(bool(r["query"]) == (r["event_type"] == "search") for r in good)
    assert len({r["user_id"] for r in good}) > 200
    # Deterministic in the seed.
    again = tmp_path / "again.csv"
    write_events_csv(again, n, seed=5, n_users=500, n_items=300, chunk_size=10_000)
    assert again.read_bytes() == path.read_bytes()
    write_events_csv(again, n, seed=6, n_users=500, n_items=300, chunk_size=10_000)
    assert again.read_bytes() != path.read_bytes()


def test_write_events_csv_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_events"):
        write_events_csv(tmp_path / "x.csv", -1)
    with pytest.raises(ValueError, match="duplicate_fraction"):
        write_events_csv(tmp_path / "x.csv", 10, duplicate_fraction=0.9)


def test_ingest_reads_the_shop_without_mapping(
    shop: ShopFiles, gt: dict[str, Any], tmp_path: Path
) -> None:
    """The generic readers load every file as written; ingest finds exactly the planted noise."""
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store

    with Store(tmp_path / "shop.duckdb") as store:
        report = ingest_files(store, shop.data_files())
        by_file = {Path(f.source).name: f for f in report.files}
        assert all(f.error is None for f in report.files), [f.error for f in report.files]
        ev = by_file["events.csv"]
        assert ev.duplicates == gt["noise"]["n_duplicate_rows"]
        assert ev.quarantined == gt["noise"]["n_malformed_rows"]
        assert ev.stored == gt["counts"]["valid_events"]
        lines = store.conn.execute(
            "SELECT line FROM quarantine WHERE target = 'events' ORDER BY line"
        ).fetchall()
        assert [ln for (ln,) in lines] == [m["line"] for m in gt["noise"]["malformed"]]
        assert by_file["items.csv"].stored == CONFIG.n_items
        assert by_file["users.csv"].stored == CONFIG.n_users
        assert by_file["reviews.jsonl"].stored == gt["counts"]["reviews"]


# -- streaming in blocks ---------------------------------------------------------------------

BLOCKED = ShopConfig.small(
    n_users=450, n_items=120, days=20, images=False, seed=11, block_users=200
)


def test_blocks_stream_and_parts_match_a_full_run(tmp_path: Path) -> None:
    """A shop of several blocks: noise lines are exact across blocks, and per-worker parts hold
    the same rows as the full run (ids, sessions and noise included)."""
    full = generate_shop(tmp_path / "full", BLOCKED)
    gt = full.load_ground_truth()
    lines = full.events.read_text(encoding="utf-8").splitlines()
    assert len(lines) - 1 == gt["counts"]["rows"]
    assert gt["counts"]["users"] == 450 and len(gt["users"]) == 450
    assert gt["noise"]["n_bot_users"] == round(BLOCKED.bot_fraction * 450)
    assert sum(s["n_users"] for s in gt["segments"]) + gt["noise"]["n_bot_users"] == 450
    seen: set[str] = set()
    repeats = []
    for no, line in enumerate(lines, start=1):
        if line in seen:
            repeats.append(no)
        seen.add(line)
    assert repeats == gt["noise"]["duplicate_lines"]
    rows = list(csv.DictReader(lines))
    bad = sorted(no for no, row in enumerate(rows, start=2) if _row_problem(row))
    assert bad == [m["line"] for m in gt["noise"]["malformed"]]
    # Session ids never span two users, across blocks too.
    owners: dict[str, set[str]] = {}
    for r in rows:
        if r["session_id"] and r["user_id"]:
            owners.setdefault(r["session_id"], set()).add(r["user_id"])
    assert all(len(v) == 1 for v in owners.values())

    parts = [
        generate_shop(tmp_path / "parts", BLOCKED, user_range=rg) for rg in [(0, 400), (400, 450)]
    ]
    part_lines = [p.events.read_text(encoding="utf-8").splitlines() for p in parts]
    assert all(p[0] == lines[0] for p in part_lines)
    assert part_lines[0][1:] + part_lines[1][1:] == lines[1:]
    assert parts[0].items.read_bytes() == full.items.read_bytes()
    users_rows = [p.users.read_text(encoding="utf-8").splitlines() for p in parts]
    assert users_rows[0] + users_rows[1][1:] == full.users.read_text(encoding="utf-8").splitlines()
    pgt = [p.load_ground_truth() for p in parts]
    assert pgt[1]["users_range"] == [400, 450] and set(pgt[1]["users"]) == {
        u for u in gt["users"] if int(u[1:]) >= 400
    }
    assert sum(g["counts"]["rows"] for g in pgt) == gt["counts"]["rows"]
    # Each part's noise lines refer to its own file.
    for p, g in zip(part_lines, pgt, strict=True):
        bad = sorted(no for no, row in enumerate(csv.DictReader(p), start=2) if _row_problem(row))
        assert bad == [m["line"] for m in g["noise"]["malformed"]]


def test_user_range_must_hold_whole_blocks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiples of block_users"):
        generate_shop(tmp_path, BLOCKED, user_range=(100, 300))
    with pytest.raises(ValueError, match="START < END"):
        generate_shop(tmp_path, BLOCKED, user_range=(0, 900))


def test_item_draws_follow_each_users_softmax_over_items() -> None:
    """The sampler's proposal + price rejection must reproduce softmax(affinity) exactly: checked
    against the affinity of every item computed directly (total variation of 60,000 draws)."""
    from shopsight.data.synthetic.generator import _ShopGenerator

    gen = _ShopGenerator(ShopConfig.small(seed=3))
    rngs = gen.block_rngs(0)
    users = gen.users(0, rngs["users"])
    gen.sampler.prepare(users)
    n_items, draws = len(gen.cat.item_ids), 60_000
    rng = np.random.default_rng(0)
    # users with a narrow price tolerance are where a wrong rejection step shows most
    for u in [*np.argsort(users.price_tolerance)[:2].tolist(), int(np.argmax(users.loyalty))]:
        aff = gen.sampler.affinity(users, np.full(n_items, u), np.arange(n_items))
        p = np.exp(aff - aff.max())
        p /= p.sum()
        got = np.bincount(gen.sampler.draw(np.full(draws, u), rng), minlength=n_items) / draws
        tv = 0.5 * np.abs(got - p).sum()
        # sampling noise alone: E[TV] <= 0.5 * sum(sqrt(p (1 - p) / draws))
        noise = 0.5 * np.sqrt(p * (1 - p) / draws).sum()
        assert tv < 2.0 * noise + 0.01, (u, tv, noise)
