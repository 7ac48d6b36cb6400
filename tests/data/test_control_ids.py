"""Ids with control characters (NUL, tab, newline, DEL) are refused at ingest, for files and for
live events alike, with a reason naming the field; clean ids next to them are stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shopsight.data.ingest import ingest_file
from shopsight.data.store import Store
from shopsight.serving.state import stage_events

BAD = ["u\x001", "u\t2", "u3\n", "u\x7f4"]


@pytest.mark.parametrize("field", ["user_id", "item_id"])
def test_file_ingest_quarantines_ids_with_control_characters(tmp_path: Path, field: str) -> None:
    rows = [
        {"user_id": "ok", "item_id": "i1", "event_type": "view", "timestamp": "2025-01-02T03:04:05"}
    ]
    for i, bad in enumerate(BAD):
        row = {"user_id": f"u{i}", "item_id": f"i{i}", "event_type": "view"}
        row[field] = bad
        rows.append({**row, "timestamp": "2025-01-02T03:04:05"})
    f = tmp_path / "ev.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Store(tmp_path / "s.duckdb") as st:
        report = ingest_file(st, f)
        assert (report.stored, report.quarantined) == (1, len(BAD))
        reasons = {r[0] for r in st.conn.execute("SELECT reason FROM quarantine").fetchall()}
        stored = st.conn.execute(f"SELECT {field} FROM events").fetchall()
    assert reasons == {f"{field}: control character in id (not allowed)"}
    assert stored == [("ok" if field == "user_id" else "i1",)]


def test_live_events_with_control_characters_are_rejected_by_field() -> None:
    events = [{"user_id": b, "item_id": "i1", "event_type": "view"} for b in BAD]
    events.append({"user_id": "fine", "item_id": "i\x002", "event_type": "view"})
    events.append({"user_id": "fine", "item_id": "i3", "event_type": "view"})
    _, rejected = stage_events(events, datetime.now(UTC).replace(tzinfo=None))
    assert [r["index"] for r in rejected] == [0, 1, 2, 3, 4]
    assert [r["field"] for r in rejected] == ["user_id"] * 4 + ["item_id"]
    assert all("control character" in r["reason"] for r in rejected)
