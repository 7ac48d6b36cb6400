"""VBPR and FREEDOM: content makes new items recommendable; ID-only models cannot do that.

The synthetic shop plants item *styles* that drive both who likes an item and how it looks and
reads (palette and pattern of its PNG, style words in its title and description). Item features
are computed with the real encoders (all-MiniLM-L6-v2 text, EfficientNet-Lite0 images) on the
shop's own files, once per module. A cold-item split holds out whole items: the test items have
no training interactions at all. Each model then ranks only the cold items for every test user
(``candidates``); Recall@20 of a random ranking is ``20 / n_cold``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.split import cold_item_split
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.models.base import Recommender
from shopsight.models.content import ContentError, ItemContent, compute_item_content, fuse
from shopsight.models.freedom import (
    FREEDOM,
    bipartite_adjacency,
    item_item_graph,
    knn_graph,
)
from shopsight.models.registry import create_model
from shopsight.models.vbpr import VBPR

# 800 users, 400 items, 35% of the items cold: 140 cold candidates, random Recall@20 = 0.143.
SHOP = ShopConfig(n_users=800, n_items=400, days=45, image_size=32, seed=0)
TRAIN_ITEM_FRACTION = 0.65
K = 20
CONTENT_MODELS = {
    "vbpr": {"epochs": 15, "num_threads": 1},
    "freedom": {"epochs": 15, "num_threads": 1},
}
ID_ONLY_MODELS = {
    "popularity": {},
    "bpr": {"epochs": 10, "factors": 32, "lr": 0.01},
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class ColdShop:
    full: Dataset
    train: Dataset
    test: Dataset
    content: ItemContent
    cold: np.ndarray
    users: np.ndarray

    @property
    def random_recall(self) -> float:
        return K / len(self.cold)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> ColdShop:
    root = tmp_path_factory.mktemp("coldshop")
    files = generate_shop(root / "files", SHOP)
    with Store(root / "shop.duckdb") as store:
        ingest_files(store, files.data_files())
        full = Dataset.from_store(store)
    content = compute_item_content(
        full, cache_dir=root / "features", image_dirs=[files.root, files.root / "images"]
    )
    split = cold_item_split(full.item, ratio=TRAIN_ITEM_FRACTION, seed=0)
    train, _, test = full.split(split)
    cold = np.unique(test.item)
    users = np.flatnonzero(np.diff(test.implicit.indptr) > 0)
    return ColdShop(full, train, test, content, cold, users)


_FITTED: dict[str, Recommender] = {}


def fitted(name: str, shop: ColdShop) -> Recommender:
    if name not in _FITTED:
        params = {**CONTENT_MODELS, **ID_ONLY_MODELS}[name]
        model = create_model(name, **params)
        if name in CONTENT_MODELS:
            model.set_item_features(shop.content)  # type: ignore[attr-defined]
        _FITTED[name] = model.fit(shop.train)
    return _FITTED[name]


@pytest.fixture(scope="module", autouse=True)
def _clear() -> Iterator[None]:
    yield
    _FITTED.clear()


def cold_recall(model: Recommender, shop: ColdShop) -> float:
    """Mean Recall@K over test users, ranking only the cold items."""
    ids, _ = model.recommend(shop.users, k=K, candidates=shop.cold)
    truth = shop.test.implicit.tocsr()
    recalls = []
    for row, u in zip(ids, shop.users.tolist(), strict=True):
        rel = truth.indices[truth.indptr[u] : truth.indptr[u + 1]]
        recalls.append(np.isin(rel, row).sum() / len(rel))
    return float(np.mean(recalls))


def test_the_split_is_really_cold(shop: ColdShop) -> None:
    assert shop.train.implicit[:, shop.cold].nnz == 0
    assert len(shop.cold) >= 100 and len(shop.users) >= 500
    # the real encoders saw every item's text and image
    assert shop.content.masks["text"].all() and shop.content.masks["image"].all()
    assert shop.content.dims == {"text": 384, "image": 1280}


@pytest.mark.parametrize("name", sorted(CONTENT_MODELS))
def test_content_models_rank_new_items_far_above_chance(name: str, shop: ColdShop) -> None:
    recall = cold_recall(fitted(name, shop), shop)
    ratio = recall / shop.random_recall
    print(
        f"\n{name}: cold-item Recall@{K} {recall:.3f} vs random {shop.random_recall:.3f} "
        f"(x{ratio:.2f}) over {len(shop.cold)} new items, {len(shop.users)} users"
    )
    assert ratio >= 3.0, f"{name}: Recall@{K} {recall:.3f} is only x{ratio:.2f} random"


@pytest.mark.parametrize("name", sorted(ID_ONLY_MODELS))
def test_id_only_models_cannot(name: str, shop: ColdShop) -> None:
    recall = cold_recall(fitted(name, shop), shop)
    ratio = recall / shop.random_recall
    print(f"\n{name}: cold-item Recall@{K} {recall:.3f} (x{ratio:.2f} random)")
    assert ratio < 2.0, f"{name} (ID only) ranks new items x{ratio:.2f} random?"


@pytest.mark.parametrize("name", sorted(CONTENT_MODELS))
def test_saved_model_scores_identically_with_its_features(
    name: str, shop: ColdShop, tmp_path: Path
) -> None:
    model = fitted(name, shop)
    loaded = Recommender.load(model.save(tmp_path / name))
    users = np.concatenate([shop.users[:30], [-1]])
    assert np.array_equal(loaded.score(users), model.score(users))
    assert np.array_equal(loaded.score(users, shop.cold), model.score(users, shop.cold))
    # the features the model was trained with travel inside the saved model
    for m in ("text", "image"):
        assert np.array_equal(loaded.content_.features[m], shop.content.features[m])  # type: ignore[attr-defined]
    hist = shop.train.sequences()[int(shop.users[0])][:6]
    assert np.array_equal(loaded.score_history(hist), model.score_history(hist))


@pytest.mark.parametrize("name", sorted(CONTENT_MODELS))
def test_fold_in_reaches_new_items_too(name: str, shop: ColdShop) -> None:
    """A user folded in from their history (no retraining) also gets sensible new items."""
    model = fitted(name, shop)
    seqs = shop.train.sequences()
    truth = shop.test.implicit.tocsr()
    recalls = []
    for u in shop.users[:40].tolist():
        ids, _ = model.recommend_history(seqs[u], k=K, candidates=shop.cold)
        rel = truth.indices[truth.indptr[u] : truth.indptr[u + 1]]
        recalls.append(np.isin(rel, ids).sum() / len(rel))
    assert np.mean(recalls) >= 2.0 * shop.random_recall


# -- content plumbing ------------------------------------------------------------------------------


class _Features:
    """What ``shopsight.features.pipeline.load_item_features`` returns (duck-typed)."""

    def __init__(self, ids: list[str], text: np.ndarray, mask: np.ndarray) -> None:
        self.item_ids = ids
        self._mods = {"text": (text, mask)}

    def modalities(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self._mods


def tiny_dataset(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 6)
    items = rng.integers(0, n_items - 3, len(users))  # the last 3 items stay cold
    return Dataset.from_arrays(
        user_ids=[f"u{i:03d}" for i in range(n_users)],
        item_ids=[f"i{i:03d}" for i in range(n_items)],
        user=users,
        item=items,
    )


def test_features_given_by_id_are_aligned_to_the_dataset() -> None:
    ds = tiny_dataset()
    rng = np.random.default_rng(1)
    text = rng.normal(size=(ds.n_items, 8)).astype(np.float32)
    order = rng.permutation(ds.n_items)
    ids = [str(ds.item_ids[i]) for i in order]
    mask = np.ones(ds.n_items, bool)
    given = _Features(
        [*ids, "not-in-dataset"], np.vstack([text[order], np.ones((1, 8))]), np.append(mask, True)
    )
    model = VBPR(epochs=1, modalities=["text"], num_threads=1).set_item_features(given)
    model.fit(ds)
    assert np.allclose(model.content_.features["text"], text)
    assert model.content_.masks["text"].all()
    # a dataset item the features do not cover gets mask False
    partial = _Features(ids[1:], text[order][1:], mask[1:])
    model.set_item_features(partial).fit(ds)
    assert not model.content_.masks["text"][order[0]]


def test_no_content_is_a_clear_error() -> None:
    ds = tiny_dataset()  # from_arrays: no titles, no images
    # computed from the catalogue: nothing to encode (no encoder is even loaded)
    with pytest.raises(ContentError, match="no item has any"):
        VBPR(epochs=1).fit(ds)
    with pytest.raises(ContentError, match="no item has any"):
        VBPR(epochs=1, feature_cache="/nonexistent-unused").set_item_features(
            {"text": np.zeros((ds.n_items, 4))}, masks={"text": np.zeros(ds.n_items, bool)}
        ).fit(ds)
    with pytest.raises(ContentError, match="rows"):
        FREEDOM(epochs=1).set_item_features({"text": np.zeros((3, 4))}).fit(ds)
    with pytest.raises(ContentError, match="non-finite"):
        ItemContent({"text": np.full((2, 3), np.nan)})


def test_fuse_is_unit_norm_and_zero_without_content() -> None:
    rng = np.random.default_rng(0)
    content = ItemContent(
        {
            "text": rng.normal(size=(6, 5)).astype(np.float32),
            "image": rng.random((6, 7)).astype(np.float32),
        },
        {"text": np.array([1, 1, 1, 0, 1, 0], bool), "image": np.array([1, 0, 1, 1, 1, 0], bool)},
    )
    f = fuse(content)
    assert f.shape == (6, 12)
    norms = np.linalg.norm(f, axis=1)
    assert np.allclose(norms[:5], 1.0, atol=1e-5) and norms[5] == 0.0


# -- FREEDOM's graphs ----------------------------------------------------------------------------


def test_knn_graph_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mask = np.ones(50, bool)
    mask[[3, 7]] = False
    rows, cols = np.arange(50), np.arange(10, 50)
    g = knn_graph(x, mask, 4, rows, cols, block=7)
    assert g.shape == (50, 40)
    for r in range(50):
        got = set(cols[g[r].indices].tolist())
        if not mask[r]:
            assert not got
            continue
        cand = [c for c in cols if mask[c]]
        sims = x[cand] @ x[r]
        assert got == {cand[j] for j in np.argsort(-sims, kind="stable")[:4]}


def test_item_graph_mixes_modalities_with_degree_normalisation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 10)).astype(np.float32)
    content = ItemContent({"text": x[:, :5], "image": x[:, 5:]})
    items = np.arange(30)
    g = item_item_graph(content, 5, 0.1, items, items)
    # every row: 5 text neighbours at 0.9/5 and 5 image neighbours at 0.1/5 (overlaps add up)
    assert np.allclose(np.asarray(g.sum(axis=1)).ravel(), 1.0, atol=1e-5)
    assert g.diagonal().min() > 0.9 / 5 - 1e-6  # an item is its own nearest neighbour


def test_bipartite_adjacency_is_symmetric_and_normalised() -> None:
    users = np.array([0, 0, 1, 2, 2, 2])
    items = np.array([0, 1, 1, 0, 1, 2])
    adj = bipartite_adjacency(users, items, 3, 3).to_dense().numpy()
    assert np.allclose(adj, adj.T)
    du, di = np.bincount(users, minlength=3), np.bincount(items, minlength=3)
    assert np.isclose(adj[0, 3 + 1], 1 / np.sqrt(du[0] * di[1]))
    a = sp.csr_matrix(adj)
    assert a.nnz == 2 * len(users)


def test_degree_sensitive_pruning_prefers_edges_between_rare_nodes() -> None:
    ds = tiny_dataset(n_users=60, n_items=30)
    model = FREEDOM(epochs=0, edge_dropout=0.6, num_threads=1)
    model.set_item_features({"text": np.random.default_rng(0).normal(size=(ds.n_items, 4))})
    model.n_users_ = ds.n_users
    m = ds.implicit.tocsr()
    coo = m.tocoo()
    model._edges = (coo.row.astype(np.int64), coo.col.astype(np.int64))
    model._warm = np.arange(ds.n_items)
    du = np.bincount(coo.row, minlength=ds.n_users)
    di = np.bincount(coo.col, minlength=ds.n_items)
    w = 1 / np.sqrt(du[coo.row] * di[coo.col])
    kept_w = []
    for epoch in range(5):
        adj = model._pruned_adjacency(epoch).coalesce()
        idx = adj.indices().numpy()
        half = idx[0] < ds.n_users
        kept = set(zip(idx[0][half].tolist(), (idx[1][half] - ds.n_users).tolist(), strict=True))
        assert len(kept) == int(len(w) * 0.4)
        kept_w.append(
            np.mean([w[k] for k, e in enumerate(zip(coo.row, coo.col, strict=True)) if e in kept])
        )
    # a new graph every epoch, each biased towards high 1/sqrt(d_u d_i) edges
    assert np.mean(kept_w) > w.mean()


def test_cold_item_readout_uses_trained_neighbours(shop: ColdShop) -> None:
    model = fitted("freedom", shop)
    assert isinstance(model, FREEDOM)
    cold_rows = model.item_embeddings_[shop.cold]
    assert np.abs(cold_rows).sum(axis=1).min() > 0  # every new item got an embedding
    g = model.cold_graph_
    assert g.shape[0] == len(shop.cold) and np.allclose(
        np.asarray(g.sum(axis=1)).ravel(), 1.0, atol=1e-5
    )
