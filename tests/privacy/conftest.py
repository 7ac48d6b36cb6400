"""Fixtures of the privacy tests: one small synthetic shop, a raw-id and a pseudonymised store
built from it once per session, and per-test copies (forgetting rewrites the file)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shopsight.data.pseudonym import Pseudonymizer
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, ShopFiles

KEY_HEX = "5f" * 32
KEY = bytes.fromhex(KEY_HEX)


@dataclass
class Shop:
    files: ShopFiles
    raw_store: Path
    pseudo_store: Path
    raw_ids: list[str]  # every user id of the source files


@pytest.fixture
def key() -> bytes:
    return KEY


@pytest.fixture(autouse=True)
def _isolated_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test sees the test key in the env and never the developer's own key file."""
    monkeypatch.setenv("SHOPSIGHT_PSEUDONYM_KEY", KEY_HEX)
    monkeypatch.delenv("SHOPSIGHT_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, build_shop: Any) -> Shop:
    root = tmp_path_factory.mktemp("privacy_shop")
    # malformed rows raised (0.05% -> 1%) so some user is both quarantined and named among the
    # cleaning log's examples, whatever the generator draws: forget must reach both
    cfg = ShopConfig.small(images=False, seed=11, malformed_fraction=0.01)
    files = build_shop(root, cfg, store_name="raw.duckdb").files
    build_shop(root, files=files, store_name="pseudo.duckdb", pseudonymizer=Pseudonymizer(KEY))
    with Store(root / "raw.duckdb", read_only=True) as st:
        ids = sorted(
            {
                str(r[0])
                for t in ("events", "users", "reviews")
                for r in st.conn.execute(f"SELECT DISTINCT user_id FROM {t}").fetchall()
            }
        )
    return Shop(files, root / "raw.duckdb", root / "pseudo.duckdb", ids)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


@pytest.fixture
def raw_store(shop: Shop, tmp_path: Path) -> Iterator[Path]:
    yield _copy(shop.raw_store, tmp_path / "raw.duckdb")


@pytest.fixture
def pseudo_store(shop: Shop, tmp_path: Path) -> Iterator[Path]:
    yield _copy(shop.pseudo_store, tmp_path / "pseudo.duckdb")
