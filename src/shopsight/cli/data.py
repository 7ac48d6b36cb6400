"""Data commands: ``ingest``, ``formats``, ``generate``, ``clean``, ``stats``, ``split``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shopsight.cli._common import (
    ConfigOpt,
    JsonOpt,
    SetOpt,
    StoreOpt,
    emit,
    err,
    error,
    friendly_errors,
    group,
    print_clean,
    print_stats,
    status,
)
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import InputError

app = group()


@app.command()
@friendly_errors
def ingest(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files of one dataset (several at once).")
    ] = None,
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
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Read a database instead of files: postgresql://... or mysql://... "
            "(password from the URL or PGPASSWORD; never logged).",
        ),
    ] = None,
    table_names: Annotated[
        list[str] | None,
        typer.Option("--table", help="With --from: a table to read (repeatable)."),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="With --from: a SELECT to read instead.")
    ] = None,
    watermark: Annotated[
        str | None,
        typer.Option(
            "--watermark",
            help="With --from: read only rows whose COLUMN is above the last ingest's highest "
            "(e.g. updated_at); kept in ingest_log.",
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="With --watermark: read every row again.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate and append files (or database rows, --from) to the store; bad rows go to
    quarantine with a reason."""
    from shopsight.config import parse_column_map
    from shopsight.data.formats import ReadOptions
    from shopsight.data.ingest import ingest_files
    from shopsight.data.pseudonym import Pseudonymizer

    defaults = parse_column_map(",".join(default or []), option="--default")
    options = ReadOptions(mapping=parse_column_map(map), target=target, defaults=defaults)
    pz = Pseudonymizer() if pseudonymize else None
    if source is not None:
        from shopsight.cli.live import ingest_from_database

        report = ingest_from_database(
            store, source, table_names, query, watermark, full, files, format, options, pz, as_json
        )
    else:
        if not files:
            raise InputError("ingest: name the files to read, or a database with --from URL")
        with Store(store) as st, status("ingesting...", as_json):
            report = ingest_files(st, files, format=format, options=options, pseudonymizer=pz)
    result = report.to_dict()
    if as_json:
        emit(result, True)
    else:
        table = Table("file", "format", "read", "stored", "duplicates", "quarantined", "s")
        for f in report.files:
            table.add_row(
                f.source if source is not None else Path(f.source).name,
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
    user_range: Annotated[
        str | None,
        typer.Option(
            "--user-range",
            help="START:END (e.g. 0:50000): only these users (whole blocks of block_users), as part files.",
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate the synthetic demo shop (files in the generic formats + ground truth).

    Users stream in blocks (memory: the catalogue and one block); ``--user-range`` writes one
    worker's part (``events-START-END.csv`` ...) with the same rows a full run gives them."""
    from shopsight.config import load_yaml, parse_overrides
    from shopsight.data.synthetic import ShopConfig, generate_shop
    from shopsight.errors import InputError

    cfg = {**load_yaml(config, "shop"), **parse_overrides(set_)}
    for key, val in (("n_users", users), ("n_items", items), ("days", days), ("seed", seed)):
        if val is not None:
            cfg[key] = val
    cfg["images"] = images and cfg.get("images", True)
    shop_cfg = ShopConfig.from_dict(cfg)
    part: tuple[int, int] | None = None
    if user_range is not None:
        lo, sep, hi = user_range.partition(":")
        if not (sep and lo.strip().isdigit() and hi.strip().isdigit()):
            raise InputError(f"--user-range {user_range!r}: expected START:END (user numbers)")
        part = (int(lo), int(hi))
    with status("generating the synthetic shop...", as_json):
        files = generate_shop(out, shop_cfg, user_range=part)
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
    with Store(store, create=False) as st:
        report = clean_store(st, cfg)
    result = report.to_dict()
    emit(result, as_json)
    if not as_json:
        print_clean(result)


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

    with Store(store, read_only=True) as st:
        result = store_stats(st, clean=clean)
    emit(result, as_json)
    if not as_json:
        print_stats(result)


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
    from shopsight.data.support import require_interactions

    with Store(store, read_only=True) as st:
        ds = Dataset.from_store(st)
        require_interactions(st, len(ds), "split")
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
