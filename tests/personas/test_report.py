"""The HTML report is self-contained; the CLI writes it; the dashboard router serves the views."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shopsight.cli import app as cli_app
from shopsight.data.pseudonym import Pseudonymizer
from shopsight.data.store import Store
from shopsight.personas import Personas, demo_step
from shopsight.personas.dashboard import create_router
from shopsight.personas.report import render_report


def shopsight(*args: str) -> Any:
    """Run the CLI in this process (stdout and stderr apart)."""
    return CliRunner().invoke(cli_app, list(args))


def test_report_is_one_offline_file(shop: Any, built: Personas) -> None:
    page = render_report(built, n_user_pages=10)
    # Plotly is inlined (its bundle is ~3 MB), nothing is loaded from elsewhere.
    assert len(page) > 1_000_000
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"https?:", page)
    assert not re.search(r"<img[^>]+src=\"(?!data:)", page)
    for div in ("segment-map", "segment-sizes", "segment-funnels", "radar-0", "affinity-0"):
        assert f'id="{div}"' in page
    assert page.count('class="segment-card"') == len(built.segments())
    assert page.count('class="block user-page"') == 10
    assert page.count("data:image/png;base64,") >= len(built.segments())
    raw = [u for u, v in shop.truth["users"].items() if not v["bot"]]
    pseudo = set(Pseudonymizer().many(raw))
    shown = set(re.findall(r'id="user-(p_[0-9a-f]{24})"', page))
    assert len(shown) == 10 and shown <= pseudo
    assert not any(f">{u}<" in page or f'"{u}"' in page for u in raw[:50])


def test_personas_cli_writes_report_and_folder(shop: Any, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = shopsight(
        "personas", "--store", str(shop.store), "--out", str(out), "--save",
        str(tmp_path / "p"), "--k", "5", "--user-pages", "5", "--no-features", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["report"] == str(out) and out.stat().st_size > 1_000_000
    assert result["k"] == 5 and len(result["segments"]) == 5
    assert {"time_of_day", "price", "funnel", "review_text"} <= set(result["signals"])
    assert all(result["signals"][k]["available"] for k in ("time_of_day", "funnel", "review_text"))
    assert all(s["stability"] is not None and s["name"] for s in result["segments"])
    assert Personas.load(tmp_path / "p").summary()["users"] == result["users"]
    bad = shopsight("personas", "--store", str(shop.store), "--method", "dbscan")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --method")
    missing = shopsight("personas", "--store", str(tmp_path / "none.duckdb"))
    assert missing.exit_code == 2 and "no such store" in missing.stderr


def test_dashboard_router(shop: Any, built: Personas) -> None:
    app = FastAPI()
    app.include_router(create_router(built))
    client = TestClient(app)
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'id="segment-map"' in page.text
    assert '<script src="/dashboard/plotly.js">' in page.text
    js = client.get("/dashboard/plotly.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    raw = next(u for u, v in shop.truth["users"].items() if not v["bot"])
    pid = Pseudonymizer()(raw)
    hop = client.get("/dashboard/search", params={"q": raw}, follow_redirects=False)
    assert hop.status_code == 303 and hop.headers["location"] == f"/dashboard/user/{pid}"
    user = client.get(f"/dashboard/user/{pid}")
    assert user.status_code == 200 and f"User {pid}" in user.text and raw not in user.text
    assert client.get("/dashboard/user/nobody").status_code == 404
    miss = client.get("/dashboard/search", params={"q": "nobody"}, follow_redirects=False)
    assert miss.headers["location"].startswith("/dashboard?missing=")
    assert client.get("/dashboard/api/users/" + raw).json()["user"] == pid
    assert client.get("/dashboard/api/users/nobody").status_code == 404
    assert [s["id"] for s in client.get("/dashboard/api/segments").json()] == [
        s["id"] for s in built.segments()
    ]
    pts = client.get("/dashboard/api/map", params={"limit": 50}).json()
    assert len(pts["x"]) == len(pts["segment"]) == 50


def test_demo_step(shop: Any, tmp_path: Path) -> None:
    with Store(shop.store, read_only=True) as st:
        res = demo_step(st, tmp_path)
    assert Path(res["report"]).is_file() and Path(res["saved"]).is_dir()
    assert res["users"] == 495 and res["segments"]


@pytest.mark.parametrize("small", ["merge", "suppress"])
def test_personas_cli_rejects_bad_k(shop: Any, small: str) -> None:
    res = shopsight("personas", "--store", str(shop.store), "--k", "0", "--small", small)
    assert res.exit_code == 2 and res.stderr.startswith("error: --k")
