"""Fixtures of the personas tests: a small synthetic shop (with item images and planted
segments), its personas built once per session, and a pseudonym key for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig

KEY = "personas-test-key-0123456789"
SHOP = ShopConfig.small(n_users=500, n_items=160, days=45, image_size=32, seed=3)


@pytest.fixture(scope="session", autouse=True)
def pseudonym_key() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPSIGHT_PSEUDONYM_KEY", KEY)
        yield KEY


@dataclass
class Shop:
    root: Path
    store: Path
    truth: dict[str, Any]


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, build_shop: Any) -> Shop:
    built = build_shop(tmp_path_factory.mktemp("personas_shop"), SHOP, store_name="store.duckdb")
    return Shop(built.root, built.store, built.files.load_ground_truth())


@pytest.fixture(scope="session")
def built(shop: Shop, pseudonym_key: str) -> Any:
    from shopsight.personas import build_personas
    from shopsight.personas.segments import SegmentConfig

    assert os.environ["SHOPSIGHT_PSEUDONYM_KEY"] == pseudonym_key
    with Store(shop.store, read_only=True) as st:
        return build_personas(st, segment_config=SegmentConfig(n_boot=3, time_halves=True))
