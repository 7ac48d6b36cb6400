"""The demo pipeline: the whole path on the synthetic shop, step by step.

``shopsight demo`` runs it and prints each step's table; :func:`run_demo` does the work and
hands each step's result to ``show(step, result)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shopsight.data.store import Store
from shopsight.errors import DataError

Say = Callable[..., None]
Show = Callable[[str, Any], None]


def _quiet(*_a: Any, **_k: Any) -> None:
    return None


def run_demo(
    store: Path,
    data: Path,
    out: Path,
    *,
    users: int | None = None,
    items: int | None = None,
    seed: int = 0,
    quick: bool = False,
    say: Say = _quiet,
    show: Show = _quiet,
) -> dict[str, Any]:
    """Generate, ingest, clean and describe the synthetic shop; unless ``quick``, also
    featurize, evaluate, save a model and run the prediction and persona steps beside it."""
    from shopsight.data.clean import CleanConfig, clean_store
    from shopsight.data.dataset import stats as store_stats
    from shopsight.data.ingest import ingest_files
    from shopsight.data.synthetic import ShopConfig, generate_shop

    cfg: dict[str, Any] = {"seed": seed}
    if users is not None:
        cfg["n_users"] = users
    if items is not None:
        cfg["n_items"] = items
    n_steps = 4 if quick else 8
    say(f"[bold]1/{n_steps} generate[/bold] synthetic shop -> {data}")
    files = generate_shop(data, ShopConfig.from_dict(cfg))
    for suffix in ("", ".wal"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    with Store(store) as st:
        say(f"[bold]2/{n_steps} ingest[/bold] -> {store}")
        ing = ingest_files(st, files.data_files())
        show("ingest", ing)
        say(f"[bold]3/{n_steps} clean[/bold]")
        cleaned = clean_store(st, CleanConfig())
        show("clean", cleaned.to_dict())
        say(f"[bold]4/{n_steps} stats[/bold] (clean tables)")
        st_stats = store_stats(st, clean=True)
    result: dict[str, Any] = {
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
    show("stats", st_stats)
    if not quick:
        result.update(_demo_models(store, data, out, seed, say, show, n_steps))
    return result


def _demo_models(
    store: Path, data: Path, out: Path, seed: int, say: Say, show: Show, n_steps: int
) -> dict[str, Any]:
    """Demo steps after the data: features, a ranked evaluation, a saved model, the predictor,
    the persona report; each says where its output is."""
    from shopsight.data.dataset import Dataset
    from shopsight.evaluation.experiment import run_evaluate
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
    show("evaluate", evaluation)
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


def _demo_hook(module: str, st: Store, out: Path, say: Say) -> dict[str, Any]:
    """A stage's own demo step (``demo_step(store, out_dir) -> dict``), writing beside the
    model where ``shopsight serve`` finds it (``<model>/predictor``, ``<model>/personas``)."""
    step = importlib.import_module(module).demo_step
    summary: dict[str, Any] = step(st, out)
    for k, v in summary.items():
        if isinstance(v, int | float | str):
            say(f"  {k}: {v}")
        elif isinstance(v, dict) and v and all(isinstance(x, float) for x in v.values()):
            say(f"  {k}: " + ", ".join(f"{t} {x:.4f}" for t, x in v.items()))
    return summary
