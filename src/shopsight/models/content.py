"""Item content features for models: what a content-aware model knows about each item.

A model never reads files, so item content comes from one of two places:

1. **Computed from the dataset** (:func:`compute_item_content`): the item side table
   ``dataset.items`` gives each item's text (title, brand, category path, description, composed
   by :func:`~shopsight.features.text.compose_item_text`) and image reference; the features
   package encodes them (all-MiniLM-L6-v2 text, 384-d; EfficientNet-Lite0 image, 1280-d)
   through its content-addressed :class:`~shopsight.features.cache.FeatureCache`, so refitting a
   model does not re-encode anything.
2. **Given** with :meth:`ContentMixin.set_item_features`: what
   :func:`shopsight.features.pipeline.load_item_features` returns for a store (``shopsight
   featurize``; rows matched to the dataset's items by id), or plain matrices
   ``modality -> (n_items, d)`` with optional masks (other encoders, tests).

Either way the model holds an :class:`ItemContent`: one float32 matrix and one boolean mask per
modality (mask False: the item has no such content; its row is zero). Models save the exact
matrices they were trained with (``content.<modality>`` arrays in their safetensors file), so a
loaded model scores identically without re-encoding or even having the encoders installed.

Preprocessing shared by the models: :func:`fuse` (one vector per item, the features package's
:class:`~shopsight.features.fusion.ConcatFusion`; VBPR, SASRec) and :func:`standardize` (each
modality apart; FREEDOM's per-modality graphs). Both centre each modality on the mean of the
items that have it, then L2-normalise rows: EfficientNet's pooled features are all non-negative
(any two images have cosine ~0.8 before centring), so centring is what lets cosine kNN graphs
and linear projections see the differences between items.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import numpy as np
import numpy.typing as npt

from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

log = logging.getLogger("shopsight.models.content")

MODALITIES: Final[tuple[str, ...]] = ("text", "image")
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]


class ContentError(InputError):
    """Item content missing or malformed (one-line message naming what was expected)."""


@dataclass
class ItemContent:
    """Per-modality item feature matrices ``(n_items, d_m)`` and masks ``(n_items,)``."""

    features: dict[str, FloatArray]
    masks: dict[str, BoolArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.features:
            raise ContentError("item content needs at least one modality")
        n: int | None = None
        feats: dict[str, FloatArray] = {}
        masks: dict[str, BoolArray] = {}
        for name, raw in self.features.items():
            x = np.asarray(raw, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] < 1:
                raise ContentError(f"item features {name!r}: expected (n_items, d), got {x.shape}")
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise ContentError(
                    f"item features {name!r} have {x.shape[0]} rows, other modalities {n}"
                )
            m = self.masks.get(name)
            mask = np.ones(x.shape[0], bool) if m is None else np.asarray(m, dtype=bool).reshape(-1)
            if mask.shape != (x.shape[0],):
                raise ContentError(
                    f"item mask {name!r}: expected {x.shape[0]} entries, got {mask.shape}"
                )
            finite = np.isfinite(x).all(axis=1)
            if (mask & ~finite).any():
                bad = int(np.flatnonzero(mask & ~finite)[0])
                raise ContentError(f"item features {name!r}: non-finite values in row {bad}")
            x = np.where(mask[:, None], x, 0.0).astype(np.float32)
            feats[name], masks[name] = np.ascontiguousarray(x), mask
        unknown = set(self.masks) - set(feats)
        if unknown:
            raise ContentError(f"masks given for modalities without features: {sorted(unknown)}")
        self.features, self.masks = feats, masks

    @property
    def n_items(self) -> int:
        return next(iter(self.features.values())).shape[0]

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.features.items()}

    def coverage(self) -> dict[str, float]:
        return {m: float(mask.mean()) if len(mask) else 0.0 for m, mask in self.masks.items()}

    @classmethod
    def from_modalities(
        cls, modalities: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike | None]]
    ) -> ItemContent:
        """From the features package's ``name -> (X, mask)`` mapping (mask None: all rows)."""
        return cls(
            {m: np.asarray(x, np.float32) for m, (x, _) in modalities.items()},
            {m: np.asarray(k, bool) for m, (_, k) in modalities.items() if k is not None},
        )

    def aligned(self, source_ids: Sequence[str], target_ids: Sequence[str]) -> ItemContent:
        """Rows re-ordered from ``source_ids`` to ``target_ids`` (absent items: mask False)."""
        if len(source_ids) != self.n_items:
            raise ContentError(
                f"{len(source_ids)} item ids for {self.n_items} rows of item features"
            )
        index = {str(i): r for r, i in enumerate(source_ids)}
        rows = np.array([index.get(str(i), -1) for i in target_ids], np.int64)
        found = rows >= 0
        feats, masks = {}, {}
        for m, x in self.features.items():
            y = np.zeros((len(rows), x.shape[1]), np.float32)
            y[found] = x[rows[found]]
            feats[m] = y
            masks[m] = np.zeros(len(rows), bool)
            masks[m][found] = self.masks[m][rows[found]]
        return ItemContent(feats, masks)

    def select(self, modalities: Sequence[str]) -> ItemContent:
        """Only these modalities (an error names any that are missing)."""
        missing = [m for m in modalities if m not in self.features]
        if missing:
            raise ContentError(
                f"item content has no {missing} features (has {self.modalities}); "
                "compute them or pass them with set_item_features"
            )
        return ItemContent(
            {m: self.features[m] for m in modalities}, {m: self.masks[m] for m in modalities}
        )

    def concat(self) -> FloatArray:
        """All modalities side by side, ``(n_items, sum d_m)`` (missing ones are zeros)."""
        return np.ascontiguousarray(np.concatenate(list(self.features.values()), axis=1))

    # -- persistence (arrays for a model's safetensors file) ---------------------------------
    def to_arrays(self, prefix: str = "content") -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for m in self.features:
            out[f"{prefix}.{m}"] = self.features[m]
            out[f"{prefix}_mask.{m}"] = self.masks[m].astype(np.uint8)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "content") -> Self:
        feats = {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + ".")}
        masks = {
            k[len(prefix) + 6 :]: v.astype(bool)
            for k, v in arrays.items()
            if k.startswith(prefix + "_mask.")
        }
        return cls(feats, masks)


