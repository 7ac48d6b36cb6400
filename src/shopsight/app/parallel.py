"""The heavy stages as data-parallel jobs: ``train``, ``featurize``, ``evaluate``, batch
``recommend``; the same code runs in one process or in every rank ``torchrun`` starts.

``shopsight <command> --nproc N`` (the CLI's launcher, ``shopsight.cli._launch``) writes the
command's arguments to a spec file and runs ``python -m torch.distributed.run ... -m
shopsight.app.parallel SPEC``; every rank opens the store read-only, runs the job, and
global rank 0 writes the command's JSON result for the launcher. Without ``--nproc`` the CLI
calls the same job function in its own process (a world of one), so both give one output.

The interaction log is not loaded once per rank: global rank 0 builds each dataset a job asks
for into a snapshot folder (the log streamed from DuckDB into ``.npy`` files), and every rank
maps that folder read-only, so N ranks on a machine share one copy in the page cache
(:func:`~shopsight.data.dataset.shared_datasets`). The folder is the launcher's temporary
folder on one machine, beside the store on a multi-node run; it is removed after the job.

What each job shards (and what it replicates):

* ``train``: models trained by the :class:`~shopsight.training.trainer.Trainer` (bpr, vbpr,
  lightgcn, freedom, sasrec) run DDP over each global batch (the parameters equal one process's
  up to float summation order); ``als`` splits every user and item solve over the ranks (the
  factors are bit-identical to one process); other models have no data-parallel fit and are
  fitted whole on every rank (identical results). Rank 0 writes the model folder.
* ``featurize``: the items missing from the feature cache are split by the hash of their content;
  each rank encodes its share and writes its own cache shard; rank 0 assembles the output from
  the cache. The cache is keyed by content, so any later run, with any N, reuses every shard.
* ``evaluate``: each model is trained as above; its test users are split by evaluation chunk
  (rank r scores chunks r, r+N, ...), and the per-user values are gathered back in chunk order,
  so means, slices and paired tests are computed from exactly the one-process numbers.
* ``recommend --all``: users are split by batch; each rank writes a part file beside the output,
  rank 0 merges them in user order.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch.distributed as torch_dist

from shopsight import distributed as D
from shopsight.data.dataset import shared_datasets
from shopsight.errors import DataError, InputError, ShopsightError, machine_limit
from shopsight.training.report import training_summary

Job = Callable[[dict[str, Any], D.DistContext], dict[str, Any]]

RECOMMEND_BATCH = 256  # users per scoring batch; the split between ranks is by whole batches


def _say(ctx: D.DistContext, quiet: bool, msg: str) -> None:
    if ctx.is_main and not quiet:
        print(msg, file=sys.stderr, flush=True)


def _fit_mode(model: Any, ctx: D.DistContext) -> str:
    if ctx.world_size == 1:
        return "single"
    if getattr(model, "name", "") == "als":
        return "sharded"
    result = getattr(model, "train_result_", None)
    if result is not None and getattr(result, "world_size", 1) > 1:
        return "ddp"
    return "replicated"


def train_job(kw: dict[str, Any], ctx: D.DistContext) -> dict[str, Any]:
    """Train one registered model on the store's clean interactions; rank 0 saves it."""
    from shopsight.config import load_yaml, parse_overrides
    from shopsight.data.dataset import Dataset
    from shopsight.data.store import Store
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import get_model_class

    model_name, store, out, seed = kw["model"], Path(kw["store"]), Path(kw["out"]), kw["seed"]
    klass = get_model_class(model_name)
    config = Path(kw["config"]) if kw.get("config") else None
    params = {**load_yaml(config, model_name), **parse_overrides(kw.get("set") or [])}
    if "seed" in klass._param_names():
        params.setdefault("seed", seed)
    rec = klass(**params)
    with Store(store, read_only=True) as st:
        ds = Dataset.from_store(st)
        store_fp = st.fingerprint()
    if len(ds) == 0:
        raise DataError(f"{store}: no interactions to train on")
    _say(
        ctx,
        kw.get("quiet", False),
        f"training {model_name} on {len(ds):,} interactions ({ds.n_users:,} users x "
        f"{ds.n_items:,} items)"
        + (f" with {ctx.world_size} processes" if ctx.world_size > 1 else ""),
    )
    t0 = time.perf_counter()
    budget = kw.get("time_budget")
    if budget is not None:
        from shopsight.training.trainer import training_run

        with training_run(time_budget=float(budget)):
            rec.fit(ds)
    else:
        rec.fit(ds)
    seconds = time.perf_counter() - t0
    mode = _fit_mode(rec, ctx)
    run = {"world_size": ctx.world_size, "backend": ctx.backend, "fit": mode}
    if ctx.world_size > 1:  # one snapshot of the log mapped by every rank, or a copy per rank
        run["dataset"] = "shared snapshot" if ds.snapshot is not None else "one copy per rank"
    if ctx.is_main:
        save_artifact(rec, ds, out, seed=seed, store_fingerprint=store_fp, distributed=run)
    D.barrier(ctx)
    return {
        "model": model_name,
        "params": rec.get_params(),
        "out": str(out),
        "train_seconds": round(seconds, 3),
        "dataset": ds.summary() if ctx.is_main else {},  # only rank 0's result is kept
        "distributed": run,
        # epochs run, best epoch, why it stopped, per-epoch history (None: no epoch loop);
        # also saved in the model's config.json (meta.training)
        "training": training_summary(rec),
    }


