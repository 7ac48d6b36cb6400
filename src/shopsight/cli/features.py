"""``shopsight featurize``: item text and image embeddings into the feature cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group, status
from shopsight.cli._launch import Launch, NnodesOpt, NodeRankOpt, NprocOpt, RdzvOpt, run_job
from shopsight.data.store import DEFAULT_STORE
from shopsight.errors import MissingFileError

app = group()


@app.command()
@friendly_errors
def featurize(
    store: StoreOpt = Path(DEFAULT_STORE),
    images: Annotated[
        Path | None, typer.Option("--images", help="Folder holding local copies of item images.")
    ] = None,
    with_images: Annotated[bool, typer.Option("--images-on/--no-images")] = True,
    nproc: NprocOpt = 1,
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    rdzv_endpoint: RdzvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed item text (MiniLM) and images (EfficientNet-Lite0); only new or changed items.

    ``--nproc N``: the missing items split by content hash over N workers, each writing its own
    cache shard (reused by any later run, whatever its N)."""
    from shopsight.data.store import Store

    Store(store, read_only=True).close()  # a missing store fails before any worker starts
    if images is not None and not images.is_dir():
        raise MissingFileError(f"{images}: no such image folder")
    kwargs = {
        "store": str(store.resolve()),
        "images": str(images.resolve()) if images else None,
        "with_images": with_images,
    }
    with status("featurizing...", as_json or nproc > 1):
        result = run_job("featurize", kwargs, Launch(nproc, nnodes, node_rank, rdzv_endpoint))
    if "items" not in result:  # another node holds rank 0
        emit(result, as_json)
        return
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
