"""Splits: determinism, disjoint parts covering every row, and each protocol's defining property."""

from __future__ import annotations

import numpy as np
import pytest

from shopsight.data.split import (
    Split,
    SplitError,
    cold_item_split,
    cold_user_split,
    kfold_split,
    leave_last_out,
    make_split,
    random_split,
    stratified_split,
    temporal_split,
)


def _log(n: int = 2000, n_users: int = 60, n_items: int = 150, seed: int = 7):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n)
    item = rng.integers(0, n_items, n)
    ts = rng.integers(1_600_000_000_000_000, 1_700_000_000_000_000, n)
    return user, item, ts


def _assert_partition(split: Split, n: int) -> None:
    split.validate(n)
    parts = list(split.parts.values())
    allrows = np.concatenate(parts)
    assert np.array_equal(np.sort(allrows), np.arange(n))
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0)


def _same(a: Split, b: Split) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(a.parts.values(), b.parts.values(), strict=True)
    )


class TestRandom:
    def test_sizes_partition_and_determinism(self):
        s = random_split(1000, ratio=0.8, seed=3)
        _assert_partition(s, 1000)
        assert s.sizes() == {"train": 800, "test": 200}
        assert _same(s, random_split(1000, ratio=0.8, seed=3))
        assert not _same(s, random_split(1000, ratio=0.8, seed=4))

    def test_three_way_normalised(self):
        s = random_split(1000, ratio=[8, 1, 1], seed=0)
        _assert_partition(s, 1000)
        assert s.sizes() == {"train": 800, "valid": 100, "test": 100}
        assert s.params["ratio"] == pytest.approx([0.8, 0.1, 0.1])

    @pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, [0.5], [1, 0, 1], [1, 1, 1, 1], True])
    def test_bad_ratio(self, bad):
        with pytest.raises(SplitError):
            random_split(10, ratio=bad)


class TestStratified:
    def test_per_user_counts_match_ms_recommenders(self):
        # MS Recommenders: rank r of n goes to train iff r / n <= ratio.
        user = np.repeat(np.arange(6), [1, 2, 3, 4, 5, 10])
        s = stratified_split(user, ratio=0.75, seed=1)
        _assert_partition(s, len(user))
        train_counts = np.bincount(user[s.train], minlength=6)
        expected = [int(np.sum((np.arange(1, n + 1) / n) <= 0.75)) for n in [1, 2, 3, 4, 5, 10]]
        assert train_counts.tolist() == expected == [0, 1, 2, 3, 3, 7]

    def test_float_rounding_edge(self):
        # 0.7 + 0.1 is 0.7999999999999999 in floating point: rank 8 of 10 must still be valid.
        user = np.zeros(10, dtype=np.int64)
        s = stratified_split(user, ratio=[0.7, 0.1, 0.2], seed=0)
        assert s.sizes() == {"train": 7, "valid": 1, "test": 2}

    def test_by_item_and_determinism(self):
        user, item, _ = _log()
        s = stratified_split(user, item, ratio=0.75, by="item", seed=5)
        _assert_partition(s, len(user))
        for it in np.unique(item)[:20]:
            n = int(np.sum(item == it))
            assert int(np.sum(item[s.train] == it)) == int(np.sum(np.arange(1, n + 1) / n <= 0.75))
        assert _same(s, stratified_split(user, item, ratio=0.75, by="item", seed=5))

    def test_min_rating_leaves_small_groups_out(self):
        user = np.repeat(np.arange(3), [1, 4, 8])
        s = stratified_split(user, ratio=0.5, min_rating=4, seed=0)
        assert s.n_rows == 12
        assert not np.isin(0, user[np.concatenate([s.train, s.test])])

    def test_bad_by(self):
        with pytest.raises(SplitError, match="by must be"):
            stratified_split(np.zeros(3), ratio=0.5, by="session")
        with pytest.raises(SplitError, match="needs the item"):
            stratified_split(np.zeros(3), ratio=0.5, by="item")


