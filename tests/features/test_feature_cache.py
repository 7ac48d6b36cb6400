"""Content-addressed feature cache and the store-wide ``featurize`` run."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shopsight.data.store import Store
from shopsight.features.base import Encoded
from shopsight.features.cache import FeatureCache
from shopsight.features.image import ImageEncoder
from shopsight.features.pipeline import featurize, load_item_features
from shopsight.features.text import TextEncoder


class CountingEncoder:
    """A deterministic stand-in that records what it was asked to encode."""

    def __init__(self, version: str = "1") -> None:
        self._version = version
        self.seen: list[str] = []

    name = "counting"
    dim = 8

    @property
    def version(self) -> str:
        return self._version

    def content_key(self, item: object) -> bytes | None:
        return item.encode() if isinstance(item, str) and item else None

    def encode(self, inputs: Sequence[object]) -> Encoded:
        vecs = np.zeros((len(inputs), self.dim), np.float32)
        mask = np.zeros(len(inputs), bool)
        for i, x in enumerate(inputs):
            if isinstance(x, str) and x and x != "unencodable":
                self.seen.append(x)
                digest = hashlib.sha256(x.encode()).digest()
                vecs[i] = np.frombuffer(digest[: self.dim], np.uint8)
                mask[i] = True
        return Encoded(vecs, mask, {"encoded": int(mask.sum())})


def test_rerun_reuses_and_only_changed_content_is_computed(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    enc = CountingEncoder()
    first = cache.encode(enc, ["a", "b", "a", "", "c"])
    assert (first.computed, first.reused) == (3, 0)
    assert sorted(enc.seen) == ["a", "b", "c"]  # the duplicate "a" encoded once
    assert first.mask.tolist() == [True, True, True, False, True]
    assert np.array_equal(first.vectors[0], first.vectors[2])
    enc.seen.clear()
    second = FeatureCache(tmp_path / "c").encode(enc, ["a", "b", "a", "", "c2"])
    assert (second.computed, second.reused) == (1, 3) and enc.seen == ["c2"]
    assert np.array_equal(second.vectors[:3], first.vectors[:3])
    # Another version of the encoder is another cache.
    v2 = CountingEncoder(version="2")
    assert cache.encode(v2, ["a"]).computed == 1


def test_masked_results_are_not_cached(tmp_path: Path) -> None:
    cache, enc = FeatureCache(tmp_path), CountingEncoder()
    out = cache.encode(enc, ["unencodable", "ok"])
    assert out.mask.tolist() == [False, True] and out.computed == 1
    again = cache.encode(enc, ["unencodable"])
    assert again.computed == 0 and again.reused == 0 and not again.mask[0]


def test_damaged_shards_are_skipped_and_compaction_keeps_vectors(tmp_path: Path, caplog) -> None:
    cache, enc = FeatureCache(tmp_path), CountingEncoder()
    ref = cache.encode(enc, ["a"]).vectors
    cache.encode(enc, ["b"])
    cache.encode(enc, ["c"])
    d = cache.directory(enc)
    assert len(list(d.glob("shard-*.safetensors"))) == 3
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))
    assert FeatureCache(tmp_path).compact(enc) == 3
    assert len(list(d.glob("shard-*.safetensors"))) == 1
    fresh = FeatureCache(tmp_path)
    out = fresh.encode(enc, ["a", "b", "c"])
    assert out.reused == 3 and np.array_equal(out.vectors[0], ref[0])
    (d / "shard-99999999999999999999-0.safetensors").write_bytes(b"garbage")
    out = FeatureCache(tmp_path).encode(enc, ["a", "d"])
    assert (out.computed, out.reused) == (1, 1)
    assert any("unreadable shard" in r.getMessage() for r in caplog.records)


def _make_store(path: Path, titles: dict[str, str]) -> None:
    with Store(path) as s:
        for i, (iid, title) in enumerate(sorted(titles.items())):
            s.conn.execute(
                """INSERT INTO items (item_id, title, description, brand, category, price,
                       item_key, source, line)
                   VALUES (?, ?, 'A fine product.', 'Acme', 'Home > Kitchen', 9.5, hash(?), 't', ?)""",
                [iid, title, f"{iid}{title}", i],
            )


def test_featurize_recomputes_exactly_the_edited_title(
    tmp_path: Path, text_encoder: TextEncoder, image_encoder: ImageEncoder
) -> None:
    titles = {
        f"p{i}": t
        for i, t in enumerate(
            ["Steel kettle", "Oak cutting board", "Chef knife", "Glass teapot", "Cast iron pan"]
        )
    }
    store = tmp_path / "shop.duckdb"
    _make_store(store, titles)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for k, iid in enumerate(sorted(titles)[:3]):  # two items have no image
        arr = np.full((64, 64, 3), (40 * k, 200 - 40 * k, 90), np.uint8)
        Image.fromarray(arr).save(img_dir / f"{iid}.jpg")

    r1 = featurize(store, images=img_dir, text_encoder=text_encoder, image_encoder=image_encoder)
    assert r1.items == 5
    assert (r1.text.computed, r1.text.reused) == (5, 0)
    assert r1.image is not None
    assert (r1.image.computed, r1.image.reused, r1.image.masked) == (3, 0, 2)
    assert r1.image.details["missing"] == 2

    r2 = featurize(store, images=img_dir, text_encoder=text_encoder, image_encoder=image_encoder)
    assert (r2.text.computed, r2.text.reused) == (0, 5)
    assert r2.image is not None and (r2.image.computed, r2.image.reused) == (0, 3)

    with Store(store) as s:
        s.conn.execute("UPDATE items SET title = 'Copper kettle' WHERE item_id = 'p0'")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img_dir / "p2.jpg")
    r3 = featurize(store, images=img_dir, text_encoder=text_encoder, image_encoder=image_encoder)
    assert (r3.text.computed, r3.text.reused) == (1, 4)
    assert r3.image is not None and (r3.image.computed, r3.image.reused) == (1, 2)

    feats = load_item_features(store)
    assert feats.item_ids == sorted(titles)
    assert feats.text.shape == (5, 384) and feats.text_mask.all()
    assert feats.image is not None and feats.image_mask is not None
    assert feats.image_mask.tolist() == [True, True, True, False, False]
    expected = text_encoder.encode(["Copper kettle. Acme. Home > Kitchen. A fine product"]).vectors
    assert float(feats.text[0] @ expected[0]) > 0.9999
    assert set(feats.modalities()) == {"text", "image"}
    with Store(store, read_only=True) as s:
        assert feats.meta["store_fingerprint"] == s.fingerprint()
    assert r3.to_dict()["text"]["computed"] == 1


def test_load_item_features_before_featurize(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="featurize"):
        load_item_features(tmp_path / "none.duckdb")
    with pytest.raises(FileNotFoundError, match="no such image folder"):
        featurize(tmp_path / "none.duckdb", images=tmp_path / "nowhere")


def test_onnx_agreement_check_marks_or_drops_the_export(tmp_path) -> None:
    from shopsight.features.base import verify_onnx_agreement

    model = tmp_path / "m.onnx"
    model.write_bytes(b"exported")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 8)).astype(np.float32)
    verify_onnx_agreement(model, "m", lambda: (a, a * 3.0))  # same directions: agrees
    assert model.with_suffix(".verified").exists() and model.exists()
    model.with_suffix(".verified").unlink()
    with pytest.raises(RuntimeError, match="disagrees with PyTorch"):
        verify_onnx_agreement(model, "m", lambda: (a, -a))
    assert not model.exists() and not model.with_suffix(".verified").exists()
