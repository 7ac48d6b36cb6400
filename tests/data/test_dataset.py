"""Dataset: id maps, interaction arrays, matrices, sequences, side data, subsets, store stats."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shopsight.data import schema
from shopsight.data.clean import CleanConfig, clean_store
from shopsight.data.dataset import (
    DEFAULT_WEIGHTS,
    EVENT_CODE,
    EVENT_TYPES,
    Dataset,
    DatasetError,
    stats,
)
from shopsight.data.split import cold_item_split, leave_last_out, random_split
from shopsight.data.store import Store

T0 = datetime(2024, 3, 1, 9, 0, 0)


def _key(*parts: Any) -> int:
    """A uint64 content key, like the ingest's (the key column's type is ``schema``'s)."""
    return int.from_bytes(hashlib.md5("|".join(map(str, parts)).encode()).digest()[:8], "little")


def _insert(store: Store, table: str, rows: list[dict[str, Any]]) -> None:
    sch = schema.TABLES[table]
    full = []
    for i, r in enumerate(rows):
        row = {f.name: r.get(f.name) for f in sch}
        row["source"] = row["source"] or "test.jsonl"
        row["line"] = row["line"] if row["line"] is not None else i + 1
        key = schema.KEY_COLUMN.get(table)
        if key and row.get(key) is None:
            row[key] = _key(table, *(row[f.name] for f in sch if f.name != key))
        if table == "events" and row["ts_ordinal"] is None:
            row["ts_ordinal"] = False
        full.append(row)
    # A cursor: registering on the store's own connection fails while it holds an unfetched result.
    cur = store.conn.cursor()
    cur.register("_test_rows", pa.Table.from_pylist(full, schema=sch))
    cur.execute(f"INSERT INTO {table} SELECT * FROM _test_rows")
    cur.close()


def ev(user: str, item: str | None, etype: str, minutes: float, **kw: Any) -> dict[str, Any]:
    return {
        "user_id": user,
        "item_id": item,
        "event_type": etype,
        "timestamp": T0 + timedelta(minutes=minutes),
        **kw,
    }


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        _insert(
            s,
            "events",
            [
                ev("bob", "i2", "view", 5),
                ev("bob", "i1", "view", 1),
                ev("bob", "i1", "add_to_cart", 2),
                ev("bob", "i1", "purchase", 3, value=19.5),
                ev("ann", "i2", "view", 0),
                ev("ann", "i2", "view", 10),
                ev("ann", "i3", "click", 4),
                ev("ann", None, "search", 6, query="socks"),
                ev("ann", "i3", "rate", 7, value=2.0),
                ev("ann", "i3", "rate", 8, value=4.0),  # re-rated: the latest counts
                ev("zed", "i9", "view", 0, ts_ordinal=True),  # item missing from the catalogue
                ev("zed", "i2", "view", 0.02, ts_ordinal=True),
            ],
        )
        _insert(
            s,
            "items",
            [
                {"item_id": "i1", "title": "Shoe", "price": 19.5, "category": "Shoes"},
                {"item_id": "i2", "title": "Sock", "price": 2.0, "category": "Socks"},
                {"item_id": "i3", "title": "Hat", "price": 9.0},
                {"item_id": "i4", "title": "Cold scarf", "price": 12.0},  # never interacted with
            ],
        )
        _insert(
            s,
            "reviews",
            [
                {
                    "user_id": "bob",
                    "item_id": "i1",
                    "rating": 5.0,
                    "text": "great",
                    "timestamp": T0 + timedelta(minutes=20),
                },
                {
                    "user_id": "cat",
                    "item_id": "i2",
                    "rating": 1.0,
                    "text": "holes",
                    "timestamp": T0,
                },
            ],
        )
        _insert(
            s,
            "users",
            [{"user_id": "dan", "region": "north"}, {"user_id": "ann", "region": "south"}],
        )
        yield s


