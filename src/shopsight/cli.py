"""The ``shopsight`` command line: a thin layer over the Python API.

Every command takes ``--json`` and then prints exactly one JSON object on stdout; human
messages, tables and progress go to stderr. Expected failures (bad input, missing store) print
one line naming the file and the problem and exit with status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from shopsight.data.formats import ReadOptions
from shopsight.data.staging import FormatError
from shopsight.data.store import DEFAULT_STORE, Store, StoreError

app = typer.Typer(
    name="shopsight",
    help="From raw shop data to clean store, features, models, personas and a served API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console() -> Console:
    """Messages and tables on stderr. Piped or logged output (CI, ``make demo | tee``) gets
    room for the tables instead of rich's 80-column fallback, which truncates their cells."""
    console = Console(stderr=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=True, width=160)
    return console


err = _console()

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[Path, typer.Option("--store", help="DuckDB store file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


class UsageProblem(Exception):
    """A user-facing problem with the command's arguments (one-line message)."""


def friendly_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (
            FormatError,
            StoreError,
            UsageProblem,
            FileNotFoundError,
            ValueError,
            OSError,
        ) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error(msg)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def error(msg: str) -> None:
    """One unwrapped line on stderr (a terminal's width must not split the message)."""
    sys.stderr.write(f"error: {msg}\n")


def emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")


def parse_map(spec: str | None) -> dict[str, str]:
    """``user=customer_id,item=sku`` -> canonical -> column (short names allowed)."""
    short = {
        "user": "user_id",
        "item": "item_id",
        "type": "event_type",
        "event": "event_type",
        "time": "timestamp",
        "ts": "timestamp",
        "session": "session_id",
    }
    out: dict[str, str] = {}
    if not spec:
        return out
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise UsageProblem(f"--map: expected canonical=column pairs, got {part!r}")
        k, v = (x.strip() for x in part.split("=", 1))
        out[short.get(k, k)] = v
    return out


@app.command()
@friendly_errors
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Files of one dataset (several at once).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    format: Annotated[
        str | None, typer.Option("--format", help="Override auto-detection (see `formats`).")
    ] = None,
    map: Annotated[
        str | None,
        typer.Option("--map", help="Column mapping, e.g. user=customer_id,item=sku."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="events|items|reviews|users for generic files.")
    ] = None,
    default: Annotated[
        list[str] | None,
        typer.Option("--default", help="Constant for a missing column, e.g. event_type=purchase."),
    ] = None,
    pseudonymize: Annotated[
        bool,
        typer.Option(
            "--pseudonymize",
            help="Store keyed pseudonyms instead of raw user ids (key: SHOPSIGHT_PSEUDONYM_KEY).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate and append files to the store; bad rows go to quarantine with a reason."""
    from shopsight.data.ingest import ingest_files
    from shopsight.privacy.pseudonym import Pseudonymizer

    defaults = dict(parse_map(",".join(default or [])))
    options = ReadOptions(mapping=parse_map(map), target=target, defaults=defaults)
    pz = Pseudonymizer() if pseudonymize else None
    with Store(store) as st, err.status("ingesting...") if not as_json else _null():
        report = ingest_files(st, files, format=format, options=options, pseudonymizer=pz)
    result = report.to_dict()
    if as_json:
        emit(result, True)
    else:
        table = Table("file", "format", "read", "stored", "duplicates", "quarantined", "s")
        for f in report.files:
            table.add_row(
                Path(f.source).name,
                f.format or "-",
                f"{f.read:,}",
                f"{f.stored:,}",
                f"{f.duplicates:,}",
                f"{f.quarantined:,}",
                f"{f.seconds:.2f}",
            )
        t = report.totals()
        table.add_row(
            "total",
            "",
            f"{t['read']:,}",
            f"{t['stored']:,}",
            f"{t['duplicates']:,}",
            f"{t['quarantined']:,}",
            "",
        )
        err.print(table)
        from shopsight.data.ingest import derived_lines

        for line in derived_lines(report):
            err.print(line, highlight=False)
    for f in report.files:
        if f.error:
            error(f.error)
    if not report.ok:
        raise typer.Exit(2)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


@app.command()
@friendly_errors
def formats(as_json: JsonOpt = False) -> None:
    """List the input formats shopsight reads."""
    from shopsight.data.formats import FORMATS, get_format

    get_format("csv")  # loads every built-in format
    rows = [
        {"name": f.name, "description": f.description}
        for f in sorted(FORMATS.values(), key=lambda f: f.name)
    ]
    if as_json:
        emit({"formats": rows}, True)
        return
    table = Table("format", "what it reads")
    for r in rows:
        table.add_row(r["name"], r["description"])
    err.print(table)


SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config file.")]


@app.command()
@friendly_errors
def generate(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the synthetic shop's files.")
    ] = Path("synthetic_shop"),
    users: Annotated[int | None, typer.Option(help="Number of users (bots included).")] = None,
    items: Annotated[int | None, typer.Option(help="Number of catalogue items.")] = None,
    days: Annotated[int | None, typer.Option(help="Days of history.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="Render item images.")
    ] = True,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate the synthetic demo shop (files in the generic formats + ground truth)."""
    from shopsight.config import load_yaml, parse_overrides
    from shopsight.data.synthetic import ShopConfig, generate_shop

    cfg = {**load_yaml(config, "shop"), **parse_overrides(set_)}
    for key, val in (("n_users", users), ("n_items", items), ("days", days), ("seed", seed)):
        if val is not None:
            cfg[key] = val
    cfg["images"] = images and cfg.get("images", True)
    shop_cfg = ShopConfig.from_dict(cfg)
    with err.status("generating the synthetic shop...") if not as_json else _null():
        files = generate_shop(out, shop_cfg)
    result = {
        "out": str(out),
        "files": [str(p) for p in files.data_files()],
        "ground_truth": str(files.ground_truth),
        "config": shop_cfg.to_dict(),
    }
    emit(result, as_json)
    if not as_json:
        err.print(f"wrote {len(result['files'])} files and ground truth to {out}")


@app.command()
@friendly_errors
def clean(
    store: StoreOpt = Path(DEFAULT_STORE),
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the *_clean tables from the raw ones (duplicates, bots, outlier prices, k-core)."""
    from shopsight.config import load_yaml, parse_overrides
    from shopsight.data.clean import CleanConfig, clean_store

    cfg = CleanConfig.from_dict({**load_yaml(config, "clean"), **parse_overrides(set_)})
    with Store(_existing(store)) as st:
        report = clean_store(st, cfg)
    result = report.to_dict()
    emit(result, as_json)
    if not as_json:
        _print_clean(result)


def _print_clean(result: dict[str, Any]) -> None:
    table = Table("step", "table", "removed", "detail")
    for step in result.get("steps", []):
        detail = step.get("detail", {})
        short = ", ".join(f"{k}={v}" for k, v in detail.items() if not isinstance(v, list | dict))
        table.add_row(step["step"], step["table"], f"{step['removed']:,}", short[:80])
    err.print(table)
    before, after = result.get("before", {}), result.get("after", {})
    err.print(
        "rows kept: " + "; ".join(f"{t} {before[t]:,} -> {after.get(t, 0):,}" for t in before),
        highlight=False,
    )
    types = result.get("event_types") or {}
    if types:
        err.print(
            "events by type: " + "; ".join(f"{t} {a:,} -> {b:,}" for t, (a, b) in types.items()),
            highlight=False,
        )


def _existing(store: Path) -> Path:
    if not store.exists():
        raise StoreError(f"{store}: no such store (run `shopsight ingest --store {store} FILE...`)")
    return store


@app.command()
@friendly_errors
def stats(
    store: StoreOpt = Path(DEFAULT_STORE),
    clean: Annotated[
        bool, typer.Option("--clean/--raw", help="Describe clean or raw tables.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Counts, funnel, sparsity and time range per table."""
    from shopsight.data.dataset import stats as store_stats

    with Store(_existing(store), read_only=True) as st:
        result = store_stats(st, clean=clean)
    emit(result, as_json)
    if not as_json:
        _print_stats(result)


def _print_stats(result: dict[str, Any]) -> None:
    """Scalars in one table; each list of records (funnel, quarantine reasons) in its own."""
    scalars: list[tuple[str, str]] = []
    lists: list[tuple[str, list[dict[str, Any]]]] = []

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            lists.append((prefix, obj))
        elif isinstance(obj, float):
            scalars.append((prefix, f"{obj:.4g}"))
        elif isinstance(obj, int) and not isinstance(obj, bool):
            scalars.append((prefix, f"{obj:,}"))
        else:
            scalars.append((prefix, str(obj)))

    walk("", result)
    table = Table("statistic", "value")
    for k, v in scalars:
        table.add_row(k, v)
    err.print(table)
    for name, records in lists:
        sub = Table(*records[0].keys(), title=name)
        for r in records:
            sub.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()))
        err.print(sub)


@app.command()
@friendly_errors
def split(
    store: StoreOpt = Path(DEFAULT_STORE),
    method: Annotated[
        str,
        typer.Option(
            help="random | stratified | temporal | leave_last_out | cold_item | cold_user | kfold"
        ),
    ] = "random",
    out: Annotated[Path, typer.Option("--out", help="Where to save the split (.npz).")] = Path(
        "split.npz"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Split the interactions into train / valid / test and save the row indices."""
    from shopsight.config import parse_overrides
    from shopsight.data.dataset import Dataset
    from shopsight.data.split import kfold_split, make_split

    params = parse_overrides(set_)
    with Store(_existing(store), read_only=True) as st:
        ds = Dataset.from_store(st)
    results = []
    if method == "kfold":
        folds = kfold_split(int(params.pop("n_folds", 5)), user=ds.user, seed=seed, **params)
        for i, sp_ in enumerate(folds):
            path = out.with_name(f"{out.stem}.fold{i}{out.suffix or '.npz'}")
            sp_.save(path)
            results.append({**sp_.to_dict(), "path": str(path)})
    else:
        if method in ("random", "stratified", "cold_item", "cold_user"):
            params.setdefault("seed", seed)
        sp_ = make_split(method, ds, **params)
        sp_.validate(len(ds))
        sp_.save(out)
        results.append({**sp_.to_dict(), "path": str(out)})
    result = {"dataset": ds.fingerprint, "interactions": len(ds), "splits": results}
    emit(result, as_json)
    if not as_json:
        for r in results:
            err.print(f"{r['name']}: {r['sizes']} -> {r['path']}")


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
    say = (lambda *_: None) if as_json else err.print
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
            _print_clean(cleaned.to_dict())
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
        raise UsageProblem(
            "demo ingest failed: " + "; ".join(f.error or "" for f in ing.files if f.error)
        )
    if not as_json:
        _print_stats(st_stats)
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
    import importlib

    step = importlib.import_module(module).demo_step
    summary: dict[str, Any] = step(st, out)
    for k, v in summary.items():
        if isinstance(v, int | float | str):
            say(f"  {k}: {v}")
        elif isinstance(v, dict) and v and all(isinstance(x, float) for x in v.values()):
            say(f"  {k}: " + ", ".join(f"{t} {x:.4f}" for t, x in v.items()))
    return summary


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
    as_json: JsonOpt = False,
) -> None:
    """Train a model on the store's (clean) interactions and save it with its provenance."""
    import time

    from shopsight.config import load_yaml, parse_overrides
    from shopsight.data.dataset import Dataset
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import get_model_class

    klass = get_model_class(model)
    params = {**load_yaml(config, model), **parse_overrides(set_)}
    if "seed" in klass._param_names():
        params.setdefault("seed", seed)
    rec = klass(**params)
    with Store(_existing(store), read_only=True) as st:
        ds = Dataset.from_store(st)
        store_fp = st.fingerprint()
    if len(ds) == 0:
        raise UsageProblem(f"{store}: no interactions to train on")
    say = (lambda *_: None) if as_json else err.print
    say(
        f"training {model} on {len(ds):,} interactions ({ds.n_users:,} users x {ds.n_items:,} items)"
    )
    t0 = time.perf_counter()
    rec.fit(ds)
    seconds = time.perf_counter() - t0
    save_artifact(rec, ds, out, seed=seed, store_fingerprint=store_fp)
    result = {
        "model": model,
        "params": rec.get_params(),
        "out": str(out),
        "train_seconds": round(seconds, 3),
        "dataset": ds.summary(),
    }
    emit(result, as_json)
    say(f"saved {model} to {out} in {seconds:.1f}s")


@app.command()
@friendly_errors
def recommend(
    user: Annotated[list[str], typer.Option("--user", help="User id (repeatable).")],
    model_dir: Annotated[
        Path, typer.Option("--model-dir", help="A folder written by `train`.")
    ] = Path("model"),
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Also recommend items already seen.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Top-k items for users (unknown users get the model's cold-start ranking)."""
    from shopsight.models.artifact import load_artifact

    art = load_artifact(model_dir)
    recs: dict[str, dict[str, Any]] = {
        u: {
            "known_user": art.user_index(u) >= 0,
            "items": art.recommend(u, k, exclude_seen=not include_seen),
        }
        for u in user
    }
    emit({"model": art.model.name, "recommendations": recs}, as_json)
    if not as_json:
        for u, r in recs.items():
            table = Table(
                "rank", "item_id", "score", title=f"{u}" + ("" if r["known_user"] else " (cold)")
            )
            for rank, it in enumerate(r["items"], 1):
                table.add_row(str(rank), it["item_id"], f"{it['score']:.4f}")
            err.print(table)


@app.command()
@friendly_errors
def featurize(
    store: StoreOpt = Path(DEFAULT_STORE),
    images: Annotated[
        Path | None, typer.Option("--images", help="Folder holding local copies of item images.")
    ] = None,
    with_images: Annotated[bool, typer.Option("--images-on/--no-images")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Embed item text (MiniLM) and images (EfficientNet-Lite0); only new or changed items."""
    from shopsight.features.pipeline import featurize as run_featurize

    with err.status("featurizing...") if not as_json else _null():
        report = run_featurize(_existing(store), images=images, with_images=with_images)
    result = report.to_dict()
    emit(result, as_json)
    if not as_json:
        table = Table("modality", "encoder", "computed", "reused", "masked")
        for name in ("text", "image"):
            m = result.get(name)
            if m:
                table.add_row(
                    name, m["encoder"], str(m["computed"]), str(m["reused"]), str(m["masked"])
                )
        err.print(table)
        err.print(f"{result['items']:,} items -> {result['output']} in {result['seconds']:.1f}s")


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
    as_json: JsonOpt = False,
) -> None:
    """Run several models on one protocol: mean, std and a paired test against a baseline."""
    from shopsight.evaluation.experiment import render_table, run_evaluate

    progress = None if as_json else (lambda m: err.print(m, highlight=False))
    result = run_evaluate(
        _existing(store),
        protocol,
        models,
        seeds=[int(x) for x in seeds.split(",") if x.strip()],
        metrics=metrics,
        ks=ks,
        baseline=baseline,
        out=out,
        progress=progress,
        dataset_name=dataset_name,
    )
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
    study: Annotated[Path | None, typer.Option(help="Study file (resumable).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Best config (YAML) for train.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Optuna search over a model's parameters; resumable; writes the best config."""
    from shopsight.evaluation.tuning import run_tune

    progress = None if as_json else (lambda m: err.print(m, highlight=False))
    result = run_tune(
        _existing(store),
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


# Later stages keep their commands beside their code; importing them registers them on ``app``.
import shopsight.explain.commands  # noqa: E402
import shopsight.personas.commands  # noqa: E402
import shopsight.prediction.commands  # noqa: E402
import shopsight.privacy.commands  # noqa: E402
import shopsight.serving.commands  # noqa: E402, F401


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    # Under `python -m`, this file is `__main__` while the stages register their commands on the
    # imported `shopsight.cli`: run that one.
    from shopsight.cli import main as _main

    _main()