def featurize_job(kw: dict[str, Any], ctx: D.DistContext) -> dict[str, Any]:
    from shopsight.features.pipeline import featurize

    images = Path(kw["images"]) if kw.get("images") else None
    report = featurize(Path(kw["store"]), images=images, with_images=kw.get("with_images", True))
    out = report.to_dict()
    out["world_size"] = ctx.world_size
    return out


def evaluate_job(kw: dict[str, Any], ctx: D.DistContext) -> dict[str, Any]:
    from shopsight.evaluation.experiment import run_evaluate
    from shopsight.evaluation.ranking import sharded_by_chunks

    quiet = kw.get("quiet", False)
    progress = None if quiet or not ctx.is_main else (lambda m: _say(ctx, False, m))
    with sharded_by_chunks():
        result = run_evaluate(
            kw["store"],
            kw["protocol"],
            kw["models"],
            seeds=kw["seeds"],
            metrics=kw.get("metrics"),
            ks=kw.get("ks"),
            baseline=kw.get("baseline"),
            out=kw.get("out") if ctx.is_main else None,
            progress=progress,
            dataset_name=kw.get("dataset_name"),
            sets=kw.get("sets") or None,
        )
    result["world_size"] = ctx.world_size
    return result


def recommend_all_job(kw: dict[str, Any], ctx: D.DistContext) -> dict[str, Any]:
    """Top-k for every user the model knows, as one Parquet file (user_id, rank, item_id,
    score), in user order; users split over the ranks by batch."""
    from shopsight.models.artifact import load_artifact

    k, out = int(kw["k"]), Path(kw["out"])
    if k < 1:
        raise InputError(f"-k {k}: expected at least 1")
    art = load_artifact(kw["model_dir"])
    n = len(art.user_ids)
    if n == 0:
        raise DataError(f"{kw['model_dir']}: the model knows no users")
    exclude_seen = not kw.get("include_seen", False)
    parts = out.with_name(f".{out.name}.parts")
    parts.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cols: dict[str, list[np.ndarray]] = {"user": [], "rank": [], "item": [], "score": []}
    for start in list(range(0, n, RECOMMEND_BATCH))[ctx.rank :: ctx.world_size]:
        users = np.arange(start, min(n, start + RECOMMEND_BATCH), dtype=np.int64)
        idx, scores = art.model.recommend(users, k, exclude_seen)
        ok = np.isfinite(scores) & (idx >= 0)
        cols["user"].append(np.broadcast_to(users[:, None], idx.shape)[ok])
        cols["rank"].append(np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)[ok])
        cols["item"].append(idx[ok])
        cols["score"].append(scores[ok].astype(np.float32))
    table = pa.table(
        {
            name: pa.array(np.concatenate(v) if v else np.zeros(0, dtype))
            for (name, v), dtype in zip(
                cols.items(), (np.int64, np.int64, np.int64, np.float32), strict=True
            )
        }
    )
    pq.write_table(table, parts / f"rank-{ctx.rank:05d}.parquet")
    D.barrier(ctx)
    rows = 0
    if ctx.is_main:
        merged = pa.concat_tables(
            [pq.read_table(parts / f"rank-{r:05d}.parquet") for r in range(ctx.world_size)]
        )
        order = np.lexsort((merged["rank"].to_numpy(), merged["user"].to_numpy()))
        merged = merged.take(pa.array(order))
        user_ids = pa.array(art.user_ids.tolist(), pa.string())
        item_ids = pa.array(art.item_ids.tolist(), pa.string())
        final = pa.table(
            {
                "user_id": user_ids.take(merged["user"]),
                "rank": merged["rank"].cast(pa.int32()),
                "item_id": item_ids.take(merged["item"]),
                "score": merged["score"],
            }
        )
        tmp = out.with_name(f".{out.name}.tmp")
        pq.write_table(final, tmp)
        os.replace(tmp, out)
        shutil.rmtree(parts, ignore_errors=True)
        rows = final.num_rows
    D.barrier(ctx)
    return {
        "model": art.model.name,
        "out": str(out),
        "users": n,
        "k": k,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 3),
        "world_size": ctx.world_size,
    }


