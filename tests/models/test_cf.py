"""Model-specific tests of the collaborative-filtering models, against hand-computed references.

Popularity (weights, window, decay, distinct users), ItemKNN (shrunk cosine, TF-IDF / BM25,
pruning), EASE (closed form vs a float64 inverse, item limit), ALS (confidence, exact fold-in
equal to ``implicit``'s ``recalculate_user``), BPR (sampler, loss, DDP-style scaling, fold-in
gradient), LightGCN (normalised adjacency), and a planted-structure test for every family.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from shopsight import distributed as D
from shopsight.data.dataset import Dataset
from shopsight.models.base import Recommender
from shopsight.models.ease import EASE, TooManyItemsError
from shopsight.models.itemknn import ItemKNN, knn_similarity, reweight
from shopsight.models.lightgcn import LightGCNModule, normalized_adjacency
from shopsight.models.mf import (
    ALS,
    BPR,
    BPRModule,
    PairSampler,
    bpr_user_vector,
    confidence_matrix,
)
from shopsight.models.popularity import Popularity
from shopsight.models.registry import create_model

T0 = datetime(2025, 1, 1)


# Two shared cores: torch's and BLAS's thread pools only spin against other processes.
pytestmark = pytest.mark.usefixtures("one_thread")


def make_dataset(rows: list[tuple[int, int, str, float]], n_users: int, n_items: int) -> Dataset:
    """rows: (user, item, event type, days after T0)."""
    u, i, e, d = zip(*rows, strict=True)
    ts = np.array([np.datetime64(T0 + timedelta(days=x), "us") for x in d])
    return Dataset.from_arrays(
        user_ids=[f"u{k}" for k in range(n_users)],
        item_ids=[f"i{k}" for k in range(n_items)],
        user=np.array(u),
        item=np.array(i),
        event=np.array(e),
        timestamp=ts,
    )


def planted(
    n_groups: int = 4,
    users_per: int = 30,
    items_per: int = 15,
    density: float = 0.35,
    seed: int = 0,
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Users interact only with items of their own group (with random views inside it)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = n_groups * users_per, n_groups * items_per
    ug = np.repeat(np.arange(n_groups), users_per)
    ig = np.repeat(np.arange(n_groups), items_per)
    rows = []
    for u in range(n_users):
        own = np.flatnonzero(ig == ug[u])
        picked = own[rng.random(len(own)) < density]
        if not len(picked):
            picked = own[:1]
        rows += [(u, int(i), "view", float(rng.random() * 30)) for i in picked]
    # one popular item that every group views a little (popularity's favourite)
    for u in range(0, n_users, 2):
        rows.append((u, 0, "view", 1.0))
    return make_dataset(rows, n_users, n_items), ug, ig


# -- popularity ----------------------------------------------------------------------------------


def test_popularity_uses_the_event_weights_window_and_decay() -> None:
    rows = [
        (0, 0, "view", 0.0),
        (1, 0, "view", 10.0),
        (0, 1, "purchase", 10.0),
        (1, 2, "view", 9.0),
        (1, 2, "view", 10.0),
    ]
    ds = make_dataset(rows, 2, 4)
    # default: the dataset's multi-behaviour weights (view 1, purchase 8)
    assert Popularity().fit(ds).score([0])[0].tolist() == [2.0, 8.0, 2.0, 0.0]
    assert Popularity(event_weights={"purchase": 1}).fit(ds).scores_.tolist() == [0, 1, 0, 0]
    # the window (from the newest event at day 10) drops the day-0 view
    assert Popularity(window_days=5).fit(ds).scores_.tolist() == [1.0, 8.0, 2.0, 0.0]
    # half-life of 10 days: the day-0 view counts 0.5, the day-9 view 0.5 ** 0.1
    dec = Popularity(half_life_days=10).fit(ds).scores_
    assert dec[0] == pytest.approx(1.5) and dec[2] == pytest.approx(1 + 0.5**0.1, rel=1e-6)
    # distinct: user 1's two views of item 2 count once
    assert Popularity(distinct_users=True).fit(ds).scores_.tolist() == [2.0, 8.0, 1.0, 0.0]
    # non-personalised: new users, cold users and similar items all get the same ranking
    pop = Popularity().fit(ds)
    assert np.array_equal(pop.score_history([3]), pop.scores_)
    assert pop.similar_items([1], k=2)[0].tolist() == [[0, 2]]


def test_popularity_rejects_bad_parameters() -> None:
    ds = make_dataset([(0, 0, "view", 0.0)], 1, 1)
    with pytest.raises(ValueError, match="unknown event types"):
        Popularity(event_weights={"like": 1.0}).fit(ds)
    with pytest.raises(ValueError, match="window_days"):
        Popularity(window_days=0).fit(ds)


# -- itemknn -------------------------------------------------------------------------------------


def test_itemknn_similarity_is_the_shrunk_cosine() -> None:
    rng = np.random.default_rng(1)
    x = sp.random(30, 12, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    dense = x.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    ref = dense.T @ dense / (norms[:, None] * norms[None, :] + 5.0)
    np.fill_diagonal(ref, 0.0)
    got = knn_similarity(x, neighbours=11, shrinkage=5.0, block=4).toarray()
    assert np.allclose(got, ref, atol=1e-6)
    # pruning keeps exactly the k largest per row
    pruned = knn_similarity(x, neighbours=3, shrinkage=5.0).toarray()
    for i in range(12):
        kept = np.flatnonzero(pruned[i])
        assert len(kept) <= 3
        assert set(kept) == set(np.argsort(-ref[i], kind="stable")[: len(kept)])


def test_itemknn_weightings() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 1, 1], [2, 0, 0, 0], [0, 3, 0, 0]], dtype=np.float32))
    tfidf = reweight(x, "tfidf", 1.2, 0.75).toarray()
    # user 0 touches all 4 items: idf log(4/4) = 0; users 1, 2: log(4)
    assert np.allclose(tfidf[0], 0) and tfidf[1, 0] == pytest.approx(2 * np.log(4))
    bm = reweight(x, "bm25", 1.2, 0.75).toarray()
    length = np.array([3, 4, 1, 1.0])
    avg = length.mean()
    idf1 = np.log((4 - 1 + 0.5) / (1 + 0.5) + 1)
    want = 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * length[0] / avg)) * idf1
    assert bm[1, 0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="weighting"):
        reweight(x, "lsi", 1.2, 0.75)


def test_itemknn_scores_are_history_times_similarity() -> None:
    ds, _, _ = planted()
    model = ItemKNN(neighbours=20, shrinkage=2.0, weighting="bm25").fit(ds)
    s = model.score([3, 4])
    ref = (model.history_[[3, 4]] @ model.similarity_).toarray()
    assert np.allclose(s, ref)
    # folding in a user's own history reproduces their scores
    seq = ds.user_sequence(3)
    assert np.allclose(model.score_history(seq["item"]), s[0], atol=1e-6)
    nb, _ = model.similar_items([5], k=3)
    row = model.similarity_[5].toarray().ravel()
    row[5] = -np.inf
    assert set(nb[0]) == set(np.argsort(-row, kind="stable")[:3])


# -- EASE ----------------------------------------------------------------------------------------


def test_ease_matches_the_closed_form() -> None:
    ds, _, _ = planted(n_groups=2, users_per=20, items_per=8)
    model = EASE(l2=3.0).fit(ds)
    x = ds.implicit.toarray() > 0
    g = x.T.astype(np.float64) @ x + 3.0 * np.eye(ds.n_items)
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    assert np.allclose(model.weights_, b, atol=1e-4)
    assert np.all(np.diag(model.weights_) == 0)
    assert np.allclose(model.score([0]), x[[0]] @ b, atol=1e-4)
    assert np.allclose(model.score_history(ds.user_sequence(0)["item"]), model.score([0])[0])


def test_ease_refuses_catalogues_above_the_limit() -> None:
    ds, _, _ = planted(n_groups=2, users_per=5, items_per=8)
    with pytest.raises(TooManyItemsError, match="max_items=10"):
        EASE(max_items=10).fit(ds)


# -- ALS -----------------------------------------------------------------------------------------


def test_als_confidence() -> None:
    w = sp.csr_matrix(np.array([[0, 3.0], [1.0, 0]], dtype=np.float32))
    assert confidence_matrix(w, 2.0).toarray().tolist() == [[0, 7], [3, 0]]
    c = confidence_matrix(w, 2.0, "log", epsilon=1.0).toarray()
    assert c[0, 1] == pytest.approx(1 + 2 * np.log(4))


def test_als_fold_in_is_implicits_exact_least_squares() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    ds, _, _ = planted()
    model = ALS(factors=8, iterations=10, l2=2.0, alpha=3.0, num_threads=1, seed=1).fit(ds)
    user = 7
    seq = ds.user_sequence(user)
    w = np.ones(len(seq["item"]), np.float32)
    mine = model.user_vector(seq["item"], w)
    engine = AlternatingLeastSquares(factors=8, regularization=2.0, alpha=1.0, num_threads=1)
    engine.item_factors = model.item_factors_
    row = confidence_matrix(ds.implicit[[user]], 3.0)
    theirs = engine.recalculate_user(0, row)
    assert np.allclose(mine, theirs, atol=1e-4)
    # after convergence, folding in a training user lands next to their trained factors
    corr = np.corrcoef(model.score_history(seq["item"]), model.score([user])[0])[0, 1]
    assert corr > 0.99


# -- BPR -----------------------------------------------------------------------------------------


def test_pair_sampler_is_seeded_weighted_and_avoids_positives() -> None:
    m = sp.csr_matrix(
        np.array([[1, 0, 0, 0, 9], [0, 4, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=np.float32)
    )
    s = PairSampler(m, seed=4, weighting="linear", samples_per_epoch=32_000)
    u, i, j = s.epoch(0)
    assert not s.is_positive(u, j).any()
    assert s.is_positive(u, i).all()
    # pairs drawn in proportion to their weight: (0,4) has 9 of 16
    share = np.mean((u == 0) & (i == 4))
    assert share == pytest.approx(9 / 16, abs=0.01)
    u2, _, j2 = s.epoch(0)
    assert np.array_equal(u, u2) and np.array_equal(j, j2)
    assert not np.array_equal(s.epoch(1)[0], u)
    uni = PairSampler(m, seed=4, weighting="uniform")
    uu, ii, _ = uni.epoch(0)
    assert sorted(zip(uu.tolist(), ii.tolist(), strict=True)) == [
        (0, 0), (0, 4), (1, 1), (2, 2), (2, 3)
    ]  # fmt: skip


def test_pair_sampler_bitset_and_binary_search_agree() -> None:
    # Small catalogues test membership with one bit per cell, large ones by binary search:
    # both must give the same answers and so the same epochs.
    m = sp.random(300, 500, density=0.05, random_state=1, format="csr")

    class Searching(PairSampler):
        BITSET_BYTES = 0

    bits, search = PairSampler(m, seed=3), Searching(m, seed=3)
    assert bits._bits is not None and search._bits is None
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 300, 50_000), rng.integers(0, 500, 50_000)
    dense = m.toarray() > 0
    assert np.array_equal(bits.is_positive(u, i), dense[u, i])
    assert np.array_equal(search.is_positive(u, i), dense[u, i])
    for epoch in range(2):
        for a, b in zip(bits.epoch(epoch), search.epoch(epoch), strict=True):
            assert np.array_equal(a, b)


def test_bpr_loss_matches_the_formula_and_ddp_scaling() -> None:
    module = BPRModule(4, 6, 3, l2=0.01, seed=2)
    u, i, j = torch.tensor([0, 1, 3]), torch.tensor([2, 2, 5]), torch.tensor([1, 0, 4])
    with torch.no_grad():
        module.bias.weight.normal_()  # type: ignore[union-attr]
        U, V = module.user.weight, module.item.weight
        b = module.bias.weight.squeeze(-1)  # type: ignore[union-attr]
        x = (U[u] * (V[i] - V[j])).sum(-1) + b[i] - b[j]
        reg = (
            U[u].pow(2).sum(-1) + V[i].pow(2).sum(-1) + V[j].pow(2).sum(-1) + b[i] ** 2 + b[j] ** 2
        )
        want = (torch.log1p(torch.exp(-x)) + 0.01 * reg).mean()
    assert float(module(u, i, j, 1 / 3).detach()) == pytest.approx(float(want), rel=1e-6)

    # the subclass path (pair_scores + regularisation) gives the same loss and gradients
    class Generic(BPRModule):
        def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            return super().pair_scores(users, items)

    generic = Generic(4, 6, 3, l2=0.01, seed=2)
    generic.load_state_dict(module.state_dict())
    for m in (module, generic):
        m.zero_grad()
        m(u, i, j, 1 / 3).backward()
    for a, b2 in zip(module.parameters(), generic.parameters(), strict=True):
        assert torch.allclose(a.grad, b2.grad, atol=1e-7)  # type: ignore[arg-type]

    # two ranks' scaled losses sum to twice the mean: DDP's average is the global mean
    rows = np.arange(3)
    total = 0.0
    for r in range(2):
        ctx = D.DistContext(rank=r, world_size=2)
        local, scale = D.shard(rows, ctx)
        total += float(module(u[local], i[local], j[local], scale).detach())
    assert total / 2 == pytest.approx(float(module(u, i, j, 1 / 3).detach()), rel=1e-6)


def test_bpr_fold_in_gradient_and_optimum() -> None:
    from scipy.optimize import check_grad, minimize

    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 5)).astype(np.float32)
    bias = rng.normal(size=40).astype(np.float32)
    items, w = np.array([1, 4, 9]), np.array([1.0, 2.0, 1.0], np.float32)
    u = bpr_user_vector(v, bias, items, w, l2=0.05, seed=0)
    # the optimum: the gradient of the objective vanishes there
    others = np.setdiff1d(np.arange(40), items)

    def objective(x: np.ndarray) -> float:
        d = (v[items] @ x)[:, None] - (v[others] @ x)[None, :] + bias[items][:, None] - bias[others]
        loss = np.logaddexp(0, -d).mean(axis=1)
        return float((loss * w / w.sum()).sum() + 0.05 * x @ x)

    res = minimize(objective, np.zeros(5), method="BFGS")
    assert np.allclose(u, res.x, atol=1e-3)
    assert check_grad(objective, lambda x: np.zeros(5), u.astype(np.float64)) < 1e-2


def test_bpr_early_stopping_on_validation(tmp_path: Any) -> None:
    ds, _, _ = planted(seed=2)
    rows = np.arange(len(ds))
    valid_rows = rows[ds.seq_indptr[1:][np.diff(ds.seq_indptr) > 1] - 1]
    train, valid = ds.subset(np.setdiff1d(rows, valid_rows)), ds.subset(valid_rows)
    model = BPR(factors=8, epochs=30, batch_size=256, lr=0.05, patience=2, seed=0)
    model.fit(train, valid)
    res = model.train_result_
    assert res.best_epoch is not None and res.best_metric is not None and res.best_metric > 0
    assert all("metric" in row for row in res.history)
    assert res.stopped_early == (res.epochs_run < 30)
    # the saved config carries the training history (run manifest material)
    cfg = model.save(tmp_path / "m") / "config.json"
    assert '"best_epoch"' in cfg.read_text()


# -- LightGCN ------------------------------------------------------------------------------------


def test_lightgcn_adjacency_and_propagation() -> None:
    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))
    a = normalized_adjacency(r).to_dense().numpy()
    # nodes: u0 u1 i0 i1 i2 with degrees 2 1 1 2 0
    assert a[0, 2] == pytest.approx(1 / np.sqrt(2 * 1))
    assert a[0, 3] == pytest.approx(1 / np.sqrt(2 * 2))
    assert a[1, 3] == pytest.approx(1 / np.sqrt(1 * 2))
    assert np.allclose(a, a.T) and np.all(a[4] == 0)
    module = LightGCNModule(2, 3, 4, 2, normalized_adjacency(r), l2=0.0, seed=0)
    e0 = module.embedding.weight.detach().numpy()
    u, i = module.propagate()
    want = (e0 + a @ e0 + a @ (a @ e0)) / 3
    assert np.allclose(np.vstack([u.detach().numpy(), i.detach().numpy()]), want, atol=1e-6)
    # the isolated item keeps a third of its own embedding
    assert np.allclose(i.detach().numpy()[2], e0[4] / 3)


# -- planted structure: every personalised family finds the groups ----------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("itemknn", {"neighbours": 20}),
        ("ease", {"l2": 10.0}),
        ("als", {"factors": 8, "iterations": 10, "num_threads": 1}),
        ("bpr", {"factors": 16, "epochs": 20, "batch_size": 512, "lr": 0.05}),
        ("lightgcn", {"dim": 16, "epochs": 20, "batch_size": 512, "lr": 0.05}),
    ],
)
def test_planted_groups_are_recovered(name: str, params: dict[str, Any]) -> None:
    ds, ug, ig = planted()
    model: Recommender = create_model(name, **params).fit(ds)
    users = np.arange(ds.n_users)

    def own_group(ids: np.ndarray) -> float:
        # item 0 is viewed across all groups: recommending it is right for everyone
        return float(((ig[ids] == ug[:, None]) | (ids == 0)).mean())

    own = own_group(model.recommend(users, k=5)[0])
    pop_own = own_group(Popularity().fit(ds).recommend(users, k=5)[0])
    print(f"\n{name}: {own:.3f} in the user's group (popularity {pop_own:.3f})")
    assert own >= 0.95, f"{name}: {own:.2f} of recommendations in the user's own group"
    assert pop_own < 0.6
    # a new user who viewed two items of group 2 gets group-2 items
    new, _ = model.recommend_history(np.flatnonzero(ig == 2)[:2], k=5)
    assert (ig[new] == 2).mean() >= 0.8
