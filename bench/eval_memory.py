"""Full-ranking evaluation at scale: peak memory and time against the matrix-multiply floor.

A tiny recommender whose scores are ``U[users] @ V.T`` (random 64-d factors) is evaluated by
:func:`shopsight.evaluation.ranking.evaluate_ranking` over the whole catalogue: 100,000 users x
50,000 items, each user with 20 random training items (masked) and one random test item,
Recall / NDCG / HR at 10 and 20. Each measurement runs in a fresh subprocess so that its peak
resident memory (``resource.getrusage``, whole process: interpreter, numpy, torch, the factors
and the evaluation) is its own; numpy's own peak allocation during an evaluation is taken
with ``tracemalloc`` in a separate pass over a few chunks (tracing taxes every allocation, so
the timed run is untraced). The same process times the bare matrix multiplies of the same
shapes in the same chunks (``U[chunk] @ V.T``, no masking, no top-k), the physical floor of any
full-ranking evaluation, before and after the evaluation, and uses the faster of the two. A second run with 10,000 users shows that peak memory does not grow
with the number of users.

    python bench/eval_memory.py                 # 100k x 50k (a few minutes on 2 cores)
    python bench/eval_memory.py --users 20000   # quicker

Writes ``bench/results/eval_memory.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET_PEAK_GB = 2.0
TARGET_RATIO = 2.0


def child(n_users: int, n_items: int, dim: int, budget_mb: float, seed: int) -> dict[str, Any]:
    import resource
    import tracemalloc

    import numpy as np
    import scipy.sparse as sp
    import torch

    from shopsight.evaluation.ranking import chunk_size_for, evaluate_ranking
    from shopsight.models.base import Recommender

    class Factors(Recommender):
        """Scores are the dot products of fixed user and item factors."""

        name = "bench_factors"

        def __init__(self, seed: int = 0) -> None:
            self.seed = seed

        def _fit(self, dataset: Any, valid: Any) -> None:  # state is set by from_factors
            raise NotImplementedError

        def _score(self, users: Any) -> Any:
            return self.U[users] @ self.V.T

        @classmethod
        def from_factors(cls, u: Any, v: Any, seen: Any) -> Factors:
            m = cls()
            m.U, m.V = u, v
            m.n_users_, m.n_items_ = u.shape[0], v.shape[0]
            m.seen_ = seen
            m.item_popularity_ = np.asarray(seen.sum(axis=0), np.float32).ravel()
            return m

    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, dim), dtype=np.float32)
    v = rng.standard_normal((n_items, dim), dtype=np.float32)
    n_train = 20
    rows = np.repeat(np.arange(n_users), n_train)
    train = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, rng.integers(0, n_items, len(rows)))),
        shape=(n_users, n_items),
    )
    train.sum_duplicates()
    train.data[:] = 1.0
    test_items = rng.integers(0, n_items, n_users)
    truth = sp.csr_matrix(
        (np.ones(n_users, np.float32), (np.arange(n_users), test_items)), shape=(n_users, n_items)
    )
    model = Factors.from_factors(u, v, train)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chunk = chunk_size_for(n_items, budget_mb)

    def floor() -> tuple[float, float]:
        """The same multiplies in the same chunks, nothing else: (wall, CPU) seconds."""
        c1, t1 = time.process_time(), time.perf_counter()
        for start in range(0, len(users), chunk):
            ub = users[start : start + chunk]
            _ = u[ub] @ v.T
        return time.perf_counter() - t1, time.process_time() - c1

    def evaluate(users_subset: Any = None) -> Any:
        return evaluate_ranking(
            model,
            truth,
            exclude=train,
            ks=(10, 20),
            metrics=("recall", "ndcg", "hit"),
            users=users_subset,
            memory_budget_mb=budget_mb,
        )

    # Timed without tracemalloc (it taxes every allocation); the floor is measured before and
    # after, and the smaller of the two is used (the stricter ratio).
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    floor_before = floor()
    c0, t0 = time.process_time(), time.perf_counter()
    res = evaluate()
    eval_s = time.perf_counter() - t0
    eval_cpu = time.process_time() - c0
    floor_after = floor()
    matmul_s, matmul_cpu = min(floor_before, floor_after)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # numpy's own peak during an evaluation (per chunk, so a few chunks show it).
    tracemalloc.start()
    evaluate(users[: 4 * chunk])
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "users": n_users,
        "items": n_items,
        "dim": dim,
        "evaluated_users": len(res.users),
        "memory_budget_mb": budget_mb,
        "chunk_size": res.info["chunk_size"],
        "chunks": res.info["chunks"],
        "peak_rss_gb": rss_peak / 2**20,
        "rss_before_eval_gb": rss_before / 2**20,
        "numpy_traced_peak_gb": traced_peak / 2**30,
        "eval_seconds": eval_s,
        "score_seconds": res.info["score_seconds"],
        "matmul_seconds": matmul_s,
        "matmul_seconds_before_after": [floor_before[0], floor_after[0]],
        "ratio_to_matmul": eval_s / matmul_s,
        "eval_cpu_seconds": eval_cpu,
        "matmul_cpu_seconds": matmul_cpu,
        "cpu_ratio_to_matmul": eval_cpu / matmul_cpu,
        "metrics": res.metrics,
        "torch_threads": torch.get_num_threads(),
    }


def run_child(args: argparse.Namespace, n_users: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--users",
        str(n_users),
        "--items",
        str(args.items),
        "--dim",
        str(args.dim),
        "--budget-mb",
        str(args.budget_mb),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--budget-mb", type=float, default=512)
    ap.add_argument("--small-users", type=int, default=10_000, help="second run (0: skip)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "eval_memory.json")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.users, args.items, args.dim, args.budget_mb, seed=0)))
        return 0

    runs = [run_child(args, args.users)]
    if args.small_users:
        runs.append(run_child(args, args.small_users))
    big = runs[0]
    ok_mem = big["peak_rss_gb"] < TARGET_PEAK_GB
    ok_time = big["ratio_to_matmul"] <= TARGET_RATIO
    print(
        "| users | items | chunk | peak RSS (GB) | numpy peak (GB) | eval s (scoring) | "
        "matmul s | ratio | CPU-time ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['users']:,} | {r['items']:,} | {r['chunk_size']} | {r['peak_rss_gb']:.2f} | "
            f"{r['numpy_traced_peak_gb']:.2f} | {r['eval_seconds']:.1f} ({r['score_seconds']:.1f}) "
            f"| {r['matmul_seconds']:.1f} | {r['ratio_to_matmul']:.2f} | "
            f"{r['cpu_ratio_to_matmul']:.2f} |"
        )
    print(
        f"\ntargets: peak < {TARGET_PEAK_GB} GB: {'met' if ok_mem else 'MISSED'}; "
        f"time within {TARGET_RATIO}x of the bare multiplies: {'met' if ok_time else 'MISSED'}"
    )
    result = {
        "runs": runs,
        "targets": {
            "peak_gb": TARGET_PEAK_GB,
            "ratio": TARGET_RATIO,
            "peak_met": ok_mem,
            "ratio_met": ok_time,
        },
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
