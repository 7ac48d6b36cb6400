"""Live events follow file ingest: same reasons, same keys, dedup and quarantine, and fold-in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from serving_support import Shop, copy_store

from shopsight.data.ingest import ingest_file
from shopsight.data.store import Store
from shopsight.serving.state import (
    LiveState,
    event_weight,
    ingest_events,
    load_user_history,
    stage_events,
)

EVENTS = [
    {
        "user_id": " e1 ",
        "item_id": "i0001",
        "event_type": "View",
        "timestamp": "2024-03-01T10:00:00Z",
    },
    {
        "user_id": "e1",
        "item_id": "i0002",
        "event_type": "transaction",
        "timestamp": 1709287200,
        "value": "12.5",
    },
    {"user_id": "e1", "item_id": "i0003", "event_type": "teleport", "timestamp": "2024-03-01"},
    {"user_id": "", "item_id": "i0003", "event_type": "view", "timestamp": "2024-03-01"},
    {
        "user_id": "e2",
        "item_id": "i0003",
        "event_type": "rate",
        "timestamp": "2024-03-01",
        "value": 7,
    },
    {"user_id": "e2", "item_id": "i0003", "event_type": "view", "timestamp": "2999-01-01"},
    {"user_id": "e2", "item_id": "i0003", "event_type": "view", "timestamp": "yesterday"},
    {
        "user_id": "e2",
        "item_id": "i0003",
        "event_type": "view",
        "timestamp": "2024-03-01",
        "value": -1,
    },
    {"user_id": "e2", "event_type": "search", "query": "red lamp", "timestamp": "2024-03-02"},
]


def _full(ev: dict[str, object]) -> dict[str, object]:
    keys = ("user_id", "event_type", "item_id", "timestamp", "session_id", "query", "value")
    return {k: ev.get(k) for k in keys}


def test_live_batch_equals_the_same_rows_ingested_as_a_file(shop: Shop, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows, rejected = stage_events([_full(e) for e in EVENTS], now)
    assert [r["index"] for r in rejected] == [2, 3, 4, 5, 6, 7]
    assert [r["field"] for r in rejected] == [
        "event_type",
        "user_id",
        "value",
        "timestamp",
        "timestamp",
        "value",
    ]
    live_store = copy_store(shop, tmp_path / "live")
    with Store(live_store) as st:
        before = st.count("events")
        stored, dups, quarantined = ingest_events(st, rows)
        assert (stored, dups, quarantined) == (3, 0, 6)
        assert st.count("events") == before + 3
        live = st.conn.execute(
            "SELECT event_key FROM events WHERE user_id IN ('e1', 'e2') ORDER BY event_key"
        ).fetchall()
        reasons = [
            r[0].split(":")[0]
            for r in st.conn.execute(
                "SELECT reason FROM quarantine WHERE target = 'events' AND source LIKE "
                "'%live-events-%' ORDER BY line"
            ).fetchall()
        ]
        assert reasons == [r["field"] for r in rejected]  # SQL rules agree with the Python twin
        again = ingest_events(st, rows)
        assert again == (0, 3, 6)  # idempotent like re-ingesting a file
    # the same records as a JSON-lines file through `shopsight ingest`
    file_store = copy_store(shop, tmp_path / "file")
    f = tmp_path / "events.jsonl"
    f.write_text("".join(str(r["raw"]) + "\n" for r in rows))
    with Store(file_store) as st:
        rep = ingest_file(st, f, format="jsonl")
        assert (rep.stored, rep.duplicates, rep.quarantined) == (3, 0, 6)
        keys = st.conn.execute(
            "SELECT event_key FROM events WHERE user_id IN ('e1', 'e2') ORDER BY event_key"
        ).fetchall()
    assert keys == live and len(keys) == 3


def test_history_loading_and_dedup_of_live_state(shop: Shop, tmp_path: Path) -> None:
    store = copy_store(shop, tmp_path)
    with Store(store, read_only=True) as st:
        user = st.conn.execute("SELECT user_id FROM events LIMIT 1").fetchall()[0][0]
        held = load_user_history(st, user)
        n = st.conn.execute(
            "SELECT count(*) FROM events WHERE user_id = ? AND item_id IS NOT NULL "
            "AND event_type NOT IN ('search', 'remove_from_cart')",
            [user],
        ).fetchall()[0][0]
    assert len(held.items) == min(n, 500)
    live = LiveState(max_users=2)
    live.replace(user, held)
    key = next(iter(held.keys))
    assert live.add(user, [(key, "i0001", 8.0)])
    assert live.history(user) == (held.items, held.weights)  # a known event is not added twice
    live.replace("a", type(held)())
    live.replace("b", type(held)())
    assert live.history(user) is None and len(live) == 2  # least recently updated evicted
    assert live.forget("a") and live.is_forgotten("a") and live.history("a") is None
    assert event_weight("purchase", None) == 8.0
    assert event_weight("rate", 4.0) == 4.0 and np.isclose(event_weight("rate", None), 1.0)
