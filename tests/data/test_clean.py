"""Cleaning: each step removes exactly what it should, logs it, and leaves raw tables untouched."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from shopsight.data import clean as clean_mod
from shopsight.data import schema
from shopsight.data.clean import (
    CleanConfig,
    CleanConfigError,
    clean_store,
    has_clean_tables,
    load_report,
)
from shopsight.data.store import Store

T0 = datetime(2024, 3, 1, 9, 0, 0)
# Only the step under test runs; others off so counts are exact.
OFF = CleanConfig(
    exact_duplicates=False,
    duplicate_ids=False,
    near_duplicates=False,
    duplicate_reviews=None,
    bots=False,
    outlier_prices=False,
)


def only(**steps: Any) -> CleanConfig:
    """A config with every step off except the given settings."""
    return replace(OFF, **steps)


def _key(*parts: Any) -> int:
    """A uint64 content key, like the ingest's (the key column's type is ``schema``'s)."""
    return int.from_bytes(hashlib.md5("|".join(map(str, parts)).encode()).digest()[:8], "little")


def _insert(store: Store, table: str, rows: list[dict[str, Any]]) -> None:
    sch = schema.TABLES[table]
    full = []
    for i, r in enumerate(rows):
        row = {f.name: r.get(f.name) for f in sch}
        row.setdefault("source", None)
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


def ev(user: str, item: str | None, etype: str, t: datetime | float, **kw: Any) -> dict[str, Any]:
    ts = t if isinstance(t, datetime) else T0 + timedelta(seconds=t)
    return {"user_id": user, "item_id": item, "event_type": etype, "timestamp": ts, **kw}


def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return store.conn.execute(sql).fetchall()


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def step(report, name: str, table: str):
    matches = [s for s in report.steps if s.step == name and s.table == table]
    assert len(matches) == 1, [(s.step, s.table) for s in report.steps]
    return matches[0]


# -- duplicates ----------------------------------------------------------------------------


def test_exact_duplicates_ignore_session_and_lineage(store):
    _insert(
        store,
        "events",
        [
            ev("u1", "i1", "view", 0, session_id="s1", source="a.csv", line=1),
            ev("u1", "i1", "view", 0, session_id="s9", source="b.csv", line=7),  # same event
            ev(
                "u1", "i1", "view", 0, session_id="s1", value=3.0, source="a.csv", line=2
            ),  # other value
            ev("u1", "i2", "view", 0, source="a.csv", line=3),
        ],
    )
    _insert(
        store,
        "reviews",
        [
            {
                "user_id": "u1",
                "item_id": "i1",
                "rating": 5.0,
                "text": "ok",
                "timestamp": T0,
                "source": "r1",
            },
            {
                "user_id": "u1",
                "item_id": "i1",
                "rating": 5.0,
                "text": "ok",
                "timestamp": T0,
                "source": "r2",
            },
        ],
    )
    report = clean_store(store, only(exact_duplicates=True))
    e = step(report, "exact_duplicates", "events")
    assert e.removed == 1
    assert e.detail["examples"][0]["source"] == "b.csv"  # the first ingested copy (a.csv) is kept
    assert step(report, "exact_duplicates", "reviews").removed == 1
    assert store.count("events_clean") == 3
    assert rows(store, "SELECT source FROM events_clean WHERE session_id = 's9'") == []
    assert store.count("events") == 4  # raw untouched


