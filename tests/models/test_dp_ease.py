"""The ``dp`` model: bounded contributions, noise as calibrated, accounting, private fallback.

The protocol-level checks (shapes, save/load, cold users, beating popularity at a weak budget)
are in the shared contract suite; these test the privacy mechanics themselves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from shopsight.data.dataset import Dataset
from shopsight.models.base import Recommender
from shopsight.models.dp_ease import (
    AUTO_CLIP_SHARE,
    PrivateEASE,
    calibrate,
    choose_clip,
    clip_rows,
    count_sensitivity,
    epsilon_spent,
    gram_sensitivity,
    release_statistics,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def random_binary(users: int, items: int, max_len: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(users):
        n = int(rng.integers(0, max_len + 1))
        its = rng.choice(items, size=min(n, items), replace=False)
        rows += [u] * len(its)
        cols += its.tolist()
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(users, items))


def upper(m: np.ndarray) -> np.ndarray:
    return m[np.triu_indices(m.shape[0])]


def test_clip_rows_keeps_a_uniform_subset_of_each_row() -> None:
    x = random_binary(50, 40, 30, seed=1)
    rng = np.random.default_rng(0)
    hits = np.zeros(x.shape)
    for _ in range(300):
        c = clip_rows(x, 5, rng)
        lengths = np.diff(c.indptr)
        assert (lengths == np.minimum(np.diff(x.indptr), 5)).all()
        assert (c.multiply(x) != c).nnz == 0  # a subset of the user's own items
        assert set(np.unique(c.data)) <= {1.0}
        hits += c.toarray()
    # a row of length L keeps each of its items with probability 5 / L
    lengths = np.diff(x.indptr)
    u = int(np.argmax(lengths))
    expected = 5 / lengths[u]
    freq = hits[u, x[u].indices] / 300
    assert abs(freq.mean() - expected) < 0.02
    assert freq.min() > expected / 3  # no item systematically left out


@pytest.mark.parametrize("unit", ["user", "interaction"])
def test_sensitivity_bounds_hold_for_clipped_rows(unit: str) -> None:
    clip = 6
    x = clip_rows(random_binary(40, 25, 15, seed=2), clip, np.random.default_rng(0))
    counts = np.asarray(x.sum(axis=0)).ravel()
    gram = (x.T @ x).toarray()
    worst_c = worst_g = 0.0
    for u in range(x.shape[0]):
        if unit == "user":
            y = x.copy().tolil()
            y[u, :] = 0
        else:
            if not x[u].nnz:
                continue
            y = x.copy().tolil()
            y[u, x[u].indices[0]] = 0
        y = sp.csr_matrix(y)
        dc = np.linalg.norm(counts - np.asarray(y.sum(axis=0)).ravel())
        dg = np.linalg.norm(upper(gram - (y.T @ y).toarray()))
        worst_c, worst_g = max(worst_c, dc), max(worst_g, dg)
    assert worst_c <= count_sensitivity(unit, clip) + 1e-9  # type: ignore[arg-type]
    assert worst_g <= gram_sensitivity(unit, clip) + 1e-9  # type: ignore[arg-type]
    # and the bounds are tight: some user here has `clip` items
    assert math.isclose(worst_c, count_sensitivity(unit, clip))  # type: ignore[arg-type]
    assert math.isclose(worst_g, gram_sensitivity(unit, clip))  # type: ignore[arg-type]


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_calibration_spends_the_target_budget(epsilon: float, accountant: str) -> None:
    cal = calibrate(epsilon, 1e-5, 0.2, accountant)  # type: ignore[arg-type]
    assert cal.epsilon <= epsilon * 1.005
    assert cal.epsilon >= epsilon * 0.97  # the noise is not needlessly large either
    # the split: the counts get 20% of 1/sigma^2, the Gram the rest
    assert math.isclose(cal.sigma_counts**-2, 0.2 * cal.sigma**-2, rel_tol=1e-9)
    assert math.isclose(cal.sigma_gram**-2, 0.8 * cal.sigma**-2, rel_tol=1e-9)
    # more noise, less epsilon; less noise, more
    assert epsilon_spent([cal.sigma_counts * 1.5, cal.sigma_gram * 1.5], 1e-5) < cal.epsilon
    assert epsilon_spent([cal.sigma_counts / 1.5, cal.sigma_gram / 1.5], 1e-5) > cal.epsilon


@pytest.mark.parametrize("unit", ["user", "interaction"])
def test_noise_added_matches_the_accountants_claim(unit: str) -> None:
    """Empirical noise of the released statistics over repeated runs vs the calibration; the
    empirical noise multipliers, fed to a second accountant, give back the target epsilon."""
    clip, epsilon, delta = 8, 2.0, 1e-4
    x = random_binary(60, 12, clip, seed=3)  # rows within the clip: no sampling, exact stats
    exact_counts = np.asarray(x.sum(axis=0)).ravel()
    cal = calibrate(epsilon, delta, 0.25, "prv")
    res_c, res_g = [], []
    for run in range(400):
        rel = release_statistics(
            x,
            clip=clip,
            top_items=12,
            calibration=cal,
            unit=unit,  # type: ignore[arg-type]
            rng=np.random.default_rng(run),
        )
        assert np.array_equal(rel.gram, rel.gram.T)
        exact_gram = (x[:, rel.items].T @ x[:, rel.items]).toarray()
        res_c.append(rel.counts - exact_counts)
        res_g.append(upper(rel.gram - exact_gram))
    rc, rg = np.concatenate(res_c), np.concatenate(res_g)
    want_c = cal.sigma_counts * count_sensitivity(unit, clip)  # type: ignore[arg-type]
    want_g = cal.sigma_gram * gram_sensitivity(unit, clip)  # type: ignore[arg-type]
    assert rel.count_std == pytest.approx(want_c) and rel.gram_std == pytest.approx(want_g)
    assert abs(rc.mean()) < 4 * want_c / math.sqrt(len(rc))  # unbiased
    assert rc.std() == pytest.approx(want_c, rel=0.05)  # 4,800 draws: ~1% standard error
    assert rg.std() == pytest.approx(want_g, rel=0.05)  # 31,200 draws
    mult_c = rc.std() / count_sensitivity(unit, clip)  # type: ignore[arg-type]
    mult_g = rg.std() / gram_sensitivity(unit, clip)  # type: ignore[arg-type]
    assert epsilon_spent([mult_c, mult_g], delta, "rdp") == pytest.approx(epsilon, rel=0.1)


def dataset_from(x: sp.csr_matrix) -> Dataset:
    coo = x.tocoo()
    return Dataset.from_arrays(
        user_ids=np.array([f"u{i:04d}" for i in range(x.shape[0])], dtype=object),
        item_ids=np.array([f"i{j:04d}" for j in range(x.shape[1])], dtype=object),
        user=coo.row,
        item=coo.col,
        event=np.array(["purchase"] * len(coo.row)),
    )


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return dataset_from(random_binary(400, 120, 40, seed=4))


def test_model_records_the_budget_and_serves_cold_users_privately(
    ds: Dataset, tmp_path: Path
) -> None:
    model = PrivateEASE(epsilon=4.0, max_items_per_user=16, top_items=80, seed=1).fit(ds)
    p = model.privacy_
    assert p["private"] and p["unit"] == "user"
    assert p["epsilon"] == pytest.approx(4.0, rel=0.03) and p["epsilon"] <= 4.0 * 1.005
    assert p["delta"] == pytest.approx(1 / (10 * 400), rel=0.05)  # every user has a history
    assert p["releases"]["item_counts"]["budget_share"] == 0.1
    # cold users get the noisy counts, not the exact ones, and the exact ones are not kept
    exact = np.asarray(exact_counts(ds)).ravel()
    cold = model.score([-1])[0]
    assert np.array_equal(cold, model.item_popularity_)
    assert not np.allclose(cold, exact)
    std = p["releases"]["item_counts"]["noise_std"]
    assert std == pytest.approx(p["releases"]["item_counts"]["noise_multiplier"] * 4.0)
    out = model.save(tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    assert config["meta"]["privacy"]["epsilon"] == p["epsilon"]
    loaded = Recommender.load(out)
    assert np.array_equal(loaded.item_popularity_, model.item_popularity_)
    assert loaded.privacy_ == json.loads(json.dumps(p))  # type: ignore[attr-defined]
    # the noise is secret: the same seed (public, in the config) does not redraw it ...
    again = PrivateEASE(epsilon=4.0, max_items_per_user=16, top_items=80, seed=1).fit(ds)
    assert not np.array_equal(again.item_popularity_, model.item_popularity_)
    assert model.privacy_["noise"].startswith("secret")
    # ... unless a noise_seed is given on purpose, and the record says so
    kw = {"epsilon": 4.0, "max_items_per_user": 16, "top_items": 80, "noise_seed": 7}
    same = [PrivateEASE(**kw).fit(ds) for _ in range(2)]
    other = PrivateEASE(**{**kw, "noise_seed": 8}).fit(ds)
    assert np.array_equal(same[0].weights_, same[1].weights_)
    assert not np.array_equal(other.item_popularity_, same[0].item_popularity_)
    assert "reproducible" in same[0].privacy_["noise"]


def exact_counts(ds: Dataset) -> np.ndarray:
    x = ds.implicit.tocsr()
    x.data[:] = 1
    return np.asarray(x.sum(axis=0))


def test_without_epsilon_no_noise_is_added(ds: Dataset) -> None:
    model = PrivateEASE(epsilon=None, max_items_per_user=1000, top_items=120).fit(ds)
    assert model.privacy_["private"] is False and model.privacy_["epsilon"] is None
    assert np.allclose(model.item_popularity_, exact_counts(ds).ravel())


def test_auto_clip_is_a_private_median_of_history_lengths(ds: Dataset) -> None:
    rng = np.random.default_rng(0)
    short = rng.integers(3, 9, 5000)  # Beauty-like: a handful of items a user
    long = rng.integers(40, 200, 5000)  # MovieLens-like
    assert choose_clip(short, None, rng)[0] == 8
    assert choose_clip(long, None, rng)[0] == 32
    assert choose_clip(rng.integers(12, 20, 5000), None, rng)[0] == 16
    # private: with thousands of users the best candidate wins almost surely at epsilon 0.2
    picks = [choose_clip(short, 0.2, np.random.default_rng(i))[0] for i in range(20)]
    assert picks == [8] * 20
    # one user more, or one interaction more, moves each utility by at most 1 (the
    # sensitivity the mechanism assumes), around every bound
    mixed = rng.integers(1, 60, 301)
    a = choose_clip(mixed, None, rng)[1]
    for extra in (1, 8, 11, 12, 16, 22, 23, 32, 500):
        assert np.abs(choose_clip(np.r_[mixed, extra], None, rng)[1] - a).max() <= 1.0
    for u in range(len(mixed)):
        plus = mixed.copy()
        plus[u] += 1
        assert np.abs(choose_clip(plus, None, rng)[1] - a).max() <= 1.0
    # with few users the choice is random: every clip has a chance
    few = np.array([5, 9, 20, 40])
    seen = {choose_clip(few, 0.2, np.random.default_rng(i))[0] for i in range(200)}
    assert seen == {8, 16, 32}
    assert choose_clip(np.full(100, 10_000), None, rng)[0] == 32  # within the range
    # the model spends the clip choice's share and reports the whole budget
    model = PrivateEASE(epsilon=4.0, top_items=50).fit(ds)
    p = model.privacy_
    assert p["clip_choice"]["epsilon"] == pytest.approx(AUTO_CLIP_SHARE * 4.0)
    assert p["clip_choice"]["chosen"] == p["clip_items_per_user"] == model.clip_
    assert p["epsilon"] == pytest.approx(4.0, rel=0.02)


def test_interaction_unit_needs_less_noise(ds: Dataset) -> None:
    user = PrivateEASE(epsilon=2.0, max_items_per_user=16, top_items=50).fit(ds).privacy_
    inter = PrivateEASE(epsilon=2.0, unit="interaction", max_items_per_user=16, top_items=50)
    p = inter.fit(ds).privacy_
    assert p["unit"] == "interaction"
    assert p["releases"]["gram"]["sensitivity"] == pytest.approx(4.0)
    assert p["releases"]["gram"]["noise_std"] < user["releases"]["gram"]["noise_std"]
    assert p["delta"] < user["delta"]  # one per interaction: more units, smaller delta


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("epsilon", 0.0),
        ("epsilon", float("inf")),
        ("delta", 1.5),
        ("unit", "household"),
        ("max_items_per_user", 0),
        ("popularity_share", 1.0),
        ("accountant", "moments"),
    ],
)
def test_bad_parameters_are_named(ds: Dataset, param: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"dp\.{param}="):
        PrivateEASE(**{param: value}).fit(ds)  # type: ignore[arg-type]


def test_when_no_item_clears_the_noise_everyone_gets_private_popularity(
    ds: Dataset, tmp_path: Path
) -> None:
    model = PrivateEASE(epsilon=1.0, min_count_ratio=1e9).fit(ds)
    assert len(model.items_) == 0 and model.privacy_["releases"]["gram"]["items"] == 0
    s = model.score(np.arange(5))
    assert np.isfinite(s).all()
    order = np.argsort(-model.item_popularity_, kind="stable")
    ids, _ = model.recommend(np.arange(5), k=5, exclude_seen=False)
    assert (ids == order[:5]).all()
    assert np.isfinite(model.score_history(np.array([0, 1]))).all()
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert np.array_equal(loaded.score(np.arange(5)), s)
