"""Explanations: faithful history attribution, modality weights, reasons, SHAP, and the CLI.

One small synthetic shop per module; models are trained on it once. The faithfulness tests
aggregate over many (user, recommended item) pairs: removing the top-explained past item must
lower the item's score more than removing a random past item, on average and in most pairs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsight.data.dataset import Dataset
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig
from shopsight.explain import (
    DEFAULT_REASON,
    ExplainError,
    event_from_weight,
    explain_items,
    explain_prediction,
    reason_line,
)
from shopsight.models.artifact import save_artifact
from shopsight.models.base import Recommender
from shopsight.models.registry import create_model

PARAMS: dict[str, dict[str, Any]] = {
    "als": {"seed": 0, "factors": 16, "num_threads": 1},
    "ease": {"l2": 100.0},
    "itemknn": {"neighbours": 50},
    "lightgcn": {"seed": 0, "dim": 32, "epochs": 8, "batch_size": 1024, "lr": 0.02},
    "bpr": {"seed": 0, "factors": 32, "epochs": 8, "batch_size": 1024, "lr": 0.01},
    "sasrec": {
        "seed": 0,
        "dim": 32,
        "epochs": 8,
        "batch_size": 64,
        "dropout": 0.2,
        "attn_dropout": 0.2,
    },
    "vbpr": {"seed": 0, "factors": 16, "epochs": 3, "batch_size": 1024, "num_threads": 1},
    "freedom": {"seed": 0, "dim": 16, "epochs": 3, "batch_size": 1024},
}


@dataclass
class Shop:
    store: Path
    ds: Dataset
    titles: list[str]
    content: dict[str, np.ndarray]  # planted: text = style one-hot + noise, image = noise


# Small problems: one torch and one BLAS thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, build_shop: Any) -> Shop:
    root = tmp_path_factory.mktemp("explain")
    built = build_shop(root, ShopConfig.small(seed=3, images=False))
    files = built.files
    with Store(built.store, read_only=True) as store:
        ds = Dataset.from_store(store)
    truth = files.load_ground_truth()["items"]
    styles = np.array([truth[str(i)]["style"] for i in ds.item_ids.tolist()])
    rng = np.random.default_rng(0)
    text = np.eye(styles.max() + 1)[styles] + 0.1 * rng.normal(size=(ds.n_items, styles.max() + 1))
    image = rng.normal(size=(ds.n_items, 8))
    titles = [str(t) for t in ds.items.column("title").to_pylist()]
    return Shop(root / "shop.duckdb", ds, titles, {"text": text, "image": image})


_MODELS: dict[str, Recommender] = {}


def model(name: str, shop: Shop) -> Recommender:
    if name not in _MODELS:
        m = create_model(name, **PARAMS[name])
        if name in ("vbpr", "freedom"):
            m.set_item_features(shop.content)  # type: ignore[attr-defined]
        _MODELS[name] = m.fit(shop.ds)
    return _MODELS[name]


def history(shop: Shop, u: int) -> tuple[np.ndarray, np.ndarray]:
    rows = shop.ds.user_rows(u)
    return shop.ds.item[rows], shop.ds.row_weights()[rows]


def faithfulness(name: str, shop: Shop, method: str, n_users: int = 40) -> tuple[float, float]:
    """(mean drop top - mean drop random, win rate) over users x top-3 recommendations."""
    m = model(name, shop)
    rng = np.random.default_rng(1)
    users = [u for u in range(shop.ds.n_users) if len(np.unique(history(shop, u)[0])) >= 4]
    top_drop, rand_drop, wins = [], [], []
    for u in rng.choice(users, n_users, replace=False).tolist():
        h, w = history(shop, u)
        rec, _ = m.recommend_history(h, 3, weights=w)
        full = m.score_history(h, w)
        for e in explain_items(m, h, w, rec, method=method):  # type: ignore[arg-type]
            if not e["history"]:
                continue
            best = e["history"][0]["item"]
            others = [i for i in np.unique(h).tolist() if i != best]
            other = int(rng.choice(others))
            d_top = full[e["item"]] - m.score_history(h[h != best], w[h != best])[e["item"]]
            d_rand = full[e["item"]] - m.score_history(h[h != other], w[h != other])[e["item"]]
            top_drop.append(d_top)
            rand_drop.append(d_rand)
            wins.append(d_top > d_rand)
    assert len(wins) >= 0.8 * 3 * n_users
    return float(np.mean(top_drop) - np.mean(rand_drop)), float(np.mean(wins))


@pytest.mark.parametrize("name", ["als", "ease", "lightgcn"])
def test_removing_top_explained_item_hurts_most(name: str, shop: Shop) -> None:
    gap, win_rate = faithfulness(name, shop, "loo")
    assert gap > 0
    assert win_rate >= 0.9


def test_sasrec_gradient_x_input_is_faithful(shop: Shop) -> None:
    gap, win_rate = faithfulness("sasrec", shop, "gradient", n_users=30)
    assert gap > 0
    assert win_rate >= 0.6


@pytest.mark.parametrize("name", list(PARAMS))
def test_every_model_gets_json_ready_explanations(name: str, shop: Shop) -> None:
    m = model(name, shop)
    h, w = history(shop, 7)
    rec, _ = m.recommend_history(h, 4, weights=w)
    out = explain_items(m, h, w, rec, item_titles=shop.titles, top=2)
    json.dumps(out)  # JSON-ready
    assert [e["item"] for e in out] == rec.tolist()
    for e in out:
        assert set(e) >= {"item", "reason", "history", "modalities"}
        assert set(e["modalities"]) == {"text", "image", "behaviour"}
        total = sum(e["modalities"].values())
        assert total == pytest.approx(1.0) or total == 0.0
        assert 1 <= len(e["history"]) <= 2
        weights = [p["weight"] for p in e["history"]]
        assert weights == sorted(weights, reverse=True) and all(0 < x <= 1 for x in weights)
        assert {p["item"] for p in e["history"]} <= set(h.tolist())
        assert e["reason"].startswith("Because you ")
        assert shop.titles[e["history"][0]["item"]] in e["reason"]


def test_quantised_models_explain_like_the_original(shop: Shop) -> None:
    from shopsight.models.quantize import quantize_model

    m = model("als", shop)
    q = quantize_model(m, "int8")
    same = 0
    for u in range(10):
        h, w = history(shop, u)
        rec, _ = m.recommend_history(h, 2, weights=w)
        a, b = explain_items(m, h, w, rec), explain_items(q, h, w, rec)
        for x, y in zip(a, b, strict=True):
            same += x["history"][0]["item"] == y["history"][0]["item"]
    assert same >= 18


def test_content_models_report_their_own_content(shop: Shop) -> None:
    """VBPR holds planted content (text = style): text outweighs the noise image on average."""
    m = model("vbpr", shop)
    text, image = [], []
    for u in range(0, 60, 3):
        h, w = history(shop, u)
        rec, _ = m.recommend_history(h, 3, weights=w)
        for e in explain_items(m, h, w, rec):
            text.append(e["modalities"]["text"])
            image.append(e["modalities"]["image"])
    assert np.mean(text) > 2 * np.mean(image)


def test_modalities_follow_the_shared_content(shop: Shop) -> None:
    """One past item; the recommended item shares its text vector but not its image."""
    m = model("ease", shop)
    past, rec = 3, 10
    n = shop.ds.n_items
    rng = np.random.default_rng(5)
    text = rng.normal(size=(n, 16))
    text[rec] = text[past]
    image = rng.normal(size=(n, 16))
    out = explain_items(
        m, [past], [8.0], [rec], content={"text": text, "image": image}, item_titles=shop.titles
    )[0]
    assert out["history"] == [{"item": past, "weight": 1.0}]
    mods = out["modalities"]
    assert mods["text"] > mods["image"] and mods["text"] > 0.5
    assert out["reason"] == f"Because you bought {shop.titles[past]}; similar style"


def test_events_choose_the_verb_and_bad_input_is_an_error(shop: Shop) -> None:
    m = model("als", shop)
    h, w = history(shop, 2)
    rec, _ = m.recommend_history(h, 1, weights=w)
    e = explain_items(m, h, w, rec, history_events=["share"] * len(h), item_titles=shop.titles)
    assert e[0]["reason"].startswith("Because you shared ")
    assert explain_items(m, [], [], rec)[0]["reason"] == DEFAULT_REASON
    with pytest.raises(ExplainError, match="history_weights"):
        explain_items(m, h, w[:-1], rec)
    with pytest.raises(ExplainError, match="items"):
        explain_items(m, h, w, [shop.ds.n_items])
    with pytest.raises(ExplainError, match="gradient"):
        explain_items(m, h, w, rec, method="gradient")
    assert [event_from_weight(x) for x in (8, 4, 2, 1)] == [
        "purchase",
        "add_to_cart",
        "click",
        "view",
    ]
    assert reason_line("Mug", "view", {"text": 0, "image": 0.7, "behaviour": 0.3}) == (
        "Because you viewed Mug; similar look"
    )


# -- the gradient-boosted predictor ---------------------------------------------------------------


def _lgbm_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    logit = 3.0 * x[:, 0] + 0.8 * x[:, 1]
    y = (rng.random(600) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def test_shap_values_add_up_and_find_the_driving_feature() -> None:
    import lightgbm as lgb

    x, y = _lgbm_data()
    names = ["strong", "weak", "noise_a", "noise_b"]
    clf = lgb.LGBMClassifier(n_estimators=60, num_leaves=8, verbose=-1).fit(x, y)
    rows = explain_prediction(clf, x[:50], names)
    assert all(r["method"] == "shap" and r["space"] == "raw" for r in rows)
    raw = clf.predict(x[:50], raw_score=True)
    for r, margin in zip(rows, raw, strict=True):
        total = r["base_value"] + sum(c["contribution"] for c in r["contributions"])
        assert total == pytest.approx(margin, abs=1e-6)
    assert np.mean([r["contributions"][0]["feature"] == "strong" for r in rows]) > 0.8
    assert rows[0]["prediction"] == pytest.approx(clf.predict_proba(x[:1])[0, 1])
    # a raw Booster works too, and top limits the list
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1}, lgb.Dataset(x, y), 40
    )
    b_rows = explain_prediction(booster, x[:5], names, top=2)
    assert all(len(r["contributions"]) == 2 for r in b_rows)
    json.dumps(b_rows)


def test_permutation_fallback_ranks_the_driving_feature_first() -> None:
    import lightgbm as lgb

    x, y = _lgbm_data()
    clf = lgb.LGBMClassifier(n_estimators=60, num_leaves=8, verbose=-1).fit(x, y)
    rows = explain_prediction(clf, x[:40], ["a", "b", "c", "d"], method="permutation")
    assert all(r["method"] == "permutation" and r["space"] == "prediction" for r in rows)
    strong = [r for r in rows if abs(x[rows.index(r), 0]) > 1.0]
    assert np.mean([r["contributions"][0]["feature"] == "a" for r in strong]) > 0.8
    with pytest.raises(ExplainError, match="feature_names"):
        explain_prediction(clf, x[:2], ["a"])


# -- the command line -------------------------------------------------------------------------------


# The installed entry point, as a user runs it.
SHOPSIGHT = str(Path(sys.executable).with_name("shopsight"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOPSIGHT, *args], capture_output=True, text=True, timeout=300)


def test_cli_explains_recommendations(shop: Shop, tmp_path: Path) -> None:
    art = save_artifact(model("ease", shop), shop.ds, tmp_path / "model")
    user = str(shop.ds.user_ids[4])
    proc = run_cli(
        "explain", "--store", str(shop.store), "--model", str(art), "--user", user, "-k", "3",
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["user"] == user and len(out["recommendations"]) == 3
    first = out["recommendations"][0]
    assert first["reason"].startswith("Because you ") and first["history"]
    assert set(first["modalities"]) == {"text", "image", "behaviour"}
    bad = run_cli("explain", "--store", str(tmp_path / "none.duckdb"), "--model", str(art),
                  "--user", user)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.stderr
