"""SASRec on Amazon Beauty: seconds per epoch against the epoch's FLOP floor, before and after.

One script runs both code versions back to back on the same (possibly busy) machine, so their
ratio holds even when absolute seconds do not: ``--baseline-rev`` (a git revision) is exported
into a temporary folder and run in a subprocess with that ``src/`` on ``PYTHONPATH``; the
current tree's ``src/`` is the "after". Runs alternate (before, after, before, after, ...) and
each records the load average around it.

Each run trains ``--epochs`` epochs of the model's defaults (validation included, as ``fit``
runs it) and reports the seconds of its last epoch; one further run per version profiles one
epoch with ``torch.profiler`` (top operators by self CPU time).

The FLOP floor is counted from the shapes (see :func:`epoch_flops`), and turned into seconds by
an SGEMM of the softmax's own shape timed in the same process, so "ratio to floor" is measured
under the same load as the epoch.

    python bench/sasrec_profile.py --baseline-rev 5f3f66e --repeats 2

Writes ``bench/results/sasrec_profile.json`` (and the profile tables as text beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "amazon-beauty-seq" / "Beauty.txt"


def epoch_flops(
    n_targets: int, n_positions: int, n_items: int, dim: int, n_layers: int, ff_mult: int, L: int
) -> dict[str, float]:
    """Multiply-add FLOPs (x2) of one training epoch, forward + backward (backward = 2 x fwd).

    ``n_targets``: positions with a target (the softmax rows); ``n_positions``: non-padding
    positions the blocks must compute (padding positions are not counted: they are waste);
    ``L``: mean attended length per position (causal: about half the window).
    """
    softmax = 3 * 2.0 * n_targets * n_items * dim  # logits, then grad_h and grad_table
    per_token_layer = (
        2.0 * (3 * dim * dim + dim * dim + 2 * ff_mult * dim * dim) + 2.0 * 2 * L * dim
    )
    blocks = 3 * n_positions * n_layers * per_token_layer
    return {"softmax": softmax, "blocks": blocks, "total": softmax + blocks}


def sgemm_gflops(m: int, k: int, n: int, threads: int, repeats: int = 20) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` float32, the softmax's shape, best of ``repeats``."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(n, k)
    out = torch.empty(m, n)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b.T, out=out)
        best = min(best, time.perf_counter() - t)
    return 2.0 * m * k * n / best / 1e9


def load_beauty(path: Path) -> tuple[Any, Any, Any]:
    sys.path.insert(0, str(HERE))
    from sasrec_beauty import read_sequences
    from shopsight.data.dataset import Dataset
    from shopsight.data.split import leave_last_out

    users, item_ids, u, i, k = read_sequences(path)
    ds = Dataset.from_arrays(
        user_ids=users,
        item_ids=item_ids,
        user=u,
        item=i,
        event=np.full(len(u), "purchase"),
        timestamp=k,
        ts_ordinal=np.ones(len(u), bool),
    )
    train, valid, _test = ds.split(leave_last_out(ds.user, ds.timestamp))
    return ds, train, valid


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process (run with the version under test on sys.path)."""
    import torch

    from shopsight.models.sasrec import SASRec, _windows
    from shopsight.training.trainer import training_run

    torch.set_num_threads(args.threads)
    ds, train, valid = load_beauty(args.data)
    params: dict[str, Any] = {"epochs": args.epochs, "patience": None, "num_threads": args.threads}
    model = SASRec(**params)
    rows: list[dict[str, float]] = []
    load0 = os.getloadavg()[0]
    out: dict[str, Any] = {"src": __import__("shopsight").__file__}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with (
            profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof,
            training_run(on_epoch=lambda e, r: rows.append(dict(r))),
        ):
            model.fit(train, valid)
        avg = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in avg) or 1.0
        top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
        out["profile_top"] = [
            {
                "op": e.key,
                "calls": int(e.count),
                "self_cpu_s": e.self_cpu_time_total / 1e6,
                "self_cpu_pct": 100.0 * e.self_cpu_time_total / total,
            }
            for e in top
        ]
        out["profile_table"] = avg.table(sort_by="self_cpu_time_total", row_limit=args.top)
    else:
        with training_run(on_epoch=lambda e, r: rows.append(dict(r))):
            model.fit(train, valid)
    out["load_before"] = load0
    out["load_after"] = os.getloadavg()[0]
    out["history"] = rows
    out["epoch_seconds"] = rows[-1]["seconds"]
    # shapes of the epoch, for the floor (collapse_repeats is a no-op on Beauty: no repeats)
    win_i, _ = _windows(train.item, train.event.astype(np.int64), train.seq_indptr, model.max_len)
    lengths = (win_i > 0).sum(axis=1)
    n_targets = int((lengths - 1).sum())
    n_positions = int((lengths - 1).sum())
    mean_l = float(((lengths - 1) * lengths / 2).sum() / max(n_positions, 1))
    flops = epoch_flops(
        n_targets, n_positions, ds.n_items, model.dim, model.n_layers, model.ff_mult, int(mean_l)
    )
    rows_per_batch = max(1, n_targets * model.batch_size // len(win_i))
    gf = sgemm_gflops(rows_per_batch, model.dim, ds.n_items, args.threads)
    out.update(
        {
            "windows": len(win_i),
            "targets": n_targets,
            "items": int(ds.n_items),
            "flops": flops,
            "sgemm_gflops": gf,
            "floor_seconds": flops["total"] / (gf * 1e9),
        }
    )
    out["ratio_to_floor"] = out["epoch_seconds"] / out["floor_seconds"]
    return out


def export_rev(rev: str, dest: Path) -> Path:
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest / "src"


def run_one(src: Path, args: argparse.Namespace, profile: bool) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        res_path = Path(fh.name)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        str(res_path),
        "--data",
        str(args.data),
        "--epochs",
        str(args.epochs if not profile else 1),
        "--threads",
        str(args.threads),
        "--top",
        str(args.top),
    ] + (["--profile"] if profile else [])
    env = {**os.environ, "PYTHONPATH": str(src), "SHOPSIGHT_QUIET": "1"}
    subprocess.run(cmd, check=True, env=env)
    out: dict[str, Any] = json.loads(res_path.read_text())
    res_path.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--baseline-rev", default=None, help="git revision of the 'before' code")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timing run (last timed)")
    ap.add_argument("--repeats", type=int, default=2, help="timing runs per version")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sasrec_profile.json")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (needs ../shared/data/amazon-beauty-seq)")
    if args.worker is not None:
        args.worker.write_text(json.dumps(worker(args), default=float))
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    versions: dict[str, Path] = {"after": ROOT / "src"}
    tmp = tempfile.TemporaryDirectory()
    if args.baseline_rev:
        versions = {"before": export_rev(args.baseline_rev, Path(tmp.name)), **versions}
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result: dict[str, Any] = {
        "command": "python bench/sasrec_profile.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "baseline_rev": args.baseline_rev,
        "head": rev,
        "threads": args.threads,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_start": list(os.getloadavg()),
        "runs": {v: [] for v in versions},
        "profile": {},
    }
    for r in range(args.repeats):
        for name, src in versions.items():
            res = run_one(src, args, profile=False)
            res.pop("profile_table", None)
            result["runs"][name].append(res)
            print(
                f"[{r + 1}/{args.repeats}] {name}: {res['epoch_seconds']:.1f} s/epoch, floor "
                f"{res['floor_seconds']:.1f} s (SGEMM {res['sgemm_gflops']:.0f} GFLOP/s), "
                f"ratio {res['ratio_to_floor']:.2f}, load {res['load_before']:.1f}"
                f"->{res['load_after']:.1f}",
                flush=True,
            )
    if not args.no_profile:
        for name, src in versions.items():
            res = run_one(src, args, profile=True)
            table = res.pop("profile_table")
            result["profile"][name] = {
                "epoch_seconds": res["epoch_seconds"],
                "load": [res["load_before"], res["load_after"]],
                "top": res["profile_top"],
            }
            txt = args.out.with_name(f"{args.out.stem}_{name}.txt")
            txt.write_text(table + "\n")
            print(f"{name} profile (one epoch, {res['epoch_seconds']:.1f} s):\n{table}", flush=True)
    result["load_end"] = list(os.getloadavg())
    summary: dict[str, Any] = {}
    for name, runs in result["runs"].items():
        s = [x["epoch_seconds"] for x in runs]
        summary[name] = {
            "epoch_seconds_median": float(np.median(s)),
            "ratio_to_floor_median": float(np.median([x["ratio_to_floor"] for x in runs])),
            "floor_tflop": runs[0]["flops"]["total"] / 1e12,
        }
    if "before" in summary:
        summary["speedup"] = (
            summary["before"]["epoch_seconds_median"] / summary["after"]["epoch_seconds_median"]
        )
    result["summary"] = summary
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
