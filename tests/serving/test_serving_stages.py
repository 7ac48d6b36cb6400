"""The real predictor, personas (with dashboard) and explanations behind the API, when built."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_support import Shop, ThreadServer, copy_store

from shopsight.data.store import Store
from shopsight.models.artifact import load_artifact
from shopsight.serving.app import create_app


@pytest.mark.slow
def test_real_predictor_personas_and_explanations(shop: Shop, tmp_path: Path) -> None:
    from shopsight.personas import core as personas_mod
    from shopsight.prediction import predictor as predictor_mod

    store = copy_store(shop, tmp_path / "store")
    model = tmp_path / "model"
    shutil.copytree(shop.model, model)
    with Store(store) as st:
        pred = predictor_mod.FunnelPredictor(epochs=1, max_examples=3000, seed=0).fit(st)
        pred.save(model / "predictor")
        personas_mod.build_personas(st, use_features=False).save(model / "personas")
    art = load_artifact(model)
    user, item = str(art.user_ids[0]), str(art.item_ids[0])
    with ThreadServer(create_app(store, model)) as srv:
        health = httpx.get(srv.url + "/status").json()
        assert health["predictor"] and health["personas"]
        r = httpx.post(
            srv.url + "/predict",
            json={
                "pairs": [{"user_id": user, "item_id": item}, {"user_id": "new", "item_id": item}]
            },
            timeout=60,
        )
        assert r.status_code == 200, r.text
        probs = np.array(
            [[p[k] for k in ("click", "add_to_cart", "purchase")] for p in r.json()["predictions"]]
        )
        assert ((probs >= 0) & (probs <= 1)).all()
        prof = httpx.get(f"{srv.url}/persona/{user}")
        assert prof.status_code == 200, prof.text
        assert httpx.get(srv.url + "/segments").json()["segments"]
        assert httpx.get(srv.url + "/dashboard").status_code == 200
        rec = httpx.get(f"{srv.url}/recommend/{user}", params={"k": 3, "explain": True}, timeout=60)
        assert rec.status_code == 200, rec.text
        for it in rec.json()["items"]:
            assert it["explanation"]["reason"] and "modalities" in it["explanation"]