def standardize(content: ItemContent) -> tuple[ItemContent, dict[str, FloatArray]]:
    """Centre each modality on the mean of its present rows, then L2-normalise rows.

    Returns the standardised content and the per-modality means (to apply the same transform to
    items that arrive later).
    """
    feats: dict[str, FloatArray] = {}
    means: dict[str, FloatArray] = {}
    for m, x in content.features.items():
        mask = content.masks[m]
        mu = (
            x[mask].mean(axis=0, dtype=np.float64).astype(np.float32)
            if mask.any()
            else np.zeros(x.shape[1], np.float32)
        )
        y = np.where(mask[:, None], x - mu, 0.0)
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        feats[m] = (y / np.maximum(norms, 1e-12)).astype(np.float32)
        means[m] = mu
    return ItemContent(feats, dict(content.masks)), means


def fuse(content: ItemContent) -> FloatArray:
    """One vector per item: the features package's :class:`ConcatFusion` (each modality
    centred and L2-normalised, equal weights, re-weighted over the modalities a row has, so
    every item with content has a unit-norm vector; items without any are zero)."""
    from shopsight.features.fusion import ConcatFusion

    mods = {m: (content.features[m], content.masks[m]) for m in content.modalities}
    fused = ConcatFusion().fit_transform(mods)
    return np.ascontiguousarray(fused.vectors, dtype=np.float32)


# -- computing content from a dataset ------------------------------------------------------------


