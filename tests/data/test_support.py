"""Refusals instead of empty results: a predictor needs impressions and positive labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.data.support import require_funnel
from shopsight.errors import DataError


def _store(tmp_path: Path, rows: list[str]) -> Store:
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,event_type,timestamp,session_id\n" + "\n".join(rows) + "\n")
    store = Store(tmp_path / "s.duckdb")
    assert ingest_files(store, [f]).ok
    return store


def test_views_only_refused_naming_the_events_needed(tmp_path: Path) -> None:
    rows = [
        f"u{u},i{i},view,2024-01-0{1 + i % 5}T00:00:0{u},s{u}" for u in range(5) for i in range(6)
    ]
    with _store(tmp_path, rows) as store, pytest.raises(DataError) as e:
        require_funnel(store, ("click", "add_to_cart", "purchase"))
    msg = str(e.value)
    assert "no positive label for click, add_to_cart, purchase" in msg
    assert "30 view events" in msg and "click / add_to_cart / purchase" in msg
    assert "\n" not in msg


def test_reviews_only_refused_naming_views(tmp_path: Path) -> None:
    rows = [f"u{u},i{u},rate,2024-01-01T00:00:0{u}," for u in range(5)]
    with _store(tmp_path, rows) as store:
        with pytest.raises(DataError, match=r"needs `view` events .* this store has rate 5"):
            require_funnel(store, ("click",))
        from shopsight.prediction.predictor import FunnelPredictor

        with pytest.raises(DataError, match="needs `view` events"):
            FunnelPredictor(epochs=1).fit(store)


def test_a_full_funnel_passes(tmp_path: Path) -> None:
    rows = ["u1,i1,view,2024-01-01T00:00:00,s1", "u1,i1,click,2024-01-01T00:00:01,s1"]
    with _store(tmp_path, rows) as store:
        assert require_funnel(store, ("click",))["view"] == 1
        with pytest.raises(DataError, match="no positive label for purchase"):
            require_funnel(store, ("click", "purchase"))