def test_id_maps_include_cold_items_and_users(store):
    ds = Dataset.from_store(store)
    assert ds.meta["clean"] is False  # no *_clean tables yet: raw
    assert ds.item_ids.tolist() == ["i1", "i2", "i3", "i4", "i9"]
    assert ds.user_ids.tolist() == ["ann", "bob", "cat", "dan", "zed"]
    assert ds.item_idx("i4") == 3 and ds.user_idx(["zed", "ann"]).tolist() == [4, 0]
    assert ds.item_idx(["i4", "nope"], missing=-1).tolist() == [3, -1]
    with pytest.raises(KeyError, match="nope"):
        ds.user_idx("nope")
    s = ds.summary()
    assert s["cold_items"] == 1 and s["items"] == 5 and s["users"] == 5
    assert s["interactions"] == 13  # 11 item events + 2 reviews (search is not an interaction)


def test_interaction_log_sorted_and_typed(store):
    ds = Dataset.from_store(store)
    assert (
        ds.user.dtype == np.int64 and ds.event.dtype == np.int8 and ds.timestamp.dtype == np.int64
    )
    bob = ds.user_idx("bob")
    seq = ds.user_sequence(bob)
    assert [ds.item_ids[i] for i in seq["item"]] == ["i1", "i1", "i1", "i2", "i1"]
    assert [EVENT_TYPES[e] for e in seq["event"]] == [
        "view",
        "add_to_cart",
        "purchase",
        "view",
        "review",
    ]
    assert np.all(np.diff(seq["timestamp"]) >= 0)
    assert seq["timestamp"][0] == int(
        np.datetime64(T0 + timedelta(minutes=1), "us").astype(np.int64)
    )
    assert seq["value"][2] == 19.5 and np.isnan(seq["value"][0])
    zed = ds.user_idx("zed")
    assert ds.ts_ordinal[ds.user_rows(zed)].all()
    seqs = ds.sequences()
    assert len(seqs) == ds.n_users and len(seqs[ds.user_idx("dan")]) == 0
    assert ds.sequences(["purchase"])[bob].tolist() == [ds.item_idx("i1")]
    events = ds.event_sequences(["view", "purchase"])[bob]
    assert [EVENT_TYPES[e] for e in events] == ["view", "purchase", "view"]
    assert len(ds.sequences(["view", "purchase"])[bob]) == 3


def test_read_only_store(store, tmp_path):
    path = store.path
    store.close()
    with Store(path, read_only=True) as ro:
        ds = Dataset.from_store(ro)
        assert len(ds) == 13
        assert stats(ro)["counts"]["events"] == 12
        assert not ro.has_table("_ds_log")


def test_matrices_and_weights(store):
    ds = Dataset.from_store(store)
    ann, bob = ds.user_idx("ann"), ds.user_idx("bob")
    i1, i2, i3 = ds.item_idx(["i1", "i2", "i3"])
    views = ds.matrix("view")
    assert views.shape == (5, 5) and views[ann, i2] == 2 and views[bob, i1] == 1
    assert set(ds.matrices) == {"view", "click", "add_to_cart", "purchase", "rate", "review"}
    w = ds.implicit
    # bob/i1: view 1 + cart 4 + purchase 8 + review (rating 5) = 18
    assert w[bob, i1] == pytest.approx(18.0)
    # ann/i3: click 2 + rate 2.0 + rate 4.0 = 8
    assert w[ann, i3] == pytest.approx(8.0)
    custom = Dataset.from_store(store, weights={"view": 0.5, "rate": 1.0})
    assert custom.implicit[ann, i2] == pytest.approx(1.0)
    assert custom.implicit[ann, i3] == pytest.approx(4.0)
    with pytest.raises(DatasetError, match="unknown event type"):
        Dataset.from_store(store, weights={"like": 1.0})
    with pytest.raises(DatasetError, match="expected a number"):
        Dataset.from_store(store, weights={"view": -1})
    assert DEFAULT_WEIGHTS["purchase"] == 8.0


def test_ratings_and_reviews(store):
    ds = Dataset.from_store(store)
    r = ds.ratings
    got = {
        (ds.user_ids[u], ds.item_ids[i]): float(v)
        for u, i, v in zip(r.user, r.item, r.rating, strict=True)
    }
    assert got == {("ann", "i3"): 4.0, ("bob", "i1"): 5.0, ("cat", "i2"): 1.0}
    assert ds.reviews.num_rows == 2
    rows = ds.reviews.column("row").to_pylist()
    assert all(r >= 0 for r in rows)
    for row, text in zip(rows, ds.reviews.column("text").to_pylist(), strict=True):
        assert EVENT_TYPES[ds.event[row]] == "review"
        assert text in ("great", "holes")
    assert r.to_csr(ds.shape)[ds.user_idx("cat"), ds.item_idx("i2")] == 1.0


