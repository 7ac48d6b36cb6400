"""Named protocols: each split recipe against an independent re-implementation of the library
it reproduces (pandas code of Microsoft Recommenders, scikit-learn, Cornac's permutation)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from shopsight.data.dataset import Dataset
from shopsight.evaluation.protocols import (
    PROTOCOLS,
    Protocol,
    ProtocolError,
    get_protocol,
    load_protocol,
)


def _file_frame(built) -> pd.DataFrame:
    """u.data as a library reads it (file order), with each line's dataset row."""
    raw = pd.read_csv(built.folder / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"])
    ds: Dataset = built.dataset
    rows = np.empty(len(ds), np.int64)
    rows[built.lineage.order] = np.arange(len(ds))
    raw["row"] = rows
    assert (ds.user_ids[ds.user[rows]].astype(int) == raw["u"]).all()
    assert (ds.item_ids[ds.item[rows]].astype(int) == raw["i"]).all()
    return raw


def _pairs(ds: Dataset, rows) -> set[tuple[str, str]]:
    return {(ds.user_ids[ds.user[r]], ds.item_ids[ds.item[r]]) for r in rows}


def test_lineage_recovers_file_order(mini_ml):
    assert mini_ml.lineage.order is not None
    assert mini_ml.lineage.ml100k_dir == mini_ml.folder
    _file_frame(mini_ml)  # asserts every file line maps to its dataset row


def test_kfold5_uses_the_official_folds(mini_ml):
    ds = mini_ml.dataset
    splits = get_protocol("kfold-5").make_splits(ds, seed=7, lineage=mini_ml.lineage)
    assert len(splits) == 5
    for k, s in enumerate(splits, start=1):
        fold = pd.read_csv(mini_ml.folder / f"u{k}.test", sep="\t", header=None)
        assert _pairs(ds, s.test) == {
            (str(a), str(b)) for a, b in zip(fold[0], fold[1], strict=True)
        }
        assert s.params["folds"] == "official u1..u5"
        s.validate(len(ds))


def test_kfold5_without_fold_files_is_surprise_kfold(mini_ml):
    ds = mini_ml.dataset
    splits = get_protocol("kfold-5").make_splits(ds, seed=3, lineage=None)
    tests = [set(s.test.tolist()) for s in splits]
    assert sum(len(t) for t in tests) == len(ds) and len(set().union(*tests)) == len(ds)
    assert [len(t) for t in tests] == [
        len(ds) // 5 + (1 if f < len(ds) % 5 else 0) for f in range(5)
    ]
    assert splits[0].params["folds"].startswith("random")


def test_kfold_keeps_the_rows_of_a_pair_together():
    # Each pair rated twice (a rating and a review of it): never one in train, one in test.
    rng = np.random.default_rng(0)
    pairs = [(u, i) for u in range(8) for i in range(6) if rng.random() < 0.7]
    user = np.repeat([u for u, _ in pairs], 2)
    item = np.repeat([i for _, i in pairs], 2)
    ds = Dataset.from_arrays(
        user_ids=[str(u) for u in range(8)],
        item_ids=[str(i) for i in range(6)],
        user=user,
        item=item,
        event=["rate", "review"] * len(pairs),
        value=rng.integers(1, 6, 2 * len(pairs)),
        timestamp=np.arange(2 * len(pairs)),
    )
    for s in get_protocol("kfold-5").make_splits(ds, seed=1):
        assert not _pairs(ds, s.train) & _pairs(ds, s.test)
        assert len(s.test) % 2 == 0


def _ms_stratified_reference(df: pd.DataFrame, ratio: float, seed: int, by: str) -> set[int]:
    """Microsoft Recommenders' python_stratified_split (the published version), in pandas."""
    data = df.copy()
    np.random.seed(seed)
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values([by, "random"])
    groups = data.groupby(by)
    data["count"] = groups[by].transform("count")
    data["rank"] = groups.cumcount() + 1
    train = data[data["rank"] <= round(ratio * data["count"])]
    return set(train["row"].tolist())


@pytest.mark.parametrize("by", ["i", "u"])
def test_ms_stratified_is_the_recommenders_split(mini_ml, by):
    df = _file_frame(mini_ml)
    p = Protocol(
        name="t",
        split="ms_stratified",
        split_params={"ratio": 0.75, "by": "item" if by == "i" else "user", "seed": 42},
    )
    s = p.make_splits(mini_ml.dataset, lineage=mini_ml.lineage)[0]
    assert set(s.train.tolist()) == _ms_stratified_reference(df, 0.75, 42, by)
    s.validate(len(mini_ml.dataset))


def test_ms_stratified_rounds_half_to_even():
    # One item each with 1, 2, 6 and 10 ratings: train sizes round(0.75 n) = 1, 2, 4, 8.
    counts = [1, 2, 6, 10]
    item = np.repeat(np.arange(4), counts)
    ds = Dataset.from_arrays(
        user_ids=[str(u) for u in range(len(item))],
        item_ids=["a", "b", "c", "d"],
        user=np.arange(len(item)),
        item=item,
    )
    s = Protocol(name="t", split="ms_stratified", split_params={"by": "item"}).make_splits(ds)[0]
    assert np.bincount(ds.item[s.train], minlength=4).tolist() == [1, 2, 4, 8]


def test_sklearn_random_is_train_test_split(mini_ml):
    df = _file_frame(mini_ml)
    s = get_protocol("random-75-25").make_splits(mini_ml.dataset, lineage=mini_ml.lineage)[0]
    tr, te = train_test_split(df, train_size=0.75, random_state=42)
    assert set(s.train.tolist()) == set(tr["row"]) and set(s.test.tolist()) == set(te["row"])


def test_cornac_ratio_split(mini_ml):
    df = _file_frame(mini_ml)
    ds = mini_ml.dataset
    s = get_protocol("ratio-80-20").make_splits(ds, lineage=mini_ml.lineage)[0]
    n = len(ds)
    perm = np.random.RandomState(123).permutation(n)
    n_test = math.ceil(0.2 * n)
    assert set(s.train.tolist()) == set(df["row"].to_numpy()[perm[: n - n_test]])
    expected_test = set(df["row"].to_numpy()[perm[n - n_test :]])
    assert set(s.test.tolist()) <= expected_test
    # exclude_unknowns: what was dropped is exactly the test rows of users/items unseen in train
    train_users, train_items = set(ds.user[s.train]), set(ds.item[s.train])
    for r in expected_test - set(s.test.tolist()):
        assert ds.user[r] not in train_users or ds.item[r] not in train_items
    for r in s.test:
        assert ds.user[r] in train_users and ds.item[r] in train_items


def test_leave_one_out_and_k_core():
    # user 0: items a b c d e (in time order); user 1: items a b.
    ds = Dataset.from_arrays(
        user_ids=["0", "1"],
        item_ids=list("abcde"),
        user=[0, 0, 0, 0, 0, 1, 1],
        item=[0, 1, 2, 3, 4, 0, 1],
        timestamp=[1, 2, 3, 4, 5, 1, 2],
    )
    s = get_protocol("leave-one-out").make_splits(ds)[0]
    assert ds.item[s.test].tolist() == [4, 1] and ds.item[s.valid].tolist() == [3]
    p = Protocol(name="core", split="random", split_params={"ratio": [0.8, 0.1, 0.1], "core": 2})
    kept = np.concatenate(list(p.make_splits(ds, seed=0)[0].parts.values()))
    # 2-core: items c, d, e have one user each and go; then both users still have items a, b.
    assert sorted(ds.item[kept].tolist()) == [0, 0, 1, 1]


def test_truth_exclusion_candidates():
    ds = Dataset.from_arrays(
        user_ids=["u"],
        item_ids=list("abcd"),
        user=[0, 0, 0, 0],
        item=[0, 1, 2, 3],
        event=["rate", "rate", "rate", "purchase"],
        value=[5, 2, 4, np.nan],
        timestamp=[1, 2, 3, 4],
    )
    p = get_protocol("ratio-80-20")
    test = ds.subset([1, 2, 3])
    # rating >= 4 relevant; a purchase (no rating) is always relevant
    assert p.truth(test).toarray().tolist() == [[0, 0, 1, 1]]
    train = ds.subset([0, 1])
    assert p.exclusion(train, None).toarray().tolist() == [[1, 0, 0, 0]]  # relevant train only
    assert p.candidate_mask(train, test).tolist() == [True, True, False, False]
    assert get_protocol("cold-item").candidate_mask(train, test).tolist() == [
        False,
        True,
        True,
        True,
    ]


def test_user_defined_protocols(tmp_path):
    spec = {
        "name": "mine",
        "split": {"method": "stratified", "ratio": [0.8, 0.1, 0.1], "by": "user"},
        "metrics": ["recall@5", "ndcg"],
        "ks": [10],
        "exclude": "train",
    }
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    p = load_protocol(path)
    assert (p.name, p.split, p.metrics, p.ks) == ("mine", "stratified", ("recall", "ndcg"), (5, 10))
    assert p.split_params == {"ratio": [0.8, 0.1, 0.1], "by": "user"}
    assert Protocol.from_dict(p.to_dict()) == p
    with pytest.raises(ProtocolError, match="unknown keys"):
        load_protocol({**spec, "colour": "red"})
    with pytest.raises(ProtocolError, match="unknown split"):
        load_protocol({**spec, "split": "magic"})
    with pytest.raises(ProtocolError, match="exclude"):
        load_protocol({**spec, "exclude": "everything"})
    with pytest.raises(ProtocolError, match="unknown protocol"):
        load_protocol("no-such-protocol")
    assert {
        "kfold-5",
        "stratified-item-75-25",
        "ratio-80-20",
        "leave-one-out",
        "random-811",
        "temporal-global",
        "cold-item",
    } <= set(PROTOCOLS)


def test_ml100k_protocol_sizes(ml100k):
    ds, lin = ml100k.dataset, ml100k.lineage
    strat = get_protocol("stratified-item-75-25").make_splits(ds, lineage=lin)[0]
    assert strat.sizes() == {"train": 75066, "test": 24934}  # as published
    folds = get_protocol("kfold-5").make_splits(ds, lineage=lin)
    assert [s.sizes()["test"] for s in folds] == [20000] * 5
    assert folds[0].params["folds"] == "official u1..u5"
    rnd = get_protocol("random-75-25").make_splits(ds, lineage=lin)[0]
    assert rnd.sizes() == {"train": 75000, "test": 25000}


def test_custom_recipes_follow_the_run_seed_unless_pinned(mini_ml):
    ds = mini_ml.dataset
    custom = Protocol(name="t", split="sklearn_random", split_params={"train_size": 0.5})
    a, b = (custom.make_splits(ds, seed=s)[0] for s in (1, 2))
    assert set(a.train.tolist()) != set(b.train.tolist())
    pinned = get_protocol("random-75-25")  # seed 42, as published
    a, b = (pinned.make_splits(ds, seed=s)[0] for s in (1, 2))
    assert np.array_equal(a.train, b.train) and a.params["seed"] == 42
    with pytest.raises(ProtocolError, match="unexpected keyword"):
        Protocol(name="t", split="cornac_ratio", split_params={"ratio": 0.5}).make_splits(ds)
