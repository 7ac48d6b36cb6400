"""The private model end to end: trained on a store, its budget shown where it is served."""

from __future__ import annotations

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
        cold = client.get("/recommend/nobody-at-all?k=5").json()
    expected = art.item_ids[np.argsort(-art.model.item_popularity_, kind="stable")[:5]]
    assert [r["item_id"] for r in cold["items"]] == expected.tolist()


def test_a_non_private_model_reports_no_budget(raw_store: Path, tmp_path: Path) -> None:
    with Store(raw_store, read_only=True) as st:
        ds = Dataset.from_store(st)
    d = save_artifact(create_model("ease").fit(ds), ds, tmp_path / "ease")
    assert load_artifact(d).privacy is None