def item_texts(dataset: Dataset) -> list[str]:
    """One text per item index from the side table (empty when the item has none)."""
    from shopsight.features.text import compose_item_text

    cols = dataset.items.column_names
    n = dataset.n_items

    def column(name: str) -> list[Any]:
        return dataset.items.column(name).to_pylist() if name in cols else [None] * n

    return [
        compose_item_text(t, d, b, c)
        for t, d, b, c in zip(
            column("title"),
            column("description"),
            column("brand"),
            column("category"),
            strict=True,
        )
    ]


def item_images(dataset: Dataset) -> list[tuple[str | None, str]]:
    """``(image reference, item id)`` per item index, as the image encoder takes them."""
    n = dataset.n_items
    refs = (
        dataset.items.column("image").to_pylist()
        if "image" in dataset.items.column_names
        else [None] * n
    )
    return [
        (r if isinstance(r, str) and r.strip() else None, str(i))
        for r, i in zip(refs, dataset.item_ids.tolist(), strict=True)
    ]


def compute_item_content(
    dataset: Dataset,
    modalities: Sequence[str] = MODALITIES,
    *,
    cache_dir: str | Path | None = None,
    text_encoder: Any = None,
    image_encoder: Any = None,
    image_dirs: Sequence[str | Path] = (),
) -> ItemContent:
    """Encode every item's text and/or image with the features package, through its cache.

    ``cache_dir``: root of the :class:`~shopsight.features.cache.FeatureCache` (default
    ``<shopsight cache>/features``, see :func:`~shopsight.features.base.default_cache_dir`).
    Encoders default to :class:`~shopsight.features.text.TextEncoder` and
    :class:`~shopsight.features.image.ImageEncoder` (``image_dirs`` are searched for relative
    paths and ``<item_id>.<ext>`` files). Items without the content get mask False.
    """
    from shopsight.features.base import default_cache_dir
    from shopsight.features.cache import FeatureCache

    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ContentError(
            f"modalities: expected some of {list(MODALITIES)}, got {list(modalities)}"
        )
    cache = FeatureCache(
        Path(cache_dir) if cache_dir is not None else default_cache_dir() / "features"
    )
    feats: dict[str, FloatArray] = {}
    masks: dict[str, BoolArray] = {}
    n = dataset.n_items
    if "text" in modalities:
        texts = item_texts(dataset)
        if any(texts):
            if text_encoder is None:
                from shopsight.features.text import TextEncoder

                text_encoder = TextEncoder()
            enc = cache.encode(text_encoder, texts)
            feats["text"], masks["text"] = enc.vectors, enc.mask
        else:  # no item has any text: skip loading the model
            from shopsight.features.text import EMBED_DIM

            feats["text"], masks["text"] = np.zeros((n, EMBED_DIM), np.float32), np.zeros(n, bool)
    if "image" in modalities:
        from shopsight.features.image import FEATURE_DIM, ImageEncoder, resolve_image

        dirs = [*image_dirs, *(image_encoder.image_dirs if image_encoder is not None else ())]
        # Resolve files first (as the features pipeline does): no model load, and no warning
        # per item, for a catalogue without local images.
        refs = [
            (str(p) if (p := resolve_image(ref, item_id, dirs)) is not None else ref, item_id)
            for ref, item_id in item_images(dataset)
        ]
        if any(ref is not None and Path(ref).is_file() for ref, _ in refs):
            if image_encoder is None:
                image_encoder = ImageEncoder(image_dirs=image_dirs)
            enc = cache.encode(image_encoder, refs)
            feats["image"], masks["image"] = enc.vectors, enc.mask
        else:
            log.warning("item content: no item has a local image file (%d items)", n)
            feats["image"] = np.zeros((n, FEATURE_DIM), np.float32)
            masks["image"] = np.zeros(n, bool)
    content = ItemContent(feats, masks)
    log.info(
        "item content: %s",
        ", ".join(f"{m} {c:.0%} of {content.n_items} items" for m, c in content.coverage().items()),
    )
    return content


