"""Defaults against tuned settings: does each model's out-of-the-box configuration hold up?

For every model and dataset, two figures on the protocol's test part, each fitted once on the
training part:

- **default**: the model's documented defaults (``"auto"`` values resolved from the data);
- **tuned**: the best of a small Optuna search (TPE) whose trials are scored on a validation
  split carved from the training part only (the protocol's own recipe applied again to the
  training rows, or the protocol's validation part where it has one), never on the test part.

``ratio = default / tuned``; a default more than 10% below tuned (ratio < 0.9) is flagged. The
search budget (trials per model, a time cap per study) is small on purpose (the machines are
shared): the table states it, and a tuned figure below the default only means the budget did
not find better.

Datasets (from ``../shared/data``, read in place, and the synthetic shop):

- ``ml100k``: MovieLens-100K, ``stratified-item-75-25`` (Microsoft Recommenders' benchmark);
- ``shop``: the synthetic shop (1,000 users, 300 items), ``random-811`` (per user 8:1:1);
- ``beauty``: Amazon Beauty (ICLRec files), ``leave-one-out``.

Results go to ``bench/results/defaults.json``; :func:`markdown` renders the table for
``BENCHMARKS.md`` from that file (``python bench/defaults.py --table``).

    python bench/defaults.py                              # everything (an hour or more)
    python bench/defaults.py --datasets ml100k --models bpr,ease --trials 4
    python bench/defaults.py --quick                      # a few trials, cheap models
    python bench/defaults.py --table                      # print the table of the saved JSON
    python bench/defaults.py --refit-default --models als # only the defaults of saved cells
    python bench/defaults.py --datasets beauty --models bpr --validate '{}' '{"l2": 0.03}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# bench/run_all.py: the budget of the recorded table (full), a smoke run on the shop (quick)
RUN_ALL = {
    "full": ["--trials", "4"],
    "quick": ["--quick", "--datasets", "shop", "--models", "popularity,ease"],
    "out": "defaults.json",
}

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
OUT = HERE / "results" / "defaults.json"
FLAG_BELOW = 0.9  # a default under 90% of tuned is flagged

# Small search spaces around each model's main knobs (Optuna syntax of shopsight tune).
SPACES: dict[str, dict[str, Any]] = {
    "popularity": {
        "half_life_days": {"type": "categorical", "choices": [None, 7.0, 30.0, 180.0]},
        "distinct_users": {"type": "categorical", "choices": [False, True]},
    },
    "itemknn": {
        "neighbours": {"type": "int", "low": 10, "high": 400, "log": True},
        "shrinkage": {"type": "float", "low": 0.1, "high": 5000.0, "log": True},
        "weighting": {"type": "categorical", "choices": ["none", "tfidf", "bm25"]},
    },
    "ease": {"l2": {"type": "float", "low": 5.0, "high": 5000.0, "log": True}},
    "als": {
        "factors": {"type": "int", "low": 16, "high": 256, "log": True},
        "l2": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
        "alpha": {"type": "float", "low": 0.1, "high": 40.0, "log": True},
    },
    "bpr": {
        "factors": {"type": "int", "low": 16, "high": 256, "log": True},
        "epochs": {"type": "int", "low": 5, "high": 100, "log": True},
        "l2": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    },
    "lightgcn": {
        "dim": {"type": "int", "low": 32, "high": 256, "log": True},
        "epochs": {"type": "int", "low": 10, "high": 60, "log": True},
        "l2": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    },
    "vbpr": {
        "factors": {"type": "int", "low": 16, "high": 128, "log": True},
        "epochs": {"type": "int", "low": 10, "high": 60, "log": True},
        "lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
    },
    "freedom": {
        "dim": {"type": "int", "low": 32, "high": 128, "log": True},
        "knn_k": {"type": "int", "low": 5, "high": 30, "log": True},
        "lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
    },
    "sasrec": {
        "dim": {"type": "int", "low": 32, "high": 128, "log": True},
        "dropout": {"type": "float", "low": 0.2, "high": 0.6},
        "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
    },
    # private models at their default privacy budget (epsilon 4): only the model's own knobs
    # are searched; a search on private data spends budget of its own (the table says so)
    "dp": {
        "l2": {"type": "float", "low": 5.0, "high": 500.0, "log": True},
        "top_items": {"type": "int", "low": 50, "high": 1000, "log": True},
        "max_items_per_user": {"type": "int", "low": 8, "high": 128, "log": True},
    },
    "dp_bpr": {
        "factors": {"type": "int", "low": 16, "high": 128, "log": True},
        "epochs": {"type": "int", "low": 5, "high": 40, "log": True},
        "lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
    },
    # rating prediction (RMSE, lower is better)
    "biasedmf": {
        "factors": {"type": "int", "low": 4, "high": 128, "log": True},
        "l2": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        "iterations": {"type": "int", "low": 5, "high": 40, "log": True},
    },
    "bayesmf": {
        "factors": {"type": "int", "low": 4, "high": 64, "log": True},
        "samples": {"type": "int", "low": 100, "high": 400, "log": True},
    },
}

# the int8 wrapper searches its inner model's (ALS) knobs, by nested names
SPACES["quantized"] = {f"model_params.{k}": v for k, v in SPACES["als"].items()}

# Trials per model (full run); --quick divides them. Each trial is one fit on the inner split.
TRIALS = {
    "popularity": 6,
    "itemknn": 8,
    "ease": 8,
    "als": 8,
    "bpr": 6,
    "lightgcn": 3,
    "vbpr": 6,
    "freedom": 6,
    "sasrec": 3,
    "dp": 6,
    "dp_bpr": 4,
    "quantized": 8,
    "biasedmf": 8,
    "bayesmf": 4,
}


@dataclass(frozen=True)
class Data:
    name: str
    protocol: str
    models: tuple[str, ...]  # the models affordable on it (the rest: not run, said so)
    build: Callable[[Path], Any]  # workdir -> (Dataset, Lineage | None)
    about: str


def _store_dataset(db: Path, files: list[Path], clean: bool = False) -> tuple[Any, Any]:
    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.evaluation.protocols import lineage_from_store

    fresh = not db.exists()  # a second column on the same data (ratings) reads the store
    with Store(db) as store:
        if fresh:
            ingest_files(store, files)
            if clean:
                from shopsight.data.clean import clean_store

                clean_store(store)
        ds = Dataset.from_store(store)
        return ds, lineage_from_store(store, ds)


def _ml100k(work: Path) -> tuple[Any, Any]:
    path = SHARED / "movielens-100k" / "u.data"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (needs ../shared/data/movielens-100k)")
    db = work / "ml100k.duckdb"
    # u.item: titles and genres, the item text VBPR / FREEDOM read (every item is rated, so the
    # interaction data is the same as from u.data alone)
    return _store_dataset(db, [path, path.with_name("u.item")])


def _scientific(work: Path) -> tuple[Any, Any]:
    root = SHARED / "amazon-scientific-text"
    files = [root / f"Scientific.{p}" for p in ("train.inter", "valid.inter", "test.inter", "text")]
    if not files[0].exists():
        raise FileNotFoundError(
            f"{files[0]} not found (needs ../shared/data/amazon-scientific-text)"
        )
    return _store_dataset(work / "scientific.duckdb", files)


def _beauty(work: Path) -> tuple[Any, Any]:
    path = SHARED / "amazon-beauty-seq" / "Beauty.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (needs ../shared/data/amazon-beauty-seq)")
    return _store_dataset(work / "beauty.duckdb", [path])


def _shop(work: Path) -> tuple[Any, Any]:
    from shopsight.data.synthetic import ShopConfig, generate_shop

    # no images: VBPR / FREEDOM use text only here (a model fitted without a feature cache does
    # not find the shop's relative image paths; `shopsight featurize` does, beside the store)
    db = work / "shop.duckdb"
    if db.exists():  # generated already, for another column
        return _store_dataset(db, [])
    files = generate_shop(work / "shop", ShopConfig(n_users=1000, n_items=300, images=False))
    return _store_dataset(db, files.data_files(), clean=True)


CF = ("popularity", "itemknn", "ease", "als", "bpr", "lightgcn")
PRIVATE = ("dp", "dp_bpr", "quantized")
RATING = ("biasedmf", "bayesmf")
#: every registered model, in table order
MODELS = (*CF, "vbpr", "freedom", "sasrec", *PRIVATE, *RATING)
DATASETS: dict[str, Data] = {
    "ml100k": Data(
        "ml100k",
        "stratified-item-75-25",
        (*CF, "vbpr", "freedom", *PRIVATE),
        _ml100k,
        "MovieLens-100K, stratified by item 75/25 (VBPR / FREEDOM: title + genres of u.item)",
    ),
    "shop": Data(
        "shop",
        "random-811",
        (*CF, "vbpr", "freedom", *PRIVATE),
        _shop,
        "synthetic shop 1,000 x 300, per-user 8:1:1 (VBPR / FREEDOM: text features)",
    ),
    # SASRec (sequences) here: its test part is scored from train + valid histories
    "beauty": Data(
        "beauty",
        "leave-one-out",
        (*CF, "sasrec", *PRIVATE),
        _beauty,
        "Amazon Beauty, leave-one-out (full ranking; no item features: VBPR / FREEDOM cannot run)",
    ),
    # a fourth dataset, not used to choose any default: does each default carry over?
    "scientific": Data(
        "scientific",
        "leave-one-out",
        (*CF, "vbpr", "freedom", "sasrec", *PRIVATE),
        _scientific,
        "Amazon Scientific (UniSRec files), leave-one-out; no default was chosen on it",
    ),
    "ml100k-rating": Data(
        "ml100k-rating",
        "kfold-5",
        RATING,
        _ml100k,
        "MovieLens-100K ratings, fold u1 of the official u1..u5 (RMSE)",
    ),
    "shop-rating": Data(
        "shop-rating",
        "kfold-5",
        RATING,
        _shop,
        "synthetic shop review ratings, first of 5 random folds (RMSE)",
    ),
}
#: why a model has no cell on a dataset (the table prints the reason, not a blank)
NOT_APPLICABLE = {
    ("vbpr", "beauty"): "no item features",
    ("freedom", "beauty"): "no item features",
    ("sasrec", "ml100k"): "ratings, not sequences",
    ("sasrec", "shop"): "random split, no sequence target",
}


def ratio_of(metric: str, default: float, tuned: float) -> float:
    """default / tuned for a score, tuned / default for an error (RMSE): below 1 = default worse."""
    lower_better = metric.split("@")[0] in ("rmse", "mae", "logloss")
    a, b = (tuned, default) if lower_better else (default, tuned)
    return a / b if b > 0 else float("nan")


def resolved_defaults(model: str, dataset: Any) -> dict[str, Any]:
    """The defaults a model resolves on this training data (``"auto"`` values filled in)."""
    from shopsight.models.registry import create_model

    m = create_model(model)
    resolve = getattr(m, "resolved_params", None)
    if resolve is None:
        return {}
    params = resolve(dataset.implicit)
    auto = {k for k, v in m.get_params().items() if v == "auto"}
    return {k: params[k] for k in sorted(auto)}


def run_one(
    data: Data, model: str, dataset: Any, lineage: Any, trials: int, timeout: float, seed: int
) -> dict[str, Any]:
    from shopsight.evaluation.tuning import Tuner

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    tuner = Tuner(
        model,
        SPACES[model],
        protocol=data.protocol,
        trials=trials,
        sampler="tpe",
        seed=seed,
        cv_folds=1,
        prune=False,  # few trials: too few to prune against
        timeout=timeout,
    )
    outer = tuner.protocol.make_splits(dataset, seed, lineage)[0]
    summary = tuner.run(dataset, lineage, test=True)
    default, tuned = summary["test"]["default"], summary["test"]["best"]
    ratio = ratio_of(summary["metric"], default, tuned)
    return {
        "dataset": data.name,
        "protocol": data.protocol,
        "model": model,
        "metric": summary["metric"],
        "default": default,
        "tuned": tuned,
        "ratio": ratio,
        "flag": bool(ratio < FLAG_BELOW),
        "validation": summary["validation"],
        "trials": summary["trials"],
        "budget": {"trials": trials, "timeout_s": timeout, "sampler": "tpe", "seed": seed},
        "tuned_params": summary["best_params"],
        "resolved_defaults": resolved_defaults(model, dataset.subset(outer.train)),
        "seconds": time.perf_counter() - t0,
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
    }


def refit_default(
    data: Data, model: str, dataset: Any, lineage: Any, row: dict[str, Any], seed: int
) -> dict[str, Any]:
    """``row`` (a cell of an earlier run) with its default refitted at today's defaults.

    The tuned figure is kept: the search's best setting sets every searched parameter and is
    fitted with the other defaults, so it stands as long as those did not change (the cell's
    ``tuned_params`` say which were searched)."""
    from shopsight.evaluation.tuning import Tuner

    load_before = os.getloadavg()
    tuner = Tuner(model, SPACES[model], protocol=data.protocol, trials=1, seed=seed, cv_folds=1)
    outer = tuner.protocol.make_splits(dataset, seed, lineage)[0]
    early = outer.valid if outer.valid is not None and len(outer.valid) else None
    default = tuner._score(tuner.defaults, dataset, outer.train, outer.test, early)
    ratio = ratio_of(row["metric"], default, row["tuned"])
    return {
        **row,
        "default": default,
        "ratio": ratio,
        "flag": bool(ratio < FLAG_BELOW),
        "default_before": {k: row.get(k) for k in ("default", "ratio", "resolved_defaults")},
        "resolved_defaults": resolved_defaults(model, dataset.subset(outer.train)),
        "default_refit": {
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()),
        },
    }


def validate(
    data: Data, model: str, dataset: Any, lineage: Any, overrides: dict[str, Any], seed: int
) -> dict[str, Any]:
    """The defaults with ``overrides``, scored on the search's validation split (the test part
    is not touched): how the data-sized defaults were chosen."""
    from shopsight.evaluation.tuning import Tuner

    tuner = Tuner(model, SPACES[model], protocol=data.protocol, trials=1, seed=seed, cv_folds=1)
    fold = tuner._folds(dataset, lineage)[0][0]
    epochs: list[int] = []
    score = tuner._score(
        {**tuner.defaults, **overrides},
        dataset,
        fold.train,
        fold.valid,
        fold.early_stop,
        on_epoch=lambda epoch, row: epochs.append(epoch),
    )
    return {"settings": overrides, "validation": score, "epochs_run": len(epochs)}


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def markdown(results: dict[str, Any]) -> str:
    """The model x dataset tables (default, tuned, ratio) of a results file: one for ranking,
    one for rating prediction."""
    rows = results["results"]
    cell: dict[tuple[str, str], dict[str, Any]] = {(r["model"], r["dataset"]): r for r in rows}
    tables = []
    for rating in (False, True):
        datasets = [
            d
            for d in DATASETS
            if (set(DATASETS[d].models) <= set(RATING)) == rating
            and any(r["dataset"] == d for r in rows)
        ]
        if not datasets:
            continue
        models = [
            m for m in MODELS if any(r["model"] == m and r["dataset"] in datasets for r in rows)
        ]
        head = ["model"] + [
            f"{d} ({DATASETS[d].protocol}, "
            f"{next((r['metric'] for r in rows if r['dataset'] == d and 'metric' in r), '?')})"
            for d in datasets
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in models:
            out = [m]
            for d in datasets:
                r = cell.get((m, d))
                if r is None:
                    why = NOT_APPLICABLE.get((m, d))
                    out.append(f"n/a ({why})" if why else "not run")
                elif "error" in r:
                    out.append("failed: " + r["error"].splitlines()[0][:60].replace("|", "/"))
                else:
                    mark = " **(default >10% worse)**" if r["flag"] else ""
                    n = r["trials"]["complete"]
                    out.append(
                        f"{_fmt(r['default'])} / {_fmt(r['tuned'])} = {r['ratio']:.2f}{mark}"
                        f" ({n} trials)"
                    )
            lines.append("| " + " | ".join(out) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument(
        "--models",
        default=",".join(MODELS),
        help="models (default: every registered one; each dataset runs those it can)",
    )
    ap.add_argument("--trials", type=int, default=None, help="trials per model (default: TRIALS)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per study (trials)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (at most the cores)")
    ap.add_argument("--quick", action="store_true", help="2 trials each, no LightGCN")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", action="store_true", help="keep other cells already in --out")
    ap.add_argument("--table", action="store_true", help="print the table of --out and exit")
    ap.add_argument(
        "--refit-default",
        action="store_true",
        help="refit only the defaults of the cells already in --out (keeps their tuned figure)",
    )
    ap.add_argument(
        "--validate",
        nargs="+",
        metavar="JSON",
        help="score the defaults overridden by each JSON object on the validation split "
        "only (e.g. '{}' '{\"l2\": 0.03}'), print, write nothing",
    )
    args = ap.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return 0

    sys.path.insert(0, str(HERE))
    import torch

    from _machine import machine

    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    command = "python bench/defaults.py " + " ".join(argv if argv is not None else sys.argv[1:])
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.quick:
        wanted = [m for m in wanted if m != "lightgcn"]
    merge = args.merge or args.refit_default
    previous = json.loads(args.out.read_text()) if merge and args.out.exists() else None
    results: list[dict[str, Any]] = list(previous["results"]) if previous else []
    with tempfile.TemporaryDirectory(prefix="shopsight-defaults-") as tmp:
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            data = DATASETS[name]
            try:
                dataset, lineage = data.build(Path(tmp))
            except FileNotFoundError as exc:
                print(f"{name}: skipped ({exc})", file=sys.stderr)
                continue
            for model in [m for m in wanted if m in data.models]:
                if args.validate:
                    for text in args.validate:
                        row = validate(data, model, dataset, lineage, json.loads(text), args.seed)
                        print(json.dumps({"dataset": name, "model": model, **row}), flush=True)
                    continue
                trials = args.trials or TRIALS[model]
                if args.quick:
                    trials = min(trials, 2)
                what = "refit of the defaults" if args.refit_default else f"{trials} trials"
                print(f"{name} / {model}: {what} ...", file=sys.stderr, flush=True)
                date = datetime.now(UTC).isoformat(timespec="seconds")
                old = next(
                    (r for r in results if (r["dataset"], r["model"]) == (name, model)), None
                )
                if args.refit_default and (old is None or "error" in old):
                    print("  no earlier cell to refit: skipped", file=sys.stderr)
                    continue
                try:
                    if args.refit_default:
                        assert old is not None
                        row = refit_default(data, model, dataset, lineage, old, args.seed)
                        row["default_refit"].update(command=command, date=date)
                        command_row = {"command": old.get("command"), "date": old.get("date")}
                    else:
                        row = run_one(
                            data, model, dataset, lineage, trials, args.timeout, args.seed
                        )
                        command_row = {"command": command, "date": date}
                except Exception as exc:  # one failing cell must not lose the others
                    traceback.print_exc()
                    error = f"{type(exc).__name__}: {exc}"
                    if args.refit_default and old is not None:  # keep the earlier cell
                        row = {**old, "default_refit": {"error": error, "command": command}}
                        command_row = {}
                    else:
                        row = {"dataset": name, "model": model, "error": error}
                        command_row = {"command": command, "date": date}
                # each cell says which run it came from (a merged file holds several)
                row.update(command_row)
                results = [r for r in results if (r["dataset"], r["model"]) != (name, model)] + [
                    row
                ]
                if "error" not in row:
                    print(
                        f"  default {row['default']:.4f} tuned {row['tuned']:.4f} "
                        f"ratio {row['ratio']:.2f}{'  FLAG' if row['flag'] else ''} "
                        f"({row['seconds']:.0f} s, load {row['load_before'][0]:.1f}"
                        f" -> {row['load_after'][0]:.1f})",
                        file=sys.stderr,
                        flush=True,
                    )
                commands = list(
                    dict.fromkeys(
                        c
                        for r in results
                        for c in (
                            r.get("command", command),
                            r.get("default_refit", {}).get("command"),
                        )
                        if isinstance(c, str)
                    )
                )
                out = {
                    **(previous or {}),
                    "command": "; ".join(commands),
                    "flag_below": FLAG_BELOW,
                    "datasets": {d: DATASETS[d].about for d in DATASETS},
                    "machine": machine("torch", "optuna"),
                    "results": results,
                }
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    if results:
        print(markdown({"results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
