"""Training benchmark: our ALS / BPR (/ VBPR) against ``implicit`` and ``cornac``, one run.

For each dataset (MovieLens-100K from ``../shared/data``, and the synthetic demo shop), every
model gets the same split (per user, in time: the first 80% of each user's interactions train,
the rest test) and is scored the same way: full ranking of the catalogue with the user's
training items removed, NDCG@10 and Recall@20 against the test items the user had not
interacted with in training. Fit time is wall-clock of ``fit`` alone (best of ``--repeat``),
every engine limited to the same number of threads (``--threads``, default 1: the machines this
runs on are shared, and one thread makes the timings comparable).

Every engine uses its own documented defaults except the number of factors, which is the same
for all (``--factors``, default 64): this measures each library out of the box. Peers:

- ``implicit`` (core dependency): ``AlternatingLeastSquares`` on the same multi-behaviour
  weights (its confidence is ``alpha * w``), ``BayesianPersonalizedRanking`` on the binary matrix;
- ``cornac`` (optional ``bench`` extra): ``BPR`` and ``VBPR`` (given the same text + image item
  features our VBPR computes, :mod:`shopsight.models.content`); skipped with a note when not
  installed.

Our VBPR (``shopsight.models.vbpr``, another module) is included when it imports.

Ratios: for each of our models, quality = our NDCG@10 / the peer's, and time = our fit time /
the *fastest* peer's fit time for the same model. Results go to ``bench/results/train.json``
and a Markdown table is printed.

    python bench/train.py                       # both datasets
    python bench/train.py --datasets synthetic --set bpr.epochs=30
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
ML100K = SHARED / "movielens-100k" / "u.data"

ScoreFn = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]


@dataclass
class Run:
    dataset: str
    model: str  # family: als / bpr / vbpr / popularity
    engine: str  # shopsight / implicit / cornac
    fit_seconds: float | None = None
    ndcg10: float | None = None
    recall20: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


# -- data ------------------------------------------------------------------------------------------


def load_movielens(workdir: Path) -> Any:
    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store

    if not ML100K.exists():
        raise FileNotFoundError(f"{ML100K} not found (needs ../shared/data/movielens-100k)")
    with Store(workdir / "ml100k.duckdb") as store:
        report = ingest_files(store, [ML100K])
        total = report.to_dict()["total"]
        if total["stored"] != 100_000:
            raise RuntimeError(f"MovieLens-100K ingest stored {total} (expected 100,000 ratings)")
        return Dataset.from_store(store)


def load_synthetic(workdir: Path, images: bool) -> Any:
    from shopsight.data.clean import clean_store
    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.data.synthetic import ShopConfig, generate_shop

    files = generate_shop(workdir / "shop", ShopConfig(images=images))
    with Store(workdir / "shop.duckdb") as store:
        ingest_files(store, files.data_files())
        clean_store(store)
        return Dataset.from_store(store)


def user_temporal_split(ds: Any, train_fraction: float = 0.8) -> tuple[Any, Any]:
    from shopsight.data.split import Split

    rank = np.arange(len(ds)) - ds.seq_indptr[ds.user]
    size = np.diff(ds.seq_indptr)[ds.user]
    test = rank >= np.ceil(train_fraction * size)
    train, _, hold = ds.split(Split(train=np.flatnonzero(~test), test=np.flatnonzero(test)))
    return train, hold


# -- evaluation ------------------------------------------------------------------------------------


def evaluate(score: ScoreFn, train: Any, test: Any, batch: int = 512) -> tuple[float, float]:
    """Mean NDCG@10 and Recall@20 over users with unseen test items (full ranking)."""
    seen = train.implicit.tocsr()
    seen.data[:] = 1
    t = test.implicit.tocsr().astype(bool).astype(np.float32)
    t = (t - t.multiply(seen.astype(bool))).tocsr()
    t.eliminate_zeros()
    users = np.flatnonzero(np.diff(t.indptr) > 0).astype(np.int64)
    disc = 1.0 / np.log2(np.arange(2, 12))
    ndcg, recall = [], []
    for start in range(0, len(users), batch):
        ub = users[start : start + batch]
        s = np.array(score(ub), dtype=np.float32)
        sb = seen[ub].tocoo()
        s[sb.row, sb.col] = -np.inf
        top = np.argpartition(-s, 19, axis=1)[:, :20]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        rel = np.asarray(t[ub][np.arange(len(ub))[:, None], top].todense()) > 0
        n_rel = np.diff(t.indptr)[ub]
        idcg = np.cumsum(disc)[np.minimum(n_rel, 10) - 1]
        ndcg.append((rel[:, :10] * disc).sum(axis=1) / idcg)
        recall.append(rel.sum(axis=1) / np.minimum(n_rel, 20))
    return float(np.concatenate(ndcg).mean()), float(np.concatenate(recall).mean())


def timed(fit: Callable[[], ScoreFn], repeat: int) -> tuple[ScoreFn, float]:
    """Best of ``repeat`` fits (a fit longer than a minute is not repeated)."""
    best, score = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        score = fit()
        best = min(best, time.perf_counter() - t)
        if best > 60:
            break
    assert score is not None
    return score, best


def warm_up() -> None:
    """Pay one-off import and BLAS-inspection costs before any clock starts."""
    import implicit.cpu.als
    import implicit.cpu.bpr  # noqa: F401
    from implicit.utils import check_blas_config

    check_blas_config()
    if importlib.util.find_spec("cornac") is not None:
        import cornac  # noqa: F401


# -- engines -------------------------------------------------------------------------------------


def ours(
    name: str, params: dict[str, Any], train: Any, content: Any = None
) -> Callable[[], ScoreFn]:
    from shopsight.models.registry import create_model

    def fit() -> ScoreFn:
        model = create_model(name, **params)
        if content is not None:  # precomputed item features, outside the clock
            model.set_item_features(content)  # type: ignore[attr-defined]
        return model.fit(train).score

    return fit


def item_content(train: Any, image_dirs: list[Path]) -> Any:
    """Text and image features of every item (encoded once, cached by the features package)."""
    from shopsight.models.content import compute_item_content

    return compute_item_content(train, modalities=("text", "image"), image_dirs=image_dirs)


def implicit_als(factors: int, threads: int, train: Any) -> Callable[[], ScoreFn]:
    from implicit.cpu.als import AlternatingLeastSquares

    def fit() -> ScoreFn:
        m = AlternatingLeastSquares(factors=factors, num_threads=threads, random_state=0)
        m.fit(train.implicit.tocsr(), show_progress=False)
        u, v = m.user_factors, m.item_factors
        return lambda users: u[users] @ v.T

    return fit


def implicit_bpr(factors: int, threads: int, train: Any) -> Callable[[], ScoreFn]:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    x = train.implicit.tocsr().astype(np.float32)
    x.data[:] = 1.0

    def fit() -> ScoreFn:
        m = BayesianPersonalizedRanking(factors=factors, num_threads=threads, random_state=0)
        m.fit(x, show_progress=False)
        u, v = m.user_factors, m.item_factors  # the last column carries the item bias
        return lambda users: u[users] @ v.T

    return fit


def _cornac_train_set(train: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """A cornac train set of the binary training pairs, and our index -> cornac index maps."""
    import cornac

    x = train.implicit.tocoo()
    triples = [(str(u), str(i), 1.0) for u, i in zip(x.row.tolist(), x.col.tolist(), strict=True)]
    ts = cornac.data.Dataset.from_uir(triples, seed=0)
    umap = np.full(train.n_users, -1, dtype=np.int64)
    imap = np.full(train.n_items, -1, dtype=np.int64)
    for raw, idx in ts.uid_map.items():
        umap[int(raw)] = idx
    for raw, idx in ts.iid_map.items():
        imap[int(raw)] = idx
    return ts, umap, imap


def _scatter(cornac_scores: np.ndarray, imap: np.ndarray) -> np.ndarray:
    """Cornac's item order back to ours; items cornac never saw score -inf."""
    out = np.full((cornac_scores.shape[0], len(imap)), -np.inf, dtype=np.float32)
    known = imap >= 0
    out[:, known] = cornac_scores[:, imap[known]]
    return out


