"""A real headless Chromium opens the report file and the dashboard served by uvicorn.

It checks that the charts render (Plotly drew its SVG, no console errors), that the expected
elements are there, and that searching a user leads to their page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shopsight.data.pseudonym import Pseudonymizer
from shopsight.personas import Personas
from shopsight.personas.report import CHROMIUM, CHROMIUM_ARGS, export_pngs, write_report

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM} (apt install chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_report_renders_and_search_finds_a_user(
    built: Personas, browser: Any, tmp_path: Path
) -> None:
    report = write_report(built, tmp_path / "report.html", n_user_pages=8)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = _watch(page)
    page.goto(report.as_uri())
    page.wait_for_selector("#segment-map .main-svg", timeout=30_000)
    n_segments = len(built.segments())
    # Every chart drew: map, sizes, funnels and a radar + bar chart per segment.
    assert page.locator(".js-plotly-plot").count() == 3 + 2 * n_segments
    assert page.locator("#segment-map .scatterlayer .trace, #segment-map .gl-container").count() > 0
    assert page.locator(".segment-card").count() == n_segments
    assert page.locator(".segment-card img").count() >= n_segments
    user = page.locator("section.user-page").first.get_attribute("data-user")
    assert user is not None and user.startswith("p_")
    assert not page.locator(f"#user-{user}").is_visible()
    page.fill("#user-search", user[:14])  # a prefix of the pseudonym is enough
    page.click("#search-form button")
    page.wait_for_function(f"location.hash === '#user-{user}'")
    assert page.locator(f"#user-{user}").is_visible()
    assert user in page.locator(f"#user-{user} h2").inner_text()
    page.fill("#user-search", "p_nobody")
    page.click("#search-form button")
    assert "No sampled user" in page.locator("#search-result").inner_text()
    assert errors == []
    page.close()
    pngs = export_pngs(
        report, tmp_path / "png", charts=("segment-map", "segment-funnels"), browser=browser
    )
    assert [p.name for p in pngs] == ["segment-map.png", "segment-funnels.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)


def test_dashboard_served_by_uvicorn(
    shop: Any, built: Personas, browser: Any, tmp_path: Path
) -> None:
    saved = built.save(tmp_path / "personas")
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("shopsight")), "dashboard", "--personas", str(saved),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/dashboard/api/segments", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "dashboard did not start"
            time.sleep(0.3)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors = _watch(page)
        page.goto(base + "/")
        assert page.url == base + "/dashboard"
        page.wait_for_selector("#segment-map .main-svg", timeout=30_000)
        assert page.locator(".js-plotly-plot").count() == 3
        assert page.locator(".segment-card").count() == len(built.segments())
        raw = next(u for u, v in shop.truth["users"].items() if not v["bot"])
        pid = Pseudonymizer()(raw)
        page.fill("#user-search", raw)  # a raw id is pseudonymised by the server
        page.click("#search-form button")
        page.wait_for_url(f"{base}/dashboard/user/{pid}")
        assert f"User {pid}" in page.locator("h2").first.inner_text()
        assert raw not in page.content()
        assert page.locator(".segment-card").count() == 1  # their segment
        page.fill("#user-search", "nobody-here")
        page.click("#search-form button")
        page.wait_for_url(f"{base}/dashboard?missing=nobody-here")
        assert "No user nobody-here" in page.locator("#search-result").inner_text()
        # On a phone: no sideways scroll; a segment's page and its CSV export.
        page.set_viewport_size({"width": 390, "height": 900})
        page.goto(base + "/dashboard")
        page.wait_for_selector("#segment-map .main-svg", timeout=30_000)
        got = page.evaluate(LAYOUT_JS)
        assert got["scroll"] <= got["width"] and got["empty"] == [], got
        page.locator(".segment-card a.open-segment").first.click()
        page.wait_for_url(f"{base}/dashboard/segment/0")
        assert page.locator("table.cmp").count() == 1
        assert page.locator("h2").first.inner_text().startswith("Segment: ")
        got = page.evaluate(LAYOUT_JS)
        assert got["scroll"] <= got["width"] and got["empty"] == [], got
        page.locator(".segment-page a[href^='/dashboard/user/']").first.click()
        page.wait_for_url(f"{base}/dashboard/user/p_*")
        csv_text = httpx.get(base + "/dashboard/segment/0.csv", timeout=10).text
        lines = csv_text.splitlines()
        assert (
            lines[0].startswith("user,segment,") and len(lines) == 1 + built.segments()[0]["size"]
        )
        assert all(ln.startswith("p_") for ln in lines[1:])
        assert httpx.get(base + "/dashboard/segment/99", timeout=10).status_code == 404
        assert errors == []
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- layout on a laptop and a phone, on the demo shop and on two real datasets ----------------

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WIDTHS = (1440, 390)
# What a reader would call broken: a sideways scroll, a chart drawn without data.
LAYOUT_JS = """() => {
 const plots=[...document.querySelectorAll('.js-plotly-plot')].filter(g=>g.offsetParent!==null);
 const empty=plots.filter(g=>!(g.data||[]).some(t=>['x','y','r','z'].some(
   k=>Array.isArray(t[k]) ? t[k].some(v=>v!==null) : (t[k]&&t[k].length>0)))).map(g=>g.id);
 return {scroll: document.documentElement.scrollWidth, width: window.innerWidth,
         plots: plots.length, empty: empty};
}"""


def _offline(page: Any) -> list[str]:
    """Block every request that is not the file itself or inline data; return what was tried."""
    tried: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("file:", "data:", "http://127.0.0.1")):
            r.continue_()
        else:
            tried.append(url)
            r.abort()

    page.route("**/*", route)
    return tried


def _shot(page: Any, name: str, tmp: Path) -> Path:
    """A small PNG of the first screen (palette-quantised) in $SHOPSIGHT_SCREENSHOTS or tmp."""
    from PIL import Image

    out_dir = Path(os.environ.get("SHOPSIGHT_SCREENSHOTS") or tmp)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


def _check_layout(browser: Any, report: Path, name: str, width: int, tmp: Path) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors = _watch(page)
    tried = _offline(page)
    page.goto(report.as_uri())
    page.wait_for_selector("#segments .segment-card", timeout=30_000)
    page.wait_for_function(
        "[...document.querySelectorAll('.js-plotly-plot')].every(g => g._fullLayout)",
        timeout=60_000,
    )
    got = page.evaluate(LAYOUT_JS)
    assert got["scroll"] <= got["width"], (name, width, got)
    assert got["plots"] >= 2 and got["empty"] == [], (name, width, got)
    assert page.locator("#signals").is_visible()
    _shot(page, f"{name}-{width}", tmp)
    # Drill-down: the first segment's page opens from its card, still no sideways scroll.
    page.locator(".segment-card a.open-segment").first.click()
    page.wait_for_function("location.hash.startsWith('#segment-page-')")
    seg = page.locator(".segment-page:target")
    assert seg.is_visible() and seg.locator("table.cmp").count() == 1
    assert seg.locator("ol.items li").count() >= 1
    seg.scroll_into_view_if_needed()
    got = page.evaluate(LAYOUT_JS)
    assert got["scroll"] <= got["width"], (name, width, "segment page", got)
    if width == WIDTHS[-1]:
        page.evaluate("document.querySelector('.segment-page:target').scrollIntoView()")
        _shot(page, f"{name}-{width}-segment", tmp)
    assert errors == [] and tried == [], (errors, tried)
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_demo_shop_layout(built: Personas, browser: Any, tmp_path: Path, width: int) -> None:
    report = write_report(built, tmp_path / "report.html", n_user_pages=8)
    _check_layout(browser, report, "demo-shop", width, tmp_path)


def _real(tmp: Path, files: list[Path]) -> Path:
    from shopsight.data.clean import CleanConfig, clean_store
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.personas import build_personas
    from shopsight.personas.segments import SegmentConfig

    missing = [f for f in files if not f.exists()]
    if missing:
        pytest.skip(f"needs {missing[0]} (public datasets in ../shared/data not present)")
    store = tmp / "store.duckdb"
    with Store(store) as st:
        assert ingest_files(st, files).ok
        clean_store(st, CleanConfig())
    with Store(store, read_only=True) as st:
        p = build_personas(st, segment_config=SegmentConfig(n_boot=2), use_features=False)
    return write_report(p, tmp / "report.html", n_user_pages=6)


@pytest.fixture(scope="module")
def gift_cards_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = SHARED_DATA / "amazon-gift-cards"
    files = [d / "meta_Gift_Cards.json.gz", d / "Gift_Cards_5.json.gz"]
    return _real(tmp_path_factory.mktemp("gift_cards"), files)


@pytest.fixture(scope="module")
def movielens_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = SHARED_DATA / "movielens-100k"
    return _real(tmp_path_factory.mktemp("movielens"), [d / "u.item", d / "u.user", d / "u.data"])


@pytest.mark.shared
@pytest.mark.parametrize("width", WIDTHS)
def test_gift_cards_layout(
    gift_cards_report: Path, browser: Any, tmp_path: Path, width: int
) -> None:
    _check_layout(browser, gift_cards_report, "gift-cards", width, tmp_path)


@pytest.mark.shared
@pytest.mark.parametrize("width", WIDTHS)
def test_movielens_layout(movielens_report: Path, browser: Any, tmp_path: Path, width: int) -> None:
    _check_layout(browser, movielens_report, "movielens", width, tmp_path)
