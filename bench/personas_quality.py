"""Personas quality on the synthetic shop: planted segments recovered (ARI), names, stability.

    python bench/personas_quality.py [--users 2000] [--seeds 3,5] [--out bench/results/personas_quality.json]

Generates the shop per seed in a temporary folder (ingest + clean), builds personas without the
feature cache (no model downloads, a few seconds per shop) and compares the segments with the
planted ``segment_name`` of each user (adjusted Rand index). Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from shopsight.data.clean import CleanConfig, clean_store
from shopsight.data.ingest import ingest_files
from shopsight.data.pseudonym import Pseudonymizer
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.personas import build_personas


def one(users: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = generate_shop(root / "files", ShopConfig.small(n_users=users, days=45, seed=seed))
        truth = files.load_ground_truth()
        with Store(root / "s.duckdb") as st:
            ingest_files(st, files.data_files())
            clean_store(st, CleanConfig())
        with Store(root / "s.duckdb", read_only=True) as st:
            p = build_personas(st, use_features=False)
    ids = p.users.column("user").to_pylist()
    back = Pseudonymizer().recover(ids, truth["users"])
    planted = np.array([truth["users"][back[u]]["segment_name"] for u in ids])
    labels = p.users.column("segment").to_numpy()
    return {
        "seed": seed,
        "users": len(ids),
        "k": p.meta["clustering"]["k"],
        "ari": round(float(adjusted_rand_score(planted, labels)), 4),
        "stability_ari": p.meta["clustering"]["stability"].get("ari_mean"),
        "names": [s["name"] for s in p.segments()],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seeds", default="3,5")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "personas_quality.json",
    )
    a = ap.parse_args()
    runs = [one(a.users, int(s)) for s in a.seeds.split(",")]
    result = {"runs": runs, "ari_mean": round(float(np.mean([r["ari"] for r in runs])), 4)}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
