"""``shopsight explain``: a user's recommendations, each with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group
from shopsight.data.store import DEFAULT_STORE

app = group()


@app.command()
@friendly_errors
def explain(
    user: Annotated[str, typer.Option("--user", help="User id whose recommendations to explain.")],
    model: Annotated[Path, typer.Option("--model", help="A model folder written by `train`.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    k: Annotated[int, typer.Option("-k", help="How many recommendations.")] = 10,
    top: Annotated[int, typer.Option("--top", help="Past items listed per recommendation.")] = 3,
    method: Annotated[
        str, typer.Option("--method", help="loo (any model) or gradient (SASRec).")
    ] = "loo",
    as_json: JsonOpt = False,
) -> None:
    """Recommendations for a user with the reason for each: past items, modalities, one line."""
    from shopsight.app.explain import explain_user

    result = explain_user(store, model, user, k=k, top=top, method=method)  # type: ignore[arg-type]
    emit(result, as_json)
    if not as_json:
        table = Table("rank", "item", "score", "why", "text/image/behaviour", title=user)
        for r in result["recommendations"]:
            mod = r["modalities"]
            table.add_row(
                str(r["rank"]),
                r["title"] or r["item_id"],
                f"{r['score']:.3f}",
                r["reason"],
                f"{mod['text']:.2f}/{mod['image']:.2f}/{mod['behaviour']:.2f}",
            )
        err.print(table)
