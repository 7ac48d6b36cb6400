"""``shopsight predict ...``: behaviour prediction.

``shopsight predict fit``       train a funnel predictor, save it to ``<model-dir>/predictor/``
``shopsight predict score``     click / add-to-cart / purchase probabilities for (user, item) pairs
``shopsight predict evaluate``  the side-by-side table (multi-task vs LightGBM vs single-task)
``shopsight predict rating``    rating RMSE with and without text features
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import DataError, InputError

app = typer.Typer(
    help="Behaviour prediction: click / add-to-cart / purchase probabilities, ratings.",
    no_args_is_help=True,
)

ModelDirOpt = Annotated[
    Path, typer.Option("--model-dir", help="Model folder; the predictor lives in <dir>/predictor.")
]
ARCH_CHOICES = ("esmm", "mmoe", "shared_bottom")


@app.command("fit")
@friendly_errors
def fit_cmd(
    model_dir: ModelDirOpt,
    store: StoreOpt = Path(DEFAULT_STORE),
    arch: Annotated[str, typer.Option(help="esmm | mmoe | shared_bottom.")] = "esmm",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (early stopping).")] = 6,
    max_examples: Annotated[
        int | None, typer.Option("--max-examples", min=100, help="Keep the latest N impressions.")
    ] = None,
    content: Annotated[str, typer.Option(help="auto | fused | tfidf | none.")] = "auto",
    calibration: Annotated[
        str, typer.Option(help="temperature | isotonic | none.")
    ] = "temperature",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train a funnel predictor on the store's impressions; save it under the model folder."""
    from shopsight.prediction.predictor import PREDICTOR_SUBDIR, FunnelPredictor

    if arch not in ARCH_CHOICES:
        raise InputError(f"--arch: expected one of {'|'.join(ARCH_CHOICES)}, got {arch!r}")
    pred = FunnelPredictor(
        arch,
        epochs=epochs,
        max_examples=max_examples,
        content=content,
        calibration=calibration,
        seed=seed,
    )
    with Store(store, read_only=True) as st:
        if not as_json:
            err.print(f"training {arch} funnel predictor on {store} ...")
        pred.fit(st)
    out = pred.save(model_dir / PREDICTOR_SUBDIR)
    result = {"predictor": str(out), "arch": arch, **pred.info_, "history": pred.history_}
    emit(result, as_json)
    if not as_json:
        err.print(
            f"saved to {out}: {pred.info_['n_train']:,} training impressions, "
            f"{pred.info_['epochs_run']} epochs, content={pred.content_source_}"
        )


@app.command("score")
@friendly_errors
def score_cmd(
    model_dir: ModelDirOpt,
    user: Annotated[list[str], typer.Option("--user", help="User id (repeat; pairs with --item).")],
    item: Annotated[list[str], typer.Option("--item", help="Item id (repeat; pairs with --user).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Predict as of this time (default: now in data).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Click / add-to-cart / purchase probabilities for (user, item) pairs."""
    from rich.table import Table

    from shopsight.prediction.predictor import FunnelPredictor, predictor_dir

    if len(user) == 1 and len(item) > 1:
        user = user * len(item)
    if len(item) == 1 and len(user) > 1:
        item = item * len(user)
    if len(user) != len(item):
        raise InputError(f"--user/--item: {len(user)} users but {len(item)} items")
    pred = FunnelPredictor.load(predictor_dir(model_dir))
    with Store(store, read_only=True) as st:
        probs = pred.predict(st, user, item, as_of=as_of)
    rows: list[dict[str, Any]] = [
        {"user": u, "item": i, **{t: round(float(p[k]), 6) for t, p in probs.items()}}
        for k, (u, i) in enumerate(zip(user, item, strict=True))
    ]
    emit({"predictions": rows}, as_json)
    if not as_json:
        table = Table("user", "item", *probs)
        for r in rows:
            table.add_row(str(r["user"]), str(r["item"]), *(f"{r[t]:.4f}" for t in probs))
        err.print(table)


@app.command("evaluate")
@friendly_errors
def evaluate_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    models: Annotated[
        str, typer.Option(help="Comma-separated: esmm,mmoe,shared_bottom,single_task,...")
    ] = "esmm,mmoe,shared_bottom,single_task,lightgbm,purchase_on_clicks,item_rate",
    epochs: Annotated[int, typer.Option(min=1)] = 4,
    max_examples: Annotated[int | None, typer.Option("--max-examples", min=100)] = None,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Temporal split (80/10/10): AUC, GAUC, LogLoss, ECE per task for each model."""
    import numpy as np
    from rich.table import Table

    from shopsight.data.support import require_funnel
    from shopsight.prediction.content import item_content
    from shopsight.prediction.evaluate import compare_models
    from shopsight.prediction.examples import TASKS, build_examples

    names = [m.strip() for m in models.split(",") if m.strip()]
    with Store(store, read_only=True) as st:
        require_funnel(st, TASKS)
        ex, vocab = build_examples(st)
        if max_examples is not None and len(ex) > max_examples:
            ex = ex.take(np.arange(len(ex) - max_examples, len(ex)))
        content, source = item_content(st, vocab)
    if len(ex) < 50:
        raise DataError(f"{store}: only {len(ex)} impressions (view events) to learn from")
    report = compare_models(ex, vocab, content, models=names, epochs=epochs, seed=seed)
    report["content_source"] = source
    emit(report, as_json)
    if not as_json:
        table = Table("model", "click AUC", "cart AUC", "purchase AUC", "purchase ECE")
        for name, r in report["models"].items():
            table.add_row(
                name,
                *(
                    f"{r[t]['auc']:.4f}" if t in r else "-"
                    for t in ("click", "add_to_cart", "purchase")
                ),
                f"{r['purchase']['ece']:.4f}" if "purchase" in r else "-",
            )
        err.print(table)


@app.command("rating")
@friendly_errors
def rating_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.05, max=0.5)] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Rating RMSE / MAE: global mean vs biases only vs biases + text and content features."""
    from shopsight.prediction.rating import evaluate_rating

    with Store(store, read_only=True) as st:
        report = evaluate_rating(st, test_fraction=test_fraction, seed=seed)
    emit(report, as_json)
    if not as_json:
        for name, m in report["models"].items():
            err.print(f"{name:12s} RMSE {m['rmse']:.4f}  MAE {m['mae']:.4f}")
