"""Persona commands.

``shopsight personas``  profiles + segments -> self-contained HTML report (and a saved folder)
``shopsight audience``  users most likely to buy a category / item, or lookalikes of a seed list
``shopsight dashboard`` the live dashboard alone under uvicorn
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group, read_lines
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import InputError

app = group()


@app.command()
@friendly_errors
def personas(
    store: StoreOpt = Path(DEFAULT_STORE),
    out: Annotated[Path, typer.Option("--out", help="The HTML report to write.")] = Path(
        "personas.html"
    ),
    save: Annotated[
        Path | None, typer.Option("--save", help="Also save the personas to this folder.")
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", help="Number of segments (default: by silhouette).")
    ] = None,
    k_min: Annotated[int, typer.Option("--k-min", help="Smallest segment shown (privacy).")] = 20,
    small: Annotated[str, typer.Option(help="Small segments: merge | suppress.")] = "merge",
    method: Annotated[str, typer.Option(help="kmeans | hdbscan.")] = "kmeans",
    projection: Annotated[str, typer.Option(help="2-D map: pca | tsne.")] = "pca",
    model_dir: Annotated[
        Path | None,
        typer.Option("--model-dir", help="Trained recommender (next category; its predictor/)."),
    ] = None,
    user_pages: Annotated[int, typer.Option(help="Sampled users given a page.")] = 30,
    png: Annotated[
        Path | None, typer.Option("--png", help="Folder for PNG screenshots of the charts.")
    ] = None,
    features: Annotated[
        bool, typer.Option("--features/--no-features", help="Use the item feature cache.")
    ] = True,
    time_stability: Annotated[
        bool, typer.Option("--time-stability", help="Also compare segments of the two time halves.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Profiles and segments of every user -> one self-contained HTML report."""
    from shopsight.personas.core import build_personas
    from shopsight.personas.report import export_pngs, write_report
    from shopsight.personas.segments import SegmentConfig

    if small not in ("merge", "suppress"):
        raise InputError(f"--small: expected merge or suppress, got {small!r}")
    if method not in ("kmeans", "hdbscan"):
        raise InputError(f"--method: expected kmeans or hdbscan, got {method!r}")
    if projection not in ("pca", "tsne"):
        raise InputError(f"--projection: expected pca or tsne, got {projection!r}")
    if k is not None and k < 1:
        raise InputError(f"--k: expected >= 1, got {k}")
    scfg = SegmentConfig(
        method=method,  # type: ignore[arg-type]
        k=k,
        k_min=k_min,
        small=small,  # type: ignore[arg-type]
        seed=seed,
        time_halves=time_stability,
    )
    from shopsight.app.models import load_model, load_predictor

    artifact = None if model_dir is None else load_model(model_dir)
    predictor = load_predictor(model_dir)
    from shopsight.progress import task

    with Store(store, read_only=True) as st, task("personas") as bar:

        def say(msg: str) -> None:
            bar.update(info=msg)
            if not as_json:
                err.print(msg, highlight=False)

        p = build_personas(
            st,
            segment_config=scfg,
            projection=projection,
            artifact=artifact,
            predictor=predictor,
            use_features=features,
            progress=say,
        )
        bar.update(info="report")
        report = write_report(p, out, n_user_pages=user_pages, seed=seed)
    result: dict[str, Any] = {"report": str(report), **p.summary()}
    if save is not None:
        result["saved"] = str(p.save(save))
    if png is not None:
        result["png"] = [str(x) for x in export_pngs(report, png)]
    emit(result, as_json)
    if not as_json:
        missing = [k for k, v in result.get("signals", {}).items() if not v["available"]]
        if missing:
            err.print("  not in this data: " + ", ".join(missing), highlight=False)
        for s in result["segments"]:
            value = f", {s['value_share']:.0%} of value" if s.get("value_share") is not None else ""
            stab = f" — {s['stability_warning']}" if s.get("stability_warning") else ""
            err.print(
                f"  {s['id']}: {s['name']} — {s['size']:,} users{value}{stab}", highlight=False
            )
        err.print(f"report -> {report}")


