"""Compact-model benchmark: size and NDCG@10 of trained models before and after quantisation.

One synthetic shop (generated here, ingested and cleaned), split per user in time (first 80%
of each user's events train, the rest test). Each model is trained once, then stored as float16
and as int8 (per-row symmetric scales) with :func:`shopsight.models.quantize.quantize_model`.
For each: the learned state's bytes in memory, the saved ``model.safetensors`` bytes (which
also hold the training-interaction index every model keeps to exclude seen items), NDCG@10 and
Recall@10 (full ranking, training items excluded) and the relative NDCG change; the target is
within 1% relative.

    python bench/quantize.py                       # als, bpr, lightgcn, ease, sasrec
    python bench/quantize.py --models als,bpr --users 2000
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

from _machine import machine

HERE = Path(__file__).resolve().parent

PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 64, "num_threads": 1},
    "bpr": {"factors": 64, "epochs": 15},
    "lightgcn": {"dim": 64, "epochs": 15},
    "ease": {"l2": 200.0},
    "sasrec": {"dim": 64, "epochs": 15, "num_threads": 1},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="als,bpr,lightgcn,ease,sasrec")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "quantize")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "quantize.json")
    args = ap.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    from shopsight.data.clean import clean_store
    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.data.split import Split
    from shopsight.data.store import Store
    from shopsight.data.synthetic import ShopConfig, generate_shop
    from shopsight.evaluation.ranking import evaluate_ranking
    from shopsight.models.base import Recommender
    from shopsight.models.quantize import quantize_model, state_nbytes
    from shopsight.models.registry import create_model, get_model_class

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cfg = ShopConfig(
        n_users=args.users, n_items=args.items, days=args.days, seed=args.seed, images=False
    )
    args.work.mkdir(parents=True, exist_ok=True)
    store_path = args.work / "shop.duckdb"
    store_path.unlink(missing_ok=True)
    files = generate_shop(args.work / "files", cfg)
    with Store(store_path) as store:
        ingest_files(store, files.data_files())
        clean_store(store)
        ds = Dataset.from_store(store)
    rank = np.arange(len(ds)) - ds.seq_indptr[ds.user]
    size = np.diff(ds.seq_indptr)[ds.user]
    test_rows = rank >= np.ceil(0.8 * size)
    train, _, test = ds.split(
        Split(train=np.flatnonzero(~test_rows), test=np.flatnonzero(test_rows), name="temporal")
    )

    def quality(m: Recommender) -> dict[str, float]:
        res = evaluate_ranking(
            m, test.implicit, exclude=train.implicit, metrics=("ndcg", "recall"), seed=0
        )
        return {k: float(v) for k, v in res.metrics.items()}

    def file_bytes(m: Recommender) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            m.save(tmp)
            return (Path(tmp) / "model.safetensors").stat().st_size

    rows: list[dict[str, Any]] = []
    with threadpool_limits(1):
        for name in [m for m in args.models.split(",") if m]:
            t = time.perf_counter()
            kw = dict(PARAMS.get(name, {}))
            if "seed" in get_model_class(name)._param_names():
                kw["seed"] = args.seed
            model = create_model(name, **kw).fit(train)
            fit_s = time.perf_counter() - t
            base_q = quality(model)
            base_state, base_file = state_nbytes(model), file_bytes(model)
            for dtype in ("float32", "float16", "int8"):
                m = model if dtype == "float32" else quantize_model(model, dtype)  # type: ignore[arg-type]
                q = base_q if dtype == "float32" else quality(m)
                st, fb = state_nbytes(m), file_bytes(m)
                change = (q["ndcg@10"] - base_q["ndcg@10"]) / base_q["ndcg@10"]
                row = {
                    "model": name,
                    "dtype": dtype,
                    "state_bytes": st,
                    "state_ratio": round(st / base_state, 4),
                    "file_bytes": fb,
                    "file_ratio": round(fb / base_file, 4),
                    "ndcg@10": q["ndcg@10"],
                    "recall@10": q["recall@10"],
                    "ndcg_change": change,
                    "within_1pct": abs(change) <= 0.01,
                    "fit_seconds": round(fit_s, 1),
                }
                rows.append(row)
                print(
                    f"{name:9s} {dtype:8s} state {st:>10,} B ({row['state_ratio']:.2f}x) "
                    f"file {fb:>10,} B ({row['file_ratio']:.2f}x) "
                    f"NDCG@10 {q['ndcg@10']:.4f} ({change:+.2%})",
                    file=sys.stderr,
                )
    lines = [
        "| model | dtype | state bytes | ratio | file bytes | ratio | NDCG@10 | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['state_bytes']:,} | {r['state_ratio']:.2f} | "
            f"{r['file_bytes']:,} | {r['file_ratio']:.2f} | {r['ndcg@10']:.4f} | "
            f"{r['ndcg_change']:+.2%} |"
        )
    table = "\n".join(lines)
    print(table)
    out = {
        "benchmark": "quantize",
        "machine": machine("torch"),
        "shop": cfg.to_dict(),
        "split": "per user in time: first 80% train, rest test",
        "params": PARAMS,
        "rows": rows,
        "all_within_1pct": all(r["within_1pct"] for r in rows),
        "table": table,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python bench/quantize.py " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
