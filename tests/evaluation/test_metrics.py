"""Metrics against hand-computed values (every number below is worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shopsight.evaluation import metrics as M

L3, L5 = 1 / math.log2(3), 1 / math.log2(5)

# User A: list [3, 1, 7, 2, 9], relevant {1, 2, 4}: hits at positions 2 and 4 (1-based).
# User B: relevant {} (no test items): excluded from every mean.
# User C: list [8, -1, -1, -1, -1] (a short list, padded), relevant {8}: hit at position 1.
# User D: list [0, 1, 2, 3, 4], relevant {4, 10..15} (7 items): hit at position 5.
LISTS = np.array(
    [
        [3, 1, 7, 2, 9],
        [5, 6, 0, 1, 2],
        [8, -1, -1, -1, -1],
        [0, 1, 2, 3, 4],
    ]
)
RELEVANT = [{1, 2, 4}, set(), {8}, {4, 10, 11, 12, 13, 14, 15}]


@pytest.fixture
def hits():
    return M.hits_from_lists(LISTS, RELEVANT)


def test_hits_from_lists(hits):
    h, n = hits
    assert h.tolist() == [
        [False, True, False, True, False],
        [False] * 5,
        [True, False, False, False, False],
        [False, False, False, False, True],
    ]
    assert n.tolist() == [3, 0, 1, 7]


def test_per_user_values_by_hand(hits):
    h, n = hits
    np.testing.assert_allclose(M.precision_at_k(h, 5), [2 / 5, 0, 1 / 5, 1 / 5])
    np.testing.assert_allclose(M.precision_at_k(h, 3), [1 / 3, 0, 1 / 3, 0])
    r5 = M.recall_at_k(h, n, 5)
    assert math.isnan(r5[1])
    np.testing.assert_allclose(r5[[0, 2, 3]], [2 / 3, 1, 1 / 7])
    np.testing.assert_allclose(M.hit_rate_at_k(h, 1), [0, 0, 1, 0])
    np.testing.assert_allclose(M.hit_rate_at_k(h, 2), [1, 0, 1, 0])
    # NDCG@5 of A: DCG = 1/log2(3) + 1/log2(5); IDCG over min(5, 3) = 3 positions.
    nd5 = M.ndcg_at_k(h, n, 5)
    np.testing.assert_allclose(nd5[0], (L3 + L5) / (1 + L3 + 0.5))
    np.testing.assert_allclose(nd5[2], 1.0)  # C: its only relevant item first
    np.testing.assert_allclose(nd5[3], (1 / math.log2(6)) / (1 + L3 + 0.5 + L5 + 1 / math.log2(6)))
    np.testing.assert_allclose(M.ndcg_at_k(h, n, 3)[0], L3 / (1 + L3 + 0.5))
    np.testing.assert_allclose(M.mrr_at_k(h, 5), [1 / 2, 0, 1, 1 / 5])
    np.testing.assert_allclose(M.mrr_at_k(h, 1), [0, 0, 1, 0])
    # AP@5 of A: precisions at the hits 1/2 and 2/4, sum 1.0, / min(5, 3).
    m5 = M.map_at_k(h, n, 5)
    np.testing.assert_allclose(m5[[0, 2, 3]], [1.0 / 3, 1.0, 0.2 / 5])
    # Microsoft's MAP divides by |T| instead: D differs (0.2 / 7).
    ms5 = M.map_at_k(h, n, 5, denominator="relevant")
    np.testing.assert_allclose(ms5[[0, 2, 3]], [1.0 / 3, 1.0, 0.2 / 7])
    np.testing.assert_allclose(M.map_at_k(h, n, 3)[0], 0.5 / 3)


def test_ranking_metrics_one_pass_matches_single_functions(hits):
    h, n = hits
    out = M.ranking_metrics(h, n, [1, 3, 5], M.TOPK_METRICS)
    assert set(out) == {f"{m}@{k}" for m in M.TOPK_METRICS for k in (1, 3, 5)}
    for k in (1, 3, 5):
        np.testing.assert_allclose(out[f"precision@{k}"], M.precision_at_k(h, k))
        np.testing.assert_allclose(out[f"recall@{k}"], M.recall_at_k(h, n, k))
        np.testing.assert_allclose(out[f"hit@{k}"], M.hit_rate_at_k(h, k))
        np.testing.assert_allclose(out[f"ndcg@{k}"], M.ndcg_at_k(h, n, k))
        np.testing.assert_allclose(out[f"mrr@{k}"], M.mrr_at_k(h, k))
        np.testing.assert_allclose(out[f"map@{k}"], M.map_at_k(h, n, k))
        np.testing.assert_allclose(out[f"ms_map@{k}"], M.map_at_k(h, n, k, "relevant"))


def test_users_without_test_items_are_excluded_from_means(hits):
    h, n = hits
    out = M.ranking_metrics(h, n, [5], ["precision", "hit", "ndcg"])
    # Precision of B is 0, but B has no relevant items: the mean is over A, C, D only.
    assert M.mean_over_users(out["precision@5"], n) == pytest.approx((2 / 5 + 1 / 5 + 1 / 5) / 3)
    assert M.mean_over_users(out["hit@5"], n) == pytest.approx(1.0)
    assert M.mean_over_users(np.array([1.0, np.nan]), None) == 1.0
    assert math.isnan(M.mean_over_users(np.array([0.5]), np.array([0])))


def test_cut_off_longer_than_lists_pads_with_misses():
    h, n = M.hits_from_lists([[1, 2]], [{2}])
    assert M.precision_at_k(h, 4)[0] == pytest.approx(1 / 4)
    assert M.ndcg_at_k(h, n, 4)[0] == pytest.approx(L3)
    assert M.ranking_metrics(h, n, [4], ["recall"])["recall@4"][0] == 1.0


def test_inconsistent_inputs_are_refused():
    with pytest.raises(M.MetricError, match="more hits than relevant"):
        M.recall_at_k([[True, True]], [1], 2)
    with pytest.raises(M.MetricError, match="rows"):
        M.recall_at_k([[True]], [1, 2], 1)
    with pytest.raises(M.MetricError, match="unknown metric"):
        M.canonical_metric("accuracy")
    with pytest.raises(M.MetricError, match="integer K"):
        M.parse_metrics(["ndcg@ten"])


def test_parse_metrics_collects_cut_offs_and_aliases():
    names, ks = M.parse_metrics(["ndcg@10", "HR@5", "Recall", "ILD"], [20])
    assert names == ["ndcg", "hit", "recall", "diversity"]
    assert ks == [5, 10, 20]


def test_auc_with_ties_by_hand():
    # Positives 0.8 and 0.3, negatives 0.8 and 0.1: pairs 0.5 + 1 + 0 + 1 = 2.5 of 4.
    y, s = [1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]
    assert M.auc_score(y, s) == pytest.approx(0.625)
    assert M.auc_score(y, s) == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(M.auc_score([1, 1], [0.1, 0.2]))


def test_gauc_weights_by_hand():
    # Group a: AUC 1 (4 rows, 1 positive); group b: AUC 0 (2 rows, 1 positive); group c: one
    # class only, left out.
    y = [1, 0, 0, 0, 0, 1, 1, 1]
    s = [0.9, 0.1, 0.2, 0.3, 0.8, 0.1, 0.5, 0.5]
    g = ["a", "a", "a", "a", "b", "b", "c", "c"]
    assert M.gauc(y, s, g) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)
    assert M.gauc(y, s, g, weight="positives") == pytest.approx(0.5)
    assert M.gauc(y, s, g, weight="uniform") == pytest.approx(0.5)


def test_log_loss_by_hand():
    assert M.log_loss([1, 0], [0.9, 0.2]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    assert M.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))  # clipped, finite
    with pytest.raises(M.MetricError):
        M.log_loss([2], [0.5])


def test_rating_metrics_by_hand():
    y, p = [1, 2, 3], [1, 3, 5]  # errors 0, 1, 2
    assert M.rmse(y, p) == pytest.approx(math.sqrt(5 / 3))
    assert M.mae(y, p) == pytest.approx(1.0)
    assert M.r2(y, p) == pytest.approx(1 - 5 / 2)  # SS_res 5, SS_tot 2
    assert M.r2(y, y) == 1.0


def test_coverage_gini_novelty_by_hand():
    lists = np.array([[0, 1], [1, 2]])
    assert M.catalogue_coverage(lists, 5) == pytest.approx(3 / 5)
    # counts [1, 2, 1, 0, 0] -> sorted [0, 0, 1, 1, 2]; sum (2i - n - 1) x_i = 2 + 8 = 10.
    assert M.gini_index(lists, 5) == pytest.approx(10 / (5 * 4))
    assert M.gini_from_counts([3, 3, 3]) == pytest.approx(0.0)
    assert M.gini_from_counts([0, 0, 0, 6]) == pytest.approx(1 - 1 / 4)
    # popularity p = counts / 10 users; the cold item counts as seen once.
    nov = M.novelty(np.array([[0, 1], [2, 3], [-1, -1]]), [10, 5, 1, 0], 10)
    np.testing.assert_allclose(nov[:2], [0.5, math.log2(10)])
    assert math.isnan(nov[2])


def test_intra_list_diversity_by_hand():
    f = np.array([[1.0, 0], [0, 1.0], [2.0, 2.0], [0, 0]])
    # cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/sqrt(2): mean 0.4714, ILD 1 - that.
    ild = M.intra_list_diversity(np.array([[0, 1, 2], [0, 3, -1], [1, -1, -1]]), f)
    assert ild[0] == pytest.approx(1 - (2 / math.sqrt(2)) / 3)
    assert ild[1] == pytest.approx(1.0)  # an item without features is dissimilar
    assert math.isnan(ild[2])  # fewer than two items
