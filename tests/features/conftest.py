"""Session-wide encoders: loading (and, on a fresh machine, exporting to ONNX) happens once.

Exported ONNX models go to the encoders' default cache (``$SHOPSIGHT_CACHE_DIR`` or
``~/.cache/shopsight``), so a second test run reuses them.
"""

from __future__ import annotations

import pytest

from shopsight.features.image import ImageEncoder
from shopsight.features.text import TextEncoder


@pytest.fixture(scope="session")
def text_encoder() -> TextEncoder:
    return TextEncoder(backend="onnx").load()


@pytest.fixture(scope="session")
def torch_text_encoder() -> TextEncoder:
    return TextEncoder(backend="torch").load()


@pytest.fixture(scope="session")
def image_encoder() -> ImageEncoder:
    return ImageEncoder(backend="onnx").load()


@pytest.fixture(scope="session")
def torch_image_encoder() -> ImageEncoder:
    return ImageEncoder(backend="torch", batch_size=8).load()
