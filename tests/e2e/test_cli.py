"""The CLI as a user runs it: real subprocesses, one JSON object on stdout, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = [sys.executable, "-m", "shopsight.cli"]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BIN, *args], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shop")
    proc = run(
        "generate",
        "--out",
        str(out),
        "--users",
        "120",
        "--items",
        "60",
        "--days",
        "20",
        "--no-images",
        "--json",
    )
    obj = one_json(proc)
    assert len(obj["files"]) == 4
    return out


def test_ingest_clean_stats_split(shop: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    files = [str(shop / f) for f in ("items.csv", "users.csv", "events.csv", "reviews.jsonl")]
    rep = one_json(run("ingest", "--store", str(store), "--json", *files))
    t = rep["total"]
    assert t["read"] == t["stored"] + t["duplicates"] + t["quarantined"]
    assert t["stored"] > 1000 and t["quarantined"] > 0 and rep["ok"]
    # re-ingest adds nothing
    again = one_json(run("ingest", "--store", str(store), "--json", *files))
    assert again["total"]["stored"] == 0
    cleaned = one_json(run("clean", "--store", str(store), "--json"))
    assert "steps" in cleaned
    st = one_json(run("stats", "--store", str(store), "--json"))
    assert st["counts"]["events"] > 0 and st["funnel"]
    sp = one_json(
        run(
            "split",
            "--store",
            str(store),
            "--method",
            "leave_last_out",
            "--out",
            str(tmp_path / "s.npz"),
            "--json",
        )
    )
    assert sp["splits"][0]["sizes"]["test"] > 0
    human = run("stats", "--store", str(store))
    assert "events" in human.stderr and human.stdout == ""


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    proc = run("ingest", "--store", str(store), str(tmp_path / "missing.csv"), ok=False)
    assert proc.returncode == 2 and "missing.csv: no such file" in proc.stderr
    binf = tmp_path / "blob.csv"
    binf.write_bytes(bytes(range(256)) * 4)
    proc = run("ingest", "--store", str(store), str(binf), ok=False)
    assert proc.returncode == 2 and "binary data" in proc.stderr
    proc = run("stats", "--store", str(tmp_path / "nope.duckdb"), ok=False)
    assert proc.returncode == 2 and "no such store" in proc.stderr
    proc = run("ingest", "--store", str(store), "--map", "bogus", str(binf), ok=False)
    assert proc.returncode == 2 and "--map" in proc.stderr
    proc = run("ingest", "--store", str(store), "--format", "nosuch", str(binf), ok=False)
    assert proc.returncode == 2 and "unknown format" in proc.stderr


def test_every_shared_dataset_ingests_with_counts_that_add_up(tmp_path: Path, shared) -> None:
    sets = {
        "amazon-gift-cards": ["Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz"],
        "movielens-100k": ["u.item", "u.user", "u.data"],
        "diginetica-sample": ["sample_train-item-views.csv"],
        "amazon-beauty-seq": ["Beauty.txt"],
        "amazon-scientific-text": [
            "Scientific.text",
            "Scientific.train.inter",
            "Scientific.valid.inter",
            "Scientific.test.inter",
        ],
        "fashion-products": ["styles.csv"],
    }
    for name, files in sets.items():
        root = shared.path(name)
        paths = [str(root / f) for f in files]
        store = str(tmp_path / f"{name}.duckdb")
        rep = one_json(run("ingest", "--store", store, "--json", *paths))
        for f in rep["files"]:
            assert f["error"] is None, f
            assert f["read"] == f["stored"] + f["duplicates"] + f["quarantined"], f
            assert f["stored"] > 0, f
