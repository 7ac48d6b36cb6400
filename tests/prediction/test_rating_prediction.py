"""Rating prediction: text and item content help where ids cannot (cold items), and on the real
amazon-gift-cards reviews."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.evaluation.metrics import rmse
from shopsight.prediction.rating import TextRatingModel, evaluate_rating

GOOD = "deluxe velvet handmade premium"
BAD = "flimsy plastic cheap knockoff"


def _planted(seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    n_users, n_items = 80, 100
    good = rng.random(n_items) < 0.5
    fillers = ["lamp", "mug", "scarf", "card", "chair", "pen", "bag", "clock"]
    item_text = {
        f"i{j}": f"{rng.choice(fillers)} {GOOD if good[j] else BAD} {rng.choice(fillers)}"
        for j in range(n_items)
    }
    user_bias = rng.normal(0, 0.4, n_users)
    rows = []
    for u in range(n_users):
        for j in rng.choice(n_items, 25, replace=False):
            r = (4.3 if good[j] else 2.0) + user_bias[u] + rng.normal(0, 0.3)
            text = "love it, perfect" if good[j] else "disappointed, broke fast"
            rows.append((f"u{u}", f"i{j}", float(np.clip(np.round(r), 1, 5)), text))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "text"])
    return df, item_text


def test_text_features_predict_cold_items() -> None:
    df, item_text = _planted()
    cold = df["item_id"].isin([f"i{j}" for j in range(80, 100)])
    train, test = df[~cold].reset_index(drop=True), df[cold].reset_index(drop=True)
    y = test["rating"].to_numpy()
    ids_only = TextRatingModel(use_text=False, n_estimators=200).fit(train, item_text)
    with_text = TextRatingModel(use_text=True, n_estimators=200).fit(train, item_text)
    e_ids, e_text = rmse(y, ids_only.predict(test)), rmse(y, with_text.predict(test))
    assert e_text < 0.7 * e_ids, (e_text, e_ids)
    assert np.all((with_text.predict(test) >= 1) & (with_text.predict(test) <= 5))


def test_rating_model_errors() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        TextRatingModel().predict(pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}))
    with pytest.raises(ValueError, match="too few ratings"):
        TextRatingModel().fit(
            pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "rating": [5.0], "text": [""]}), {}
        )


@pytest.mark.slow
@pytest.mark.shared
def test_gift_cards_rating_with_and_without_text(shared: Any, tmp_path: Any) -> None:
    reviews = shared.path("amazon-gift-cards", "Gift_Cards_5.json.gz")
    meta = shared.path("amazon-gift-cards", "meta_Gift_Cards.json.gz")
    with Store(tmp_path / "gift.duckdb") as st:
        assert ingest_files(st, [reviews, meta]).ok
        rep = evaluate_rating(st, seed=0)
    assert rep["has_review_text"] and rep["n_test"] > 400
    m = rep["models"]
    assert m["biases_only"]["rmse"] < m["global_mean"]["rmse"]
    assert m["with_text"]["rmse"] < m["global_mean"]["rmse"]