JOBS: dict[str, Job] = {
    "train": train_job,
    "featurize": featurize_job,
    "evaluate": evaluate_job,
    "recommend": recommend_all_job,
}


def run_single(job: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job in this process (a world of one): what the CLI runs without ``--nproc``."""
    return JOBS[job](kwargs, D.current())


def main(argv: list[str] | None = None) -> int:
    """Entry point of every rank: ``python -m shopsight.app.parallel SPEC.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m shopsight.app.parallel SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result_path = Path(spec["result"])
    rank = int(os.environ.get("RANK", "0"))
    try:
        with D.process_group(spec.get("backend")) as ctx, _shared_data(spec, ctx):
            result = JOBS[spec["job"]](spec["kwargs"], ctx)
            if ctx.is_main:
                tmp = result_path.with_name(result_path.name + ".tmp")
                tmp.write_text(json.dumps(result, default=str), encoding="utf-8")
                os.replace(tmp, result_path)
    except ShopsightError as exc:
        text = str(exc).strip()
        _error_file(
            result_path, rank, "input", text.splitlines()[0] if text else type(exc).__name__
        )
        return 2
    except Exception as exc:
        limit = machine_limit(exc)  # out of disk or memory: the machine's limit, not a bug
        if limit is not None:
            _error_file(result_path, rank, "limit", limit)
            return 2
        traceback.print_exc(file=sys.stderr)
        _error_file(result_path, rank, "bug", f"{type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    return 0


@contextmanager
def _shared_data(spec: dict[str, Any], ctx: D.DistContext) -> Iterator[None]:
    """Datasets built once (by global rank 0) into the launcher's shared folder and mapped by
    every rank, instead of one copy of the interaction log per rank; the folder is removed
    after the job (by the launcher too, should a rank fail)."""
    folder = spec.get("shared")
    if ctx.distributed:  # every node's launcher names its own folder: rank 0's is the one
        box = [folder]
        torch_dist.broadcast_object_list(box, src=0)
        folder = box[0]
    if not folder:
        yield
        return
    with shared_datasets(Path(folder), is_main=ctx.is_main):
        yield
    D.barrier(ctx)  # no rank still opening a snapshot
    if ctx.is_main:
        shutil.rmtree(folder, ignore_errors=True)


def _error_file(result_path: Path, rank: int, kind: str, message: str) -> None:
    path = result_path.with_name(f"{result_path.name}.error-{rank}")
    path.write_text(json.dumps({"rank": rank, "kind": kind, "message": message}), "utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
