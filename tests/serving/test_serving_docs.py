"""``/docs`` and ``/redoc`` work offline: every script and style comes from the server itself.

Checked twice: in the HTML (no URL to another host) and in a real headless Chromium with every
request to another host blocked, signing in through ``/login`` as a user of the docs would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from serving_support import TOKEN, auth

from shopsight.personas.report import CHROMIUM, CHROMIUM_ARGS


def test_docs_pages_reference_only_local_assets(served: str) -> None:
    for page in ("/docs", "/redoc"):
        r = httpx.get(served + page, headers=auth())
        assert r.status_code == 200
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
        refs += re.findall(r"""url\s*:\s*["']([^"']+)["']""", r.text)
        assert refs, page
        assert all(u.startswith("/") and not u.startswith("//") for u in refs), (page, refs)
        assert "cdn" not in r.text.lower() and "fonts.googleapis" not in r.text
        for u in refs:
            asset = httpx.get(served + u, headers=auth())
            assert asset.status_code == 200 and len(asset.content) > 0, u
    docs = httpx.get(served + "/docs", headers=auth()).text
    assert '"validatorUrl": null' in docs  # no call to swagger.io's online validator
    redoc_js = httpx.get(served + "/docs-assets/redoc.standalone.js", headers=auth()).text
    assert "cdn.redoc.ly" not in redoc_js
    js = httpx.get(served + "/static-offline-docs/swagger-ui-bundle.js", headers=auth())
    assert js.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert len(js.content) > 500_000  # the Swagger UI bundle itself, not a stub


def test_every_operation_is_described_with_a_typed_answer(served: str) -> None:
    spec = httpx.get(served + "/openapi.json", headers=auth()).json()
    untyped_ok = {("get", "/metrics"), ("get", "/online")}  # Prometheus text, an HTML page
    seen = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            seen += 1
            assert op.get("description"), (method, path)
            if (method, path) in untyped_ok:
                continue
            for code, resp in op["responses"].items():
                if not code.startswith("2"):
                    continue
                schema = resp["content"]["application/json"]["schema"]
                assert "$ref" in schema, (method, path, code, schema)
                name = schema["$ref"].rsplit("/", 1)[1]
                model = spec["components"]["schemas"][name]
                assert model.get("properties"), (method, path, name)
    assert seen >= 15


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.slow
def test_docs_render_in_a_browser_with_the_network_blocked(served: str, browser: Any) -> None:
    host = urlsplit(served).netloc
    blocked: list[str] = []
    errors: list[str] = []

    def only_local(route: Any) -> None:
        if urlsplit(route.request.url).netloc == host or route.request.url.startswith("blob:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.route("**/*", only_local)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served + "/docs")
    page.wait_for_url(re.compile(r".*/login\?next=%2Fdocs$"))  # not signed in yet
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(served + "/docs")
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=30_000)
    assert "shopsight" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() >= 12
    page.goto(served + "/redoc")
    page.wait_for_function(
        "document.body.innerText.includes('/recommend/{user_id}')", timeout=30_000
    )
    assert page.locator("h1").first.inner_text().startswith("shopsight")
    page.close()
    assert blocked == [] and errors == [], (blocked, errors)