# -- shared by the torch models of this package ------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (0: leave the setting), then restore.

    On small shared machines one thread is often faster than several: every small op of an
    embedding model pays a thread-pool synchronisation, which stalls when the cores are busy.
    """
    import torch

    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- the mixin content models share ---------------------------------------------------------------


class ContentMixin:
    """Item content for a Recommender: given (:meth:`set_item_features`) or computed in ``fit``.

    The model's ``modalities`` parameter selects what it uses; ``feature_cache`` is the feature
    cache root used when content is computed. After ``fit``, ``content_`` holds the raw content
    the model was trained with; models save it (``_content_state``) and restore it on load.
    """

    modalities: Sequence[str]
    feature_cache: str | None
    n_items_: int

    def set_item_features(
        self,
        features: ItemContent | Mapping[str, npt.ArrayLike] | Any,
        masks: Mapping[str, npt.ArrayLike] | None = None,
        item_ids: Sequence[str] | None = None,
    ) -> Self:
        """Use these item features instead of encoding the catalogue at ``fit``.

        ``features``: a mapping ``modality -> (n_items, d)`` (rows in the dataset's item index
        order, or in the order of ``item_ids``), an :class:`ItemContent`, or what
        :func:`shopsight.features.pipeline.load_item_features` returns (rows matched to the
        dataset's items by id). ``masks``: ``modality -> (n_items,)`` bool, items that have
        the modality (default: all rows). Takes effect at the next ``fit``; returns self.
        """
        if isinstance(features, ItemContent):
            content = features
        elif hasattr(features, "modalities") and hasattr(features, "item_ids"):
            content = ItemContent.from_modalities(features.modalities())
            item_ids = list(features.item_ids)
        else:
            content = ItemContent(
                {k: np.asarray(v, np.float32) for k, v in features.items()},
                {k: np.asarray(v, bool) for k, v in (masks or {}).items()},
            )
        self._given_content: ItemContent | None = content
        self._given_ids: list[str] | None = None if item_ids is None else [str(i) for i in item_ids]
        return self

    def _resolve_content(self, dataset: Dataset) -> ItemContent:
        mods = list(self.modalities)
        if not mods:
            raise ContentError(f"{type(self).__name__}: modalities is empty; nothing to learn from")
        given = getattr(self, "_given_content", None)
        given_ids = getattr(self, "_given_ids", None)
        if given is not None and given_ids is not None:
            given = given.aligned(given_ids, dataset.item_ids.tolist())
        if given is not None:
            if given.n_items != dataset.n_items:
                raise ContentError(
                    f"{type(self).__name__}: given item features have {given.n_items} rows, the "
                    f"dataset has {dataset.n_items} items"
                )
            content = given.select([m for m in mods if m in given.features] or mods)
        else:
            content = compute_item_content(dataset, mods, cache_dir=self.feature_cache)
        kept = [m for m in content.modalities if content.masks[m].any()]
        for m in content.modalities:
            if m not in kept:
                log.warning("%s: no item has %s features; not using them", type(self).__name__, m)
        if not kept:
            raise ContentError(
                f"{type(self).__name__}: no item has any of the {content.modalities} features "
                "(the catalogue has no titles, descriptions or images?); pass features with "
                "set_item_features(...)"
            )
        return content.select(kept)

    def _content_state(self) -> dict[str, np.ndarray]:
        content: ItemContent = self.content_  # type: ignore[attr-defined]
        return content.to_arrays("content")

    def _load_content_state(self, arrays: Mapping[str, np.ndarray]) -> ItemContent:
        content = ItemContent.from_arrays(arrays, "content")
        self.content_ = content
        return content


__all__ = [
    "MODALITIES",
    "ContentError",
    "ContentMixin",
    "ItemContent",
    "compute_item_content",
    "fuse",
    "item_images",
    "item_texts",
    "standardize",
    "torch_threads",
]
