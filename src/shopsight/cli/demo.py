"""``shopsight demo``: the whole path on the synthetic shop (:mod:`shopsight.app.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shopsight.cli._common import (
    JsonOpt,
    StoreOpt,
    emit,
    err,
    friendly_errors,
    group,
    print_clean,
    print_stats,
    say_fn,
)

app = group()


def _show(step: str, result: Any) -> None:
    """Each step's table on stderr."""
    if step == "ingest":
        table = Table("file", "read", "stored", "duplicates", "quarantined")
        for f in result.files:
            table.add_row(
                Path(f.source).name,
                f"{f.read:,}",
                f"{f.stored:,}",
                f"{f.duplicates:,}",
                f"{f.quarantined:,}",
            )
        err.print(table)
    elif step == "clean":
        print_clean(result)
    elif step == "stats":
        print_stats(result)
    elif step == "evaluate":
        from shopsight.evaluation.experiment import render_table

        err.print(render_table(result))


@app.command()
@friendly_errors
def demo(
    store: StoreOpt = Path("demo.duckdb"),
    data: Annotated[Path, typer.Option("--data", help="Folder for the generated shop.")] = Path(
        "demo_shop"
    ),
    users: Annotated[int | None, typer.Option(help="Number of users.")] = None,
    items: Annotated[int | None, typer.Option(help="Number of items.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the model, predictor and report.")
    ] = Path("demo_out"),
    quick: Annotated[
        bool, typer.Option("--quick", help="Stop after the data steps (no models, no report).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The whole path on the synthetic shop: data, features, models, predictions, personas."""
    from shopsight.app.demo import run_demo

    result = run_demo(
        store,
        data,
        out,
        users=users,
        items=items,
        seed=seed,
        quick=quick,
        say=say_fn(as_json),
        show=say_fn(True) if as_json else _show,
    )
    emit(result, as_json)
