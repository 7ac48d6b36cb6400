"""``shopsight featurize``: item text and image embeddings into the feature cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group, status
from shopsight.data.store import DEFAULT_STORE

app = group()


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

    with status("featurizing...", as_json):
        report = run_featurize(store, images=images, with_images=with_images)
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
