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

from shopsight.personas import Personas
from shopsight.personas.report import CHROMIUM, CHROMIUM_ARGS, export_pngs, write_report
from shopsight.privacy.pseudonym import Pseudonymizer

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
        assert errors == []
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