def test_near_duplicates_collapse_bursts(store):
    _insert(
        store,
        "events",
        [
            ev("u1", "i1", "click", 0.0),
            ev("u1", "i1", "click", 0.4),  # double click
            ev("u1", "i1", "click", 1.2),  # still the same burst (0.8 s after the previous)
            ev("u1", "i1", "click", 5.0),  # a new click
            ev("u1", "i2", "click", 0.1),  # other item
            ev("u1", "i1", "view", 0.2),  # other type
            ev("u2", "i1", "click", 0.3),  # other user
            ev("u3", "i1", "view", 0, ts_ordinal=True),
            ev("u3", "i1", "view", 0.5, ts_ordinal=True),  # ordinal: no real time, exempt
            ev("u4", None, "search", 0.0, query="shoes"),
            ev("u4", None, "search", 0.5, query="shoes"),  # repeated search
            ev("u4", None, "search", 0.6, query="boots"),  # other query
        ],
    )
    report = clean_store(store, only(near_duplicates=True))
    s = step(report, "near_duplicates", "events")
    assert s.removed == 3
    kept = rows(
        store,
        "SELECT epoch_ms(timestamp) - epoch_ms(TIMESTAMP '2024-03-01 09:00:00') FROM events_clean "
        "WHERE user_id = 'u1' AND item_id = 'i1' AND event_type = 'click' ORDER BY 1",
    )
    assert [r[0] for r in kept] == [0, 5000]
    assert store.count("events_clean") == 9


def test_near_duplicate_window_and_types_configurable(store):
    _insert(store, "events", [ev("u1", "i1", "purchase", 0.0), ev("u1", "i1", "purchase", 3.0)])
    r1 = clean_store(store, only(near_duplicates=True, near_duplicate_window_s=5))
    assert step(r1, "near_duplicates", "events").removed == 1
    r2 = clean_store(
        store,
        only(near_duplicates=True, near_duplicate_window_s=5, near_duplicate_types=("view",)),
    )
    assert step(r2, "near_duplicates", "events").removed == 0


@pytest.mark.parametrize("keep, expected_text", [("latest", "third"), ("first", "first")])
def test_duplicate_reviews_keep_one_per_pair(store, keep, expected_text):
    day = timedelta(days=1)
    _insert(
        store,
        "reviews",
        [
            {"user_id": "u1", "item_id": "i1", "rating": 4.0, "text": "first", "timestamp": T0},
            {
                "user_id": "u1",
                "item_id": "i1",
                "rating": 2.0,
                "text": "third",
                "timestamp": T0 + 2 * day,
            },
            {
                "user_id": "u1",
                "item_id": "i1",
                "rating": 3.0,
                "text": "second",
                "timestamp": T0 + day,
            },
            {
                "user_id": "u1",
                "item_id": "i2",
                "rating": 5.0,
                "text": "other item",
                "timestamp": T0,
            },
        ],
    )
    _insert(
        store,
        "events",
        [
            ev("u1", "i1", "rate", 0, value=4.0),
            ev("u1", "i1", "rate", 3600, value=1.0),
            ev("u1", "i1", "view", 10),
            ev("u1", "i1", "view", 20),  # repeated views are not duplicates
        ],
    )
    report = clean_store(store, only(duplicate_reviews=keep))
    assert step(report, "duplicate_reviews", "reviews").removed == 2
    assert step(report, "duplicate_reviews", "events").removed == 1
    assert rows(store, "SELECT text FROM reviews_clean WHERE item_id = 'i1'") == [(expected_text,)]
    rate = rows(store, "SELECT value FROM events_clean WHERE event_type = 'rate'")
    assert rate == [(1.0,)] if keep == "latest" else [(4.0,)]
    assert store.count("events_clean") == 3


def test_duplicate_ids_keep_latest_ingested(store):
    store.conn.execute(
        "INSERT INTO ingest_log (ingest_id, source, fingerprint, format, read, stored, "
        "duplicates, quarantined, started_at, finished_at) VALUES (1, 'old.csv', 'f1', 'csv', 1, 1, 0, 0, now(), now()),"
        " (2, 'new.csv', 'f2', 'csv', 1, 1, 0, 0, now(), now())"
    )
    _insert(
        store,
        "items",
        [
            {"item_id": "i1", "title": "New title", "price": 12.0, "source": "new.csv"},
            {"item_id": "i1", "title": "Old title", "price": 10.0, "source": "old.csv"},
            {"item_id": "i2", "title": "Other", "price": 5.0, "source": "old.csv"},
        ],
    )
    report = clean_store(store, only(duplicate_ids=True))
    s = step(report, "duplicate_ids", "items")
    assert s.removed == 1 and s.detail["with_other_content"] == 1
    assert rows(store, "SELECT title FROM items_clean WHERE item_id = 'i1'") == [("New title",)]


