"""``shopsight demo``: the whole path on the synthetic shop."""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
from shopsight.data.store import Store
from shopsight.errors import DataError

app = group()


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
    from shopsight.data.clean import CleanConfig, clean_store
    from shopsight.data.dataset import stats as store_stats
    from shopsight.data.ingest import ingest_files
    from shopsight.data.synthetic import ShopConfig, generate_shop

    cfg: dict[str, Any] = {"seed": seed}
    if users is not None:
        cfg["n_users"] = users
    if items is not None:
        cfg["n_items"] = items
    say = say_fn(as_json)
    n_steps = 4 if quick else 8
    say(f"[bold]1/{n_steps} generate[/bold] synthetic shop -> {data}")
    files = generate_shop(data, ShopConfig.from_dict(cfg))
    for suffix in ("", ".wal"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    with Store(store) as st:
        say(f"[bold]2/{n_steps} ingest[/bold] -> {store}")
        ing = ingest_files(st, files.data_files())
        if not as_json:
            ingest_table = Table("file", "read", "stored", "duplicates", "quarantined")
            for f in ing.files:
                ingest_table.add_row(
                    Path(f.source).name,
                    f"{f.read:,}",
                    f"{f.stored:,}",
                    f"{f.duplicates:,}",
                    f"{f.quarantined:,}",
                )
            err.print(ingest_table)
        say(f"[bold]3/{n_steps} clean[/bold]")
        cleaned = clean_store(st, CleanConfig())
        if not as_json:
            print_clean(cleaned.to_dict())
        say(f"[bold]4/{n_steps} stats[/bold] (clean tables)")
        st_stats = store_stats(st, clean=True)
    result = {
        "store": str(store),
        "data": str(data),
        "ingest": ing.to_dict(),
        "clean": cleaned.to_dict(),
        "stats": st_stats,
    }
    if not ing.ok:
        raise DataError(
            "demo ingest failed: " + "; ".join(f.error or "" for f in ing.files if f.error)
        )
    if not as_json:
        print_stats(st_stats)
    if not quick:
        result.update(_demo_models(store, data, out, seed, say, n_steps, tables=not as_json))
    emit(result, as_json)


def _demo_models(
    store: Path,
    data: Path,
    out: Path,
    seed: int,
    say: Callable[..., None],
    n_steps: int,
    tables: bool,
) -> dict[str, Any]:
    """Demo steps after the data: features, a ranked evaluation, a saved model, the predictor,
    the persona report; each prints where its output is."""
    from shopsight.data.dataset import Dataset
    from shopsight.evaluation.experiment import render_table, run_evaluate
    from shopsight.features.pipeline import featurize as run_featurize
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import get_model_class

    out.mkdir(parents=True, exist_ok=True)
    say(f"[bold]5/{n_steps} featurize[/bold] item titles (MiniLM) and images (EfficientNet-Lite0)")
    feats = run_featurize(store, images=data).to_dict()
    say(f"[bold]6/{n_steps} evaluate[/bold] popularity, ItemKNN, EASE, ALS (random 8:1:1)")
    evaluation = run_evaluate(
        store, "random-811", "popularity,itemknn,ease,als", seeds=(seed,), ks="10,20"
    )
    if tables:
        err.print(render_table(evaluation))
    with Store(store, read_only=True) as st:
        ds = Dataset.from_store(st)
        store_fp = st.fingerprint()
    model = get_model_class("ease")().fit(ds)
    model_dir = save_artifact(model, ds, out / "model", seed=seed, store_fingerprint=store_fp)
    say(f"saved EASE to {model_dir}")
    steps: dict[str, Any] = {
        "features": feats,
        "evaluation": {
            "protocol": "random-811",
            "summary": evaluation.get("summary", {}),
        },
        "model": str(model_dir),
    }
    with Store(store) as st:
        say(f"[bold]7/{n_steps} predict[/bold] click / cart / purchase (multi-task funnel)")
        steps["prediction"] = _demo_hook("shopsight.prediction", st, model_dir, say)
        say(f"[bold]8/{n_steps} personas[/bold] profiles, segments and the HTML report")
        steps["personas"] = _demo_hook("shopsight.personas", st, model_dir, say)
    say(
        f"next: [bold]shopsight serve --store {store} --model {model_dir}[/bold] "
        "(recommendations, predictions and personas over HTTP)"
    )
    return steps


def _demo_hook(module: str, st: Store, out: Path, say: Callable[..., None]) -> dict[str, Any]:
    """A later stage's own demo step (``demo_step(store, out_dir) -> dict``), writing beside the
    model where ``shopsight serve`` finds it (``<model>/predictor``, ``<model>/personas``)."""
    step = importlib.import_module(module).demo_step
    summary: dict[str, Any] = step(st, out)
    for k, v in summary.items():
        if isinstance(v, int | float | str):
            say(f"  {k}: {v}")
        elif isinstance(v, dict) and v and all(isinstance(x, float) for x in v.values()):
            say(f"  {k}: " + ", ".join(f"{t} {x:.4f}" for t, x in v.items()))
    return summary
