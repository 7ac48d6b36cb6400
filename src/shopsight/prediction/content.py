"""Item content vectors for the predictors: the fused text/image features when the store has
been featurized (``shopsight featurize``), else a TF-IDF + LSA embedding of the item text.

Either way the vectors are reduced to a small ``dim`` (PCA / truncated SVD) so the deep model's
attention and the gradient-boosted baseline get the same compact content representation.
Row 0 is the padding / unknown item (zeros), matching :class:`~shopsight.prediction.examples.Vocab`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from shopsight.errors import InputError, MissingFileError

if TYPE_CHECKING:
    from shopsight.data.store import Store
    from shopsight.prediction.examples import Vocab

log = logging.getLogger("shopsight.prediction.content")


def _reduce(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    # Items without content stay all-zero rows (not the negated mean after centring).
    has = np.linalg.norm(x, axis=1) > 0
    k = min(dim, int(has.sum()), x.shape[1])
    out = np.zeros((x.shape[0], dim), dtype=np.float32)
    if k < 1:
        return out
    z = PCA(n_components=k, random_state=seed).fit_transform(x[has].astype(np.float64))
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-9)
    out[np.flatnonzero(has), :k] = z
    return out


def _fused(store: Store, vocab: Vocab) -> np.ndarray | None:
    from shopsight.features.fusion import ConcatFusion
    from shopsight.features.pipeline import load_item_features

    try:
        feats = load_item_features(store.path)
    except (FileNotFoundError, ValueError):
        return None
    fused = ConcatFusion().fit(feats.modalities()).transform(feats.modalities())
    row = {x: i for i, x in enumerate(feats.item_ids)}
    out = np.zeros((len(vocab.items), fused.vectors.shape[1]), dtype=np.float32)
    for j, item in enumerate(vocab.items):
        i = row.get(item)
        if i is not None and fused.mask[i]:
            out[j] = fused.vectors[i]
    return out


def _tfidf(store: Store, vocab: Vocab, dim: int, seed: int) -> np.ndarray | None:
    from shopsight.features.text import TfidfEncoder, compose_item_text

    table = "items_clean" if store.has_table("items_clean") else "items"
    rows = store.conn.execute(
        f"""SELECT item_id, any_value(title), any_value(description), any_value(brand),
                   any_value(category) FROM "{table}" GROUP BY item_id"""
    ).fetchall()
    texts = {str(r[0]): compose_item_text(r[1], r[2], r[3], r[4]) for r in rows}
    docs = [texts.get(x, "") for x in vocab.items]
    if not any(docs):
        return None
    enc = TfidfEncoder(dim=max(dim, 2), seed=seed).fit(docs)
    res = enc.encode(docs)
    return np.where(res.mask[:, None], res.vectors, 0.0).astype(np.float32)


def item_content(
    store: Store, vocab: Vocab, dim: int = 32, source: str = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """``(C, source)``: ``C`` is ``(n_items + 1, dim)`` float32 with a zero padding row.

    ``source``: ``"auto"`` (fused features if cached, else TF-IDF), ``"fused"``, ``"tfidf"`` or
    ``"none"`` (all zeros: the model then learns from ids and behaviour only).
    """
    if source not in ("auto", "fused", "tfidf", "none"):
        raise InputError(f"content source must be auto, fused, tfidf or none, got {source!r}")
    mat: np.ndarray | None = None
    used = "none"
    if source in ("auto", "fused"):
        mat = _fused(store, vocab)
        used = "fused" if mat is not None else used
        if mat is None and source == "fused":
            raise MissingFileError(
                f"{store.path}: no item features (run `shopsight featurize --store {store.path}`)"
            )
    if mat is None and source in ("auto", "tfidf"):
        mat = _tfidf(store, vocab, dim, seed)
        used = "tfidf" if mat is not None else "none"
    out = np.zeros((vocab.n_items, dim), dtype=np.float32)
    if mat is not None and len(mat):
        out[1:] = _reduce(mat, dim, seed)
    log.info("item content: %s, %d dims", used, dim)
    return out, used