class TestTemporal:
    def test_quantile_cut_orders_parts(self):
        _, _, ts = _log()
        s = temporal_split(ts, ratio=[0.7, 0.1, 0.2])
        _assert_partition(s, len(ts))
        assert ts[s.train].max() < ts[s.valid].min()
        assert ts[s.valid].max() < ts[s.test].min()
        assert abs(len(s.train) - 1400) <= 2

    def test_ties_at_the_cut_go_to_the_later_part(self):
        ts = np.array([1, 2, 3, 3, 3, 4, 5, 6, 7, 8], dtype=np.int64)
        s = temporal_split(ts, ratio=0.3)  # the 4th smallest time is 3
        assert ts[s.train].tolist() == [1, 2]
        assert ts[s.train].max() < ts[s.test].min()

    def test_explicit_dates(self):
        ts = np.array(
            ["2021-01-01", "2021-06-01", "2022-01-01", "2022-06-01"], dtype="datetime64[us]"
        )
        s = temporal_split(ts, cut=["2021-03-01", "2022-01-01"])
        assert s.train.tolist() == [0]
        assert s.valid is not None and s.valid.tolist() == [1]
        assert s.test.tolist() == [2, 3]
        with pytest.raises(SplitError, match="increasing"):
            temporal_split(ts, cut=["2022-01-01", "2021-01-01"])
        with pytest.raises(SplitError, match="cannot read"):
            temporal_split(ts, cut="not a date")

    def test_ordinal_time_refused_unless_allowed(self):
        ts = np.arange(10)
        ordinal = np.ones(10, dtype=bool)
        with pytest.raises(SplitError, match="ordinal"):
            temporal_split(ts, ratio=0.5, ts_ordinal=ordinal)
        assert temporal_split(ts, ratio=0.5, ts_ordinal=ordinal, allow_ordinal=True).sizes() == {
            "train": 5,
            "test": 5,
        }


class TestLeaveLastOut:
    def test_picks_last_and_second_last_per_user(self):
        user, _, ts = _log()
        s = leave_last_out(user, ts)
        _assert_partition(s, len(user))
        assert s.valid is not None
        for u in np.unique(user):
            rows = np.flatnonzero(user == u)
            ordered = rows[np.lexsort((rows, ts[rows]))]
            if len(rows) >= 3:
                assert s.test[np.isin(s.test, rows)].tolist() == [ordered[-1]]
                assert s.valid[np.isin(s.valid, rows)].tolist() == [ordered[-2]]
        # Each user with >= 3 rows has exactly one test and one valid row.
        assert len(np.unique(user[s.test])) == len(s.test)

    def test_ordinal_ties_keep_log_order_and_small_users(self):
        user = np.array([0, 0, 0, 1, 1, 2])
        ts = np.array([5, 5, 5, 1, 2, 9])  # user 0: same time -> row order decides
        s = leave_last_out(user, ts)
        assert s.test.tolist() == [2, 4]  # user 2 has one row: train only
        assert s.valid is not None and s.valid.tolist() == [1]
        assert s.train.tolist() == [0, 3, 5]

    def test_k_and_no_valid(self):
        user = np.zeros(6, dtype=np.int64)
        ts = np.array([6, 5, 4, 3, 2, 1])
        s = leave_last_out(user, ts, k=2, valid_k=0)
        assert s.valid is None
        assert s.test.tolist() == [0, 1]
        with pytest.raises(SplitError):
            leave_last_out(user, ts, k=0)

    @pytest.mark.parametrize("k,valid_k,min_train", [(1, 1, 1), (2, 1, 1), (1, 0, 1), (3, 2, 0)])
    def test_sorted_log_path_equals_the_sorting_path(self, monkeypatch, k, valid_k, min_train):
        # A Dataset's log (sorted by user, then time, with ties) takes the no-sort path; it
        # must give exactly the rows the general (lexsort) path gives.
        import shopsight.data.split as S

        rng = np.random.default_rng(k * 10 + valid_k)
        user = np.sort(rng.integers(0, 50, 3000))
        ts = rng.integers(0, 6, 3000)  # many same-time rows: row order decides
        order = np.lexsort((ts, user))
        user, ts = user[order], ts[order]
        assert S._sorted_by_group(user, ts)
        fast = leave_last_out(user, ts, k=k, valid_k=valid_k, min_train=min_train)
        monkeypatch.setattr(S, "_sorted_by_group", lambda *a, **kw: False)
        slow = leave_last_out(user, ts, k=k, valid_k=valid_k, min_train=min_train)
        for part in ("train", "valid", "test"):
            a, b = getattr(fast, part), getattr(slow, part)
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b)
        assert fast.params == slow.params

    def test_unsorted_or_sparse_ids_take_the_sorting_path(self):
        import shopsight.data.split as S

        assert not S._sorted_by_group(np.array([1, 0]), np.array([0, 0]))
        assert not S._sorted_by_group(np.array([0, 0]), np.array([2, 1]))
        assert not S._sorted_by_group(np.array([0, 10**12]), np.array([0, 0]))  # bincount size
        s = leave_last_out(np.array([0, 10**12, 10**12]), np.array([1, 1, 2]), valid_k=0)
        assert s.test.tolist() == [2]


