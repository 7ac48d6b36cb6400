"""The chunked full-ranking evaluator against a brute-force per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from shopsight.evaluation import metrics as M
from shopsight.evaluation.ranking import (
    EvaluationError,
    chunk_size_for,
    evaluate_ranking,
    standard_slices,
    tie_ranks,
    topk_with_ties,
)

N_USERS, N_ITEMS = 60, 40


def _random_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    # Rounded scores: many ties, also at the K-th position.
    scores = np.round(rng.random((N_USERS, N_ITEMS)), 1).astype(np.float32)
    truth = sp.random(N_USERS, N_ITEMS, density=0.1, random_state=seed, format="csr")
    exclude = sp.random(N_USERS, N_ITEMS, density=0.2, random_state=seed + 1, format="csr")
    truth.data[:] = 1
    exclude.data[:] = 1
    return scores, truth, exclude


def _brute(scores, truth, exclude, ks, tie_rank, candidates=None):
    """Per user: mask, sort by (-score, tie rank), cut, and count hits; plain Python."""
    out: dict[str, list[float]] = {}
    users = []
    for u in range(scores.shape[0]):
        excl = set(exclude[u].indices.tolist())
        rel = set(truth[u].indices.tolist()) - excl
        if not rel:
            continue
        users.append(u)
        items = [
            i
            for i in range(scores.shape[1])
            if i not in excl and (candidates is None or candidates[i])
        ]
        items.sort(key=lambda i: (-scores[u, i], tie_rank[i]))
        for k in ks:
            top = items[:k]
            h = [i in rel for i in top]
            dcg = sum(1 / math.log2(p + 2) for p, x in enumerate(h) if x)
            idcg = sum(1 / math.log2(p + 2) for p in range(min(k, len(rel))))
            prec_sum, n_hit = 0.0, 0
            for p, x in enumerate(h):
                if x:
                    n_hit += 1
                    prec_sum += n_hit / (p + 1)
            first = next((p for p, x in enumerate(h) if x), None)
            vals = {
                "precision": sum(h) / k,
                "recall": sum(h) / len(rel),
                "hit": float(any(h)),
                "ndcg": dcg / idcg,
                "mrr": 0.0 if first is None else 1 / (first + 1),
                "map": prec_sum / min(k, len(rel)),
                "ms_map": prec_sum / len(rel),
            }
            for m, v in vals.items():
                out.setdefault(f"{m}@{k}", []).append(v)
    return users, out


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("tie_break", ["index", "random"])
def test_matches_brute_force_for_every_chunk_size(chunk, tie_break):
    scores, truth, exclude = _random_problem()
    ks = [1, 3, 5, 10]
    res = evaluate_ranking(
        lambda u: scores[u],
        truth,
        exclude=exclude,
        ks=ks,
        metrics=M.TOPK_METRICS,
        chunk_size=chunk,
        tie_break=tie_break,
        seed=3,
    )
    users, ref = _brute(scores, truth, exclude, ks, tie_ranks(N_ITEMS, tie_break, 3))
    assert res.users.tolist() == users
    assert res.info["dropped_pairs"] == truth.multiply(exclude).nnz
    for key, values in ref.items():
        np.testing.assert_allclose(res.per_user[key], values, err_msg=key)
        assert res.metrics[key] == pytest.approx(np.mean(values))


def test_topk_ties_are_exact_at_the_boundary():
    s = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], dtype=np.float32)
    idx, vals = topk_with_ties(s.copy(), 2, np.arange(5))
    assert idx.tolist() == [[1, 0]]  # by index, item 0 wins the tie
    assert vals.tolist() == [[pytest.approx(0.9), 0.5]]
    idx, _ = topk_with_ties(s.copy(), 3, np.array([4, 3, 0, 1, 2]))
    assert idx.tolist() == [[1, 2, 3]]  # by the given tie order: 2 before 3 before 0
    idx, _ = topk_with_ties(np.array([[1.0, -np.inf, 2.0]], np.float32), 4, np.arange(3))
    assert idx.tolist() == [[2, 0, -1, -1]]  # -inf never listed; short rows padded


@pytest.mark.parametrize("decimals", [None, 2, 0])
def test_blocked_topk_on_a_large_catalogue_is_exact(decimals):
    # 3,000 items, ties everywhere (also at the k-th position), -inf rows, a NaN row.
    rng = np.random.default_rng(5)
    s = rng.standard_normal((40, 3000)).astype(np.float32)
    if decimals is not None:  # ties everywhere, also among block maxima
        s = np.round(s, decimals).astype(np.float32)
    s[3, :2990] = -np.inf  # a row with fewer finite items than k
    s[4, :] = -np.inf
    tie_rank = tie_ranks(3000, "random", 1)
    idx, vals = topk_with_ties(s.copy(), 10, tie_rank)
    for r in range(40):
        order = np.lexsort((tie_rank, -s[r]))
        ref = [int(i) for i in order[:10] if np.isfinite(s[r, i])]
        assert idx[r].tolist() == ref + [-1] * (10 - len(ref)), r
    s[7, 11] = np.nan
    _, vals = topk_with_ties(s, 10, tie_rank)
    assert np.isnan(vals[7]).any() and not np.isnan(np.delete(vals, 7, axis=0)).any()


def test_random_ties_give_a_constant_model_chance_level():
    # Everything scores 0: with random tie-breaking, hit@1 is ~ 1/n_items over many users.
    n_users, n_items = 50, 10
    truth = sp.csr_matrix(
        (np.ones(n_users), (np.arange(n_users), np.zeros(n_users))), shape=(n_users, n_items)
    )
    res = evaluate_ranking(
        lambda u: np.zeros((len(u), n_items), np.float32),
        truth,
        ks=[1],
        metrics=["hit"],
        tie_break="random",
        seed=0,
    )
    # One fixed permutation for all users: the tie order is a property of the evaluation, so
    # item 0's position is the same for everyone; over seeds it is uniform.
    hits = [
        evaluate_ranking(
            lambda u: np.zeros((len(u), n_items), np.float32),
            truth,
            ks=[1],
            metrics=["hit"],
            seed=s,
        ).metrics["hit@1"]
        for s in range(150)
    ]
    assert res.metrics["hit@1"] in (0.0, 1.0)
    assert np.mean(hits) == pytest.approx(1 / n_items, abs=0.04)


def test_auc_matches_sklearn_per_user():
    scores, truth, exclude = _random_problem(1)
    res = evaluate_ranking(
        lambda u: scores[u], truth, exclude=exclude, ks=[5], metrics=["auc", "gauc"], chunk_size=9
    )
    ref, weights = [], []
    for u in res.users:
        excl = set(exclude[u].indices.tolist())
        items = [i for i in range(N_ITEMS) if i not in excl]
        rel = set(truth[u].indices.tolist()) - excl
        y = [i in rel for i in items]
        ref.append(roc_auc_score(y, scores[u, items]))
        weights.append(len(rel))
    np.testing.assert_allclose(res.per_user["auc"], ref)
    assert res.metrics["auc"] == pytest.approx(np.mean(ref))
    assert res.metrics["gauc"] == pytest.approx(np.average(ref, weights=weights))


def test_candidates_exclusion_and_mask_value():
    # User 0: relevant item 3 (not a candidate) and 1; item 2 excluded.
    scores = np.array([[0.1, 0.2, 0.9, 0.8, 0.3]], np.float32)
    truth = sp.csr_matrix(np.array([[0, 1, 0, 1, 0]]))
    exclude = sp.csr_matrix(np.array([[0, 0, 1, 0, 0]]))
    cand = np.array([True, True, True, False, True])
    res = evaluate_ranking(
        lambda u: scores[u].copy(),
        truth,
        exclude=exclude,
        candidates=cand,
        ks=[2],
        metrics=["recall", "precision"],
        return_lists=True,
    )
    assert res.lists.tolist() == [[4, 1]]  # 2 excluded, 3 not a candidate
    assert res.metrics["recall@2"] == pytest.approx(0.5)  # the non-candidate counts as a miss
    # ICLRec's rule: excluded items score 0 (here 0 beats nothing else's 0.1..0.3, so it ranks
    # after them), instead of never being ranked.
    neg = np.array([[-0.1, -0.2, 0.9, 0.8, -0.3]], np.float32)
    res0 = evaluate_ranking(
        lambda u: neg[u].copy(),
        truth,
        exclude=exclude,
        ks=[2],
        metrics=["recall"],
        mask_value=0.0,
        return_lists=True,
    )
    assert res0.lists.tolist() == [[3, 2]]


def test_dropped_pairs_and_users_without_test_items():
    truth = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]]))
    exclude = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0]]))
    res = evaluate_ranking(
        lambda u: np.tile(np.array([3.0, 2.0, 1.0], np.float32), (len(u), 1)),
        truth,
        exclude=exclude,
        ks=[1],
        metrics=["hit"],
    )
    assert res.info["dropped_pairs"] == 2
    assert res.users.tolist() == [0]  # user 1's only test item was a training item; 2 has none
    assert res.metrics["hit@1"] == 1.0


def test_sampled_mode_is_labelled_and_correct():
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 500
    truth_items = rng.integers(0, n_items, n_users)
    truth = sp.csr_matrix(
        (np.ones(n_users), (np.arange(n_users), truth_items)), shape=(n_users, n_items)
    )
    perfect = np.zeros((n_users, n_items), np.float32)
    perfect[np.arange(n_users), truth_items] = 1.0
    res = evaluate_ranking(
        lambda u: perfect[u], truth, ks=[1, 10], metrics=["hit", "ndcg", "auc"], sampled=99
    )
    assert res.mode == "sampled"
    assert set(res.metrics) == {
        "sampled_hit@1",
        "sampled_hit@10",
        "sampled_ndcg@1",
        "sampled_ndcg@10",
        "sampled_auc",
    }
    assert res.metrics["sampled_hit@1"] == 1.0 and res.metrics["sampled_auc"] == 1.0
    rnd = rng.random((n_users, n_items)).astype(np.float32)
    res_r = evaluate_ranking(lambda u: rnd[u], truth, ks=[10], metrics=["hit"], sampled=99, seed=1)
    assert res_r.metrics["sampled_hit@10"] == pytest.approx(10 / 100, abs=0.06)
    with pytest.raises(EvaluationError, match="not defined for sampled"):
        evaluate_ranking(lambda u: rnd[u], truth, ks=[10], metrics=["recall"], sampled=10)


def test_slices_and_segments():
    # Items 0-1 "popular", 2-3 "tail". User 0 relevant {0, 2}, user 1 relevant {3}.
    scores = np.array([[4, 3, 2, 1], [1, 2, 3, 4]], np.float32)
    truth = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1]]))
    item_slices = {"head": np.array([1, 1, 0, 0], bool), "tail": np.array([0, 0, 1, 1], bool)}
    res = evaluate_ranking(
        lambda u: scores[u].copy(),
        truth,
        ks=[1],
        metrics=["recall"],
        item_slices=item_slices,
        user_slices={"first": np.array([True, False])},
        segments=np.array(["a", "b"], object),
    )
    # Overall: user 0 hits item 0 (1 of 2), user 1 hits item 3 (1 of 1).
    assert res.metrics["recall@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert res.slices["head"] == {"users": 1.0, "recall@1": 1.0}  # only user 0 has head items
    assert res.slices["tail"]["recall@1"] == pytest.approx((0.0 + 1.0) / 2)
    assert res.slices["first"]["recall@1"] == pytest.approx(0.5)
    assert res.slices["segment=b"]["recall@1"] == pytest.approx(1.0)


def test_beyond_accuracy_metrics():
    scores = np.array([[3, 2, 1, 0], [3, 1, 2, 0]], np.float32)
    truth = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 1]]))
    feats = np.eye(4)
    res = evaluate_ranking(
        lambda u: scores[u].copy(),
        truth,
        ks=[2],
        metrics=["coverage", "gini", "novelty", "diversity"],
        item_counts=[4, 2, 1, 0],
        n_train_users=4,
        item_features=feats,
    )
    # lists [0, 1] and [0, 2]: 3 of 4 items; counts [2, 1, 1, 0].
    assert res.metrics["coverage@2"] == pytest.approx(0.75)
    assert res.metrics["gini@2"] == pytest.approx(M.gini_from_counts([2, 1, 1, 0]))
    assert res.metrics["novelty@2"] == pytest.approx(((0 + 1) / 2 + (0 + 2) / 2) / 2)
    assert res.metrics["diversity@2"] == pytest.approx(1.0)
    with pytest.raises(EvaluationError, match="novelty needs"):
        evaluate_ranking(lambda u: scores[u].copy(), truth, ks=[2], metrics=["novelty"])


def test_standard_slices():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    items, users = standard_slices(train, popular_fraction=0.2)
    assert items["cold_items"].tolist() == [False, False, True, True, False]
    assert items["popular"].tolist() == [True, False, False, False, False]
    assert items["long_tail"].tolist() == [False, True, False, False, True]
    assert users["cold_users"].tolist() == [False, False, True]


def test_chunk_size_follows_the_memory_budget():
    assert chunk_size_for(50_000, 512) == 512 * 2**20 // (12 * 50_000)
    assert chunk_size_for(10**9, 1) == 1


def test_bad_scores_are_reported():
    truth = sp.csr_matrix(np.eye(3))
    with pytest.raises(EvaluationError, match="shape"):
        evaluate_ranking(lambda u: np.zeros((len(u), 2), np.float32), truth)
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate_ranking(lambda u: np.full((len(u), 3), np.nan, np.float32), truth)
