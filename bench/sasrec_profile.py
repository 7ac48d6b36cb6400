"""SASRec on Amazon Beauty: seconds per epoch against the epoch's FLOP floor, before and after.

One script runs both code versions on the same (possibly busy) machine, so their ratio holds
even when absolute seconds do not: ``--baseline-rev`` (a git revision) is exported into a
temporary folder and run in its own process with that ``src/`` on ``PYTHONPATH``; the current
tree's ``src/`` is the "after". Both processes run the real ``fit`` (the model's defaults,
validation included) side by side but never at once: each pauses every ``--segment`` steps
(the trainer's ``on_step`` hook) and hands over to the other, so both see the same load, minute
by minute. Each reports the seconds it actually ran per epoch.

The FLOP floor is counted from the shapes (:func:`epoch_flops`) and turned into seconds by an
SGEMM of the softmax's own shape, timed between segments (median), so the ratio to the floor is
measured under the same load as the epochs. One more run per version (``--profile``) profiles
one epoch with ``torch.profiler``: the top operators by self CPU time.

    python bench/sasrec_profile.py --baseline-rev 5f3f66e --epochs 1

Writes ``bench/results/sasrec_profile.json`` and the profile tables beside it
(``sasrec_profile_before.txt``, ``sasrec_profile_after.txt``).
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
    from sasrec_beauty import beauty_dataset
    from shopsight.data.split import leave_last_out

    ds = beauty_dataset(path)
    train, valid, _test = ds.split(leave_last_out(ds.user, ds.timestamp))
    return ds, train, valid


def epoch_shapes(train: Any, n_items: int, model: Any) -> dict[str, Any]:
    """Targets, windows and FLOPs of one epoch of ``model`` on ``train``."""
    from shopsight.models.sasrec import _windows

    # collapse_repeats changes nothing on Beauty (no item twice in a row)
    win_i, _ = _windows(train.item, train.event.astype(np.int64), train.seq_indptr, model.max_len)
    lengths = (win_i > 0).sum(axis=1)
    n_targets = int((lengths - 1).sum())
    mean_l = float(((lengths - 1) * lengths / 2).sum() / max(n_targets, 1))
    flops = epoch_flops(
        n_targets, n_targets, n_items, model.dim, model.n_layers, model.ff_mult, int(mean_l)
    )
    return {
        "windows": len(win_i),
        "targets": n_targets,
        "items": int(n_items),
        "targets_per_batch": n_targets * model.batch_size // max(len(win_i), 1),
        "flops": flops,
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One version's fit in this process (the version under test first on sys.path).

    Interleaved (not ``--profile``): prints ``ready`` and ``pause`` lines on stdout and waits
    for a line on stdin before starting and after every ``--segment`` steps."""
    import torch

    from shopsight.models.sasrec import SASRec
    from shopsight.training.trainer import training_run

    torch.set_num_threads(args.threads)
    ds, train, valid = load_beauty(args.data)
    model = SASRec(epochs=args.epochs, patience=None, num_threads=args.threads)
    rows: list[dict[str, float]] = []
    out: dict[str, Any] = {"src": __import__("shopsight").__file__}
    out.update(epoch_shapes(train, ds.n_items, model))
    clock = {"since": 0.0, "active": 0.0}
    segments: list[float] = []

    def handover() -> None:
        segments.append(time.perf_counter() - clock["since"])
        clock["active"] += segments[-1]
        print("pause", flush=True)
        sys.stdin.readline()
        clock["since"] = time.perf_counter()

    def on_step(step: int, module: Any) -> None:
        if step % args.segment == 0:
            handover()

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        rows.append({**row, "active_seconds": clock["active"]})

    if args.worker_profile:
        from torch.profiler import ProfilerActivity, profile

        t0 = time.perf_counter()
        with (
            profile(activities=[ProfilerActivity.CPU]) as prof,
            training_run(on_epoch=lambda e, r: rows.append(dict(r))),
        ):
            model.fit(train, valid)
        out["epoch_seconds"] = (time.perf_counter() - t0) / len(rows)
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
        print(f"ready {out['targets_per_batch']} {model.dim} {ds.n_items}", flush=True)
        sys.stdin.readline()
        clock["since"] = time.perf_counter()
        with training_run(on_step=on_step, on_epoch=on_epoch):
            model.fit(train, valid)
        segments.append(time.perf_counter() - clock["since"])
        clock["active"] += segments[-1]
        out["epoch_seconds"] = clock["active"] / len(rows)
        out["segment_seconds"] = segments
    out["history"] = rows
    return out


def export_rev(rev: str, dest: Path) -> Path:
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest / "src"


def _cmd(args: argparse.Namespace, res_path: Path, profile: bool) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--worker",
        str(res_path),
        "--data",
        str(args.data),
        "--epochs",
        str(1 if profile else args.epochs),
        "--threads",
        str(args.threads),
        "--top",
        str(args.top),
        "--segment",
        str(args.segment),
    ] + (["--worker-profile"] if profile else [])


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "SHOPSIGHT_QUIET": "1"}


