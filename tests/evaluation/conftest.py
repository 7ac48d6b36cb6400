"""Stores shared by the evaluation tests: a small synthetic shop, a miniature MovieLens-100K
(written here, with its own u1..u5 folds) and, when ../shared is present, the real ML-100K."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.evaluation.protocols import Lineage, lineage_from_store

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass
class Built:
    store: Path
    dataset: Dataset
    lineage: Lineage
    folder: Path


def _build(folder: Path, files: list[Path]) -> Built:
    store_path = folder / "store.duckdb"
    with Store(store_path) as store:
        report = ingest_files(store, files)
        assert all(f.error is None for f in report.files), [f.error for f in report.files]
        ds = Dataset.from_store(store)
        lineage = lineage_from_store(store, ds)
    return Built(store_path, ds, lineage, folder)


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Built:
    folder = tmp_path_factory.mktemp("shop")
    files = generate_shop(folder, ShopConfig.small(images=False, seed=3))
    return _build(folder, files.data_files())


def write_mini_ml(folder: Path, n_users: int = 30, n_items: int = 25, seed: int = 0) -> np.ndarray:
    """A MovieLens-100K look-alike: u.data (shuffled lines) and u1..u5.test folds."""
    rng = np.random.default_rng(seed)
    pairs = [
        (u, i) for u in range(1, n_users + 1) for i in range(1, n_items + 1) if rng.random() < 0.4
    ]
    rows = np.array(
        [
            (u, i, int(rng.integers(1, 6)), 880_000_000 + int(rng.integers(0, 10**7)))
            for u, i in pairs
        ]
    )
    rows = rows[rng.permutation(len(rows))]
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "u.data", rows, fmt="%d", delimiter="\t")
    fold = rng.permutation(len(rows)) % 5
    for k in range(5):
        np.savetxt(folder / f"u{k + 1}.test", rows[fold == k], fmt="%d", delimiter="\t")
        np.savetxt(folder / f"u{k + 1}.base", rows[fold != k], fmt="%d", delimiter="\t")
    return rows


@pytest.fixture(scope="session")
def mini_ml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp("mini_ml") / "ml"
    write_mini_ml(folder)
    yield _build(folder, [folder / "u.data"])


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> Built:
    src = SHARED / "movielens-100k"
    if not (src / "u.data").exists():
        pytest.skip("../shared/data/movielens-100k not present")
    folder = tmp_path_factory.mktemp("ml100k")
    built = _build(folder, [src / "u.item", src / "u.user", src / "u.data"])
    built.folder = src
    return built
