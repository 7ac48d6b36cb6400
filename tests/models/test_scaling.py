"""Defaults that follow the data: "auto" parameters of BPR, ALS and ItemKNN (models.scaling)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from shopsight.data.dataset import Dataset
from shopsight.errors import InputError
from shopsight.models.base import Recommender
from shopsight.models.mf import BPR
from shopsight.models.scaling import (
    DataShape,
    auto_als_factors,
    auto_als_l2,
    auto_bpr_factors,
    auto_bpr_l2,
    auto_epochs,
    auto_factors,
    auto_shrinkage,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# The shapes of two real training sets: MovieLens-100K's stratified-by-item train part (dense:
# 80 ratings a user) and Amazon Beauty's leave-one-out train part (sparse: 7 a user).
ML100K = DataShape(n_users=943, n_items=1682, n_pairs=75_066)
BEAUTY = DataShape(n_users=22_363, n_items=12_101, n_pairs=153_776)


def test_data_shape_counts_distinct_pairs() -> None:
    m = sp.csr_matrix(
        (np.array([1.0, 2.0, 1.0, 0.0]), (np.array([0, 0, 1, 2]), np.array([1, 1, 0, 2]))),
        shape=(3, 4),
    )
    shape = DataShape.of(m)
    assert (shape.n_users, shape.n_items, shape.n_pairs) == (3, 4, 2)  # duplicate summed, 0 out
    assert shape.density == pytest.approx(2 / 12)
    assert shape.pairs_per_vector == pytest.approx(2 / 7)


def test_bpr_defaults_differ_between_dense_and_sparse_data_as_designed() -> None:
    dense, sparse = BPR().resolved_params(ML100K), BPR().resolved_params(BEAUTY)
    # factors: 2 per pair behind a vector or 2 sqrt(items), whichever is larger (a power of
    # two in [64, 256]): Beauty's 12,101 items ask for 256, its 4.5 pairs a vector for the floor
    assert (dense["factors"], sparse["factors"]) == (64, 256)
    assert auto_factors(BEAUTY) == 64 and auto_bpr_factors(BEAUTY) == 256
    dense_small = DataShape(n_users=100, n_items=100, n_pairs=20_000)  # 100 pairs a vector
    assert auto_factors(dense_small) == auto_bpr_factors(dense_small) == 256
    # the same number of optimiser steps: Beauty's epochs are twice as long, so half as many
    assert (dense["epochs"], sparse["epochs"]) == (60, 29)
    for p, shape in ((dense, ML100K), (sparse, BEAUTY)):
        steps = p["epochs"] * math.ceil(shape.n_pairs / p["batch_size"])
        assert 2200 <= steps < 2200 + math.ceil(shape.n_pairs / p["batch_size"])
    # the sparse vectors get the stronger prior: sqrt(28 / 4.46) times the dense 0.01
    assert dense["l2"] == pytest.approx(0.01)
    assert sparse["l2"] == pytest.approx(0.01 * math.sqrt(28 / BEAUTY.pairs_per_vector))
    assert 0.02 < sparse["l2"] < 0.03 and sparse["l2"] == auto_bpr_l2(BEAUTY)
    # the rest of the parameters are the fixed defaults
    for key in ("lr", "batch_size", "optimizer", "seed"):
        assert dense[key] == sparse[key] == BPR().get_params()[key]


def test_auto_rules_are_bounded_and_explicit_values_win() -> None:
    tiny = DataShape(n_users=5, n_items=4, n_pairs=10)
    huge = DataShape(n_users=10**6, n_items=10**5, n_pairs=10**9)
    assert auto_factors(tiny) == 64 and auto_factors(huge) == 256
    assert auto_bpr_l2(huge) == pytest.approx(0.01)  # dense data: the base penalty
    # a tiny set is capped at 100 epochs, a huge one still sees every pair 10 times
    assert auto_epochs(tiny, 2048) == 100 and auto_epochs(huge, 2048) == 10
    fixed = BPR(factors=16, epochs=3, l2=0.5).resolved_params(BEAUTY)
    assert (fixed["factors"], fixed["epochs"], fixed["l2"]) == (16, 3, 0.5)
    assert BPR(factors=16).resolved_params(ML100K)["epochs"] == 60


def _planted(n_users: int = 60, n_items: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        group = u % 2
        for i in rng.choice(np.arange(group, n_items, 2), size=8, replace=False):
            users.append(u)
            items.append(int(i))
    return Dataset.from_arrays(
        user_ids=[f"u{k}" for k in range(n_users)],
        item_ids=[f"i{k}" for k in range(n_items)],
        user=np.array(users),
        item=np.array(items),
    )


def test_bpr_records_the_resolved_defaults_and_keeps_its_params(tmp_path: Path) -> None:
    ds = _planted()
    model = BPR(seed=0).fit(ds)
    assert model.get_params()["factors"] == "auto"  # fit does not change the parameters
    resolved = model.resolved_params(DataShape.of(ds.implicit))
    assert model.user_factors_.shape == (ds.n_users, resolved["factors"])
    assert model.train_result_.epochs_run == resolved["epochs"]
    saved = model.save(tmp_path / "m")
    loaded = Recommender.load(saved)
    import json

    meta = json.loads((saved / "config.json").read_text())["meta"]
    assert meta["resolved"]["factors"] == resolved["factors"]
    assert meta["data_shape"]["n_pairs"] == DataShape.of(ds.implicit).n_pairs
    # fold-in uses the resolved l2 after loading, as before saving
    hist = np.array([0, 2, 4])
    np.testing.assert_allclose(loaded.score_history(hist), model.score_history(hist), rtol=1e-5)


def test_bpr_rejects_bad_values_with_the_parameter_named() -> None:
    ds = _planted()
    with pytest.raises(ValueError, match="factors"):
        BPR(factors="many").fit(ds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="l2"):
        BPR(l2=-1.0).fit(ds)


def _ml_sample(tmp_path: Path, max_user: int) -> tuple[Dataset, Any]:
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.evaluation.protocols import lineage_from_store

    src = SHARED / "movielens-100k" / "u.data"
    if not src.exists():
        pytest.skip("needs ../shared/data/movielens-100k (public datasets not present)")
    rows = [line for line in src.read_text().splitlines() if int(line.split("\t")[0]) <= max_user]
    sample = tmp_path / "u.data"
    sample.write_text("\n".join(rows) + "\n")
    with Store(tmp_path / "s.duckdb") as store:
        ingest_files(store, [sample])
        ds = Dataset.from_store(store)
        return ds, lineage_from_store(store, ds)


@pytest.mark.shared
@pytest.mark.slow
def test_bpr_defaults_beat_popularity_on_a_movielens_sample(tmp_path: Path) -> None:
    """On 300 MovieLens-100K users, stratified by item 75/25 (the Microsoft benchmark's
    recipe), BPR at its defaults ranks clearly better than popularity."""
    from shopsight.evaluation.protocols import get_protocol
    from shopsight.evaluation.ranking import evaluate_ranking
    from shopsight.models.popularity import Popularity

    ds, lineage = _ml_sample(tmp_path, max_user=300)
    protocol = get_protocol("stratified-item-75-25")
    split = protocol.make_splits(ds, 0, lineage)[0]
    train, test = ds.subset(split.train), ds.subset(split.test)
    truth = protocol.truth(test)
    users = protocol.eval_users(train, truth)

    def ndcg(model: Recommender) -> float:
        res = evaluate_ranking(
            model.fit(train),
            truth,
            exclude=protocol.exclusion(train, None),
            ks=[10],
            metrics=["ndcg"],
            users=users,
            candidates=protocol.candidate_mask(train, test),
            seed=0,
        )
        return float(res.metrics["ndcg@10"])

    pop, bpr = ndcg(Popularity()), ndcg(BPR(seed=0))
    assert bpr > 1.25 * pop, (bpr, pop)


# -- ALS and ItemKNN -------------------------------------------------------------------------

SHOP = DataShape(n_users=990, n_items=300, n_pairs=32_386)


def test_als_defaults_follow_catalogue_and_user_activity() -> None:
    from shopsight.models.mf import ALS

    ml, shop, beauty = (ALS().resolved_params(s) for s in (ML100K, SHOP, BEAUTY))
    # a large catalogue needs more factors; small ones keep the former 64
    assert (ml["factors"], shop["factors"], beauty["factors"]) == (64, 64, 256)
    assert auto_als_factors(DataShape(10**6, 10**5, 10**8)) == 256  # capped
    # the penalty follows the pairs of a user (ALS-WR): dense MovieLens 40, sparse Beauty 3.4
    assert ml["l2"] == pytest.approx(ML100K.pairs_per_user / 2) == pytest.approx(39.80, abs=0.01)
    assert beauty["l2"] == pytest.approx(BEAUTY.pairs_per_user / 2)
    assert auto_als_l2(DataShape(5, 5, 0)) == 0.01  # an empty matrix still gets a penalty
    fixed = ALS(factors=16, l2=0.5).resolved_params(BEAUTY)
    assert (fixed["factors"], fixed["l2"]) == (16, 0.5)


def test_als_records_resolved_defaults_and_folds_in_with_them(tmp_path: Path) -> None:
    import json

    from shopsight.models.mf import ALS

    ds = _planted()
    model = ALS(num_threads=1, iterations=5).fit(ds)
    assert model.get_params()["factors"] == "auto" and model.get_params()["l2"] == "auto"
    resolved = model.resolved_params(ds.implicit)
    assert model.item_factors_.shape == (ds.n_items, resolved["factors"])
    saved = model.save(tmp_path / "als")
    meta = json.loads((saved / "config.json").read_text())["meta"]
    assert meta["resolved"]["l2"] == pytest.approx(resolved["l2"])
    loaded = Recommender.load(saved)
    hist = np.array([0, 2, 4])
    np.testing.assert_allclose(loaded.score_history(hist), model.score_history(hist), rtol=1e-5)
    # an explicit l2 is the one the fold-in solves with
    strong = ALS(num_threads=1, iterations=5, l2=1e4).fit(ds)
    assert np.abs(strong.user_vector(hist, np.ones(3, np.float32))).max() < 1e-2


def test_auto_shrinkage_is_in_units_of_the_feedback() -> None:
    from shopsight.models.itemknn import ItemKNN

    m = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    assert auto_shrinkage(m) == pytest.approx(10.0)
    assert auto_shrinkage(m * 3.0) == pytest.approx(90.0)  # same co-occurrences, 3x the values
    assert auto_shrinkage(sp.csr_matrix((2, 3))) == 0.0
    # every pair weighted 8 (Beauty's files): log1p(8)^2 per entry, binary 1
    w = m * 8.0
    log = ItemKNN(weighting="none").resolved_params(w)["shrinkage"]
    binary = ItemKNN(weighting="none", feedback="binary").resolved_params(w)["shrinkage"]
    assert log == pytest.approx(10 * np.log1p(8.0) ** 2, rel=1e-5) and binary == 10.0
    assert ItemKNN(shrinkage=3.0).resolved_params(w)["shrinkage"] == 3.0


def test_itemknn_auto_shrinkage_equals_the_explicit_value_it_resolves_to(tmp_path: Path) -> None:
    import json

    from shopsight.models.itemknn import ItemKNN

    ds = _planted()
    auto = ItemKNN().fit(ds)
    assert auto.get_params()["shrinkage"] == "auto"
    value = auto.resolved_params(ds.implicit)["shrinkage"]
    assert value > 0
    explicit = ItemKNN(shrinkage=value).fit(ds)
    assert (auto.similarity_ != explicit.similarity_).nnz == 0
    saved = auto.save(tmp_path / "knn")
    meta = json.loads((saved / "config.json").read_text())["meta"]
    assert meta["resolved"]["shrinkage"] == pytest.approx(value)
    with pytest.raises(InputError, match="shrinkage"):
        ItemKNN(shrinkage="lots").fit(ds)  # type: ignore[arg-type]


def test_lightgcn_epochs_follow_bpr_rule_and_are_recorded(tmp_path: Path) -> None:
    import json

    from shopsight.models.lightgcn import LightGCN

    assert LightGCN().resolved_params(ML100K)["epochs"] == auto_epochs(ML100K, 2048) == 60
    assert LightGCN().resolved_params(BEAUTY)["epochs"] == 29
    assert LightGCN(epochs=3).resolved_params(BEAUTY)["epochs"] == 3
    ds = _planted()
    model = LightGCN(dim=8, batch_size=256, seed=0).fit(ds)
    assert model.get_params()["epochs"] == "auto"
    expected = auto_epochs(DataShape.of(ds.implicit), 256)
    assert model.train_result_.epochs_run == expected
    meta = json.loads((model.save(tmp_path / "lg") / "config.json").read_text())["meta"]
    assert meta["resolved"]["epochs"] == expected
    with pytest.raises(InputError, match="epochs"):
        LightGCN(epochs="long").fit(ds)  # type: ignore[arg-type]


def test_lightgcn_dim_follows_bpr_factor_rule(tmp_path: Path) -> None:
    import json

    from shopsight.models.lightgcn import LightGCN

    # MovieLens-100K keeps 64; Beauty's 12,101 items ask for more (validation NDCG@10: 64
    # dims 0.0326, 128 dims 0.0375)
    assert LightGCN().resolved_params(ML100K)["dim"] == auto_bpr_factors(ML100K) == 64
    assert LightGCN().resolved_params(BEAUTY)["dim"] == auto_bpr_factors(BEAUTY) == 256
    assert LightGCN(dim=16).resolved_params(BEAUTY)["dim"] == 16
    ds = _planted()
    model = LightGCN(epochs=2, batch_size=256, seed=0).fit(ds)
    dim = auto_bpr_factors(DataShape.of(ds.implicit))
    assert model.item_embeddings_.shape[1] == dim
    meta = json.loads((model.save(tmp_path / "lg") / "config.json").read_text())["meta"]
    assert meta["resolved"]["dim"] == dim
    with pytest.raises(InputError, match="dim"):
        LightGCN(dim=0).fit(ds)
