"""``shopsight serve``: recommendations, predictions, personas and live events over HTTP."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import InputError, MissingFileError

app = group()


@app.command()
@friendly_errors
def serve(
    model: Annotated[
        Path | None, typer.Option("--model", help="A folder written by `train`.")
    ] = None,
    store: StoreOpt = Path(DEFAULT_STORE),
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes (>1 opens the store read-only: no /events).")
    ] = 1,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file", help="File holding the admin API token (else SHOPSIGHT_API_TOKEN)."
        ),
    ] = None,
    read_token_file: Annotated[
        Path | None,
        typer.Option(
            "--read-token-file",
            help="File holding a read-only token: every route but /events and /admin/* "
            "(else SHOPSIGHT_API_READ_TOKEN).",
        ),
    ] = None,
    models_root: Annotated[
        Path | None,
        typer.Option(
            "--models-root",
            help="/admin/reload loads only folders below this one (default: --model's parent).",
        ),
    ] = None,
    ann: Annotated[
        bool, typer.Option("--ann/--exact", help="Approximate top-k (HNSW) for known users.")
    ] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Open the store read-only (no /events).")
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin", help="Allow this browser origin (repeatable; off by default)."
        ),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1 << 20,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help="A/B test: NAME=MODEL_DIR (repeatable, instead of --model); users are split "
            "by a keyed hash of their id.",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Shares of the variants, e.g. 50/50.")
    ] = None,
    impressions: Annotated[
        bool,
        typer.Option(
            "--impressions/--no-impressions",
            help="Log every served list to the store (for `online-report`).",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Serve recommendations, similar items, predictions, personas and live events over HTTP."""
    import uvicorn
    from threadpoolctl import threadpool_limits

    from shopsight.serving.app import CONFIG_ENV, app_from_config, serve_config
    from shopsight.serving.auth import READ_TOKEN_ENV, AccessPolicy, read_token

    Store(store, read_only=True).close()  # a missing or unreadable store fails here, in one line
    from shopsight.serving.variants import parse_variants

    specs = parse_variants(variant, split) if variant else []
    if specs and model is not None:
        raise InputError("serve: give --model or --variant NAME=MODEL_DIR, not both")
    if split is not None and not specs:
        raise InputError("--split needs two or more --variant NAME=MODEL_DIR")
    if model is None and not specs:
        raise InputError("serve: name the model folder with --model (or --variant for A/B)")
    for folder in [s.model_dir for s in specs] if specs else [model]:
        assert folder is not None
        if not (folder / "config.json").is_file():
            raise MissingFileError(f"{folder}: not a trained model folder (run `shopsight train`)")
    model = model if model is not None else specs[0].model_dir
    if workers < 1:
        raise InputError(f"--workers {workers}: expected >= 1")
    # Fail now, not in a worker, on a bad token file or a model outside the models folder.
    token = read_token(token_file)
    read_tok = read_token(read_token_file, env=READ_TOKEN_ENV)
    AccessPolicy(admin_token=token, read_token=read_tok)
    if models_root is not None:
        if not models_root.is_dir():
            raise InputError(f"--models-root {models_root}: no such folder")
        if not model.resolve().is_relative_to(models_root.resolve()):
            raise InputError(f"--model {model}: not below --models-root {models_root}")
    cfg = serve_config(
        store,
        model,
        token_file=token_file,
        read_token_file=read_token_file,
        models_root=models_root,
        ann=ann,
        read_only=read_only or workers > 1,
        cors_origins=cors_origin or (),
        max_body_bytes=max_body_bytes,
        variants=specs,
        impressions=impressions,
    )
    # One scoring call is a small matrix-vector product: extra BLAS threads only add contention
    # between concurrent requests.
    threadpool_limits(1)
    info = {
        "url": f"http://{host}:{port}",
        "store": str(store),
        "model": str(model),
        "workers": workers,
        "read_only": cfg["read_only"],
        "ann": ann,
        "writes_enabled": token is not None and not cfg["read_only"],
        "token_required": token is not None or read_tok is not None,
        "impressions": impressions,
        "variants": [
            {"variant": v.name, "model": str(v.model_dir), "share": v.share} for v in specs
        ],
    }
    if workers > 1:
        os.environ[CONFIG_ENV] = json.dumps(cfg)
        emit(info, as_json)
        if not as_json:
            err.print(f"serving {model} on {info['url']} with {workers} workers (read-only store)")
        uvicorn.run(
            "shopsight.serving.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )
        return
    api = app_from_config(cfg)
    # Everything loaded so far (libraries, model, catalogue) lives as long as the server:
    # freezing it keeps the garbage collector's full passes from walking it mid-request.
    gc.collect()
    gc.freeze()
    emit(info, as_json)
    if not as_json:
        err.print(f"serving {model} on {info['url']} (docs at {info['url']}/docs)")
    uvicorn.run(api, host=host, port=port, log_level=log_level, access_log=False)