# -- bots ----------------------------------------------------------------------------------


def _population(n_users: int = 30) -> list[dict[str, Any]]:
    out = []
    for u in range(n_users):
        for k in range(60):  # 60 events over ~10 hours, a few minutes apart
            out.append(ev(f"h{u}", f"i{(u + k) % 40}", "view", 600.0 * k + 17 * u))
        out.append(ev(f"h{u}", f"i{u % 40}", "purchase", 40_000.0 + u))
    return out


def test_bots_removed_with_reasons(store):
    events = _population()
    # A scraper: 3000 views within one hour, 1.2 s apart.
    events += [ev("bot1", f"i{k % 40}", "view", 1.2 * k) for k in range(3000)]
    # A crawler that is slow per hour but views 1500 items over days and never converts.
    events += [ev("bot2", f"i{k % 40}", "view", 200.0 * k) for k in range(1500)]
    # A light user with a fast burst: under bot_min_events, never flagged.
    events += [ev("light", f"i{k}", "view", 0.01 * k) for k in range(20)]
    _insert(store, "events", events)
    _insert(store, "users", [{"user_id": u} for u in ("bot1", "bot2", "h0", "light")])
    _insert(
        store, "reviews", [{"user_id": "bot1", "item_id": "i1", "rating": 5.0, "timestamp": T0}]
    )
    report = clean_store(store, only(bots=True))
    s = step(report, "bots", "events")
    assert s.detail["users_flagged"] == 2
    bots = {b["user_id"]: set(b["reasons"]) for b in s.detail["bots"]}
    assert bots["bot1"] >= {"rate_z", "peak_hour"}
    assert bots["bot2"] == {"views_without_conversion"}
    assert s.removed == 4500
    assert step(report, "bots", "reviews").removed == 1
    assert step(report, "bots", "users").removed == 2
    left = {r[0] for r in rows(store, "SELECT DISTINCT user_id FROM events_clean")}
    assert "bot1" not in left and "bot2" not in left
    assert {"light", "h0", "h29"} <= left


def test_bot_rules_can_be_disabled_and_no_conversion_rule_needs_conversions(store):
    # Views only in the whole store: window shoppers must not be flagged for not buying.
    _insert(store, "events", [ev("v", f"i{k % 40}", "view", 200.0 * k) for k in range(1500)])
    report = clean_store(store, only(bots=True))
    assert step(report, "bots", "events").removed == 0
    _insert(store, "events", [ev("fast", f"i{k % 9}", "view", 0.2 * k) for k in range(200)])
    cfg = only(bots=True, bot_rate_z=None, bot_max_events_per_hour=None, bot_min_median_gap_s=None)
    assert step(clean_store(store, cfg), "bots", "events").removed == 0
    r = clean_store(store, replace(cfg, bot_min_median_gap_s=1.0))
    assert step(r, "bots", "events").removed == 200
    assert step(r, "bots", "events").detail["by_reason"] == {"median_gap": 1}


# -- prices --------------------------------------------------------------------------------


