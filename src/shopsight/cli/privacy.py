"""Privacy commands.

- ``shopsight forget USER --store PATH [--feature-cache DIR] [--path P ...]``
- ``shopsight pseudonymize --store PATH`` (convert a raw-id store), ``--id RAW`` (print
  pseudonyms), ``--recover PSEUDONYM --candidates FILE`` (raw ids, needs the key)
- ``shopsight export TABLE --store PATH --out FILE`` (user ids pseudonymised by default)
- ``shopsight dp-train --store PATH --out DIR --dp-epsilon 4`` (``dp``, or ``--model dp_bpr``;
  epsilon and delta spent reported)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shopsight.cli._common import (
    JsonOpt,
    SetOpt,
    StoreOpt,
    emit,
    err,
    friendly_errors,
    group,
    read_lines,
    require_file,
)
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import DataError, InputError

app = group()


@app.command()
@friendly_errors
def forget(
    user: Annotated[list[str], typer.Argument(help="User id(s) to forget (raw id or pseudonym).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    feature_cache: Annotated[
        Path | None,
        typer.Option("--feature-cache", help="Feature cache folder (default: <store>.features)."),
    ] = None,
    path: Annotated[
        list[Path] | None,
        typer.Option("--path", help="Extra file or folder to purge (model dir, export...)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a user from every table, the feature cache and given paths; audit without the id."""
    from shopsight.privacy.forget import forget_users

    cache = feature_cache
    if cache is None:
        default = store.with_name(store.name + ".features")
        cache = default if default.exists() else None
    for p in path or []:
        require_file(p, "file or folder")
    with Store(store, create=False) as st:
        report = forget_users(st, user, feature_cache=cache, extra_paths=list(path or []))
    emit(report, as_json)
    if not as_json:
        if not report["found"]:
            err.print(
                f"nothing found for {len(user)} id(s) (unknown or already forgotten); "
                f"audit request {report['request_id']}"
            )
        else:
            err.print(
                f"forgot {report['users']} user(s): {report['rows_removed']:,} rows in "
                f"{len(report['tables'])} tables, {len(report['files'])} files; "
                f"audit request {report['request_id']}"
            )
        for t, n in report["tables"].items():
            err.print(f"  {t}: {n:,}")
        for f in report["files"]:
            if f["action"] != "unhandled":
                err.print(f"  {f['action']}: {f['path']}")
        for p in report["unhandled"]:
            err.print(f"[yellow]left as is (names the id outside any user field):[/yellow] {p}")
        if report["residual"]:
            err.print(f"[red]still naming the user:[/red] {report['residual']}")


