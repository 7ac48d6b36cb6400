"""Serving with the impression log on vs off: p50 / p99 latency, throughput and server CPU.

One script, one machine, one shop: builds the shop and the 64-factor ALS model of
``bench/serve.py`` (same generator, ``--items`` / ``--users``), then starts ``shopsight serve``
alternately with ``--no-impressions`` and with the log on (the default), ``--rounds`` times each,
and drives ``GET /recommend/{user}?k=10`` at the same offered rate with ``bench/serve.py``'s
open-loop generator. Reported per mode: the median over rounds of p50 / p99 / throughput /
server CPU per request, and the ratios on / off; with the log on, the rows it wrote (every
served list, k rows each) are checked against the requests made.

The ratios are what this script measures; absolute figures depend on what else the machine
runs (the load average is recorded beside them). Results: ``bench/results/serve_impressions.json``.

    python bench/serve_impressions.py                       # 50,000 items, 300 req/s, 20 s x 2
    python bench/serve_impressions.py --items 5000 --users 2000 --rate 100 --seconds 5 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine
from serve import build_shop, drive, free_port, process_cpu_seconds, server_side

HERE = Path(__file__).resolve().parent
KEY = "bench-impressions-key-0123456789abcdef"


def run_server(
    store: Path, model: Path, users: list[str], args: argparse.Namespace, log_on: bool
) -> dict[str, Any]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("shopsight")
    cmd = [str(exe), "serve", "--store", str(store), "--model", str(model), "--port", str(port)]
    cmd += ["--json"] if log_on else ["--json", "--no-impressions"]
    env = {**os.environ, "SHOPSIGHT_API_TOKEN": "", "SHOPSIGHT_PSEUDONYM_KEY": KEY}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:] if proc.stderr else "")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.3)
        before = server_side(url)
        cpu0 = process_cpu_seconds(proc.pid)
        load = asyncio.run(
            drive(url, users, args.rate, args.seconds, args.max_in_flight, args.k, "raw")
        )
        after = server_side(url)
        cpu = process_cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    count = max(after["count"] - before["count"], 1)
    return {
        "impressions": log_on,
        "p50_ms": load["latency_ms"]["p50"],
        "p99_ms": load["latency_ms"]["p99"],
        "throughput_rps": load["throughput_rps"],
        "server_cpu_ms_per_request": round(1000 * cpu / count, 4),
        "errors": load["errors"],
        "requests": load["requests"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--per-user", type=int, default=20)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-in-flight", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve_impressions.json")
    args = ap.parse_args()

    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import create_model

    result: dict[str, Any] = {"machine": machine(), "config": vars(args) | {"out": str(args.out)}}
    result["load_average_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ss-bench-imp-") as tmp:
        work = Path(tmp)
        build_shop(work, args.items, args.users, args.per_user, args.seed)
        store = work / "shop.duckdb"
        with Store(store) as st:
            assert ingest_files(st, [work / "items.csv", work / "events.csv"]).ok
            ds = Dataset.from_store(st)
            fp = st.fingerprint()
        model = create_model("als", factors=args.factors, iterations=8, seed=args.seed).fit(ds)
        save_artifact(model, ds, work / "model", seed=args.seed, store_fingerprint=fp)
        known = np.flatnonzero(np.diff(model.seen_.indptr) > 0)
        users = [str(ds.user_ids[u]) for u in known.tolist()]
        runs = []
        for r in range(args.rounds):
            for log_on in (False, True) if r % 2 == 0 else (True, False):
                run = run_server(store, work / "model", users, args, log_on)
                run["round"] = r
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)
        with Store(store, read_only=True) as st:
            row = st.arrow(
                "SELECT count(*) AS rows, count(DISTINCT request_id) AS lists FROM impressions"
            ).to_pylist()[0]
    warmup = 50  # drive() warms each server with 50 requests before measuring
    made = sum(r["requests"] + warmup for r in runs if r["impressions"])
    result["impressions_written"] = {
        **row,
        "lists_requested": made,
        "all_logged": row["lists"] == made,
    }
    result["runs"] = runs
    summary: dict[str, dict[str, float]] = {}
    for mode, on in (("off", False), ("on", True)):
        mine = [r for r in runs if r["impressions"] is on]
        summary[mode] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("p50_ms", "p99_ms", "throughput_rps", "server_cpu_ms_per_request")
        }
    result["median"] = summary
    result["ratio_on_over_off"] = {
        key: round(summary["on"][key] / summary["off"][key], 3) for key in summary["on"]
    }
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("median", "ratio_on_over_off", "impressions_written")}, indent=1
        )
    )


if __name__ == "__main__":
    main()
