"""Text encoders: MiniLM (PyTorch and ONNX Runtime agree), edge-case text, TF-IDF."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shopsight.features.text import TextEncoder, TfidfEncoder, clean_text, compose_item_text

# Varied lengths (so batches pad), languages and scripts.
SAMPLE = [
    "Nike Men Blue T20 Indian Cricket Jersey",
    "Puma Deck Navy Blue Backpack",
    "Starbucks Gift Card",
    "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll",
    "Gorilla Original Gorilla Glue, Waterproof Polyurethane Glue, 8 ounce Bottle, Brown",
    "Amazon.com Gift Cards are the perfect way to give them exactly what they're hoping for, "
    "even if you don't know what it is. Redeemable for millions of items storewide.",
    "Robe d'été légère en coton, manches courtes, idéale pour la plage",
    "Wasserdichte Wanderschuhe für Damen mit rutschfester Sohle",
    "日本語の商品説明：軽量で丈夫なリュックサック",
    "حقيبة ظهر زرقاء للرجال",
    "🎁🎄✨",
    "x",
    "Stainless #10 x 1 Hex Washer Head Self Drilling Sheet Metal Tek Screws With Drill Point",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_vectors_are_unit_384d_and_empty_text_is_masked(text_encoder: TextEncoder) -> None:
    inputs = ["Red cotton dress", "", None, "   \n\t", float("nan"), "Blue jeans"]
    out = text_encoder.encode(inputs)
    assert out.vectors.shape == (6, 384) and out.vectors.dtype == np.float32
    assert out.mask.tolist() == [True, False, False, False, False, True]
    assert np.allclose(np.linalg.norm(out.vectors[out.mask], axis=1), 1.0, atol=1e-5)
    assert not out.vectors[~out.mask].any()
    assert out.stats["empty"] == 4 and out.stats["encoded"] == 2
    assert text_encoder.encode([]).vectors.shape == (0, 384)


def test_onnx_agrees_with_pytorch(
    text_encoder: TextEncoder, torch_text_encoder: TextEncoder
) -> None:
    assert text_encoder.backend_ == "onnx" and torch_text_encoder.backend_ == "torch"
    a = text_encoder.encode(SAMPLE)
    b = torch_text_encoder.encode(SAMPLE)
    assert a.mask.all() and b.mask.all()
    assert _cos(a.vectors, b.vectors).min() >= 0.999


def test_pytorch_path_matches_sentence_transformers(torch_text_encoder: TextEncoder) -> None:
    st = torch_text_encoder._load_st()
    reference = st.encode(SAMPLE, normalize_embeddings=True, convert_to_numpy=True)
    ours = torch_text_encoder.encode(SAMPLE).vectors
    assert _cos(ours, reference).min() >= 0.9999


def test_batching_by_length_does_not_change_vectors(text_encoder: TextEncoder) -> None:
    together = text_encoder.encode(SAMPLE).vectors
    alone = np.stack([text_encoder.encode([t]).vectors[0] for t in SAMPLE])
    assert _cos(together, alone).min() >= 0.9999


def test_non_english_text_is_embedded_meaningfully(text_encoder: TextEncoder) -> None:
    out = text_encoder.encode(SAMPLE)
    assert out.mask.all() and np.isfinite(out.vectors).all()
    v = text_encoder.encode(["red summer dress", "crimson evening gown", "cordless drill bit set"])
    assert v.vectors[0] @ v.vectors[1] > v.vectors[0] @ v.vectors[2] + 0.1


def test_absurdly_long_text_is_truncated_fast(text_encoder: TextEncoder) -> None:
    head = "waterproof hiking boots with ankle support and a grippy rubber sole "
    long = head * 20_000  # ~1.4 MB
    t0 = time.perf_counter()
    out = text_encoder.encode([long, head * 60])
    assert time.perf_counter() - t0 < 60  # not a benchmark: only "does not hang"
    assert out.mask.all()
    # Both fill the maximum length with the same tokens, so they embed identically.
    assert text_encoder.token_lengths([long])[0] == text_encoder.max_seq_length
    assert float(out.vectors[0] @ out.vectors[1]) > 0.9999


def test_onnx_export_is_cached_and_reused(text_encoder: TextEncoder, monkeypatch) -> None:
    path = text_encoder.onnx_path()
    assert path.exists()
    mtime = path.stat().st_mtime_ns

    def no_export(self, target):  # a reload must not export again
        raise AssertionError("exported twice")

    monkeypatch.setattr(TextEncoder, "_export", no_export)
    again = TextEncoder(backend="onnx").load()
    assert again.backend_ == "onnx" and path.stat().st_mtime_ns == mtime
    assert np.allclose(again.encode(SAMPLE[:3]).vectors, text_encoder.encode(SAMPLE[:3]).vectors)


def test_auto_backend_is_onnx_and_options_validated() -> None:
    assert TextEncoder().load().backend_ == "onnx"
    with pytest.raises(ValueError, match="backend"):
        TextEncoder(backend="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_seq_length"):
        TextEncoder(max_seq_length=4)


def test_cache_identity_depends_on_settings() -> None:
    a, b = TextEncoder(max_seq_length=128), TextEncoder(max_seq_length=256)
    assert a.name == b.name and a.version != b.version
    assert a.content_key("  x ") == b"x" and a.content_key("") is None


def test_compose_and_clean_text() -> None:
    assert clean_text("<p>Soft&nbsp;<b>cotton</b> &amp; linen</p>") == "Soft cotton & linen"
    assert clean_text(None) == "" and clean_text(3.5) == ""
    text = compose_item_text("Linen Shirt", "<ul><li>Breathable</li></ul>", "Acme", "Men > Shirts")
    assert text == "Linen Shirt. Acme. Men > Shirts. Breathable"
    assert compose_item_text(None, None, None, None) == ""


def test_tfidf_encoder() -> None:
    corpus = [
        "red cotton summer dress",
        "blue denim jeans",
        "red silk evening dress",
        "cordless drill with battery",
        "drill bit set for steel",
    ]
    enc = TfidfEncoder(dim=3, seed=0).fit(corpus)
    out = enc.encode([*corpus, "", "zzz unknownword"])
    assert out.vectors.shape == (7, 3) and enc.dim == 3
    assert out.mask.tolist() == [True] * 5 + [False, False]
    assert np.allclose(np.linalg.norm(out.vectors[:5], axis=1), 1.0, atol=1e-5)
    sims = out.vectors[:5] @ out.vectors[:5].T
    assert sims[0, 2] > sims[0, 3] and sims[3, 4] > sims[3, 0]
    # The fitted vocabulary is part of the cache identity.
    assert TfidfEncoder(dim=3).fit(corpus[:3]).version != enc.version
    # Without SVD the output is the raw TF-IDF space.
    raw = TfidfEncoder(dim=None).fit(corpus)
    assert raw.encode(corpus).vectors.shape[1] == raw.dim > 3
    # A dim larger than the corpus allows is zero-padded, keeping the promised width.
    wide = TfidfEncoder(dim=64).fit(corpus)
    assert wide.encode(corpus).vectors.shape == (5, 64)
    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfEncoder().encode(["x"])
    with pytest.raises(ValueError, match="no non-empty text"):
        TfidfEncoder().fit(["", None])