class TestKFold:
    @pytest.mark.parametrize("per_user", [False, True])
    def test_folds_partition_rows(self, per_user):
        user, _, _ = _log()
        n = len(user)
        folds = kfold_split(5, user=user, seed=2) if per_user else kfold_split(5, n_rows=n, seed=2)
        assert len(folds) == 5
        tests = np.concatenate([f.test for f in folds])
        assert np.array_equal(np.sort(tests), np.arange(n))
        for f in folds:
            _assert_partition(f, n)
            assert abs(len(f.test) - n / 5) <= (1 if not per_user else n * 0.05)
        again = kfold_split(5, user=user, seed=2) if per_user else kfold_split(5, n_rows=n, seed=2)
        assert all(_same(a, b) for a, b in zip(folds, again, strict=True))

    def test_per_user_spreads_each_user(self):
        user = np.repeat(np.arange(20), 10)
        folds = kfold_split(5, user=user, seed=0)
        for f in folds:
            assert np.array_equal(np.bincount(user[f.test], minlength=20), np.full(20, 2))

    def test_arguments(self):
        with pytest.raises(SplitError):
            kfold_split(1, n_rows=10)
        with pytest.raises(SplitError):
            kfold_split(3)


class TestCold:
    def test_cold_items_never_in_train(self):
        _, item, _ = _log()
        s = cold_item_split(item, ratio=[0.7, 0.1, 0.2], seed=9)
        _assert_partition(s, len(item))
        assert s.valid is not None
        train_items = set(item[s.train].tolist())
        assert not train_items & set(item[s.test].tolist())
        assert not train_items & set(item[s.valid].tolist())
        assert not set(item[s.valid].tolist()) & set(item[s.test].tolist())
        n_items = len(np.unique(item))
        assert len(train_items) == int(np.sum(np.arange(1, n_items + 1) / n_items <= 0.7 + 1e-9))
        assert _same(s, cold_item_split(item, ratio=[0.7, 0.1, 0.2], seed=9))

    def test_cold_users(self):
        user, _, _ = _log()
        s = cold_user_split(user, ratio=0.8, seed=1)
        _assert_partition(s, len(user))
        assert not set(user[s.train].tolist()) & set(user[s.test].tolist())


class _Log:
    def __init__(self):
        self.user, self.item, self.timestamp = _log(300)
        self.ts_ordinal = np.zeros(300, dtype=bool)


def test_make_split_by_name_and_errors():
    log = _Log()
    s = make_split("leave_last_out", log, valid_k=0)
    assert s.name == "leave_last_out" and s.valid is None
    assert _same(make_split("stratified", log, seed=1), stratified_split(log.user, seed=1))
    with pytest.raises(SplitError, match="unknown split method"):
        make_split("magic", log)
    with pytest.raises(SplitError, match="unexpected keyword"):
        make_split("random", log, nonsense=1)


def test_save_load_round_trip(tmp_path):
    s = random_split(50, ratio=[0.6, 0.2, 0.2], seed=4)
    path = tmp_path / "split.npz"
    s.save(path)
    back = Split.load(path)
    assert _same(s, back)
    assert back.name == "random" and back.params == s.params


def test_validate_detects_overlap():
    s = Split(train=np.array([0, 1, 2]), test=np.array([2, 3]))
    with pytest.raises(SplitError):
        s.validate(4)
