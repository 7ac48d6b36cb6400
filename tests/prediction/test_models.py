"""Multi-task funnel models on the planted funnel: beat the trivial baseline, ESMM calibration,
save/load, unknown users and items, calibration and ECE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsight.data.store import Store
from shopsight.evaluation.metrics import auc_score
from shopsight.prediction.calibration import Calibrator, ece, reliability, task_metrics
from shopsight.prediction.evaluate import compare_models, item_rate_baseline
from shopsight.prediction.examples import TASKS
from shopsight.prediction.predictor import FunnelPredictor, PredictorError

Shop = Any  # the session fixture of tests/prediction/conftest.py


@pytest.fixture(scope="module")
def esmm(shop: Shop) -> FunnelPredictor:
    return FunnelPredictor("esmm", epochs=3, threads=1).fit_examples(
        shop.train, shop.valid, shop.vocab, shop.content
    )


def test_esmm_beats_item_rate_baseline_on_every_task(shop: Shop, esmm: FunnelPredictor) -> None:
    probs = esmm.predict_examples(shop.test)
    base = item_rate_baseline(shop.test)
    for t in TASKS:
        ours = auc_score(shop.test.labels[t], probs[t])
        trivial = auc_score(shop.test.labels[t], base[t])
        assert ours > trivial + 0.03, (t, ours, trivial)
    # ESMM's outputs respect the funnel.
    assert np.all(probs["purchase"] <= probs["add_to_cart"] + 1e-12)
    assert np.all(probs["add_to_cart"] <= probs["click"] + 1e-12)


def test_esmm_purchase_better_calibrated_than_purchase_on_clicks(
    shop: Shop, esmm: FunnelPredictor
) -> None:
    on_clicks = FunnelPredictor(
        "shared_bottom", ("purchase",), train_on="click", epochs=3, threads=1
    ).fit_examples(shop.train, shop.valid, shop.vocab, shop.content)
    y = shop.test.labels["purchase"]
    e_esmm = ece(y, esmm.predict_examples(shop.test, calibrated=False)["purchase"])
    e_clicks = ece(y, on_clicks.predict_examples(shop.test, calibrated=False)["purchase"])
    assert e_esmm < 0.5 * e_clicks, (e_esmm, e_clicks)


@pytest.mark.slow
def test_every_multitask_architecture_beats_trivial_baseline(shop: Shop) -> None:
    rep = compare_models(
        shop.examples,
        shop.vocab,
        shop.content,
        models=("mmoe", "shared_bottom", "item_rate"),
        epochs=3,
        threads=1,
    )
    for arch in ("mmoe", "shared_bottom"):
        for t in TASKS:
            assert rep["models"][arch][t]["auc"] > rep["models"]["item_rate"][t]["auc"] + 0.02


def test_save_load_round_trip_and_unknown_pairs(
    shop: Shop, esmm: FunnelPredictor, tmp_path: Path
) -> None:
    with Store(shop.store, read_only=True) as st:
        esmm.content_source_ = "tfidf"
        path = esmm.save(tmp_path / "predictor")
        loaded = FunnelPredictor.load(path)
        users = [str(shop.test.users[0]), "never-seen-user", str(shop.test.users[1])]
        items = [str(shop.test.items[0]), str(shop.test.items[1]), "never-seen-item"]
        a = esmm.predict(st, users, items)
        b = loaded.predict(st, users, items)
    assert set(a) == set(TASKS)
    for t in TASKS:
        np.testing.assert_allclose(a[t], b[t], rtol=1e-6)
        assert a[t].shape == (3,) and np.all((a[t] > 0) & (a[t] < 1))
    np.testing.assert_allclose(
        esmm.predict_examples(shop.test)["click"], loaded.predict_examples(shop.test)["click"]
    )
    # An unknown item is scored as an average item, not as a never-clicked one.
    base_rate = float(shop.train.labels["click"].mean())
    assert a["click"][2] > 0.1 * base_rate


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved predictor"):
        FunnelPredictor.load(tmp_path)
    with pytest.raises(PredictorError, match="not fitted"):
        FunnelPredictor().predict_examples(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="esmm models the whole funnel"):
        import torch

        from shopsight.prediction.model import FunnelNet

        FunnelNet(3, 5, 2, 2, torch.zeros(5, 4), torch.zeros(5), torch.zeros(5), tasks=("click",))


def test_ece_and_calibrators() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.5, 50_000)
    y = (rng.random(len(p)) < p).astype(float)
    assert ece(y, p) < 0.01  # calibrated by construction
    over = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))  # overconfident
    assert ece(y, over) > 0.05
    for method in ("temperature", "isotonic"):
        cal = Calibrator(method).fit(over[:25_000], y[:25_000])
        fixed = cal.transform(over[25_000:])
        assert ece(y[25_000:], fixed) < 0.02, method
        again = Calibrator.from_dict(cal.to_dict()).transform(over[25_000:])
        np.testing.assert_allclose(fixed, again)
    # Temperature keeps the ranking: AUC unchanged.
    cal = Calibrator("temperature").fit(over, y)
    assert auc_score(y, cal.transform(over)) == pytest.approx(auc_score(y, over))
    rel = reliability(y, p, bins=10)
    assert sum(rel["count"]) == len(y) and len(rel["observed_rate"]) == 10
    m = task_metrics(y, p, groups=rng.integers(0, 50, len(y)))
    assert {"auc", "gauc", "logloss", "ece"} <= set(m)
    with pytest.raises(ValueError, match="calibration must be one of"):
        Calibrator("platt")


def test_gbdt_matrix_columns_are_named(shop: Shop) -> None:
    from shopsight.prediction.gbdt import gbdt_feature_names, gbdt_matrix

    x = gbdt_matrix(shop.test, shop.content)
    names = gbdt_feature_names(shop.test, shop.content)
    assert x.shape == (len(shop.test), len(names)) and len(set(names)) == len(names)
    cos = x[:, names.index("hist_content_cos")]
    assert np.all((cos >= -1.0001) & (cos <= 1.0001))


def test_training_reports_itself(shop: Shop, esmm: FunnelPredictor) -> None:
    """The fixture's real fit: each epoch's losses and seconds, best epoch, why it stopped."""
    info = esmm.info_
    assert info["epochs_run"] == len(esmm.history_) and info["training"]["max_epochs"] == 3
    losses = [row["valid_loss"] for row in esmm.history_]
    # the kept weights: the lowest loss (gains under 1e-5 do not count)
    assert losses[info["best_epoch"] - 1] <= min(losses) + 1e-5
    assert info["training"]["best_metric"] == losses[info["best_epoch"] - 1]
    expected = "max_epochs" if len(losses) == 3 else "early_stopping"
    assert info["stop_reason"] == expected == info["training"]["stop_reason"]
    assert all(row["seconds"] > 0 for row in esmm.history_)
    stopped = FunnelPredictor("esmm", epochs=40, patience=1, threads=1, lr=0.05).fit_examples(
        shop.train, shop.valid, shop.vocab, shop.content
    )
    r = stopped.train_result_
    assert r.stop_reason == "early_stopping" and r.epochs_run == r.best_epoch + 1 < 40
