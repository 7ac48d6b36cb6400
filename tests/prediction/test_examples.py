"""Impressions, labels and point-in-time features: no feature reads the future."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsight.data.store import Store
from shopsight.evaluation.metrics import auc_score
from shopsight.prediction.examples import (
    ExampleConfig,
    candidates,
    compute_features,
    correct_for_downsampling,
    temporal_split,
)
from shopsight.prediction.gbdt import GBDTPredictor

Shop = Any  # the session fixture of tests/prediction/conftest.py


def test_impressions_and_funnel_labels(shop: Shop) -> None:
    ex = shop.examples
    y = ex.labels
    assert len(ex) > 5000
    # Planted funnel: each stage is rarer than the one before, and nearly nested.
    assert y["click"].mean() > y["add_to_cart"].mean() > y["purchase"].mean() > 0
    assert (y["purchase"] <= y["add_to_cart"]).mean() > 0.99
    assert (y["add_to_cart"] <= y["click"]).mean() > 0.99
    assert np.all(np.diff(ex.ts.astype(np.int64)) >= 0)  # time order
    assert ex.dense.shape == (len(ex), len(ex.dense_names))
    assert np.isfinite(ex.dense).all()


def _writable_copy(shop: Shop, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.duckdb"
    shutil.copy(shop.store, dst)
    return dst


def _insert(store: Store, user: str, item: str, etype: str, ts: np.datetime64) -> None:
    store.conn.execute(
        """INSERT INTO events_clean (event_key, user_id, item_id, event_type, "timestamp",
               ts_ordinal, session_id, query, value, source, line)
           VALUES (hash(random()), ?, ?, ?, ?, false, 'planted', NULL, 19.0, 'test', 0)""",
        [user, item, etype, str(np.datetime_as_string(ts, unit="us"))],
    )


def test_features_at_t_ignore_events_at_or_after_t(shop: Shop, tmp_path: Path) -> None:
    ex = shop.examples
    # Candidates with distinct users and items, so one candidate's planted events are never
    # legitimately in another's past.
    rows, seen_u, seen_i = [], set(), set()
    for r in range(len(ex) // 2, len(ex)):
        if ex.users[r] not in seen_u and ex.items[r] not in seen_i:
            rows.append(r)
            seen_u.add(ex.users[r])
            seen_i.add(ex.items[r])
        if len(rows) == 30:
            break
    users, items, ts = ex.users[rows], ex.items[rows], ex.ts[rows]
    with Store(_writable_copy(shop, tmp_path)) as st:
        before = compute_features(st, shop.vocab, users, items, ts)
        for u, i, t in zip(users, items, ts, strict=True):
            for etype in ("view", "click", "add_to_cart", "purchase"):
                _insert(st, u, i, etype, t)  # exactly at t: not strictly before
                _insert(st, u, i, etype, t + np.timedelta64(3600, "s"))
        after = compute_features(st, shop.vocab, users, items, ts)
        np.testing.assert_array_equal(before.dense, after.dense)
        np.testing.assert_array_equal(before.hist, after.hist)
        # The same events one second *before* t do change the features (the check can fail).
        for u, i, t in zip(users, items, ts, strict=True):
            _insert(st, u, i, "purchase", t - np.timedelta64(1, "s"))
        past = compute_features(st, shop.vocab, users, items, ts)
    col = before.dense_names.index("log_ui_purchases")
    assert np.all(past.dense[:, col] > before.dense[:, col])
    assert np.all(past.hist[:, -1] == shop.vocab.item_index(items))


def test_serving_features_equal_training_features(shop: Shop) -> None:
    """Features computed for a few pairs alone equal the batch-built training features."""
    ex = shop.examples
    rows = np.random.default_rng(0).choice(len(ex), 300, replace=False)
    with Store(shop.store, read_only=True) as st:
        f = compute_features(st, shop.vocab, ex.users[rows], ex.items[rows], ex.ts[rows])
    np.testing.assert_array_equal(f.dense, ex.dense[rows])
    np.testing.assert_array_equal(f.hist, ex.hist[rows])
    np.testing.assert_array_equal(f.cats, ex.cats[rows])


def test_history_is_strictly_before_t(shop: Shop) -> None:
    with Store(shop.store, read_only=True) as st:
        ev = st.conn.execute(
            """SELECT user_id, "timestamp" FROM events_clean
               WHERE event_type IN ('view', 'click', 'add_to_cart', 'purchase')"""
        ).df()
    first = ev.groupby("user_id")["timestamp"].min()
    # A candidate at the user's very first event time has an empty history.
    t0 = first.to_numpy(dtype="datetime64[us]")[:20]
    users = first.index.to_numpy(dtype=object)[:20]
    with Store(shop.store, read_only=True) as st:
        f = compute_features(st, shop.vocab, users, np.array(["i0000"] * 20), t0)
    assert (f.hist == 0).all()
    assert (f.dense[:, f.dense_names.index("u_is_new")] == 1).all()


def test_shuffling_time_alignment_destroys_the_score(shop: Shop) -> None:
    model = GBDTPredictor(("click",), n_estimators=150).fit_examples(
        shop.train, shop.valid, shop.content
    )
    test = shop.test
    aligned = auc_score(test.labels["click"], model.predict_examples(test, shop.content)["click"])
    perm = np.random.default_rng(0).permutation(len(test))
    shuffled = test.take(perm)
    shuffled.labels = test.labels  # features of other times / pairs, labels left in place
    auc_shuffled = auc_score(
        test.labels["click"], model.predict_examples(shuffled, shop.content)["click"]
    )
    assert aligned > 0.68
    assert abs(auc_shuffled - 0.5) < 0.04


def test_features_from_the_future_would_leak(shop: Shop) -> None:
    """The same pairs with features as of the end of the data: the label leaks in."""
    test = shop.test
    end = np.full(len(test), test.ts.max() + np.timedelta64(1, "s"))
    with Store(shop.store, read_only=True) as st:
        leaky = compute_features(st, shop.vocab, test.users, test.items, end)
    leaky.labels = test.labels
    col = leaky.dense_names.index("log_ui_clicks")
    honest_col = test.dense[:, col]
    leaky_auc = auc_score(test.labels["click"], leaky.dense[:, col])
    honest_auc = auc_score(test.labels["click"], honest_col)
    assert leaky_auc > honest_auc + 0.08


def test_negative_sampling_options(shop: Shop) -> None:
    with Store(shop.store, read_only=True) as st:
        full = candidates(st)
        down = candidates(st, ExampleConfig(neg_rate=0.3, seed=1))
        extra = candidates(st, ExampleConfig(random_negatives=2, seed=1))
    assert down["click"].sum() == full["click"].sum()
    n_neg, n_neg_down = (~full["click"]).sum(), (~down["click"]).sum()
    assert 0.25 < n_neg_down / n_neg < 0.35
    assert len(extra) > len(full)
    assert extra["click"].sum() == full["click"].sum()
    p = np.array([0.1, 0.5])
    assert np.all(correct_for_downsampling(p, 0.3) < p)
    with pytest.raises(ValueError, match="neg_rate"):
        ExampleConfig(neg_rate=0.0)


def test_temporal_split_has_no_future_in_training(shop: Shop) -> None:
    tr, va, te = temporal_split(shop.examples.ts)
    ts = shop.examples.ts
    assert ts[tr].max() <= ts[va].min() and ts[va].max() <= ts[te].min()
    assert len(tr) + len(va) + len(te) == len(ts)
