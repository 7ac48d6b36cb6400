"""Compact models: int8 / float16 tables keep NDCG@10 within 1% and shrink the saved model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shopsight.data.clean import clean_store
from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.split import Split
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.evaluation.ranking import evaluate_ranking
from shopsight.models.base import Recommender
from shopsight.models.quantize import (
    QuantizedRecommender,
    dequantize_int8,
    load_quantized,
    quantize_int8,
    quantize_model,
    state_nbytes,
)
from shopsight.models.registry import create_model

PARAMS = {
    "als": {"factors": 32, "num_threads": 1, "seed": 0},
    "bpr": {"factors": 32, "epochs": 10, "batch_size": 1024, "lr": 0.01, "seed": 0},
    "lightgcn": {"dim": 32, "epochs": 10, "batch_size": 1024, "lr": 0.02, "seed": 0},
    "ease": {"l2": 100.0},
}


@dataclass
class Data:
    train: Dataset
    truth: object


# Small problems: one torch and one BLAS thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("quantize")
    files = generate_shop(root / "files", ShopConfig.small(seed=3, images=False))
    with Store(root / "shop.duckdb") as store:
        ingest_files(store, files.data_files())
        clean_store(store)
        ds = Dataset.from_store(store)
    # per user, the last 20% of events in time are the hold-out
    rank = np.arange(len(ds)) - ds.seq_indptr[ds.user]
    size = np.diff(ds.seq_indptr)[ds.user]
    test = rank >= np.ceil(0.8 * size)
    split = Split(train=np.flatnonzero(~test), test=np.flatnonzero(test), name="user_temporal")
    train, _, held = ds.split(split)
    return Data(train, held.implicit)


_FITTED: dict[str, Recommender] = {}


def fitted(name: str, data: Data) -> Recommender:
    if name not in _FITTED:
        _FITTED[name] = create_model(name, **PARAMS[name]).fit(data.train)
    return _FITTED[name]


def ndcg(model: Recommender, data: Data) -> float:
    res = evaluate_ranking(model, data.truth, exclude=data.train.implicit, metrics=("ndcg",))
    return float(res.metrics["ndcg@10"])


def test_int8_rows_are_exact_at_their_maximum_and_close_elsewhere() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)).astype(np.float32) * rng.uniform(0.01, 10, (50, 1))
    x[3] = 0.0
    q, s = quantize_int8(x)
    assert q.dtype == np.int8 and s.shape == (50,)
    y = dequantize_int8(q, s)
    assert np.all(np.abs(y - x) <= s[:, None] / 2 + 1e-6)  # half a step per entry
    rows = np.arange(50)
    top = np.abs(x).argmax(axis=1)
    assert np.allclose(y[rows, top], x[rows, top], rtol=1e-6)
    assert np.all(y[3] == 0)


@pytest.mark.parametrize("name", list(PARAMS))
@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_ndcg_stays_within_one_percent(name: str, dtype: str, data: Data, tmp_path: Path) -> None:
    model = fitted(name, data)
    q = quantize_model(model, dtype)  # type: ignore[arg-type]
    before, after = ndcg(model, data), ndcg(q, data)
    assert before > 0.05  # a real model, not a degenerate one
    assert abs(after - before) <= 0.01 * before
    # the compact file loads to the same scores
    q.save(tmp_path / "q")
    model.save(tmp_path / "f")
    loaded = load_quantized(tmp_path / "q")
    assert isinstance(loaded, QuantizedRecommender) and loaded.model_name == name
    users = np.arange(20)
    assert np.array_equal(loaded.score(users), q.score(users))
    h = data.train.item[data.train.user_rows(3)]
    assert np.allclose(loaded.score_history(h), q.score_history(h), rtol=1e-5, atol=1e-6)
    # smaller in memory and on disk
    ratio = state_nbytes(q) / state_nbytes(model)
    assert ratio < (0.35 if dtype == "int8" else 0.55) or name == "ease"
    assert ratio < 0.7  # EASE also keeps its int64 history indices
    size_q = (tmp_path / "q" / "model.safetensors").stat().st_size
    size_f = (tmp_path / "f" / "model.safetensors").stat().st_size
    assert size_q < size_f


def test_quantised_scores_are_close_to_the_original(data: Data) -> None:
    model = fitted("als", data)
    s0 = model.score(np.arange(30))
    for dtype, tol in (("float16", 2e-3), ("int8", 2e-2)):
        s1 = quantize_model(model, dtype).score(np.arange(30))  # type: ignore[arg-type]
        assert np.abs(s1 - s0).max() <= tol * np.abs(s0).max()
        assert not np.array_equal(s1, s0)  # the tables really changed


def test_registered_model_trains_and_quantises(data: Data) -> None:
    q = QuantizedRecommender(model_name="ease", model_params={"l2": 100.0}, dtype="int8")
    q.fit(data.train)
    assert q.kinds_["weights"] == "int8"
    assert q.kinds_["history.indices"] == "keep"
    ids, _ = q.recommend([0, 1], k=5)
    ref, _ = fitted("ease", data).recommend([0, 1], k=5)
    for a, b in zip(ids.tolist(), ref.tolist(), strict=True):
        assert len(set(a) & set(b)) >= 4  # the same top items, order may swap near ties
    sim, _ = q.similar_items([0], k=3)
    assert sim.shape == (1, 3)
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(q)
    with pytest.raises(ValueError, match="dtype"):
        quantize_model(fitted("ease", data), "int4")  # type: ignore[arg-type]