@app.command()
@friendly_errors
def pseudonymize(
    store: Annotated[
        Path | None, typer.Option("--store", help="Convert this raw-id store to pseudonyms.")
    ] = None,
    id_: Annotated[
        list[str] | None, typer.Option("--id", help="Print the pseudonym of a raw id.")
    ] = None,
    recover: Annotated[
        list[str] | None, typer.Option("--recover", help="Pseudonym to map back to a raw id.")
    ] = None,
    candidates: Annotated[
        Path | None,
        typer.Option("--candidates", help="File of candidate raw ids, one per line (--recover)."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Key file (default: env or config file).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Keyed pseudonyms: convert a store, pseudonymise ids, or recover raw ids with the key."""
    from shopsight.data.pseudonym import Pseudonymizer, load_key
    from shopsight.privacy.exports import pseudonymize_store

    if store is None and not id_ and not recover:
        raise InputError("pseudonymize: give --store, --id or --recover")
    if recover and candidates is None:
        raise InputError("--recover: needs --candidates FILE (the shop's own raw ids)")
    pz = Pseudonymizer(load_key(key_file, create=store is not None or bool(id_)))
    result: dict[str, Any] = {"key_id": pz.key_id}
    if id_:
        result["pseudonyms"] = {r: pz(r) for r in id_}
    if recover:
        assert candidates is not None
        found = pz.recover(recover, read_lines(candidates))
        result["recovered"] = {p: found.get(p) for p in recover}
    if store is not None:
        with Store(store, create=False) as st:
            result["store"] = pseudonymize_store(st, pz)
    emit(result, as_json)
    if not as_json:
        for k, v in result.items():
            err.print(f"{k}: {v}")


@app.command()
@friendly_errors
def export(
    table: Annotated[str, typer.Argument(help="Store table, e.g. events_clean.")],
    out: Annotated[Path, typer.Option("--out", help="Output .parquet or .csv file.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    raw_ids: Annotated[
        bool, typer.Option("--raw-ids", help="Export user ids as stored (no pseudonyms).")
    ] = False,
    include_text: Annotated[
        bool,
        typer.Option(
            "--include-text",
            help="Keep raw-record text (raw, reason, detail) with raw ids replaced by pseudonyms.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a table with user ids pseudonymised, keys that cannot be replayed, and raw text
    left out (the default for everything leaving the store)."""
    from shopsight.privacy.exports import export_table

    with Store(store, read_only=True) as st:
        result = export_table(st, table, out, raw_ids=raw_ids, include_text=include_text)
    emit(result, as_json)
    if not as_json:
        if result["rows"] == 0:
            err.print(f"{table} is empty in {store}: {out} has its columns and no rows")
        else:
            err.print(f"wrote {result['rows']:,} rows of {table} to {out}")


@app.command("dp-train")
@friendly_errors
def dp_train(
    store: StoreOpt = Path(DEFAULT_STORE),
    out: Annotated[Path, typer.Option("--out", help="Folder for the trained model.")] = Path(
        "model"
    ),
    model_name: Annotated[
        str,
        typer.Option(
            "--model",
            help="dp: EASE on a noisy item-item Gram, user-level by default; "
            "dp_bpr: BPR with DP-SGD, one interaction as the unit.",
        ),
    ] = "dp",
    dp_epsilon: Annotated[
        float,
        typer.Option(
            "--dp-epsilon",
            help="Target epsilon. Omitted: 4, the default budget (omitting it never turns "
            "privacy off; --no-dp does).",
        ),
    ] = 4.0,
    dp_delta: Annotated[
        float | None,
        typer.Option("--dp-delta", help="Target delta (default 1/(10 n), n privacy units)."),
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option(
            "--unit", help="dp: privacy unit, user (all of a user's data, default) or interaction."
        ),
    ] = None,
    max_items_per_user: Annotated[
        int | None,
        typer.Option(
            "--max-items-per-user",
            help="dp: items a user contributes (default: 8, 16 or 32 by a private median of "
            "history lengths, 5% of the budget).",
        ),
    ] = None,
    no_dp: Annotated[
        bool,
        typer.Option("--no-dp", help="Same model without noise: NOT private (a reference)."),
    ] = False,
    set_: SetOpt = None,
    max_grad_norm: Annotated[
        float | None, typer.Option("--max-grad-norm", help="dp_bpr: per-example clipping bound.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="dp_bpr: epochs.")] = None,
    factors: Annotated[int | None, typer.Option(help="dp_bpr: latent factors.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="dp_bpr: expected batch size.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="dp_bpr: learning rate.")] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed of what reads no data (initial weights, negatives).")
    ] = 0,
    noise_seed: Annotated[
        int | None,
        typer.Option(
            "--noise-seed",
            help="Seed of the noise and sampling, for tests and audits only: anyone holding it "
            "can redraw the noise (default: secret, from OS entropy, never stored).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a differentially private recommender and report the (epsilon, delta) spent."""
    from shopsight.config import parse_overrides
    from shopsight.data.dataset import Dataset
    from shopsight.models.artifact import privacy_line, save_artifact
    from shopsight.models.base import Recommender
    from shopsight.models.registry import create_model

    bpr_only = {
        "--max-grad-norm": max_grad_norm,
        "--epochs": epochs,
        "--factors": factors,
        "--batch-size": batch_size,
        "--lr": lr,
    }
    extra = parse_overrides(set_)
    model: Recommender
    if model_name == "dp":
        given = [k for k, v in bpr_only.items() if v is not None]
        if given:
            raise InputError(f"{', '.join(given)}: options of --model dp_bpr, not dp")
        unit = unit or "user"
        if unit not in ("user", "interaction"):
            raise InputError(f"--unit {unit!r}: expected user or interaction")
        params: dict[str, Any] = {
            "epsilon": None if no_dp else dp_epsilon,
            "delta": dp_delta,
            "unit": unit,
            "seed": seed,
            "noise_seed": noise_seed,
            **({"max_items_per_user": max_items_per_user} if max_items_per_user else {}),
            **extra,
        }
        try:
            model = create_model("dp", **params)
        except TypeError as exc:
            raise InputError(f"--set: {exc}") from None
    elif model_name == "dp_bpr":
        from shopsight.models.dp import DPBPR, DPConfig

        if unit not in (None, "interaction") or max_items_per_user is not None:
            raise InputError(
                "--unit / --max-items-per-user: options of --model dp (dp_bpr's unit is one "
                "interaction)"
            )
        dp = (
            None
            if no_dp
            else DPConfig(
                epsilon=dp_epsilon,
                delta=dp_delta,
                max_grad_norm=1.0 if max_grad_norm is None else max_grad_norm,
            )
        )
        model = DPBPR.from_config(
            dp,
            factors=factors or 32,
            epochs=epochs or 10,
            batch_size=batch_size or 2048,
            lr=lr or 0.01,
            seed=seed,
            noise_seed=noise_seed,
        )
        if extra:
            model.set_params(**extra)
    else:
        raise InputError(f"--model {model_name!r}: expected dp or dp_bpr")
    with Store(store, read_only=True) as st:
        ds = Dataset.from_store(st)
        fingerprint = st.fingerprint()
    if len(ds) == 0:
        raise DataError(f"{store}: no interactions to train on")
    model.fit(ds)
    save_artifact(model, ds, out, seed=seed, store_fingerprint=fingerprint)
    privacy = model.privacy_  # type: ignore[attr-defined]
    result = {"model": model.name, "out": str(out), "privacy": privacy}
    emit(result, as_json)
    if not as_json:
        err.print(f"saved {model.name} to {out}: {privacy_line(privacy)}")
        if privacy["private"]:
            err.print(
                f"  noise multiplier {privacy['noise_multiplier']:.3f}; noise {privacy['noise']}"
            )
        choice = privacy.get("clip_choice")
        if choice:
            spent = "" if choice["epsilon"] is None else f", epsilon {choice['epsilon']:.2g} of it"
            err.print(
                f"  {choice['chosen']} items per user (of {choice['candidates']}, by a private "
                f"median of history lengths{spent})"
            )
