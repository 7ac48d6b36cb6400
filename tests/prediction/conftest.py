"""A small synthetic shop (planted view -> click -> cart -> purchase funnel), its impressions
and their item content, built once per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig
from shopsight.prediction.content import item_content
from shopsight.prediction.examples import Examples, Vocab, build_examples, temporal_split


@dataclass
class Shop:
    store: Path
    examples: Examples
    vocab: Vocab
    content: np.ndarray
    train: Examples
    valid: Examples
    test: Examples


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, build_shop: Any) -> Shop:
    cfg = ShopConfig.small(images=False, seed=7, n_users=400)
    path = build_shop(tmp_path_factory.mktemp("predshop"), cfg).store
    with Store(path, read_only=True) as st:
        ex, vocab = build_examples(st)
        content, _ = item_content(st, vocab)
    tr, va, te = temporal_split(ex.ts)
    return Shop(path, ex, vocab, content, ex.take(tr), ex.take(va), ex.take(te))
