"""Audiences: by category (profiles or recommender), by item, lookalikes; exported pseudonymised."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shopsight.cli import app as cli_app
from shopsight.data.dataset import Dataset
from shopsight.data.pseudonym import Pseudonymizer, is_pseudonym
from shopsight.data.store import Store
from shopsight.models.artifact import load_artifact, save_artifact
from shopsight.models.registry import create_model
from shopsight.personas import Personas, build_personas
from shopsight.personas.audience import (
    category_audience,
    item_audience,
    lookalike_audience,
    segment_vectors,
)


@pytest.fixture(scope="module")
def model_dir(shop: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with Store(shop.store, read_only=True) as st:
        ds = Dataset.from_store(st)
    out = tmp_path_factory.mktemp("model") / "ease"
    save_artifact(create_model("ease", l2=100).fit(ds), ds, out, seed=0)
    return out


def _share(p: Personas, category: str) -> dict[str, float]:
    a = p.affinities.to_pydict()
    return {
        u: w
        for u, kind, key, w in zip(a["user"], a["kind"], a["key"], a["weight"], strict=True)
        if kind == "category" and key == category
    }


def test_category_audience_from_profiles(built: Personas, tmp_path: Path) -> None:
    cat = "Clothing > Shoes"
    aud = category_audience(built, cat, size=50)
    share = _share(built, cat)
    assert aud.size == 50 and aud.method == "profile"
    assert all(is_pseudonym(u) for u in aud.users)
    assert np.all(np.diff(aud.scores) <= 0)
    # Members engage with the category far more than the average user.
    inside = np.mean([share.get(u, 0.0) for u in aud.users])
    assert inside > 2 * (sum(share.values()) / len(built))
    assert 0 < aud.expected_response < aud.size
    for ext, read in ((".csv", pacsv.read_csv), (".parquet", pq.read_table)):
        t = read(aud.export(tmp_path / f"aud{ext}"))
        assert t.column("user").to_pylist() == aud.users
        assert t.column("rank").to_pylist() == list(range(1, 51))
    with pytest.raises(ValueError, match=r"csv or \.parquet"):
        aud.export(tmp_path / "aud.xlsx")
    with pytest.raises(ValueError, match="no user engages"):
        category_audience(built, "No > Such")


def test_recommender_audiences(shop: Any, built: Personas, model_dir: Path) -> None:
    art = load_artifact(model_dir)
    cat = "Home > Lighting"
    with Store(shop.store, read_only=True) as st:
        aud = category_audience(built, cat, size=40, artifact=art, store=st)
        item = next(i for i, v in shop.truth["items"].items() if v["category"] == cat)
        one = item_audience(built, item, artifact=art, store=st, size=40)
    assert aud.method == "recommender" and aud.size == 40
    share = _share(built, cat)
    assert np.mean([share.get(u, 0.0) for u in aud.users]) > 2 * (sum(share.values()) / len(built))
    assert one.size == 40 and 0 < one.expected_response < 40
    assert one.scores[0] == pytest.approx(1.0)  # rank percentile: the top user is the best


def test_lookalikes_come_from_the_seeds_segment(shop: Any, built: Personas) -> None:
    seeds = [u for u, v in shop.truth["users"].items() if v["segment_name"] == "trend_followers"][
        :15
    ]
    aud = lookalike_audience(built, seeds, segment_vectors(built), size=40)
    back = Pseudonymizer().recover(aud.users, shop.truth["users"])
    planted = Counter(shop.truth["users"][back[u]]["segment_name"] for u in aud.users)
    assert planted["trend_followers"] / aud.size >= 0.8, planted
    seed_ids = set(Pseudonymizer().many(seeds))
    assert not seed_ids & set(aud.users)
    with pytest.raises(ValueError, match="none of the seed"):
        lookalike_audience(built, ["nobody"], segment_vectors(built))


def test_audience_cli(shop: Any, built: Personas, tmp_path: Path) -> None:
    saved = built.save(tmp_path / "personas")
    out = tmp_path / "aud.parquet"
    cmd = ["audience", "--store", str(shop.store)]
    res = CliRunner().invoke(
        cli_app,
        [*cmd, "--personas", str(saved), "--category", "Clothing > Shoes", "--size", "25",
         "--out", str(out), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["size"] == 25 and pq.read_table(out).num_rows == 25
    bad = CliRunner().invoke(cli_app, [*cmd, "--size", "5"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("error: give exactly one of")
    assert "Traceback" not in bad.stderr


def test_category_audience_refuses_without_a_real_score(built: Personas) -> None:
    """No purchases anywhere: every profile score would be 0, so no list comes back."""
    import dataclasses

    import pyarrow as pa

    col = built.users.schema.get_field_index("purchase_propensity")
    zero = pa.array(np.zeros(len(built)), built.users.schema.field(col).type)
    flat = dataclasses.replace(
        built, users=built.users.set_column(col, "purchase_propensity", zero)
    )
    with pytest.raises(ValueError, match=r"no real score for 'Clothing > Shoes'.*--model-dir"):
        category_audience(flat, "Clothing > Shoes", size=50)


def test_category_audience_matches_by_prefix(built: Personas) -> None:
    """'Clothing' takes in 'Clothing > Shoes' and its siblings (one rule, data.categories)."""
    parent = category_audience(built, "Clothing", size=10_000)
    leaf = category_audience(built, "Clothing > Shoes", size=10_000)
    assert parent.details["engaged_users"] >= leaf.details["engaged_users"] > 0
    assert np.all(parent.scores > 0) and len(set(parent.users)) == parent.size


def test_segment_pages_show_their_users_recommendations(shop: Any, model_dir: Path) -> None:
    from shopsight.personas.report import render_report
    from shopsight.personas.segments import SegmentConfig

    art = load_artifact(model_dir)
    with Store(shop.store, read_only=True) as st:
        p = build_personas(
            st, artifact=art, use_features=False, segment_config=SegmentConfig(n_boot=0)
        )
    raw = next(u for u, v in shop.truth["users"].items() if not v["bot"])
    prof = p.profile(raw)
    assert prof is not None
    items, scores = art.model.recommend(np.array([art.user_index(raw)]), 10)
    expect = [
        str(art.item_ids[i]) for i, s in zip(items[0], scores[0], strict=True) if np.isfinite(s)
    ]
    assert prof["prediction"]["recommended"] == expect
    for s in p.segments():
        recs = s["recommended_items"]
        assert recs and all(r["title"] and 0 < r["share"] <= 1 for r in recs)
        assert recs == sorted(recs, key=lambda r: -r["users"])
    page = render_report(p, n_user_pages=4)
    assert page.count("What the model recommends to its members") == len(p.segments())
    assert "<td>recommended</td>" in page
    title = p.meta["item_titles"][expect[0]]
    assert title and title in page