@app.command()
@friendly_errors
def audience(
    store: StoreOpt = Path(DEFAULT_STORE),
    personas_dir: Annotated[
        Path | None, typer.Option("--personas", help="Saved personas (else built from the store).")
    ] = None,
    category: Annotated[str | None, typer.Option(help="Target category (full path).")] = None,
    item: Annotated[str | None, typer.Option(help="Target item id (needs --model-dir).")] = None,
    seed_user: Annotated[
        list[str] | None,
        typer.Option("--seed-user", help="Seed user id or pseudonym (repeatable)."),
    ] = None,
    seed_file: Annotated[
        Path | None, typer.Option("--seed-file", help="File with one seed user id per line.")
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", help="Trained recommender for its scores.")
    ] = None,
    size: Annotated[int, typer.Option(help="Audience size.")] = 1000,
    out: Annotated[Path | None, typer.Option("--out", help="Export .csv or .parquet.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Users most likely to buy a category or item, or lookalikes of seed users."""
    from shopsight.personas.audience import (
        category_audience,
        item_audience,
        lookalike_audience,
        segment_vectors,
    )
    from shopsight.personas.core import Personas, build_personas

    seeds = list(seed_user or [])
    if seed_file is not None:
        seeds += read_lines(seed_file)
    chosen = sum(x is not None and x != [] for x in (category, item, seeds or None))
    if chosen != 1:
        raise InputError("give exactly one of --category, --item, --seed-user/--seed-file")
    if size < 1:
        raise InputError(f"--size: expected >= 1, got {size}")
    if item is not None and model_dir is None:
        raise InputError("--item: needs --model-dir (recommender scores)")
    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"{out}: expected a .csv or .parquet file name")
    from shopsight.app.models import load_model

    artifact = None if model_dir is None else load_model(model_dir)
    with Store(store, read_only=True) as st:
        p = Personas.load(personas_dir) if personas_dir is not None else build_personas(st)
        if category is not None:
            aud = category_audience(p, category, size=size, artifact=artifact, store=st)
        elif item is not None:
            aud = item_audience(p, item, artifact=artifact, store=st, size=size)
        else:
            aud = lookalike_audience(p, seeds, segment_vectors(p), size=size)
    result = aud.summary()
    if out is not None:
        result["out"] = str(aud.export(out))
    result["top"] = aud.users[:10]
    emit(result, as_json)
    if not as_json:
        err.print(
            f"{aud.target}: {aud.size:,} users, expected response {aud.expected_response:.1f}"
            + (f" -> {out}" if out else "")
        )


@app.command()
@friendly_errors
def dashboard(
    store: StoreOpt = Path(DEFAULT_STORE),
    personas_dir: Annotated[
        Path | None, typer.Option("--personas", help="Saved personas (else built from the store).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8050,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Require this token (else SHOPSIGHT_API_TOKEN / SHOPSIGHT_API_READ_TOKEN); "
            "browsers sign in at /login. Needed to listen beyond loopback.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve the personas dashboard alone (uvicorn), searchable by user id."""
    import uvicorn

    from shopsight.personas.core import Personas, build_personas
    from shopsight.personas.dashboard import create_app
    from shopsight.serving.auth import READ_TOKEN_ENV, AccessPolicy, read_token

    policy = AccessPolicy(
        admin_token=read_token(token_file), read_token=read_token(None, env=READ_TOKEN_ENV)
    )
    if not policy.enabled and host not in ("127.0.0.1", "localhost", "::1"):
        raise InputError(
            f"--host {host}: the dashboard shows every user's pseudonym; give --token-file "
            "(or SHOPSIGHT_API_TOKEN) to listen beyond loopback"
        )

    if personas_dir is not None:
        p = Personas.load(personas_dir)
    else:
        with Store(store, read_only=True) as st:
            p = build_personas(st)
    emit({"url": f"http://{host}:{port}/dashboard", "users": len(p)}, as_json)
    if not as_json:
        err.print(f"dashboard on http://{host}:{port}/dashboard")
    api = create_app(p)
    if policy.enabled:
        from shopsight.serving.routes.login import protect

        protect(api, policy)
    uvicorn.run(api, host=host, port=port, log_level="warning")
