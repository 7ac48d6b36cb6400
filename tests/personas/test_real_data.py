"""Smoke tests on real data: Amazon Gift Cards (reviews + meta) and MovieLens-100K."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsight.data.clean import CleanConfig, clean_store
from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.personas import Personas, build_personas
from shopsight.personas.report import render_report
from shopsight.personas.segments import SegmentConfig

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def _personas(tmp: Path, files: Sequence[Path]) -> tuple[Personas, Path]:
    store = tmp / "store.duckdb"
    with Store(store) as st:
        report = ingest_files(st, list(files))
        assert report.ok, [f.error for f in report.files]
        clean_store(st, CleanConfig())
    with Store(store, read_only=True) as st:
        p = build_personas(st, segment_config=SegmentConfig(n_boot=2), use_features=False)
    return p, store


@pytest.fixture
def gift_cards(shared: Any, tmp_path: Path) -> tuple[Personas, Path]:
    reviews = shared.path("amazon-gift-cards", "Gift_Cards_5.json.gz")
    meta = shared.path("amazon-gift-cards", "meta_Gift_Cards.json.gz")
    return _personas(tmp_path, [meta, reviews])


@pytest.fixture
def movielens(shared: Any, tmp_path: Path) -> tuple[Personas, Path]:
    d = shared.path("movielens-100k")
    files = [d / "u.item", d / "u.user", d / "u.data"]
    return _personas(tmp_path, files)


def test_gift_cards(gift_cards: tuple[Personas, Path]) -> None:
    p, store = gift_cards
    with Store(store, read_only=True) as st:
        n_users = st.conn.execute("SELECT count(DISTINCT user_id) FROM events_clean").fetchall()[0][
            0
        ]
    assert len(p) == n_users > 400
    u = p.users.to_pydict()
    # Ratings: nearly all 5 stars; bias centred near 0; sentiment positive on average.
    assert 4.3 < np.nanmean(np.array(u["mean_rating"], dtype=float)) <= 5
    assert abs(np.nanmean(np.array(u["rating_bias"], dtype=float))) < 0.3
    assert np.nanmean(np.array(u["sentiment"], dtype=float)) > 0.3
    assert np.nanmax(np.array(u["n_reviews"], dtype=float)) >= 5
    # No purchases in a review dump: value is the price of what was reviewed.
    assert np.nansum(np.array(u["monetary"], dtype=float)) > 0
    segs = p.segments()
    assert segs and all(s["size"] >= 20 and s["name"] for s in segs)
    assert sum(s["size"] for s in segs) == len(p)
    prof = p.profile(p.users.column("user")[0].as_py())
    assert prof is not None and prof["affinities"].get("keyword")
    assert prof["reviews"]["n_reviews"] >= 1
    json.dumps(p.segments())
    assert 'id="segment-map"' in render_report(p, n_user_pages=3)


def test_movielens(movielens: tuple[Personas, Path]) -> None:
    p, _ = movielens
    assert len(p) == 943
    u = p.users.to_pydict()
    assert set(u["gender"]) <= {"M", "F", "male", "female"} and None not in u["occupation"]
    assert abs(np.nanmean(np.array(u["rating_bias"], dtype=float))) < 0.3
    styles = {
        k for kind, k in zip(p.affinities["kind"].to_pylist(), p.affinities["key"].to_pylist(), strict=True)
        if kind == "style"
    }  # fmt: skip
    assert {"genre: drama", "genre: comedy", "genre: action"} <= styles
    segs = p.segments()
    assert 2 <= len(segs) <= 10 and all(s["size"] >= 20 for s in segs)
    # Segments differ in what they watch and who they are.
    assert all(s["over_represented"]["style"] or s["over_represented"]["category"] for s in segs)
    assert any(s["demographics"].get("occupation") for s in segs)
    prof = p.profile(p.users.column("user")[0].as_py())
    assert prof is not None and prof["demographics"].get("occupation")
    assert prof["rhythm"]["peak_hour"] is not None
