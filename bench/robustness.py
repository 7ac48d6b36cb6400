"""Robustness benchmark: metric degradation under noise and attacks, without vs with cleaning.

One synthetic shop (generated here, ingested, not cleaned) is the base. Each scenario (clean
data, +random clicks, +bots, +shilling by 5% and by 10% of the users, all three together)
starts from a fresh copy of it, gets its noise injected into the raw events
(:mod:`shopsight.evaluation.robustness`), and is run through three defences: none (raw
tables), ``clean`` (the cleaning stage as it is) and ``clean+shilling`` (cleaning plus the
shilling detector). A model is trained per run and
evaluated on the same hold-out of real users (last 20% of each real user's events in time):
NDCG@10 and Recall@10 with their change against the noise-free scenario under the same
defence, and the attacked item's exposure (share of evaluated users with it in their top 10).

    python bench/robustness.py                   # ALS, 1000-user shop, a few minutes
    python bench/robustness.py --model ease --users 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _machine import machine

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="als")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "robustness")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "robustness.json")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.data.synthetic import ShopConfig, generate_shop
    from shopsight.evaluation.robustness import (
        BotUsers,
        RandomClicks,
        Scenario,
        ShillingAttack,
        evaluate_robustness,
    )

    t0 = time.perf_counter()
    cfg = ShopConfig(
        n_users=args.users, n_items=args.items, days=args.days, seed=args.seed, images=False
    )
    args.work.mkdir(parents=True, exist_ok=True)
    base = args.work / "base.duckdb"
    base.unlink(missing_ok=True)
    files = generate_shop(args.work / "files", cfg)
    with Store(base) as store:
        ingest_files(store, files.data_files())
    scenarios = [
        Scenario("clean data"),
        Scenario("+random clicks 10%", (RandomClicks(0.1),)),
        Scenario("+bots 2% of users", (BotUsers(0.02),)),
        Scenario("+shilling 5% of users", (ShillingAttack(0.05),)),
        Scenario("+shilling 10% of users", (ShillingAttack(0.10),)),
        Scenario("+all three", (RandomClicks(0.1), BotUsers(0.02), ShillingAttack(0.05))),
    ]
    params = {"num_threads": 1} if args.model == "als" else {}
    with threadpool_limits(1):
        result = evaluate_robustness(
            base,
            workdir=args.work,
            scenarios=scenarios,
            model=args.model,
            model_params=params,
            seed=args.seed,
        )
    table = result.table()
    print(table)
    print(f"target item {result.target}; {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    out = {
        "benchmark": "robustness",
        "machine": machine(),
        "shop": cfg.to_dict(),
        "model": args.model,
        "model_params": params,
        "target": result.target,
        "rows": result.rows,
        "table": table,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python bench/robustness.py " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
