"""Evaluation commands: ``evaluate`` models on a protocol, ``tune`` one model's parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group
from shopsight.cli._launch import NnodesOpt, NodeRankOpt, NprocOpt, RdzvOpt
from shopsight.data.store import DEFAULT_STORE

app = group()


@app.command()
@friendly_errors
def evaluate(
    models: Annotated[str, typer.Option("--models", help="Comma-separated registry names.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    protocol: Annotated[
        str, typer.Option("--protocol", help="Named protocol or a YAML protocol file.")
    ] = "leave-one-out",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    metrics: Annotated[str | None, typer.Option(help="e.g. ndcg,recall,hit")] = None,
    ks: Annotated[str | None, typer.Option(help="e.g. 10,20")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Model for the paired significance test.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write .md, .csv or .json.")] = None,
    dataset_name: Annotated[
        str | None,
        typer.Option(
            "--dataset-name",
            help="Name of the dataset (e.g. MovieLens-100K) when its files are not recognised: "
            "published figures are shown beside ours only on the same dataset.",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a model parameter: MODEL.KEY=VALUE, e.g. dp.epsilon=8 (repeatable).",
        ),
    ] = None,
    nproc: NprocOpt = 1,
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    rdzv_endpoint: RdzvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run several models on one protocol: mean, std and a paired test against a baseline.

    ``--nproc N``: each model trained by N workers, its test users split over them, per-user
    values gathered back: the same table as one process."""
    from shopsight.cli._launch import Launch, run_job
    from shopsight.errors import InputError
    from shopsight.evaluation.experiment import render_table

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--seeds {seeds!r}: expected comma-separated integers") from None
    launch = Launch(nproc, nnodes, node_rank, rdzv_endpoint)
    proto = Path(protocol)
    # One process or N: the same job (its test users in the same chunks), the same table.
    result = run_job(
        "evaluate",
        {
            "store": str(store.resolve()),
            "protocol": str(proto.resolve()) if proto.suffix in (".yaml", ".yml") else protocol,
            "models": models,
            "seeds": seed_list,
            "metrics": metrics,
            "ks": ks,
            "baseline": baseline,
            "out": str(out.resolve()) if out else None,
            "dataset_name": dataset_name,
            "quiet": as_json,
            "sets": list(set_ or []),
        },
        launch,
    )
    if "models" not in result:  # another node holds rank 0
        emit(result, as_json)
        return
    emit(result, as_json)
    if not as_json:
        err.print(render_table(result))


@app.command()
@friendly_errors
def tune(
    model: Annotated[str, typer.Option("--model", help="Registry name.")],
    space: Annotated[Path, typer.Option("--space", help="YAML search space.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    trials: Annotated[int, typer.Option(help="Number of trials.")] = 20,
    sampler: Annotated[str, typer.Option(help="tpe | random | grid")] = "tpe",
    protocol: Annotated[
        str, typer.Option(help="Protocol for the validation split.")
    ] = "random-811",
    study: Annotated[
        str | None,
        typer.Option(help="Study file or Optuna storage URL (sqlite:///x.db); resumable."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Best config (YAML) for train.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Optuna search over a model's parameters; resumable; writes the best config."""
    from shopsight.evaluation.tuning import run_tune

    progress = None if as_json else (lambda m: err.print(m, highlight=False))
    result = run_tune(
        store,
        model,
        space,
        trials=trials,
        sampler=sampler,  # type: ignore[arg-type]
        protocol=protocol,
        study_path=study,
        out_config=out,
        progress=progress,
    )
    emit(result, as_json)
    if not as_json:
        err.print({k: v for k, v in result.items() if k != "trials"})