def test_reviews_already_stored_as_events_are_not_doubled(store):
    # The ingest's reviews_as_events option stores each review also as a 'review' event.
    _insert(
        store,
        "events",
        [ev("cat", "i2", "review", 0, value=1.0, line=99)],
    )
    ds = Dataset.from_store(store)
    cat = ds.user_idx("cat")
    assert len(ds.user_sequence(cat)["item"]) == 1
    row = (
        ds.reviews.filter(pa.compute.equal(ds.reviews.column("user"), cat)).column("row")[0].as_py()
    )
    assert ds.user[row] == cat


def test_side_data_aligned(store):
    ds = Dataset.from_store(store)
    assert ds.items.column("item_id").to_pylist() == ds.item_ids.tolist()
    assert ds.items.column("title").to_pylist() == ["Shoe", "Sock", "Hat", "Cold scarf", None]
    assert ds.items.column("price").to_pylist()[0] == 19.5
    assert ds.users.column("user_id").to_pylist() == ds.user_ids.tolist()
    assert ds.users.column("region").to_pylist() == ["south", None, None, "north", None]


def test_event_type_filter_keeps_id_maps(store):
    full = Dataset.from_store(store)
    buys = Dataset.from_store(store, event_types=["purchase"])
    assert buys.item_ids.tolist() == full.item_ids.tolist()
    assert len(buys) == 1 and EVENT_TYPES[buys.event[0]] == "purchase"
    assert buys.reviews.column("row").to_pylist() == [-1, -1]
    with pytest.raises(DatasetError, match="unknown"):
        Dataset.from_store(store, event_types=["like"])


def test_uses_clean_tables_when_present(store):
    _insert(store, "events", [ev("bob", "i1", "view", 1 + 0.001)])  # a double click
    raw = Dataset.from_store(store)
    clean_store(store, CleanConfig(bots=False))
    cleaned = Dataset.from_store(store)
    assert cleaned.meta["clean"] is True
    # The double click, and ann's first rating of i3 (superseded by her second).
    assert len(raw) - len(cleaned) == 2
    assert len(cleaned.ratings) == len(raw.ratings)
    assert len(Dataset.from_store(store, clean=False)) == len(raw)
    assert cleaned.fingerprint != raw.fingerprint


def test_subset_and_split_share_id_maps(store):
    ds = Dataset.from_store(store)
    split = leave_last_out(ds.user, ds.timestamp, valid_k=0)
    train, valid, test = ds.split(split)
    assert valid is None
    assert len(train) + len(test) == len(ds)
    assert train.item_ids is ds.item_ids and test.shape == ds.shape
    bob = ds.user_idx("bob")
    assert test.user_sequence(bob)["item"].tolist() == [ds.item_idx("i1")]  # bob's last: the review
    assert EVENT_TYPES[test.user_sequence(bob)["event"][0]] == "review"
    # The review text follows its row into the test part, not into train.
    assert test.reviews.column("text").to_pylist() == ["great"]
    assert train.reviews.column("text").to_pylist() == ["holes"]  # cat's only row stays in train
    assert all(
        test.event[r] == EVENT_CODE["review"] for r in test.reviews.column("row").to_pylist()
    )
    assert train.implicit.shape == ds.implicit.shape
    total = train.matrix("view") + test.matrix("view")
    assert (total != ds.matrix("view")).nnz == 0
    with pytest.raises(DatasetError):
        ds.subset([len(ds)])


def test_fingerprint_deterministic(store):
    a = Dataset.from_store(store)
    b = Dataset.from_store(store)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert Dataset.from_store(store, weights={"view": 3.0}).fingerprint != a.fingerprint
    assert a.subset(np.arange(3)).fingerprint != a.fingerprint


