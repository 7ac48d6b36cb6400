"""`shopsight train` and `shopsight evaluate` report how training went: epochs run, best epoch,
why it stopped, each epoch's loss / validation metric / seconds (JSON and the saved manifest)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shopsight.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(build_shop: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shopsight.data.synthetic import ShopConfig

    root = tmp_path_factory.mktemp("report")
    shop = build_shop(root, ShopConfig.small(n_users=300, n_items=80, days=10, images=False))
    path: Path = shop.store
    return path


def run_json(*args: str) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_train_writes_the_training_record(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "bpr"
    res = run_json(
        "train", "--store", str(store), "--model", "bpr", "--set", "epochs=3",
        "--set", "factors=8", "--out", str(out),
    )  # fmt: skip
    t = res["training"]
    assert t["stop_reason"] == "max_epochs" and t["epochs_run"] == 3 == len(t["history"])
    assert all({"loss", "seconds", "train_seconds"} <= set(row) for row in t["history"])
    saved = json.loads((out / "config.json").read_text())["meta"]["training"]
    assert saved["stop_reason"] == "max_epochs" and len(saved["history"]) == 3
    # a time budget stops after the epoch that spends it; models without epochs report none
    budget = run_json(
        "train", "--store", str(store), "--model", "bpr", "--set", "epochs=50",
        "--set", "factors=8", "--out", str(tmp_path / "b2"), "--time-budget", "0.000001",
    )  # fmt: skip
    assert budget["training"]["stop_reason"] == "time_budget"
    assert budget["training"]["epochs_run"] == 1
    ease = run_json(
        "train", "--store", str(store), "--model", "ease", "--out", str(tmp_path / "ease")
    )
    assert ease["training"] is None
    bad = runner.invoke(
        app, ["train", "--store", str(store), "--model", "bpr", "--time-budget", "0"]
    )
    assert bad.exit_code == 2 and "--time-budget" in bad.output


def test_evaluate_reports_each_fit(store: Path) -> None:
    res = run_json(
        "evaluate", "--store", str(store), "--models", "bpr,popularity",
        "--protocol", "leave-one-out", "--set", "bpr.epochs=4", "--set", "bpr.factors=8",
        "--set", "bpr.patience=1",
    )  # fmt: skip
    runs = {r["model"].split("(")[0]: r for r in res["runs"]}
    t = runs["bpr"]["training"]
    assert t["stop_reason"] in ("early_stopping", "max_epochs")
    assert len(t["history"]) == t["epochs_run"] <= 4
    metrics = [row["metric"] for row in t["history"]]
    assert t["metric_name"] == "NDCG@10" and t["best_metric"] == max(metrics)
    assert t["best_epoch"] == metrics.index(max(metrics)) + 1
    if t["stop_reason"] == "early_stopping":
        assert t["epochs_run"] == t["best_epoch"] + 1
    else:
        assert t["epochs_run"] == 4
    assert "training" not in runs["popularity"]
