"""`shopsight demo` end to end on a small shop: every stage runs and leaves what it announces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("SHOPSIGHT_PSEUDONYM_KEY", env_key)
    store, out = tmp_path / "demo.duckdb", tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsight.cli",
            "demo",
            "--users",
            "300",
            "--items",
            "160",
            "--store",
            str(store),
            "--data",
            str(tmp_path / "shop"),
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)

    # data steps
    total = result["ingest"]["total"]
    assert total["read"] == total["stored"] + total["duplicates"] + total["quarantined"]
    assert total["quarantined"] > 0 and result["stats"]["users"] > 0
    # features, evaluation, model
    assert result["features"]["text"]["computed"] + result["features"]["text"]["reused"] > 0
    summary = result["evaluation"]["summary"]
    assert set(summary) >= {"popularity", "itemknn", "ease", "als"}
    ndcg = {m: summary[m]["ndcg@10"]["mean"] for m in summary}
    assert ndcg["ease"] > ndcg["popularity"]  # personalised beats popular on the planted shop
    model_dir = Path(result["model"])
    assert (model_dir / "model.safetensors").exists()
    # predictor beside the model, better than chance on every task
    pred = result["prediction"]
    assert (model_dir / "predictor").is_dir()
    assert all(0.55 < auc <= 1.0 for auc in pred["auc"].values()), pred["auc"]
    # personas and the report, with pseudonymised ids only
    report = Path(result["personas"]["report"])
    assert report.exists() and (model_dir / "personas").is_dir()
    html = report.read_text()
    with duckdb.connect(str(store), read_only=True) as con:
        some_users = [
            r[0] for r in con.sql("SELECT DISTINCT user_id FROM events LIMIT 20").fetchall()
        ]
    assert not any(f'"{u}"' in html for u in some_users)