def test_from_arrays_sorts_and_validates():
    ds = Dataset.from_arrays(
        user_ids=["a", "b"],
        item_ids=["x", "y", "z"],
        user=[1, 0, 1, 0],
        item=[2, 1, 0, 0],
        event=["view", "view", "purchase", "click"],
        timestamp=[5, 3, 1, 3],
    )
    assert ds.user.tolist() == [0, 0, 1, 1]
    assert ds.item.tolist() == [1, 0, 0, 2]  # user a: same time -> view (code 0) before click
    assert ds.timestamp.tolist() == [3, 3, 1, 5]
    with pytest.raises(DatasetError, match="sorted"):
        Dataset(
            user_ids=["a"], item_ids=["x"], user=[0, 0], item=[0, 0], event=[0, 0], timestamp=[2, 1]
        )
    with pytest.raises(DatasetError, match="item indices"):
        Dataset.from_arrays(user_ids=["a"], item_ids=["x"], user=[0], item=[3])


def test_stats(store):
    _insert(
        store,
        "quarantine",
        [{"ingest_id": 1, "target": "events", "source": "f", "reason": "bad timestamp"}] * 2,
    )
    s = stats(store)
    assert s["clean"] is False and s["tables"]["events"] == "events"
    assert s["counts"]["events"] == 12 and s["counts"]["quarantine"] == 2
    assert s["events_by_type"]["view"] == 6
    funnel = {f["stage"]: f for f in s["funnel"]}
    assert funnel["view"]["users"] == 3 and funnel["view"]["event_ratio"] is None
    assert funnel["add_to_cart"]["events"] == 1 and funnel["add_to_cart"]["event_ratio"] == 1.0
    assert funnel["click"]["event_ratio"] == pytest.approx(1 / 6)
    assert funnel["purchase"]["user_ratio"] == pytest.approx(1.0)
    assert s["users"] == 5 and s["items"] == 5 and s["catalogue_items"] == 4
    m = s["interaction_matrix"]
    assert m["pairs"] == 7 and m["users"] == 4 and m["items"] == 4
    assert m["sparsity"] == pytest.approx(1 - 7 / 16)
    assert s["time_range"]["events"]["ordinal_events"] == 2
    assert s["time_range"]["events"]["min"] == "2024-03-01T09:00:00"
    assert s["quarantine"] == {
        "total": 2,
        "by_reason": [
            {"target": "events", "reason": "bad timestamp", "count": 2, "example": "bad timestamp"}
        ],
    }
    clean_store(store)
    c = stats(store, clean=True)
    assert c["clean"] is True and c["tables"]["events"] == "events_clean"
    assert c["events_by_type"]["rate"] == 1  # the superseded rating is gone
    assert c["counts"]["events_clean"] == 11 and c["counts"]["cleaning_log"] > 0


