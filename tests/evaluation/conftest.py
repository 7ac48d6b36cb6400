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
from shopsight.models import registry
from shopsight.models.base import FloatArray, IntArray, Recommender

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


class NextOfLast(Recommender):
    """A toy sequential model: scores item ``last + 1`` of the user's sequence highest
    (``boost`` only gives a search something to vary)."""

    name = "test_next_of_last"

    def __init__(self, boost: float = 1.0, seed: int = 0) -> None:
        self.boost = boost
        self.seed = seed

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self.seqs_ = dataset.sequences()

    def _scores_for(self, seqs: list[np.ndarray]) -> FloatArray:
        out = np.zeros((len(seqs), self.n_items_), np.float32)
        for r, s in enumerate(seqs):
            if len(s) and s[-1] + 1 < self.n_items_:
                out[r, s[-1] + 1] = self.boost
        return out

    def _score(self, users: IntArray) -> FloatArray:
        return self._scores_for([self.seqs_[u] for u in users])

    def score_sequences(self, sequences, events=None) -> FloatArray:
        return self._scores_for([np.asarray(s) for s in sequences])


@pytest.fixture
def next_of_last(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """Registers ``test_next_of_last`` for one test (the contract suite runs every *registered*
    model) and returns data on which it is always right if, and only if, it reads the
    validation item as part of the history at test time: each user reads items 0, 1, 2, ...
    in order."""
    monkeypatch.setitem(registry._MODELS, NextOfLast.name, NextOfLast)
    users: list[int] = []
    items: list[int] = []
    ts: list[int] = []
    for u in range(20):
        n = 4 + u % 3
        users += [u] * n
        items += list(range(u % 5, u % 5 + n))
        ts += list(range(n))
    return Dataset.from_arrays(
        user_ids=[f"u{u:02d}" for u in range(20)],
        item_ids=[f"i{i:02d}" for i in range(12)],
        user=users,
        item=items,
        timestamp=ts,
    )
