"""Cleaning events in user-id ranges (bounded memory on big stores) gives the same result as one
range: the same *_clean tables row for row, in the same order, and the same report."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from shopsight.data import clean as clean_mod
from shopsight.data import schema
from shopsight.data.clean import CleanConfig, clean_store, load_report
from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.evaluation.robustness import (
    BotUsers,
    ShillingAttack,
    copy_store,
    inject_noise,
    pick_target,
)

T0 = datetime(2025, 3, 10, 12, 0, 0)


def ev(user: str, item: str, etype: str, t: datetime, **kw: Any) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "event_type": etype, "timestamp": t, **kw}


def _insert_events(store: Store, rows: list[dict[str, Any]]) -> None:
    full = []
    for i, r in enumerate(rows):
        row = {f.name: r.get(f.name) for f in schema.EVENTS}
        row.update(source=r.get("source", "extra.jsonl"), line=r.get("line", i + 1))
        row["ts_ordinal"] = False
        row["event_key"] = 10**12 + i  # distinct content keys, as the ingest's would be
        full.append(row)
    cur = store.conn.cursor()
    cur.register("_extra_rows", pa.Table.from_pylist(full, schema=schema.EVENTS))
    cur.execute("INSERT INTO events SELECT * FROM _extra_rows")
    cur.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shop with every kind of dirt the per-user steps remove."""
    root = tmp_path_factory.mktemp("buckets")
    files = generate_shop(root / "files", ShopConfig.small(seed=5, images=False))
    with Store(root / "base.duckdb") as store:
        ingest_files(store, files.data_files())
        inject_noise(store, BotUsers(0.02), seed=1)
        inject_noise(store, ShillingAttack(0.05, target=pick_target(store, seed=0)), seed=2)
        rows: list[dict[str, Any]] = []
        # Users whose ids sort first, last and need SQL quoting; one range boundary will fall
        # between users of equal-looking prefixes.
        for user in ("!first", "o'brien", "o'brien2", "\uffffzz-last", "u0001"):
            rows += [
                # exact duplicates (another session id and lineage)
                ev(user, "i0001", "view", T0, session_id="s1", line=1),
                ev(user, "i0001", "view", T0, session_id="s2", source="other.jsonl", line=7),
                # a burst of clicks collapses to its first
                ev(user, "i0002", "click", T0 + timedelta(seconds=60)),
                ev(user, "i0002", "click", T0 + timedelta(seconds=60.5)),
                ev(user, "i0002", "click", T0 + timedelta(seconds=61)),
                # the same item rated twice: the latest stays
                ev(user, "i0003", "rate", T0 + timedelta(days=1), value=2.0),
                ev(user, "i0003", "rate", T0 + timedelta(days=2), value=4.0),
            ]
        _insert_events(store, rows)
    return root / "base.duckdb"


def _snapshot(store: Store, report: clean_mod.CleanReport) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in ("events", "items", "reviews", "users"):
        out[t] = store.conn.execute(f'SELECT * FROM "{t}_clean"').fetchall()  # physical order
    rep = report.to_dict()
    rep.pop("run_at")
    out["report"] = rep
    logged = load_report(store)
    assert logged is not None
    out["log"] = [s.to_dict() for s in logged.steps]
    return out


def _clean(base: Path, dst: Path, buckets: int | None, **cfg: Any) -> dict[str, Any]:
    with Store(copy_store(base, dst)) as store:
        return _snapshot(store, clean_store(store, CleanConfig(**cfg), buckets=buckets))


def test_ranges_split_the_users(base: Path, tmp_path: Path) -> None:
    with Store(copy_store(base, tmp_path / "s.duckdb")) as store:
        n = store.count("events")
        bounds = clean_mod._user_buckets(store.conn, n, 4)
        assert len(bounds) == 4 and bounds == sorted(bounds)
        assert bounds[0] == "!first"
        sizes = [
            store.conn.execute(
                "SELECT count(*) FROM events WHERE user_id >= ? AND (? IS NULL OR user_id < ?)",
                [lo, hi, hi],
            ).fetchall()[0][0]
            for lo, hi in zip(bounds, [*bounds[1:], None], strict=True)
        ]
        assert sum(sizes) == n and max(sizes) < n / 2  # balanced by events, not users
        assert clean_mod._user_buckets(store.conn, n, 1) == []


def test_bucketed_cleaning_equals_one_bucket(base: Path, tmp_path: Path) -> None:
    one = _clean(base, tmp_path / "one.duckdb", 1)
    removed = one["report"]["removed"]
    by_step = {(s["step"], s["table"]): s["removed"] for s in one["report"]["steps"]}
    # The shop really exercises every per-user step, so equality below means something.
    for key in [
        ("exact_duplicates", "events"),
        ("near_duplicates", "events"),
        ("duplicate_reviews", "events"),
        ("bots", "events"),
        ("shilling", "events"),
    ]:
        assert by_step[key] > 0, key
    assert removed["events"] > 0
    for buckets in (3, 7, 10_000):
        many = _clean(base, tmp_path / f"b{buckets}.duckdb", buckets)
        assert many == one, buckets


def test_bucketed_cleaning_equals_one_bucket_with_k_core(base: Path, tmp_path: Path) -> None:
    one = _clean(base, tmp_path / "one.duckdb", 1, k_core=3, duplicate_reviews="first")
    assert _clean(base, tmp_path / "b5.duckdb", 5, k_core=3, duplicate_reviews="first") == one


def test_bucket_count_follows_the_memory_limit(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(copy_store(base, tmp_path / "s.duckdb")) as store:
        n = store.count("events")
        store.conn.execute("SET memory_limit = '1GB'")
        assert abs(clean_mod._memory_limit_bytes(store.conn) - 10**9) < 10**6  # "953.6 MiB"
        assert clean_mod._user_buckets(store.conn, n, None) == []  # fits: one range
        monkeypatch.setattr(clean_mod, "_MIN_BUCKET_ROWS", 1)
        monkeypatch.setattr(clean_mod, "_BUCKET_BYTES_PER_ROW", 10**9 * 4 // n)
        assert len(clean_mod._user_buckets(store.conn, n, None)) >= 3
    auto = _clean(base, tmp_path / "auto.duckdb", None)
    monkeypatch.undo()
    assert auto == _clean(base, tmp_path / "one.duckdb", 1)