def test_million_events_built_correctly(tmp_path):
    """~1M events generated in SQL; checks correctness against SQL aggregates (not speed)."""
    n, n_users, n_items = 1_000_000, 50_000, 20_000
    with Store(tmp_path / "big.duckdb") as s:
        s.conn.execute(
            f"""INSERT INTO events
            SELECT hash(i), 'u' || lpad((i % {n_users})::VARCHAR, 6, '0'),
                   'i' || lpad(((i * 7919) % {n_items})::VARCHAR, 6, '0'),
                   ['view', 'view', 'view', 'click', 'add_to_cart', 'purchase'][1 + (i % 6)::INT],
                   TIMESTAMP '2023-01-01' + to_microseconds((i * 1_000_003) % 31_536_000_000_000),
                   false, NULL, NULL, CASE WHEN i % 6 = 5 THEN 10.0 END, 'gen', i
            FROM range({n}) t(i)"""
        )
        s.conn.execute(
            f"""INSERT INTO items SELECT 'i' || lpad(i::VARCHAR, 6, '0'), 'title ' || i::VARCHAR,
                   NULL, NULL, 'cat' || (i % 10)::VARCHAR, 1.0 + i % 100, 'USD', NULL, NULL, NULL, NULL,
                   hash(i), 'gen', i FROM range({n_items + 500}) t(i)"""
        )
        t0 = time.perf_counter()
        ds = Dataset.from_store(s)
        built = time.perf_counter() - t0
        print(f"\nDataset.from_store: {n} events built in {built:.2f} s")
        assert len(ds) == n
        assert ds.n_users == n_users and ds.n_items == n_items + 500
        assert ds.summary()["cold_items"] == 500
        pairs = s.conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT user_id, item_id FROM events)"
        ).fetchone()
        assert pairs is not None and ds.matrix().nnz == pairs[0]
        by_type = dict(
            s.conn.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall()
        )
        assert {t: int(ds.matrix(t).sum()) for t in by_type} == by_type
        expected_weight = sum(by_type[t] * float(DEFAULT_WEIGHTS[t]) for t in by_type)  # type: ignore[arg-type]
        assert float(ds.implicit.sum(dtype=np.float64)) == pytest.approx(expected_weight)
        # Spot-check one user's sequence against SQL.
        u = "u001234"
        want = s.conn.execute(
            f"SELECT item_id FROM events WHERE user_id = '{u}' ORDER BY timestamp, line"
        ).fetchall()
        got = ds.item_ids[ds.user_sequence(ds.user_idx(u))["item"]].tolist()
        assert got == [w[0] for w in want]
        assert np.all(np.diff(ds.user) >= 0)
        same_user = np.diff(ds.user) == 0
        assert np.all(np.diff(ds.timestamp)[same_user] >= 0)
        sp = random_split(len(ds), ratio=0.8, seed=0)
        train, _, test = ds.split(sp)
        assert train.matrix().sum() + test.matrix().sum() == ds.matrix().sum()
        cold = cold_item_split(ds.item, ratio=0.9, seed=0)
        tr, _, te = ds.split(cold)
        assert not set(np.unique(tr.item)) & set(np.unique(te.item))


def test_real_data_through_ingest(tmp_path, shared):
    """Gift Cards via the real ingest: reviews stored also as events are counted once."""
    from shopsight.data import ingest

    files = [
        shared.path("amazon-gift-cards", "Gift_Cards_5.json.gz"),
        shared.path("amazon-gift-cards", "meta_Gift_Cards.json.gz"),
    ]
    with Store(tmp_path / "gift.duckdb") as s:
        ingest.ingest_files(s, files)
        report = clean_store(s)
        assert report.after["reviews"] == 2972 - 7
        ds = Dataset.from_store(s)
        assert ds.n_users == 458 and ds.n_items == 1547
        assert ds.summary()["active_items"] == 148
        assert len(ds) == 2972 - 7  # one review interaction per review, not two
        assert len(ds.ratings) == len(ds) and ds.reviews.num_rows == len(ds)
        assert (ds.reviews.column("row").to_numpy() >= 0).all()
        assert np.count_nonzero(ds.ratings.rating == 5.0) > 0.9 * len(ds)
        train, valid, test = ds.split(leave_last_out(ds.user, ds.timestamp))
        assert len(train) + len(test) + (len(valid) if valid is not None else 0) == len(ds)
        assert valid is not None and len(test) == ds.n_users  # 5-core: every user has a test row


