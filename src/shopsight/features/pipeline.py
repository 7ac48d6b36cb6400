"""``featurize``: item text and image vectors for a whole store, through the feature cache.

This is what ``shopsight featurize --store PATH [--images DIR]`` runs. It reads the catalogue
(``items_clean`` when the store has been cleaned, else ``items``), embeds every item's text
(title, brand, category path, description) and image, reusing cached vectors for unchanged
content, and writes the aligned matrices to ``<store>.features/items.safetensors`` with the item
ids and encoder versions in ``items.json``. :func:`load_item_features` reads them back for
models (issue #4: VBPR, FREEDOM).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from shopsight import distributed as D
from shopsight.features.base import Encoder
from shopsight.features.cache import CachedEncoded, FeatureCache
from shopsight.features.image import ImageEncoder, resolve_image
from shopsight.features.text import TextEncoder, compose_item_text

ITEMS_FILE = "items.safetensors"
INDEX_FILE = "items.json"


@dataclass
class ModalityReport:
    encoder: str
    version: str
    encoded: int
    computed: int
    reused: int
    masked: int  # rows without a vector (empty text; missing/corrupt image)
    details: dict[str, int] = field(default_factory=dict)


@dataclass
class FeaturizeReport:
    store: str
    items: int
    output: str
    seconds: float
    text: ModalityReport
    image: ModalityReport | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ItemFeatures:
    """Item vectors aligned with ``item_ids``; a modality's mask is False where it is missing."""

    item_ids: list[str]
    text: np.ndarray
    text_mask: np.ndarray
    image: np.ndarray | None
    image_mask: np.ndarray | None
    meta: dict[str, Any]

    def modalities(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The ``name -> (X, mask)`` mapping the fusion modules take."""
        out = {"text": (self.text, self.text_mask)}
        if self.image is not None and self.image_mask is not None:
            out["image"] = (self.image, self.image_mask)
        return out


def features_dir(store_path: str | Path) -> Path:
    p = Path(store_path)
    return p.with_name(p.name + ".features")


def _report(encoder: Encoder, result: Any) -> ModalityReport:
    details = {k: int(v) for k, v in result.stats.items() if k not in ("encoded",)}
    return ModalityReport(
        encoder=encoder.name,
        version=encoder.version,
        encoded=int(result.mask.sum()),
        computed=int(result.computed),
        reused=int(result.reused),
        masked=int((~result.mask).sum()),
        details=details,
    )


def _images(
    rows: list[Any],
    cache: FeatureCache,
    image_encoder: ImageEncoder | None,
    images: str | Path | None,
    path: Path,
) -> tuple[ModalityReport | None, np.ndarray | None, np.ndarray | None]:
    """Image vectors of the items with a local image file (none when no item has one)."""
    img_enc = image_encoder if image_encoder is not None else ImageEncoder()
    # Relative image paths in the catalogue are also tried beside the store file.
    dirs = [*img_enc.image_dirs, *([images] if images is not None else []), path.parent]
    # Resolve here (not by mutating the encoder's folders): found files become absolute
    # paths, the rest keep their original reference so the encoder reports them.
    refs: list[tuple[Any, str]] = []
    for r in rows:
        local = resolve_image(r[5], str(r[0]), dirs)
        refs.append((str(local) if local is not None else r[5], str(r[0])))
    if not any(isinstance(ref, str) and Path(ref).is_file() for ref, _ in refs):
        return None, None, None
    img_res = _encode(cache, img_enc, refs)
    return _report(img_enc, img_res), img_res.vectors, img_res.mask


def featurize(
    store_path: str | Path,
    *,
    images: str | Path | None = None,
    text_encoder: Encoder | None = None,
    image_encoder: ImageEncoder | None = None,
    with_images: bool = True,
) -> FeaturizeReport:
    """Embed every catalogue item's text and image, computing only what the cache lacks.

    ``images`` is a folder searched for relative image paths, local copies of image URLs, and
    ``<item_id>.<ext>`` files. Images are encoded only when at least one item has a local file.
    """
    from shopsight.data.store import Store

    t0 = time.perf_counter()
    path = Path(store_path)
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: no such image folder")
    with Store(path, read_only=True) as store:
        fingerprint = store.fingerprint()
        table = "items_clean" if store.has_table("items_clean") else "items"
        rows = store.conn.execute(
            f"""SELECT item_id, any_value(title), any_value(description), any_value(brand),
                       any_value(category), any_value(image)
                FROM "{table}" GROUP BY item_id ORDER BY item_id"""
        ).fetchall()
        from shopsight.data.support import require_catalogue

        require_catalogue(store, len(rows), "featurize")
    item_ids = [str(r[0]) for r in rows]
    texts = [compose_item_text(r[1], r[2], r[3], r[4]) for r in rows]
    cache = FeatureCache(features_dir(path))

    from shopsight.progress import task

    with task("featurize", total=2 if with_images else 1) as bar:
        bar.update(info=f"text of {len(texts):,} items")
        text_enc = text_encoder if text_encoder is not None else TextEncoder()
        text_res = _encode(cache, text_enc, texts)
        text_report = _report(text_enc, text_res)
        bar.advance(1, info=f"images of {len(texts):,} items" if with_images else "")
        image_report, image_vecs, image_mask = (
            _images(rows, cache, image_encoder, images, path) if with_images else (None, None, None)
        )
        bar.advance(1)

    out_dir = features_dir(path)
    if not D.current().is_main:  # a data-parallel worker: rank 0 writes the output
        return FeaturizeReport(
            store=str(path),
            items=len(item_ids),
            output=str(out_dir / ITEMS_FILE),
            seconds=round(time.perf_counter() - t0, 3),
            text=text_report,
            image=image_report,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    _save(
        out_dir,
        item_ids,
        text_res.vectors,
        text_res.mask,
        image_vecs,
        image_mask,
        text_report,
        image_report,
        fingerprint,
    )
    return FeaturizeReport(
        store=str(path),
        items=len(item_ids),
        output=str(out_dir / ITEMS_FILE),
        seconds=round(time.perf_counter() - t0, 3),
        text=text_report,
        image=image_report,
    )


def _encode(cache: FeatureCache, encoder: Encoder, inputs: list[Any]) -> CachedEncoded:
    """``cache.encode``; under torchrun each rank encodes the missing contents its hash owns,
    writes its own cache shard, and rank 0 gathers everything from the cache. Counts and stats
    are summed over ranks, so the report equals a one-process run's."""
    ctx = D.current()
    if not ctx.distributed:
        return cache.encode(encoder, inputs)
    part = cache.encode(
        encoder, inputs, shard=(ctx.rank, ctx.world_size), sync=lambda: D.barrier(ctx)
    )
    D.barrier(ctx)  # every rank's shard is on disk
    gathered: list[Any] = [None] * ctx.world_size
    own = {k: v for k, v in part.stats.items() if k != "encoded"}
    issues = {i: msg for i, msg in part.issues.items()}
    dist.all_gather_object(gathered, (part.computed, own, issues))
    if ctx.is_main:
        cache.fill(encoder, inputs, part)
        part.computed = sum(g[0] for g in gathered)
        stats: dict[str, int] = {}
        for g in gathered:
            for k, v in g[1].items():
                stats[k] = stats.get(k, 0) + int(v)
            part.issues.update(g[2])
        stats["encoded"] = int(part.mask.sum())
        part.stats = stats
    return part


def _save(
    out_dir: Path,
    item_ids: list[str],
    text: np.ndarray,
    text_mask: np.ndarray,
    image: np.ndarray | None,
    image_mask: np.ndarray | None,
    text_report: ModalityReport,
    image_report: ModalityReport | None,
    fingerprint: str,
) -> None:
    import os
    import tempfile

    from safetensors.numpy import save_file

    tensors = {"text": text, "text_mask": text_mask.astype(np.uint8)}
    if image is not None and image_mask is not None:
        tensors["image"] = image
        tensors["image_mask"] = image_mask.astype(np.uint8)
    meta = {
        "store_fingerprint": fingerprint,  # compare with Store.fingerprint() to spot staleness
        "item_ids": item_ids,
        "text": {"encoder": text_report.encoder, "version": text_report.version},
        "image": None
        if image_report is None
        else {"encoder": image_report.encoder, "version": image_report.version},
    }
    # Write both files under temporary names first: readers never see a half-updated pair.
    for name, writer in (
        (
            ITEMS_FILE,
            lambda p: save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, p),
        ),
        (INDEX_FILE, lambda p: Path(p).write_text(json.dumps(meta), encoding="utf-8")),
    ):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=out_dir)
        os.close(fd)
        try:
            writer(tmp)
            os.replace(tmp, out_dir / name)
        finally:
            Path(tmp).unlink(missing_ok=True)


def load_item_features(store_path: str | Path) -> ItemFeatures:
    """The matrices the last :func:`featurize` wrote for this store."""
    from safetensors.numpy import load_file

    out_dir = features_dir(store_path)
    data_path, index_path = out_dir / ITEMS_FILE, out_dir / INDEX_FILE
    if not data_path.exists() or not index_path.exists():
        raise FileNotFoundError(
            f"{out_dir}: no item features (run `shopsight featurize --store {store_path}`)"
        )
    data = load_file(str(data_path))
    meta = json.loads(index_path.read_text(encoding="utf-8"))
    ids = [str(x) for x in meta["item_ids"]]
    if data["text"].shape[0] != len(ids):
        raise ValueError(f"{data_path}: {data['text'].shape[0]} rows but {len(ids)} item ids")
    return ItemFeatures(
        item_ids=ids,
        text=data["text"],
        text_mask=data["text_mask"].astype(bool),
        image=data.get("image"),
        image_mask=data["image_mask"].astype(bool) if "image_mask" in data else None,
        meta=meta,
    )
