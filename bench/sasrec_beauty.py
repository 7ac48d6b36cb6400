"""SASRec on Amazon Beauty (S3-Rec / ICLRec preprocessing), next-item prediction, full ranking.

Protocol (``../shared/PUBLISHED_RESULTS.md``): per user the last item is the test target, the
second last the validation target, the rest training; the target is ranked against ALL items;
HIT@K and NDCG@K (log2 discount) averaged over all users. The model trains on the training
items with early stopping on validation NDCG@10 and is tested on each user's training items plus
the validation item. A user's own history items are excluded from the ranking (``-inf``); the
ICLRec code instead sets their scores to 0, which we also report ("iclrec_rule": the same
scores, only the treatment of history items differs; no test target is in its user's history).

    python bench/sasrec_beauty.py                      # CPU, the model's defaults
    python bench/sasrec_beauty.py --device cuda --set hidden=128 --set dropout=0.3

Writes ``bench/results/sasrec_beauty.json`` (metrics, published figures, time, params, split).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "amazon-beauty-seq" / "Beauty.txt"
PUBLISHED = {  # ICLRec (WWW 2022), repository README, same protocol
    "HR@5": 0.0500,
    "NDCG@5": 0.0326,
    "HR@10": 0.0744,
    "NDCG@10": 0.0403,
    "HR@20": 0.1058,
    "NDCG@20": 0.0483,
}
KS = (5, 10, 20)


def read_sequences(path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Users, items (ids sorted numerically when numeric) and (user, item, position) rows."""
    users: list[str] = []
    rows_u: list[int] = []
    rows_i: list[str] = []
    rows_k: list[int] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                sys.exit(f"{path}:{n}: expected 'user item item ...', got {line.strip()!r}")
            users.append(parts[0])
            u = len(users) - 1
            rows_u += [u] * (len(parts) - 1)
            rows_i += parts[1:]
            rows_k += range(len(parts) - 1)
    item_ids = sorted(set(rows_i), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {s: i for i, s in enumerate(item_ids)}
    items = np.fromiter((index[s] for s in rows_i), np.int64, len(rows_i))
    return users, item_ids, np.asarray(rows_u, np.int64), items, np.asarray(rows_k, np.int64)


def beauty_dataset(path: Path) -> Any:
    """The sequences as a Dataset: one purchase per position, ordered by position only."""
    from shopsight.data.dataset import Dataset

    users, item_ids, u, i, k = read_sequences(path)
    return Dataset.from_arrays(
        user_ids=users,
        item_ids=item_ids,
        user=u,
        item=i,
        event=np.full(len(u), "purchase"),
        timestamp=k,
        ts_ordinal=np.ones(len(u), bool),
    )


def ranks_of_targets(
    scores: np.ndarray, targets: np.ndarray, history: list[np.ndarray], rule: str
) -> np.ndarray:
    """0-based rank of each row's target; history items at -inf ("exclude") or 0 ("iclrec")."""
    s = scores.copy()
    for r, h in enumerate(history):
        s[r, h] = -np.inf if rule == "exclude" else 0.0
    t = s[np.arange(len(s)), targets]
    # Ties count against the target (pessimistic), so a constant model gets no credit.
    return (s > t[:, None]).sum(axis=1) + (s == t[:, None]).sum(axis=1) - 1


def metrics(ranks: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in KS:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def parse_set(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            sys.exit(f"--set {p!r}: expected key=value")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a SASRec parameter (JSON value), repeatable",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sasrec_beauty.json")
    ap.add_argument("--progress", action="store_true", help="show a progress bar")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 is faster on busy shared cores",
    )
    args = ap.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (needs ../shared/data/amazon-beauty-seq)")

    # Transparent huge pages for torch's large CPU buffers (the logits of the full softmax):
    # far fewer page faults per step. Read by torch's allocator, so set before importing it.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch

    from shopsight.data.split import leave_last_out
    from shopsight.models.sasrec import SASRec
    from shopsight.training.trainer import training_run

    t0 = time.perf_counter()
    ds = beauty_dataset(args.data)
    split = leave_last_out(ds.user, ds.timestamp)
    train, valid, test = ds.split(split)
    assert valid is not None
    print(
        f"Beauty: {ds.n_users} users, {ds.n_items} items, {len(ds)} interactions; "
        f"train {len(train)} / valid {len(valid)} / test {len(test)} "
        f"(read in {time.perf_counter() - t0:.1f} s)"
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    params = {"device": args.device, "num_threads": args.threads, **parse_set(args.set)}
    model = SASRec(**params)
    history_rows: list[dict[str, float]] = []

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        history_rows.append(row)
        metric = f"  valid NDCG@10 {row['metric']:.4f}" if "metric" in row else ""
        print(
            f"  epoch {epoch:3d}  loss {row['loss']:.4f}{metric}  {row['seconds']:.1f} s",
            flush=True,
        )

    t1 = time.perf_counter()
    with training_run(progress=args.progress, on_epoch=on_epoch):
        model.fit(train, valid)
    train_s = time.perf_counter() - t1
    result = model.train_result_

    # Test: every user's training items plus the validation item, then rank the test item.
    seq_train = train.sequences()
    seq_valid = valid.sequences()
    seq_test = test.sequences()
    test_users = np.flatnonzero([len(s) == 1 for s in seq_test])
    t2 = time.perf_counter()
    ranks: dict[str, list[np.ndarray]] = {"exclude": [], "iclrec": []}
    for start in range(0, len(test_users), 2048):
        ub = test_users[start : start + 2048]
        hist = [np.concatenate([seq_train[x], seq_valid[x]]) for x in ub]
        s = model.score_sequences(hist)
        target = np.array([seq_test[x][0] for x in ub])
        for rule in ranks:
            ranks[rule].append(ranks_of_targets(s, target, hist, rule))
    test_s = time.perf_counter() - t2
    res = {rule: metrics(np.concatenate(r)) for rule, r in ranks.items()}
    # Validation figure of the kept weights on every user (same protocol, one step earlier).
    vu = np.flatnonzero([len(s) == 1 for s in seq_valid])
    vranks = []
    for start in range(0, len(vu), 2048):
        ub = vu[start : start + 2048]
        hist = [seq_train[x] for x in ub]
        vranks.append(
            ranks_of_targets(
                model.score_sequences(hist),
                np.array([seq_valid[x][0] for x in ub]),
                hist,
                "exclude",
            )
        )
    valid_metrics = metrics(np.concatenate(vranks))

    print(
        f"\nSASRec on Amazon Beauty, {len(test_users)} test users, full ranking over "
        f"{ds.n_items} items; trained {result.epochs_run} epochs (best {result.best_epoch}) "
        f"in {train_s / 60:.1f} min on {args.device} ({torch.get_num_threads()} threads)"
    )
    print(f"{'metric':<9}{'ours':>9}{'ICLRec rule':>13}{'ICLRec (pub.)':>15}{'ratio':>8}")
    for name, pub in PUBLISHED.items():
        ours = res["exclude"][name]
        print(f"{name:<9}{ours:>9.4f}{res['iclrec'][name]:>13.4f}{pub:>15.4f}{ours / pub:>8.2f}")
    print(f"validation NDCG@10 (all users): {valid_metrics['NDCG@10']:.4f}")

    out = {
        "dataset": "amazon-beauty-seq (S3-Rec/ICLRec Beauty.txt)",
        "protocol": "leave-one-out (last test, second last valid), full ranking over all items, "
        "history items excluded; mean over users",
        "users": len(test_users),
        "items": int(ds.n_items),
        "interactions": len(ds),
        "model": "sasrec",
        "params": model.get_params(),
        "metrics": res["exclude"],
        "metrics_iclrec_rule": res["iclrec"],
        "valid_metrics": valid_metrics,
        "published": {"ICLRec": PUBLISHED},
        "ratio_ndcg10_vs_iclrec": res["exclude"]["NDCG@10"] / PUBLISHED["NDCG@10"],
        "train_seconds": train_s,
        "test_seconds": test_s,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "history": history_rows,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
