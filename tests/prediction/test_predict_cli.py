"""`shopsight predict ...` commands and the demo step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from shopsight.cli import app
from shopsight.data.store import Store
from shopsight.prediction.demo import demo_step
from shopsight.prediction.examples import TASKS

Shop = Any  # the session fixture of tests/prediction/conftest.py


def _one_error_line(res: Any) -> None:
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error: "), res.output
    assert "Traceback" not in res.output


def test_fit_then_score(shop: Shop, tmp_path: Path) -> None:
    runner = CliRunner()
    model_dir = tmp_path / "model"
    res = runner.invoke(
        app,
        ["predict", "fit", "--store", str(shop.store), "--model-dir", str(model_dir),
         "--epochs", "1", "--max-examples", "4000", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert Path(info["predictor"]) == model_dir / "predictor" and info["n_train"] > 0
    user, item = str(shop.test.users[0]), str(shop.test.items[0])
    res = runner.invoke(
        app,
        ["predict", "score", "--store", str(shop.store), "--model-dir", str(model_dir),
         "--user", user, "--item", item, "--item", "unknown-item", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    preds = json.loads(res.stdout)["predictions"]
    assert [p["item"] for p in preds] == [item, "unknown-item"]
    for p in preds:
        assert all(0 < p[t] < 1 for t in TASKS)
        assert p["purchase"] <= p["add_to_cart"] <= p["click"]


def test_cli_errors(shop: Shop, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = str(tmp_path / "nope.duckdb")
    store, model_dir = str(shop.store), str(tmp_path)
    cases = [
        ["predict", "fit", "--store", missing, "--model-dir", "x"],
        ["predict", "fit", "--store", store, "--model-dir", model_dir, "--arch", "transformer"],
        ["predict", "score", "--store", store, "--model-dir", model_dir, "--user", "u1",
         "--item", "i1"],  # no predictor saved there
        ["predict", "score", "--store", store, "--model-dir", model_dir, "--user", "u1",
         "--user", "u2", "--user", "u3", "--item", "i1", "--item", "i2"],
        ["predict", "rating", "--store", missing],
    ]  # fmt: skip
    for args in cases:
        _one_error_line(runner.invoke(app, args))


def test_demo_step(shop: Shop, tmp_path: Path) -> None:
    with Store(shop.store, read_only=True) as st:
        out = demo_step(st, tmp_path, max_examples=6000)
    assert Path(out["predictor"]).is_dir()
    assert set(out["auc"]) == set(TASKS)
    assert all(0.55 < v <= 1.0 for v in out["auc"].values()), out["auc"]
    json.dumps(out)


def test_evaluate_and_rating_commands(shop: Shop) -> None:
    runner = CliRunner()
    store = str(shop.store)
    res = runner.invoke(
        app, ["predict", "evaluate", "--store", store, "--models", "item_rate", "--json"]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert set(rep["models"]["item_rate"]) == set(TASKS)
    assert rep["n_train"] > rep["n_test"] > 0
    _one_error_line(
        runner.invoke(app, ["predict", "evaluate", "--store", store, "--models", "gpt"])
    )
    res = runner.invoke(app, ["predict", "rating", "--store", store, "--json"])
    assert res.exit_code == 0, res.output
    models = json.loads(res.stdout)["models"]
    assert set(models) == {"global_mean", "biases_only", "with_text"}
    # the command's output, not the model's quality: this shop has some 50 test ratings, too
    # few to rank the models (test_rating_prediction checks that on Gift Cards' 2,000+)
    for m in models.values():
        assert 0.0 < m["mae"] <= m["rmse"] < 4.0
