"""recommend shows titles; tune takes a storage URL; split errors list every method; help texts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopsight.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shop")
    ev = d / "events.csv"
    rows = [
        f"u{u},i{(u * 3 + k) % 12},purchase,2024-01-{1 + k:02d}T00:00:00"
        for u in range(20)
        for k in range(4)
    ]
    ev.write_text("user_id,item_id,event_type,timestamp\n" + "\n".join(rows) + "\n")
    items = d / "items.csv"
    items.write_text(
        "item_id,title,category,price\n"
        + "\n".join(
            f"i{i},Item number {i},Books > Fiction|Books > Crime,{i + 1}.5" for i in range(12)
        )
        + "\n"
    )
    store = d / "s.duckdb"
    res = runner.invoke(app, ["ingest", "--store", str(store), str(ev)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["ingest", "--store", str(store), "--target", "items", str(items)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["train", "--store", str(store), "--model", "popularity", "--out", str(d / "model")]
    )
    assert res.exit_code == 0, res.output
    return d


def test_recommend_shows_titles_and_json_metadata(shop: Path) -> None:
    args = ["recommend", "--model-dir", str(shop / "model"), "--user", "u1", "-k", "3"]
    res = runner.invoke(app, [*args, "--store", str(shop / "s.duckdb"), "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)["recommendations"]["u1"]["items"]
    assert len(items) == 3
    for it in items:
        assert it["item"]["title"] == f"Item number {it['item_id'][1:]}"
        assert it["item"]["category"] == "Books > Fiction|Books > Crime"
    res = runner.invoke(app, [*args, "--store", str(shop / "s.duckdb")])
    assert res.exit_code == 0 and "Item number" in res.output
    cwd = os.getcwd()
    try:  # no store given and none in the working directory: ids, and a line saying so
        os.chdir(shop / "model")
        res = runner.invoke(app, args)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0 and "pass --store for titles" in res.output


def test_tune_uses_a_storage_url_as_given(shop: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("neighbours: {type: int, low: 2, high: 8}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        res = runner.invoke(
            app,
            [
                "tune",
                "--store",
                str(shop / "s.duckdb"),
                "--model",
                "itemknn",
                "--space",
                str(space),
                "--trials",
                "2",
                "--protocol",
                "temporal-global",
                "--study",
                url,
                "--json",
            ],
        )
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.db").is_file() and not (tmp_path / "sqlite:").exists()
    assert json.loads(res.stdout)["storage"] == url


def test_split_error_lists_kfold_and_dp_help_is_true() -> None:
    from shopsight.data.split import SplitError, make_split

    with pytest.raises(SplitError, match=r"known: .*kfold"):
        make_split("nope", None)  # type: ignore[arg-type]
    res = runner.invoke(app, ["dp-train", "--help"])
    assert "omit: not private" not in res.output
