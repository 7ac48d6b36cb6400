"""Behaviour-prediction benchmark: the must-show table of the prediction stage, one run.

1. On the synthetic demo shop (default size, ~450k events; planted view -> click -> cart ->
   purchase funnel): point-in-time impressions for the whole store (timed: training examples/s),
   then on the latest ``--max-examples`` impressions a temporal 80/10/10 split and AUC / GAUC /
   LogLoss / ECE per task for ESMM, MMoE, shared-bottom (multi-task, DIN attention), one
   single-task network per task, LightGBM (one model per task), the item's historical rate
   (trivial baseline), and a purchase-only network trained on clicked impressions, whose raw
   purchase ECE is set against ESMM's. AUC ratios are against LightGBM in the same run.
2. Rating RMSE with and without text / content features on amazon-gift-cards and
   MovieLens-100K (random 80/20 split); ratio with-text / biases-only.
3. Throughput on 2 cores (torch threads = 2): training examples built per second, network
   predictions per second on prepared examples, and end-to-end ``FunnelPredictor.predict``
   (features from the store + network) pairs per second.

    python bench/predict.py                      # writes bench/results/predict.json
    python bench/predict.py --max-examples 50000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def synthetic_store(workdir: Path, seed: int) -> Path:
    from shopsight.data.clean import CleanConfig, clean_store
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.data.synthetic import ShopConfig, generate_shop

    files = generate_shop(workdir / "shop", ShopConfig(seed=seed, images=False))
    path = workdir / "shop.duckdb"
    with Store(path) as st:
        if not ingest_files(st, files.data_files()).ok:
            raise RuntimeError("ingest of the synthetic shop failed")
        clean_store(st, CleanConfig())
    return path


def funnel_part(store_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from shopsight.data.store import Store
    from shopsight.prediction.content import item_content
    from shopsight.prediction.evaluate import compare_models
    from shopsight.prediction.examples import build_examples, temporal_split
    from shopsight.prediction.predictor import FunnelPredictor

    with Store(store_path, read_only=True) as st:
        n_events = st.count("events_clean")
        t0 = time.perf_counter()
        ex, vocab = build_examples(st)
        build_s = time.perf_counter() - t0
        content, source = item_content(st, vocab)
    print(f"examples: {len(ex):,} in {build_s:.1f}s from {n_events:,} events", file=sys.stderr)
    sub = ex.take(np.arange(max(0, len(ex) - args.max_examples), len(ex)))
    t0 = time.perf_counter()
    report = compare_models(sub, vocab, content, epochs=args.epochs, seed=args.seed, threads=2)
    compare_s = time.perf_counter() - t0
    lgb = report["models"]["lightgbm"]
    ratios = {
        name: {t: round(m[t]["auc"] / lgb[t]["auc"], 4) for t in m if t in lgb}
        for name, m in report["models"].items()
    }
    # End-to-end: features from the store as of now + network, for (user, item) pairs.
    tr, va, _ = temporal_split(sub.ts)
    pred = FunnelPredictor("esmm", epochs=1, seed=args.seed, threads=2)
    pred.fit_examples(sub.take(tr[-20_000:]), sub.take(va), vocab, content)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(ex), args.pairs)
    with Store(store_path, read_only=True) as st:
        pred.predict(st, list(ex.users[:10]), list(ex.items[:10]))  # warm-up
        t0 = time.perf_counter()
        pred.predict(st, list(ex.users[pairs]), list(ex.items[pairs]))
        e2e_s = time.perf_counter() - t0
    return {
        "events": n_events,
        "impressions": len(ex),
        "content_source": source,
        "examples_build_seconds": round(build_s, 2),
        "examples_per_s": round(len(ex) / build_s),
        "compare_seconds": round(compare_s, 1),
        "evaluated_impressions": len(sub),
        "epochs": args.epochs,
        "report": report,
        "auc_ratio_vs_lightgbm": ratios,
        "ece_purchase_raw": {
            "esmm": report["esmm_purchase_raw"]["ece"],
            "purchase_on_clicks": report["purchase_on_clicks_raw"]["ece"],
            "ratio_esmm_over_on_clicks": round(
                report["esmm_purchase_raw"]["ece"] / report["purchase_on_clicks_raw"]["ece"], 4
            ),
        },
        "end_to_end_pairs": args.pairs,
        "end_to_end_pairs_per_s": round(args.pairs / e2e_s),
    }


def rating_part(workdir: Path, seed: int) -> dict[str, Any]:
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.prediction.rating import evaluate_rating

    sets = {
        "amazon-gift-cards": [
            SHARED / "amazon-gift-cards" / "Gift_Cards_5.json.gz",
            SHARED / "amazon-gift-cards" / "meta_Gift_Cards.json.gz",
        ],
        "movielens-100k": [
            SHARED / "movielens-100k" / "u.data",
            SHARED / "movielens-100k" / "u.item",
            SHARED / "movielens-100k" / "u.user",
        ],
    }
    out: dict[str, Any] = {}
    for name, files in sets.items():
        if not all(f.exists() for f in files):
            out[name] = {"skipped": f"needs {files[0].parent}"}
            continue
        with Store(workdir / f"{name}.duckdb") as st:
            if not ingest_files(st, files).ok:
                out[name] = {"skipped": "ingest failed"}
                continue
            t0 = time.perf_counter()
            rep = evaluate_rating(st, seed=seed)
        m = rep["models"]
        rep["seconds"] = round(time.perf_counter() - t0, 1)
        rep["rmse_ratio_text_over_biases"] = round(
            m["with_text"]["rmse"] / m["biases_only"]["rmse"], 4
        )
        out[name] = rep
        print(
            f"{name}: RMSE mean {m['global_mean']['rmse']:.4f} biases {m['biases_only']['rmse']:.4f}"
            f" text {m['with_text']['rmse']:.4f}",
            file=sys.stderr,
        )
    return out


def markdown(res: dict[str, Any]) -> str:
    f = res["funnel"]
    rep = f["report"]
    lines = [
        "| model | click AUC | cart AUC | purchase AUC | click GAUC | purchase ECE |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rep["models"].items():

        def cell(t: str, k: str, m: dict[str, Any] = m) -> str:
            return f"{m[t][k]:.4f}" if t in m else "-"

        lines.append(
            f"| {name} | {cell('click', 'auc')} | {cell('add_to_cart', 'auc')} | "
            f"{cell('purchase', 'auc')} | {cell('click', 'gauc')} | {cell('purchase', 'ece')} |"
        )
    e = f["ece_purchase_raw"]
    lines += [
        "",
        f"raw purchase ECE: ESMM {e['esmm']:.4f} vs purchase-on-clicks "
        f"{e['purchase_on_clicks']:.4f} (ratio {e['ratio_esmm_over_on_clicks']})",
        "",
        "| dataset | global mean RMSE | biases only RMSE | with text RMSE | ratio text/biases |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["rating"].items():
        if "models" in r:
            m = r["models"]
            lines.append(
                f"| {name} | {m['global_mean']['rmse']:.4f} | {m['biases_only']['rmse']:.4f} | "
                f"{m['with_text']['rmse']:.4f} | {r['rmse_ratio_text_over_biases']} |"
            )
    lines += [
        "",
        f"examples/s {f['examples_per_s']:,} ({f['impressions']:,} impressions from "
        f"{f['events']:,} events); network predictions/s (ESMM) "
        f"{rep['predict_per_s'].get('esmm', 0):,}; end-to-end pairs/s {f['end_to_end_pairs_per_s']:,}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-examples", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "predict.json")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        store = synthetic_store(work, args.seed)
        res: dict[str, Any] = {
            "machine": machine("torch", "lightgbm", "duckdb"),
            "args": {k: str(v) for k, v in vars(args).items()},
        }
        res["funnel"] = funnel_part(store, args)
        res["rating"] = rating_part(work, args.seed)
    res["total_seconds"] = round(time.perf_counter() - t_all, 1)
    res["machine"]["load_average_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=float), encoding="utf-8")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