def test_outlier_prices_nulled_and_logged(store):
    items = [
        {"item_id": f"c{k}", "category": "Cards", "currency": "USD", "price": p}
        for k, p in enumerate([20, 25, 25, 25, 30, 35, 40, 25, 25, 50, 100, 25])
    ]
    items += [
        {"item_id": "bad_hi", "category": "Cards", "currency": "USD", "price": 250_000.0},
        {"item_id": "bad_neg", "category": "Cards", "currency": "USD", "price": -5.0},
        {"item_id": "free", "category": "Cards", "currency": "USD", "price": 0.0},
        {"item_id": "tiny_cat", "category": "Rare", "currency": "USD", "price": 3000.0},
        {"item_id": "absurd", "category": "Rare", "currency": "USD", "price": 5e7},
        {"item_id": "no_price", "category": "Cards", "currency": "USD", "price": None},
    ]
    _insert(store, "items", items)
    report = clean_store(store, only(outlier_prices=True))
    s = step(report, "outlier_prices", "items")
    assert s.removed == 0
    assert s.modified == 3
    changes = {c["item_id"]: c for c in s.detail["changes"]}
    assert set(changes) == {"bad_hi", "bad_neg", "absurd"}
    assert changes["bad_hi"]["original_price"] == 250_000.0
    assert changes["bad_hi"]["reason"] == "robust_outlier"
    assert changes["bad_neg"]["reason"] == "absurd"
    assert changes["bad_hi"]["reference_price"] == pytest.approx(25.0)
    assert store.count("items_clean") == store.count("items")  # items kept
    prices = dict(rows(store, "SELECT item_id, price FROM items_clean"))
    assert prices["bad_hi"] is None and prices["bad_neg"] is None and prices["absurd"] is None
    assert prices["c10"] == 100.0 and prices["free"] == 0.0 and prices["tiny_cat"] == 3000.0
    # Raw prices remain.
    assert rows(store, "SELECT price FROM items WHERE item_id = 'bad_hi'") == [(250_000.0,)]


# -- k-core --------------------------------------------------------------------------------


def test_k_core_reaches_fixed_point(store):
    # A dense 3x3 block (a 3-core) plus a chain that unravels: u4 has i1 and i4; i4 only u4.
    events = [ev(f"u{u}", f"i{i}", "view", 10.0 * (u * 3 + i)) for u in range(3) for i in range(3)]
    events += [
        ev("u4", "i1", "view", 100),
        ev("u4", "i4", "view", 101),
        ev("u4", None, "search", 102, query="q"),
    ]
    events += [ev("u5", "i4", "view", 103)]
    _insert(store, "events", events)
    _insert(store, "reviews", [{"user_id": "u4", "item_id": "i1", "rating": 4.0, "timestamp": T0}])
    _insert(store, "items", [{"item_id": "i4", "title": "kept in catalogue"}])
    report = clean_store(store, only(k_core=3))
    s = step(report, "k_core", "events")
    assert s.detail["users_kept"] == 3 and s.detail["items_kept"] == 3
    assert s.removed == 4
    assert step(report, "k_core", "reviews").removed == 1
    degrees = rows(
        store,
        "SELECT min(n) FROM (SELECT count(DISTINCT item_id) n FROM events_clean GROUP BY user_id)"
        " UNION ALL SELECT min(n) FROM (SELECT count(DISTINCT user_id) n FROM events_clean GROUP BY item_id)",
    )
    assert all(d[0] >= 3 for d in degrees)
    assert store.count("items_clean") == 1  # the catalogue is not filtered by k-core


def test_k_core_off_by_default(store):
    _insert(store, "events", [ev("u1", "i1", "view", 0)])
    report = clean_store(store)
    assert not [s for s in report.steps if s.step == "k_core"]
    assert store.count("events_clean") == 1


# -- whole runs ------------------------------------------------------------------------------


def _dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for t in schema.DATA_TABLES:
        cols = ", ".join(schema.column_names(t))
        out[t] = rows(store, f"SELECT {cols} FROM {t}_clean ORDER BY ALL")
    out["log"] = rows(
        store, 'SELECT seq, step, "table", removed, modified, detail FROM cleaning_log ORDER BY seq'
    )
    return out