def cornac_bpr(factors: int, threads: int, train: Any) -> Callable[[], ScoreFn]:
    import cornac

    ts, umap, imap = _cornac_train_set(train)

    def fit() -> ScoreFn:
        m = cornac.models.BPR(k=factors, num_threads=threads, seed=0, verbose=False)
        with contextlib.redirect_stdout(sys.stderr):  # cornac prints even when not verbose
            m.fit(ts)
        u, v, b = np.asarray(m.u_factors), np.asarray(m.i_factors), np.asarray(m.i_biases)

        def score(users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            cu = umap[users]
            s = u[np.maximum(cu, 0)] @ v.T + b
            s[cu < 0] = b  # users cornac never saw: its item-bias fallback
            return _scatter(s, imap)

        return score

    return fit


def cornac_vbpr(factors: int, train: Any, content: Any) -> Callable[[], ScoreFn]:
    import cornac
    from cornac.data import ImageModality

    from shopsight.models.content import standardize

    # the same item information our VBPR gets, with the same preprocessing (centre, L2-normalise
    # per modality), side by side in the one "image" slot cornac's VBPR reads
    feats = standardize(content)[0].concat()
    ts, umap, imap = _cornac_train_set(train)
    order = np.argsort(imap[imap >= 0])
    ours_idx = np.flatnonzero(imap >= 0)[order]
    ts.add_modalities(
        item_image=ImageModality(features=feats[ours_idx], ids=[str(i) for i in ours_idx])
    )

    def fit() -> ScoreFn:
        m = cornac.models.VBPR(k=factors // 2, k2=factors // 2, seed=0, verbose=False)
        with contextlib.redirect_stdout(sys.stderr):  # cornac prints even when not verbose
            m.fit(ts)

        def score(users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            rows = [m.score(int(c)) if c >= 0 else np.zeros(len(ours_idx)) for c in umap[users]]
            return _scatter(np.asarray(rows, dtype=np.float32), imap)

        return score

    return fit


# -- driver --------------------------------------------------------------------------------------


def parse_sets(pairs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        model, dot, param = key.partition(".")
        if not (sep and dot and model and param):
            raise SystemExit(f"--set {pair!r}: expected model.param=value (e.g. bpr.epochs=30)")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(model, {})[param] = parsed
    return out


def bench_dataset(
    name: str, train: Any, test: Any, args: argparse.Namespace, sets: dict[str, dict[str, Any]]
) -> list[Run]:
    f, th = args.factors, args.threads
    have_cornac = importlib.util.find_spec("cornac") is not None
    have_vbpr = importlib.util.find_spec("shopsight.models.vbpr") is not None
    plan: list[
        tuple[str, str, dict[str, Any], Callable[[], Callable[[], ScoreFn]] | None, str]
    ] = []

    def ours_params(model: str, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, **sets.get(model, {})}

    p_pop = ours_params("popularity", {})
    p_als = ours_params("als", {"factors": f, "num_threads": th})
    p_bpr = ours_params("bpr", {"factors": f})
    plan += [
        ("popularity", "shopsight", p_pop, lambda: ours("popularity", p_pop, train), ""),
        ("als", "shopsight", p_als, lambda: ours("als", p_als, train), ""),
        ("als", "implicit", {"factors": f}, lambda: implicit_als(f, th, train), ""),
        ("bpr", "shopsight", p_bpr, lambda: ours("bpr", p_bpr, train), ""),
        ("bpr", "implicit", {"factors": f}, lambda: implicit_bpr(f, th, train), ""),
    ]
    cornac_note = "cornac not installed (pip install -e '.[bench]')"
    plan.append(
        (
            "bpr",
            "cornac",
            {"k": f},
            (lambda: cornac_bpr(f, th, train)) if have_cornac else None,
            "" if have_cornac else cornac_note,
        )
    )
    if name == "synthetic" and "vbpr" in args.models:  # the multimodal models need item images
        content = item_content(train, [args.workdir / "shop"])
        coverage = {m: round(float(v), 3) for m, v in content.coverage().items()}
        p_vbpr = ours_params("vbpr", {})
        plan.append(
            (
                "vbpr",
                "shopsight",
                {**p_vbpr, "feature_coverage": coverage},
                (lambda: ours("vbpr", p_vbpr, train, content)) if have_vbpr else None,
                "" if have_vbpr else "shopsight.models.vbpr does not exist yet",
            )
        )
        plan.append(
            (
                "vbpr",
                "cornac",
                {"k": f // 2, "k2": f // 2, "feature_coverage": coverage},
                (lambda: cornac_vbpr(f, train, content)) if have_cornac else None,
                "" if have_cornac else cornac_note,
            )
        )
    runs: list[Run] = []
    for model, engine, params, make, note in plan:
        if model not in args.models or engine not in args.engines:
            continue
        run = Run(name, model, engine, params=params, note=note or None)
        if make is not None:
            try:
                score, seconds = timed(make(), args.repeat)
                run.fit_seconds = seconds
                run.ndcg10, run.recall20 = evaluate(score, train, test)
            except Exception as exc:  # one failing engine must not sink the whole benchmark
                run.note = f"failed: {type(exc).__name__}: {exc}"
                if args.verbose:
                    traceback.print_exc()
        runs.append(run)
        shown = (
            f"{run.fit_seconds:.2f}s NDCG@10 {run.ndcg10:.4f}"
            if run.ndcg10 is not None
            else run.note
        )
        print(f"[{name}] {model:10s} {engine:9s} {shown}", file=sys.stderr, flush=True)
    return runs


def ratios(runs: list[Run]) -> list[dict[str, Any]]:
    out = []
    for mine in runs:
        if mine.engine != "shopsight" or mine.ndcg10 is None or mine.model == "popularity":
            continue
        peers = [
            r
            for r in runs
            if r.dataset == mine.dataset
            and r.model == mine.model
            and r.engine != "shopsight"
            and r.ndcg10 is not None
        ]
        if not peers:
            continue
        fastest = min(peers, key=lambda r: r.fit_seconds or float("inf"))
        for peer in peers:
            out.append(
                {
                    "dataset": mine.dataset,
                    "model": mine.model,
                    "peer": peer.engine,
                    "quality_ratio": mine.ndcg10 / peer.ndcg10 if peer.ndcg10 else None,
                    "time_ratio_vs_fastest_peer": (mine.fit_seconds or 0.0)
                    / (fastest.fit_seconds or float("nan")),
                    "fastest_peer": fastest.engine,
                }
            )
    return out


def markdown(runs: list[Run], rat: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | model | engine | fit (s) | NDCG@10 | Recall@20 | note |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in runs:
        fit = f"{r.fit_seconds:.2f}" if r.fit_seconds is not None else "-"
        nd = f"{r.ndcg10:.4f}" if r.ndcg10 is not None else "-"
        rc = f"{r.recall20:.4f}" if r.recall20 is not None else "-"
        lines.append(
            f"| {r.dataset} | {r.model} | {r.engine} | {fit} | {nd} | {rc} | {r.note or ''} |"
        )
    if rat:
        lines += [
            "",
            "| dataset | model | vs peer | NDCG ratio (ours / peer) | time ratio (ours / fastest peer) |",
            "|---|---|---|---:|---:|",
        ]
        for x in rat:
            lines.append(
                f"| {x['dataset']} | {x['model']} | {x['peer']} | {x['quality_ratio']:.3f} | "
                f"{x['time_ratio_vs_fastest_peer']:.2f} ({x['fastest_peer']}) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["movielens-100k", "synthetic"])
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="fit N times, keep the fastest")
    ap.add_argument(
        "--models", nargs="+", default=["popularity", "als", "bpr", "vbpr"], help="families"
    )
    ap.add_argument("--engines", nargs="+", default=["shopsight", "implicit", "cornac"])
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="MODEL.K=V")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    sets = parse_sets(args.sets)

    # Same thread budget for every engine (and no nested BLAS pools under implicit).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    warm_up()
    all_runs: list[Run] = []
    sizes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, "blas"):
        work = Path(tmp)
        args.workdir = work
        for name in args.datasets:
            t = time.perf_counter()
            if name == "movielens-100k":
                if not ML100K.exists():
                    print(f"skipping {name}: {ML100K} not found", file=sys.stderr)
                    continue
                ds = load_movielens(work)
            elif name == "synthetic":
                ds = load_synthetic(work, images="vbpr" in args.models)
            else:
                raise SystemExit(f"unknown dataset {name!r} (movielens-100k, synthetic)")
            train, test = user_temporal_split(ds)
            sizes[name] = {
                "users": ds.n_users,
                "items": ds.n_items,
                "interactions": len(ds),
                "train_pairs": int(train.implicit.nnz),
                "prepare_seconds": round(time.perf_counter() - t, 2),
            }
            all_runs += bench_dataset(name, train, test, args, sets)

    rat = ratios(all_runs)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "factors": args.factors,
        "repeat": args.repeat,
        "split": "per user, in time: first 80% of each user's interactions train",
        "metrics": "full ranking minus training items; NDCG@10, Recall@20 over unseen test items",
        "versions": _versions(),
        "datasets": sizes,
        "runs": [r.__dict__ for r in all_runs],
        "ratios": rat,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(all_runs, rat))
    return 0


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("shopsight", "torch", "numpy", "scipy", "implicit", "cornac"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
