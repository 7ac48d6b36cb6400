"""The private model end to end: trained on a store, its budget shown where it is served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shopsight.data.dataset import Dataset
from shopsight.data.store import Store
from shopsight.models.artifact import load_artifact, save_artifact
from shopsight.models.dp_ease import PrivateEASE
from shopsight.models.registry import create_model


@pytest.fixture
def dp_model_dir(raw_store: Path, tmp_path: Path) -> Path:
    with Store(raw_store, read_only=True) as st:
        ds = Dataset.from_store(st)
    model = PrivateEASE(epsilon=3.0, max_items_per_user=16, seed=0).fit(ds)
    return save_artifact(model, ds, tmp_path / "dp_model")


def test_health_shows_the_budget_and_cold_users_get_private_popularity(
    raw_store: Path, dp_model_dir: Path
) -> None:
    from fastapi.testclient import TestClient

    from shopsight.serving.app import create_app

    art = load_artifact(dp_model_dir)
    assert art.privacy is not None and art.privacy["unit"] == "user"
    assert art.privacy["epsilon"] == pytest.approx(3.0, rel=0.03)
    with TestClient(create_app(raw_store, dp_model_dir)) as client:
        health = client.get("/health").json()
        assert health["privacy"] == art.privacy
        assert client.get("/status").json()["privacy"] == art.privacy
        cold = client.get("/recommend/nobody-at-all?k=5").json()
    expected = art.item_ids[np.argsort(-art.model.item_popularity_, kind="stable")[:5]]
    assert [r["item_id"] for r in cold["items"]] == expected.tolist()


def test_a_non_private_model_reports_no_budget(raw_store: Path, tmp_path: Path) -> None:
    with Store(raw_store, read_only=True) as st:
        ds = Dataset.from_store(st)
    d = save_artifact(create_model("ease").fit(ds), ds, tmp_path / "ease")
    assert load_artifact(d).privacy is None
    from fastapi.testclient import TestClient

    from shopsight.serving.app import create_app

    with TestClient(create_app(raw_store, d)) as client:
        assert "privacy" not in client.get("/health").json()  # unchanged for other models


def run_cli(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from shopsight.cli import app

    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_dp_train_then_recommend_show_the_budget(raw_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    code, stdout, stderr = run_cli(
        "dp-train", "--store", str(raw_store), "--out", str(out), "--dp-epsilon", "2", "--json"
    )
    assert code == 0, stderr
    privacy = json.loads(stdout)["privacy"]
    assert json.loads(stdout)["model"] == "dp"
    assert privacy["private"] and privacy["unit"] == "user"
    assert 1.9 <= privacy["epsilon"] <= 2.01
    code, stdout, stderr = run_cli(
        "recommend", "--model-dir", str(out), "--user", "nobody", "-k", "3", "--json"
    )
    assert code == 0, stderr
    assert json.loads(stdout)["privacy"]["epsilon"] == privacy["epsilon"]
    code, _, stderr = run_cli("recommend", "--model-dir", str(out), "--user", "nobody")
    assert code == 0
    assert f"differentially private (user level): epsilon {privacy['epsilon']:.3g}, delta" in stderr


def test_dp_train_without_epsilon_is_private_at_the_default_budget(
    raw_store: Path, tmp_path: Path
) -> None:
    code, stdout, stderr = run_cli(
        "dp-train", "--store", str(raw_store), "--out", str(tmp_path / "m"), "--json"
    )
    assert code == 0, stderr
    privacy = json.loads(stdout)["privacy"]
    assert privacy["private"] and privacy["epsilon"] == pytest.approx(4.0, rel=0.01)
    code, stdout, _ = run_cli(
        "dp-train", "--store", str(raw_store), "--out", str(tmp_path / "n"), "--no-dp", "--json"
    )
    assert code == 0 and json.loads(stdout)["privacy"]["private"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "3"], "--epochs: options of --model dp_bpr"),
        (["--unit", "household"], "--unit 'household'"),
        (["--dp-epsilon", "-1"], "dp.epsilon=-1.0"),
        (["--model", "dp_bpr", "--unit", "user"], "options of --model dp"),
    ],
)
def test_dp_train_bad_options_fail_in_one_line(
    raw_store: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, stderr = run_cli("dp-train", "--store", str(raw_store), "--out", str(tmp_path), *args)
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_evaluate_set_reaches_the_model_and_the_report_shows_the_budget(
    raw_store: Path, tmp_path: Path
) -> None:
    code, stdout, stderr = run_cli(
        "evaluate",
        "--store",
        str(raw_store),
        "--protocol",
        "random-811",
        "--models",
        "popularity,dp",
        "--set",
        "dp.epsilon=8",
        "--set",
        "dp.max_items_per_user=16",
        "--out",
        str(tmp_path / "table.md"),
        "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    label = "dp(epsilon=8,max_items_per_user=16)"
    assert label in result["models"]
    run = next(r for r in result["runs"] if r["model"] == label)
    assert run["privacy"]["private"] and run["privacy"]["epsilon"] == pytest.approx(8, rel=0.01)
    table = (tmp_path / "table.md").read_text()
    assert f"{label} [DP user-level eps 7.9" in table or f"{label} [DP user-level eps 8.0" in table
    code, _, stderr = run_cli(
        "evaluate", "--store", str(raw_store), "--models", "dp", "--set", "dp.epsilom=8"
    )
    assert code == 2 and "dp has no parameter 'epsilom'" in stderr
