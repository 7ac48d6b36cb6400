"""Training threads on a shared machine: seconds per epoch, idle and beside busy processes.

PyTorch's CPU ops run on an OpenMP pool of one thread per core, whose threads spin at each
barrier. When other processes take the cores, a spinning thread waits for a descheduled
sibling, and a model whose steps are many small ops (BPR: a 2,048-triple batch of 64 factors)
slows down by an order of magnitude. This measures it: BPR on MovieLens-100K (``epochs`` per
run, the defaults otherwise; SASRec idle too, for what passive waiting costs a model of large
GEMMs), each configuration in a fresh process (OpenMP reads its
environment once), idle and with ``--busy`` pure-Python busy loops beside it (started and
stopped by this script, in its process group, so ``run_all`` does not count them as other
load). Configurations: 1 thread, all cores, all cores with ``OMP_WAIT_POLICY=PASSIVE``.

    python bench/threads.py                    # writes bench/results/threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
ML100K = (ROOT / ".." / "shared" / "data" / "movielens-100k" / "u.data").resolve()
OUT = Path(__file__).resolve().parent / "results" / "threads.json"

WORKER = """
import sys, time
from shopsight.data.store import Store
from shopsight.data.dataset import Dataset
from shopsight.models.registry import create_model
import torch
with Store(sys.argv[1], read_only=True) as st:
    ds = Dataset.from_store(st)
model, epochs = sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
create_model(model, epochs=epochs, seed=0).fit(ds)
print((time.perf_counter() - t) / epochs, torch.get_num_threads())
"""


def run(
    store: Path, model: str, epochs: int, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(store), model, str(epochs)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    per_epoch, threads = proc.stdout.split()[-2:]
    return {"seconds_per_epoch": float(per_epoch), "torch_threads": int(threads)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="busy processes")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per configuration")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not ML100K.exists():
        raise SystemExit(f"{ML100K} not found (needs ../shared/data/movielens-100k)")
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store

    cores = os.cpu_count() or 1
    configs = {
        "1 thread": {"OMP_NUM_THREADS": "1"},
        f"{cores} threads": {"OMP_NUM_THREADS": str(cores)},
        f"{cores} threads, OMP_WAIT_POLICY=PASSIVE": {
            "OMP_NUM_THREADS": str(cores),
            "OMP_WAIT_POLICY": "PASSIVE",
        },
    }
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shopsight-threads-") as tmp:
        store = Path(tmp) / "ml.duckdb"
        with Store(store) as st:
            ingest_files(st, [ML100K])
        for busy in (0, args.busy):
            spinners = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)
            ]
            try:
                time.sleep(1.0 if busy else 0.0)
                # SASRec (large GEMMs) idle only: what passive waiting costs a heavier model
                models = ("bpr", "sasrec") if not busy else ("bpr",)
                for model in models:
                    for name, env in configs.items():
                        if model == "sasrec" and env.get("OMP_NUM_THREADS") == "1":
                            continue
                        row: dict[str, Any] = {
                            "model": model,
                            "config": name,
                            "busy_processes": busy,
                            "env": env,
                        }
                        try:
                            row.update(run(store, model, args.epochs, env, args.timeout))
                        except subprocess.TimeoutExpired:
                            row["error"] = f"over {args.timeout:.0f} s"
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    for r in rows:
        base = next(
            b
            for b in rows
            if (b["model"], b["busy_processes"], b["config"]) == (r["model"], 0, f"{cores} threads")
        )
        if "seconds_per_epoch" in r and "seconds_per_epoch" in base:
            r["vs_idle_all_cores"] = r["seconds_per_epoch"] / base["seconds_per_epoch"]
    out = {
        "benchmark": "threads",
        "dataset": "movielens-100k",
        "epochs": args.epochs,
        "cores": cores,
        "columns": [
            "model",
            "config",
            "busy_processes",
            "torch_threads",
            "seconds_per_epoch",
            "vs_idle_all_cores",
        ],
        "timing_columns": ["seconds_per_epoch", "vs_idle_all_cores"],
        "rows": rows,
        "seconds": time.perf_counter() - t0,
        "machine": machine("torch"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
