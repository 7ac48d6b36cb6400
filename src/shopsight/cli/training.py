"""Model commands: ``train`` a recommender, ``recommend`` from a saved one."""

from __future__ import annotations

import time
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
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import DataError

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
    as_json: JsonOpt = False,
) -> None:
    """Train a model on the store's (clean) interactions and save it with its provenance."""
    from shopsight.config import load_yaml, parse_overrides
    from shopsight.data.dataset import Dataset
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import get_model_class

    klass = get_model_class(model)
    params = {**load_yaml(config, model), **parse_overrides(set_)}
    if "seed" in klass._param_names():
        params.setdefault("seed", seed)
    rec = klass(**params)
    with Store(store, read_only=True) as st:
        ds = Dataset.from_store(st)
        store_fp = st.fingerprint()
    if len(ds) == 0:
        raise DataError(f"{store}: no interactions to train on")
    say = say_fn(as_json)
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
    store: Annotated[
        Path | None,
        typer.Option(
            "--store", help="Store with the catalogue, for titles (default ./shopsight.duckdb)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-k items for users (unknown users get the model's cold-start ranking), with titles
    from the store's catalogue (``--json``: each item's metadata)."""
    from shopsight.data.catalogue import item_metadata
    from shopsight.models.artifact import load_artifact, privacy_line

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
        if not meta:
            err.print(f"(no catalogue at {catalogue}: item ids only; pass --store for titles)")
        for u, r in recs.items():
            table = Table(
                "rank",
                "item_id",
                "title",
                "category",
                "score",
                title=f"{u}" + ("" if r["known_user"] else " (cold)"),
            )
            for rank, it in enumerate(r["items"], 1):
                m = it["item"] or {}
                table.add_row(
                    str(rank),
                    str(it["item_id"]),
                    str(m.get("title") or ""),
                    str(m.get("category") or ""),
                    f"{it['score']:.4f}",
                )
            err.print(table)