# -- snapshots: one copy of the log, memory-mapped by every process of a job -----------------
def _same_dataset(a: Dataset, b: Dataset) -> None:
    assert a.fingerprint == b.fingerprint
    assert a.user_ids.tolist() == b.user_ids.tolist() and a.item_ids.tolist() == b.item_ids.tolist()
    for name in ("user", "item", "event", "timestamp", "value", "ts_ordinal"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    for name in ("items", "users", "reviews"):
        assert getattr(a, name).equals(getattr(b, name)), name
    assert a.meta == b.meta and a.weights == b.weights
    assert (a.implicit != b.implicit).nnz == 0


def test_snapshot_equals_the_dataset_in_memory(store, tmp_path):
    ds = Dataset.from_store(store)
    snap = Dataset.from_store(store, snapshot=tmp_path / "snap")
    _same_dataset(ds, snap)
    assert isinstance(snap.user.base, np.memmap) and not snap.user.flags.writeable
    again = Dataset.open_snapshot(tmp_path / "snap", weights={"view": 3.0})
    assert again.fingerprint != ds.fingerprint  # weights are the caller's, not the snapshot's
    assert again.implicit.sum() > ds.implicit.sum()
    with pytest.raises(DatasetError, match="new, empty folder"):
        Dataset.from_store(store, snapshot=tmp_path / "snap")
    (tmp_path / "half").mkdir()
    with pytest.raises(DatasetError, match="not a complete dataset snapshot"):
        Dataset.open_snapshot(tmp_path / "half")


def test_shared_datasets_built_once_and_waited_for(store, tmp_path):
    from shopsight.data.dataset import shared_datasets

    folder = tmp_path / "shared"
    with shared_datasets(folder, is_main=True):
        main = Dataset.from_store(store)
        views = Dataset.from_store(store, event_types=["view"])
    built = sorted(p.name for p in folder.iterdir())
    assert len(built) == 2  # one per distinct request
    with shared_datasets(folder, is_main=False, wait_s=5):
        other = Dataset.from_store(store)  # finds the main process's snapshot, builds nothing
    assert sorted(p.name for p in folder.iterdir()) == built
    _same_dataset(main, other)
    _same_dataset(Dataset.from_store(store, event_types=["view"]), views)
    # subsets (train / test of a split) of a shared dataset are shared snapshots too
    part = leave_last_out(main.user, main.timestamp)
    with shared_datasets(folder, is_main=True):
        shared_parts = main.split(part)
    n_built = len(list(folder.iterdir()))
    with shared_datasets(folder, is_main=False, wait_s=5):
        waited_parts = main.split(part)
    assert len(list(folder.iterdir())) == n_built == len(built) + 3  # train, valid, test
    plain = Dataset.from_store(store).split(part)
    for got, other, want in zip(shared_parts, waited_parts, plain, strict=True):
        assert got is not None and other is not None and want is not None
        assert got.snapshot is not None and other.snapshot == got.snapshot
        _same_dataset(got, want)
        _same_dataset(other, want)
    # a worker whose main process failed stops waiting, with the reason
    with shared_datasets(tmp_path / "failed", is_main=False, wait_s=60) as shared:
        target = shared.target(store, clean=True, event_types=None)
        target.parent.mkdir()
        target.with_name(target.name + ".failed").write_text("DataError: disk full")
        with pytest.raises(DatasetError, match="could not build the dataset: DataError: disk"):
            Dataset.from_store(store)
    slow = shared_datasets(tmp_path / "slow", is_main=False, wait_s=0.5)
    with slow, pytest.raises(DatasetError, match="no dataset from the main process after"):
        Dataset.from_store(store)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1 << 22])
@pytest.mark.parametrize("weighted", [False, True])
def test_user_sorted_csr_equals_scipy(chunk_rows: int, weighted: bool) -> None:
    # The chunked builder behind Dataset.matrix / implicit and the protocols' pairs: the same
    # matrix as scipy's COO route (sorted indices, duplicates summed), chunks ending anywhere.
    import scipy.sparse as sp

    from shopsight.data.dataset import user_sorted_csr

    rng = np.random.default_rng(chunk_rows)
    user = np.sort(rng.integers(0, 40, 2500))
    item = rng.integers(0, 25, 2500)
    data = rng.integers(0, 9, 2500).astype(np.float32) if weighted else None
    got = user_sorted_csr(user, item, (45, 25), data, chunk_rows=chunk_rows)
    ref = sp.csr_matrix(
        (np.ones(2500, np.float32) if data is None else data, (user, item)), shape=(45, 25)
    )
    ref.sum_duplicates()
    got.check_format(full_check=True)
    assert got.dtype == np.float32 and got.has_sorted_indices
    assert np.array_equal(got.indptr, ref.indptr) and np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.data, ref.data)
    # rows out of user order: the scipy route, same result
    perm = rng.permutation(2500)
    again = user_sorted_csr(user[perm], item[perm], (45, 25), None if data is None else data[perm])
    assert (again != ref).nnz == 0
    empty = user_sorted_csr(np.zeros(0, np.int64), np.zeros(0, np.int64), (3, 4))
    assert empty.shape == (3, 4) and empty.nnz == 0
