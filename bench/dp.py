"""Utility cost of differential privacy: NDCG@10 of DP-SGD BPR at epsilon 1, 4, 8 vs non-private.

MovieLens-100K (``../shared/data/movielens-100k/u.data``) is ingested into a temporary store;
each user's first 80% of interactions (in time) train, the rest test. Every run is
:class:`shopsight.privacy.dp.DPBPR` with the same hyper-parameters and seed; only the privacy
budget changes (``non-private`` goes through the same training loop without clipping or
noise). Scoring is full ranking over the catalogue with the user's training items excluded
(:func:`shopsight.evaluation.ranking.evaluate_ranking`), NDCG@10 and Recall@20 over users with
test items. Popularity is listed as the floor a private model should beat. The epsilon in the
table is the one the accountant reports as spent (delta = 1/(10 n)).

    python bench/dp.py                      # writes bench/results/dp.json
    python bench/dp.py --epochs 5 --out /tmp/dp.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
ML100K = (ROOT / ".." / "shared" / "data" / "movielens-100k" / "u.data").resolve()


def load(workdir: Path) -> Any:
    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store

    if not ML100K.exists():
        raise FileNotFoundError(f"{ML100K} not found (needs ../shared/data/movielens-100k)")
    with Store(workdir / "ml100k.duckdb") as store:
        ingest_files(store, [ML100K])
        return Dataset.from_store(store)


def temporal_split(ds: Any, train_fraction: float = 0.8) -> tuple[Any, Any]:
    from shopsight.data.split import Split

    rank = np.arange(len(ds)) - ds.seq_indptr[ds.user]
    size = np.diff(ds.seq_indptr)[ds.user]
    test = rank >= np.ceil(train_fraction * size)
    train, _, hold = ds.split(Split(train=np.flatnonzero(~test), test=np.flatnonzero(test)))
    return train, hold


def evaluate(model: Any, train: Any, test: Any) -> dict[str, float]:
    from shopsight.evaluation.ranking import evaluate_ranking

    seen = train.implicit.tocsr().astype(bool).astype(np.float32)
    truth = test.implicit.tocsr().astype(bool).astype(np.float32)
    truth = sp.csr_matrix(truth - truth.multiply(seen))
    truth.eliminate_zeros()
    res = evaluate_ranking(
        model, truth, exclude=seen, ks=(10, 20), metrics=("ndcg", "recall"), seed=0
    )
    return {"ndcg@10": float(res.metrics["ndcg@10"]), "recall@20": float(res.metrics["recall@20"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epsilons", default="8,4,1")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dp.json")
    args = ap.parse_args(argv)

    import torch

    from shopsight.models.popularity import Popularity
    from shopsight.models.dp import DPBPR, DPConfig

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ds = load(Path(tmp))
    train, test = temporal_split(ds)
    params = {
        "factors": args.factors,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
    }
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    pop = Popularity().fit(train)
    rows.append({"run": "popularity", "target_epsilon": None, **evaluate(pop, train, test)})
    budgets: list[float | None] = [None, *(float(e) for e in args.epsilons.split(",") if e)]
    for eps in budgets:
        dp = None if eps is None else DPConfig(epsilon=eps, max_grad_norm=args.max_grad_norm)
        t = time.perf_counter()
        model = DPBPR.from_config(dp, **params).fit(train)
        fit_s = time.perf_counter() - t
        p = model.privacy_
        rows.append(
            {
                "run": "non-private" if eps is None else f"dp eps={eps:g}",
                "target_epsilon": eps,
                "epsilon_spent": p["epsilon"],
                "delta": p["delta"],
                "noise_multiplier": p["noise_multiplier"],
                "steps": p["steps"],
                "fit_seconds": round(fit_s, 2),
                **evaluate(model, train, test),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    base = next(r for r in rows if r["run"] == "non-private")
    for r in rows:
        r["ndcg_ratio_vs_non_private"] = round(r["ndcg@10"] / base["ndcg@10"], 4)
    result = {
        "benchmark": "dp",
        "dataset": "movielens-100k (ratings as implicit interactions), per-user temporal 80/20",
        "model": "DPBPR (BPR-MF, DP-SGD via Opacus ghost clipping, RDP accountant)",
        "params": {**params, "max_grad_norm": args.max_grad_norm, "threads": args.threads},
        "privacy_unit": "one user-item interaction",
        "interactions_train": int(train.implicit.nnz),
        "rows": rows,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "machine": machine("torch", "opacus"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| run | epsilon spent | sigma | NDCG@10 | Recall@20 | NDCG vs non-private |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        eps_s = "-" if r.get("epsilon_spent") is None else f"{r['epsilon_spent']:.2f}"
        sigma = "-" if r.get("noise_multiplier") is None else f"{r['noise_multiplier']:.3f}"
        print(
            f"| {r['run']} | {eps_s} | {sigma} | {r['ndcg@10']:.4f} | {r['recall@20']:.4f} "
            f"| {r['ndcg_ratio_vs_non_private']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
