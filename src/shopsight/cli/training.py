"""Model commands: ``train`` a recommender, ``recommend`` from a saved one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shopsight.cli._common import (
    ConfigOpt,
    JsonOpt,
    SetOpt,
    StoreOpt,
    emit,
    err,
    friendly_errors,
    group,
    say_fn,
)
from shopsight.cli._launch import Launch, NnodesOpt, NodeRankOpt, NprocOpt, RdzvOpt, run_job
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import DataError, InputError
from shopsight.training.report import training_line

app = group()


@app.command()
@friendly_errors
def train(
    model: Annotated[str, typer.Option("--model", help="Registry name, e.g. ease, als, sasrec.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    out: Annotated[Path, typer.Option("--out", help="Folder for the trained model.")] = Path(
        "model"
    ),
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed (models that take one).")] = 0,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Seconds of training after which no new epoch starts (epoch-based models); "
            "the best epoch's weights are kept.",
        ),
    ] = None,
    nproc: NprocOpt = 1,
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    rdzv_endpoint: RdzvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on the store's (clean) interactions and save it with its provenance.

    ``--nproc N``: N torch.distributed workers (DDP for torch models, split solves for ALS);
    rank 0 writes the same model folder as one process."""
    from shopsight.models.registry import get_model_class

    get_model_class(model)  # an unknown name fails here, before any worker starts
    if time_budget is not None and not time_budget > 0:
        raise InputError(f"--time-budget {time_budget}: expected a positive number of seconds")
    Store(store, read_only=True).close()  # so does a missing store
    launch = Launch(nproc, nnodes, node_rank, rdzv_endpoint)
    kwargs = {
        "model": model,
        "store": str(store.resolve()),
        "out": str(out.resolve()),
        "config": str(config.resolve()) if config else None,
        "set": list(set_ or []),
        "seed": seed,
        "quiet": as_json,
        "time_budget": time_budget,
    }
    result = run_job("train", kwargs, launch)
    emit(result, as_json)
    if "train_seconds" in result:
        say = say_fn(as_json)
        say(f"saved {model} to {out} in {result['train_seconds']:.1f}s")
        if result.get("training"):
            say(f"training: {training_line(result['training'])}")


@app.command()
@friendly_errors
def recommend(
    user: Annotated[list[str] | None, typer.Option("--user", help="User id (repeatable).")] = None,
    model_dir: Annotated[
        Path, typer.Option("--model-dir", help="A folder written by `train`.")
    ] = Path("model"),
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Also recommend items already seen.")] = False,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store", help="Store with the catalogue, for titles (default ./shopsight.duckdb)."
        ),
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user the model knows, into --out (Parquet).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Parquet file for --all: user_id, rank, item_id, score."),
    ] = None,
    nproc: NprocOpt = 1,
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    rdzv_endpoint: RdzvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-k items for users (unknown users get the model's cold-start ranking), with titles
    from the store's catalogue (``--json``: each item's metadata); or with ``--all --out
    recs.parquet`` every user, split over ``--nproc`` workers."""
    from shopsight.data.catalogue import item_metadata
    from shopsight.models.artifact import load_artifact, privacy_line

    if all_users:
        if user:
            raise InputError("--all and --user: give one or the other")
        if out is None:
            raise InputError("--all needs --out FILE.parquet")
        if not (model_dir / "config.json").exists():
            raise InputError(f"{model_dir}: not a trained model folder (no config.json)")
        kwargs = {
            "model_dir": str(model_dir.resolve()),
            "k": k,
            "include_seen": include_seen,
            "out": str(out.resolve()),
        }
        result = run_job("recommend", kwargs, Launch(nproc, nnodes, node_rank, rdzv_endpoint))
        emit(result, as_json)
        if "rows" in result:
            say_fn(as_json)(
                f"{result['rows']:,} recommendations for {result['users']:,} users -> {out} "
                f"in {result['seconds']:.1f}s"
            )
        return
    if not user:
        raise InputError("give --user ID (repeatable) or --all --out FILE.parquet")
    if nproc > 1 or nnodes > 1:
        raise InputError("--nproc is for --all (a batch over every user)")
    art = load_artifact(model_dir)
    recs: dict[str, dict[str, Any]] = {
        u: {
            "known_user": art.user_index(u) >= 0,
            "items": art.recommend(u, k, exclude_seen=not include_seen),
        }
        for u in user
    }
    catalogue = store if store is not None else Path(DEFAULT_STORE)
    meta: dict[str, dict[str, Any]] = {}
    if catalogue.exists():
        with Store(catalogue, read_only=True) as st:
            meta = item_metadata(st, [it["item_id"] for r in recs.values() for it in r["items"]])
    elif store is not None:
        raise DataError(f"{store}: no such store (titles come from its catalogue)")
    for r in recs.values():
        for it in r["items"]:
            it["item"] = meta.get(str(it["item_id"]))
    emit({"model": art.model.name, "privacy": art.privacy, "recommendations": recs}, as_json)
    if not as_json:
        if art.privacy is not None:
            err.print(privacy_line(art.privacy))
        if not catalogue.exists():
            err.print(f"(no store at {catalogue}: item ids only; pass --store for titles)")
        # Only the columns the catalogue can fill: an all-empty column reads like missing data.
        columns = [c for c in ("title", "category") if any(m.get(c) for m in meta.values())]
        if catalogue.exists() and not columns:
            err.print(f"({catalogue} has no titles or categories for these items: ids only)")
        for u, r in recs.items():
            table = Table(
                "rank",
                "item_id",
                *columns,
                "score",
                title=f"{u}" + ("" if r["known_user"] else " (cold)"),
            )
            for rank, it in enumerate(r["items"], 1):
                m = it["item"] or {}
                table.add_row(
                    str(rank),
                    str(it["item_id"]),
                    *(str(m.get(c) or "") for c in columns),
                    f"{it['score']:.4f}",
                )
            err.print(table)
