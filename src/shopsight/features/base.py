"""Shared pieces of the feature encoders: the result type, the encoder protocol, ONNX helpers.

Every encoder maps a sequence of inputs to an ``(n, dim)`` float32 matrix plus a boolean mask
(``False``: the input was empty, missing or unreadable and its row is all zeros). The mask is
part of the contract so later stages (fusion, models) can exclude a missing modality instead of
treating a zero vector as a real observation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shopsight.errors import InputError

log = logging.getLogger("shopsight.features")

CACHE_ENV = "SHOPSIGHT_CACHE_DIR"


@dataclass
class Encoded:
    """Vectors for a batch of inputs: ``vectors[i]`` is meaningful only where ``mask[i]``."""

    vectors: np.ndarray  # (n, dim) float32
    mask: np.ndarray  # (n,) bool
    stats: dict[str, int] = field(default_factory=dict)
    issues: dict[int, str] = field(default_factory=dict)  # row -> why it is masked out

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.mask.shape != (self.vectors.shape[0],):
            raise ValueError(
                f"Encoded: vectors must be (n, d) and mask (n,), got {self.vectors.shape} "
                f"and {self.mask.shape}"
            )

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@runtime_checkable
class Encoder(Protocol):
    """What :class:`~shopsight.features.cache.FeatureCache` needs from an encoder.

    ``name`` and ``version`` key the cache: bump ``version`` whenever the same input would give
    a different vector (new weights, other preprocessing, other maximum length).
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, inputs: Sequence[Any]) -> Encoded: ...

    def content_key(self, item: Any) -> bytes | None:
        """Bytes identifying the input's content (None: nothing to encode, never cached)."""
        ...


def default_cache_dir() -> Path:
    """Where exported ONNX models live: ``$SHOPSIGHT_CACHE_DIR`` or ``~/.cache/shopsight``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "shopsight"


def num_threads(requested: int | None) -> int:
    """Threads for inference: the request, else every core this process may run on."""
    if requested is not None:
        if requested < 1:
            raise InputError(f"num_threads must be >= 1, got {requested}")
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def export_once(path: Path, build: Callable[[Path], None]) -> Path:
    """Create ``path`` with ``build(tmp)`` unless it already exists; atomic under concurrency.

    Two processes exporting at once each write their own temporary file and the last rename
    wins; both files are complete, so a reader never sees a half-written model.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def ort_session(model_path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation and ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def cached_session(path: Path, build: Callable[[Path], None], threads: int) -> Any:
    """An ORT session for ``path``, exporting it first if needed; a damaged cached file (a disk
    error, a copy cut short) is exported again once instead of failing forever."""
    export_once(path, build)
    try:
        return ort_session(path, threads)
    except Exception as exc:
        log.warning("cached ONNX model %s is unreadable (%s); exporting it again", path, exc)
        path.unlink(missing_ok=True)
        path.with_suffix(".verified").unlink(missing_ok=True)
        export_once(path, build)
        return ort_session(path, threads)


ONNX_AGREEMENT = 0.999


def verify_onnx_agreement(
    path: Path, model_name: str, outputs: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> None:
    """Fail loudly if a (possibly stale or corrupted) export disagrees with PyTorch.

    ``outputs()`` gives the ONNX and the PyTorch outputs for the same probe inputs. Below
    :data:`ONNX_AGREEMENT` min cosine the cached export is deleted and ``RuntimeError`` raised;
    otherwise a ``.verified`` marker beside it skips the check next time.
    """
    marker = path.with_suffix(".verified")
    if marker.exists():
        return
    a, b = outputs()
    cos = float(np.min(np.sum(l2_normalize(a) * l2_normalize(b), axis=1)))
    if cos < ONNX_AGREEMENT:
        path.unlink(missing_ok=True)
        raise RuntimeError(
            f"ONNX export of {model_name} disagrees with PyTorch "
            f"(min cosine {cos:.5f} < {ONNX_AGREEMENT})"
        )
    marker.write_text(f"{cos:.6f}\n")


def load_backend(
    backend: str, load_onnx: Callable[[], object], load_torch: Callable[[], object], what: str
) -> str:
    """Load the requested backend; ``auto`` tries ONNX Runtime and falls back to PyTorch."""
    if backend in ("onnx", "auto"):
        try:
            load_onnx()
            return "onnx"
        except Exception as exc:
            if backend == "onnx":
                raise
            log.warning("ONNX %s backend unavailable (%s); using PyTorch", what, exc)
    load_torch()
    return "torch"


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)
