"""Image encoder: PIL/numpy preprocessing, every odd image mode, bad files never crash."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shopsight.features.image import ImageEncoder, preprocess_image, resolve_image


def _smooth(seed: int, w: int = 180, h: int = 140) -> np.ndarray:
    """A smooth random colour field: closer to a photo than white noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "img"
    d.mkdir()
    p: dict[str, Path] = {}

    def save(name: str, im: Image.Image, **kw) -> None:
        p[name] = d / name
        im.save(p[name], **kw)

    save("rgb.jpg", Image.fromarray(_smooth(0)), quality=95)
    save("grey.png", Image.fromarray(_smooth(1)[..., 0], mode="L"))
    rgba = np.dstack([_smooth(2), np.full((140, 180), 128, np.uint8)])
    save("rgba.png", Image.fromarray(rgba, mode="RGBA"))
    pal = Image.fromarray(_smooth(3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    save("palette.gif", pal, transparency=0)
    i16 = (_smooth(4)[..., 0].astype(np.uint16) * 200).astype(np.uint16)
    save("grey16.png", Image.fromarray(i16))
    save("cmyk.jpg", Image.fromarray(_smooth(5)).convert("CMYK"))
    save("tiny.png", Image.fromarray(np.full((1, 1, 3), 200, np.uint8)))
    save("big.jpg", Image.fromarray(_smooth(6, 3000, 2000)), quality=90)
    # Bad files.
    p["corrupt.jpg"] = d / "corrupt.jpg"
    p["corrupt.jpg"].write_bytes(np.random.default_rng(0).bytes(5000))
    good = (d / "rgb.jpg").read_bytes()
    p["truncated.jpg"] = d / "truncated.jpg"
    p["truncated.jpg"].write_bytes(good[: len(good) // 2])
    p["empty.jpg"] = d / "empty.jpg"
    p["empty.jpg"].write_bytes(b"")
    p["text.png"] = d / "text.png"
    p["text.png"].write_text("this is not an image")
    return p


def test_preprocess_scale_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    Image.fromarray(np.full((50, 80, 3), (200, 100, 50), np.uint8)).save(path)
    x = preprocess_image(path)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    for c, v in enumerate((200, 100, 50)):
        assert np.allclose(x[c], (v - 127) / 128, atol=1e-6)


def test_preprocess_centre_crop_and_transparency(tmp_path: Path) -> None:
    wide = np.zeros((224, 672, 3), np.uint8)
    wide[:, :224] = (255, 0, 0)
    wide[:, 224:448] = (0, 255, 0)
    wide[:, 448:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    x = preprocess_image(tmp_path / "wide.png")
    assert np.allclose(x[1], (255 - 127) / 128) and np.allclose(x[0], -127 / 128)  # the middle
    Image.fromarray(np.zeros((30, 30, 4), np.uint8), mode="RGBA").save(tmp_path / "clear.png")
    assert np.allclose(preprocess_image(tmp_path / "clear.png"), (255 - 127) / 128)  # on white


def test_every_mode_encodes_and_bad_files_are_counted(
    image_encoder: ImageEncoder, images: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    good = [
        "rgb.jpg",
        "grey.png",
        "rgba.png",
        "palette.gif",
        "grey16.png",
        "cmyk.jpg",
        "tiny.png",
        "big.jpg",
    ]
    bad = ["corrupt.jpg", "truncated.jpg", "empty.jpg", "text.png"]
    refs: list = [str(images[n]) for n in good + bad]
    refs += [str(images["rgb.jpg"].parent / "nope.jpg"), "https://example.com/a.jpg", None, ""]
    ids = [f"item{i}" for i in range(len(refs))]
    with caplog.at_level(logging.WARNING, logger="shopsight.features.image"):
        out = image_encoder.encode(refs, ids=ids)
    assert out.vectors.shape == (len(refs), 1280)
    assert out.mask.tolist() == [True] * len(good) + [False] * (len(bad) + 4)
    assert out.stats == {"encoded": 8, "missing": 4, "corrupt": 4, "remote": 1}
    assert not out.vectors[~out.mask].any()
    v = out.vectors[out.mask]
    assert np.isfinite(v).all() and (v >= 0).all() and (v.std(axis=1) > 0).all()
    # One warning per bad item, naming it.
    messages = [r.getMessage() for r in caplog.records]
    for i in range(len(good), len(refs)):
        assert any(m.startswith(f"item item{i}:") for m in messages), i
    assert "not fetched" in out.issues[len(good) + len(bad) + 1]
    assert "corrupt.jpg" in out.issues[len(good)]


def test_different_images_differ_and_same_image_repeats(
    image_encoder: ImageEncoder, images: dict[str, Path]
) -> None:
    out = image_encoder.encode([images["rgb.jpg"], images["rgb.jpg"], images["big.jpg"]])
    assert np.array_equal(out.vectors[0], out.vectors[1])
    assert not np.allclose(out.vectors[0], out.vectors[2])


def test_onnx_agrees_with_pytorch(
    image_encoder: ImageEncoder, torch_image_encoder: ImageEncoder, images: dict[str, Path]
) -> None:
    assert image_encoder.backend_ == "onnx" and torch_image_encoder.backend_ == "torch"
    refs = [images[n] for n in ("rgb.jpg", "grey.png", "rgba.png", "cmyk.jpg", "big.jpg")]
    a = image_encoder.encode(refs).vectors
    b = torch_image_encoder.encode(refs).vectors
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999


def test_urls_use_local_copies_and_item_ids(tmp_path: Path, images: dict[str, Path]) -> None:
    d = images["rgb.jpg"].parent
    url = "https://images.example.com/I/rgb.jpg?size=large"
    assert resolve_image(url, image_dirs=[d]) == d / "rgb.jpg"
    assert resolve_image(url) is None  # never fetched
    (d / "sku-9.png").write_bytes(images["grey.png"].read_bytes())
    assert resolve_image(None, "sku-9", [d]) == d / "sku-9.png"
    assert resolve_image("rgb.jpg", None, [d]) == d / "rgb.jpg"
    assert resolve_image(None, "../etc/passwd", [d]) is None
    enc = ImageEncoder(image_dirs=[d])
    out = enc.encode([(url, "a"), (None, "sku-9"), ("http://x.org/none.jpg", "b")])
    assert out.mask.tolist() == [True, True, False]
    assert out.stats["remote"] == 1
    assert enc.content_key((url, "a")) == enc.content_key(images["rgb.jpg"])
    assert enc.content_key((None, "nothing")) is None


def test_onnx_export_is_reused(image_encoder: ImageEncoder, monkeypatch) -> None:
    assert image_encoder.onnx_path().exists()

    def no_export(self, target):
        raise AssertionError("exported twice")

    monkeypatch.setattr(ImageEncoder, "_export", no_export)
    assert ImageEncoder(backend="onnx").load().backend_ == "onnx"


def test_damaged_cached_export_is_rebuilt(tmp_path: Path, images: dict[str, Path]) -> None:
    enc = ImageEncoder(backend="onnx", cache_dir=tmp_path / "cache")
    path = enc.onnx_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx model")  # e.g. a copy cut short
    out = enc.encode([images["rgb.jpg"]])
    assert enc.backend_ == "onnx" and out.mask.all()
    assert path.stat().st_size > 1_000_000