def interleaved(versions: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """Run every version's fit, alternating segments of ``--segment`` steps."""
    tmp = Path(tempfile.mkdtemp())
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, src in versions.items():
        procs[name] = subprocess.Popen(
            _cmd(args, tmp / f"{name}.json", profile=False),
            env=_env(src),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    gflops: list[float] = []
    loads: list[float] = []
    shape: tuple[int, int, int] = (1, 1, 1)
    for p in procs.values():  # data loaded, waiting
        assert p.stdout is not None
        ready = p.stdout.readline().split()
        if not ready or ready[0] != "ready":
            sys.exit("a worker failed before its fit")
        shape = (int(ready[1]), int(ready[2]), int(ready[3]))
    running = dict(procs)
    rounds = 0
    while running:
        order = list(running.items())
        rounds += 1
        if rounds % 2 == 0:  # alternate who goes first: no version always follows the SGEMM
            order.reverse()
        for name, p in order:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            line = p.stdout.readline().strip()
            if line != "pause":  # the fit finished (the worker exits)
                if p.wait() != 0:
                    sys.exit(f"{name}: worker failed")
                del running[name]
        loads.append(os.getloadavg()[0])
        gflops.append(sgemm_gflops(*shape, args.threads, repeats=3))
    out = {name: json.loads((tmp / f"{name}.json").read_text()) for name in versions}
    for res in out.values():
        gf = float(np.median(gflops))
        res["sgemm_gflops_median"] = gf
        res["floor_seconds"] = res["flops"]["total"] / (gf * 1e9)
        res["ratio_to_floor"] = res["epoch_seconds"] / res["floor_seconds"]
    return {"versions": out, "load_during": loads, "sgemm_gflops": gflops}


def run_profile(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        res_path = Path(fh.name)
    load0 = os.getloadavg()[0]
    subprocess.run(_cmd(args, res_path, profile=True), check=True, env=_env(src))
    out: dict[str, Any] = json.loads(res_path.read_text())
    out["load"] = [load0, os.getloadavg()[0]]
    res_path.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--baseline-rev", default=None, help="git revision of the 'before' code")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per version (timed)")
    ap.add_argument("--segment", type=int, default=4, help="steps before handing over")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument(
        "--repeats", type=int, default=1, help="interleaved comparisons (medians reported)"
    )
    ap.add_argument("--profile", nargs="*", default=None, help="versions to profile (default: all)")
    ap.add_argument("--no-profile", action="store_true", help="profile no version")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sasrec_profile.json")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (needs ../shared/data/amazon-beauty-seq)")
    if args.worker is not None:
        args.worker.write_text(json.dumps(worker(args), default=float))
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory()
    versions: dict[str, Path] = {"after": ROOT / "src"}
    if args.baseline_rev:
        versions = {"before": export_rev(args.baseline_rev, Path(tmp.name)), **versions}
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result: dict[str, Any] = {
        "command": "python bench/sasrec_profile.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "baseline_rev": args.baseline_rev,
        "head": head,
        "threads": args.threads,
        "epochs": args.epochs,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_start": list(os.getloadavg()),
    }
    timings = [interleaved(versions, args) for _ in range(max(args.repeats, 1))]
    result["load_after_timing"] = list(os.getloadavg())
    timing = timings[0]
    for name, res in timing["versions"].items():  # medians over the repeats
        for key in ("epoch_seconds", "ratio_to_floor", "floor_seconds", "sgemm_gflops_median"):
            res[key] = float(np.median([t["versions"][name][key] for t in timings]))
    result["timing"] = timing
    if len(timings) > 1:
        result["timing_repeats"] = timings[1:]
    for name, res in timing["versions"].items():
        print(
            f"{name}: {res['epoch_seconds']:.1f} s/epoch, floor {res['floor_seconds']:.1f} s "
            f"({res['flops']['total'] / 1e12:.2f} TFLOP at {res['sgemm_gflops_median']:.0f} "
            f"GFLOP/s SGEMM), ratio {res['ratio_to_floor']:.2f}; valid NDCG@10 "
            + ", ".join(f"{r.get('metric', float('nan')):.4f}" for r in res["history"]),
            flush=True,
        )
    result["profile"] = {}
    profiled = [] if args.no_profile else list(versions if args.profile is None else args.profile)
    for name in profiled:
        res = run_profile(versions[name], args)
        table = res.pop("profile_table")
        result["profile"][name] = {
            "epoch_seconds": res["epoch_seconds"],
            "load": res["load"],
            "top": res["profile_top"],
        }
        args.out.with_name(f"{args.out.stem}_{name}.txt").write_text(table + "\n")
        print(f"{name} profile (one epoch, {res['epoch_seconds']:.1f} s):\n{table}", flush=True)
    result["load_end"] = list(os.getloadavg())
    v = timing["versions"]
    # one interleaved run per version ("runs" and the "_median" names: the layout
    # bench/report.py renders)
    result["runs"] = {name: [res] for name, res in v.items()}
    summary: dict[str, Any] = {
        name: {
            "epoch_seconds": res["epoch_seconds"],
            "epoch_seconds_median": res["epoch_seconds"],
            "ratio_to_floor": res["ratio_to_floor"],
            "ratio_to_floor_median": res["ratio_to_floor"],
            "floor_tflop": res["flops"]["total"] / 1e12,
            "floor_seconds": res["floor_seconds"],
            "sgemm_gflops": res["sgemm_gflops_median"],
        }
        for name, res in v.items()
    }
    if "before" in v:
        summary["speedup"] = v["before"]["epoch_seconds"] / v["after"]["epoch_seconds"]
        # segment k of both versions ran the same steps (same batches), one after the other:
        # the median of their ratios is the least sensitive to the load's swings
        pairs = [
            b / a
            for b, a in zip(
                v["before"]["segment_seconds"], v["after"]["segment_seconds"], strict=False
            )
            if a > 0
        ]
        summary["speedup_median_of_segment_pairs"] = float(np.median(pairs))
    result["quality"] = {  # the same seed: equal up to float rounding when the maths is equal
        "valid_ndcg10_epoch1": {n: r["history"][0].get("metric") for n, r in v.items()},
        "loss_epoch1": {n: r["history"][0]["loss"] for n, r in v.items()},
    }
    result["summary"] = summary
    print(json.dumps(summary, indent=2))
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