def test_idempotent_logged_and_json(store):
    events = _population(12) + [ev("bot", f"i{k % 40}", "view", 1.2 * k) for k in range(2000)]
    events += [ev("h0", "i0", "click", 0.0), ev("h0", "i0", "click", 0.3)]
    events += [
        ev("h1", "i1", "view", 17, session_id="other")
    ]  # exact duplicate of a population row
    _insert(store, "events", events)
    _insert(
        store,
        "items",
        [{"item_id": f"i{k}", "category": "A", "price": 10.0 + k} for k in range(40)],
    )
    raw = store.counts()
    r1 = clean_store(store)
    first = _dump(store)
    r2 = clean_store(store)
    assert _dump(store) == first
    assert r1.to_dict()["steps"] == r2.to_dict()["steps"]
    assert store.counts() == raw
    assert has_clean_tables(store)
    assert r1.removed_by_step()["bots"] == 2000
    assert r1.removed_by_step()["near_duplicates"] == 1
    assert r1.removed_by_step()["exact_duplicates"] == 1
    assert r1.before["events"] == len(events)
    assert r1.after["events"] == len(events) - 2002
    assert sum(r1.removed.values()) == sum(r1.before.values()) - sum(r1.after.values())
    back = load_report(store)
    assert back is not None
    assert json.loads(back.to_json())["steps"] == json.loads(r2.to_json())["steps"]
    assert back.after == r2.after
    logged = rows(store, "SELECT count(*) FROM cleaning_log")[0][0]
    assert logged == len(r2.steps)


def test_failure_keeps_previous_clean_tables(store, monkeypatch):
    _insert(store, "events", [ev("u1", "i1", "view", 0), ev("u1", "i1", "view", 0.1)])
    clean_store(store)
    assert store.count("events_clean") == 1

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(clean_mod, "_step_bots", boom)
    _insert(store, "events", [ev("u2", "i1", "view", 0)])
    with pytest.raises(RuntimeError):
        clean_store(store)
    assert store.count("events_clean") == 1  # the previous run's result, untouched
    assert not store.has_table("_clean_work_events")


def test_read_only_store_refused(tmp_path):
    path = tmp_path / "ro.duckdb"
    Store(path).close()
    with Store(path, read_only=True) as ro, pytest.raises(Exception, match="read-only"):
        clean_store(ro)


def test_config_validation():
    with pytest.raises(CleanConfigError, match="unknown settings"):
        CleanConfig.from_dict({"k_cores": 5})
    with pytest.raises(CleanConfigError, match="unknown event types"):
        CleanConfig(near_duplicate_types=("viewed",))
    with pytest.raises(CleanConfigError, match="price_mad_k"):
        CleanConfig(price_mad_k=0)
    cfg = CleanConfig.from_dict({"k_core": 5, "k_core_types": "view, purchase"})
    assert cfg.k_core_types == ("view", "purchase")
    assert CleanConfig.from_dict(cfg.to_dict()) == cfg


# -- real data -------------------------------------------------------------------------------


def test_amazon_gift_cards_duplicate_reviews(store, shared):
    path = shared.path("amazon-gift-cards", "Gift_Cards_5.json.gz")
    reviews = []
    with gzip.open(path, "rt") as fh:
        for line_no, line in enumerate(fh, 1):
            r = json.loads(line)
            reviews.append(
                {
                    "user_id": r["reviewerID"],
                    "item_id": r["asin"],
                    "rating": float(r["overall"]),
                    "summary": r.get("summary"),
                    "text": r.get("reviewText"),
                    "timestamp": datetime.utcfromtimestamp(r["unixReviewTime"]),
                    "verified": r.get("verified"),
                    "source": str(path),
                    "line": line_no,
                }
            )
    _insert(store, "reviews", reviews)
    report = clean_store(store)
    removed = step(report, "exact_duplicates", "reviews").removed
    removed += step(report, "duplicate_reviews", "reviews").removed
    assert removed == 7
    assert store.count("reviews_clean") == 2972 - 7
    dup_pairs = rows(
        store,
        "SELECT count(*) FROM (SELECT user_id, item_id FROM reviews_clean GROUP BY ALL HAVING count(*) > 1)",
    )
    assert dup_pairs == [(0,)]
    # The user with three reviews of one item keeps the latest (2015-08-26).
    kept = rows(
        store,
        "SELECT timestamp FROM reviews_clean WHERE user_id = 'A1Z1JLCLHI6T5E' AND item_id = 'B00KV30IHG'",
    )
    assert [k[0].date().isoformat() for k in kept] == ["2015-08-26"]
