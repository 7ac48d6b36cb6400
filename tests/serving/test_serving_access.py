"""Access rules of the API, one test per rule, against ``shopsight serve`` on loopback.

The server has an admin token, a read-only token, a models folder and deployed personas (so the
dashboard is mounted), as an operator would run it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from serving_support import TOKEN, Shop, ThreadServer, auth, copy_store, free_port, wait_ready

from shopsight.data.store import Store
from shopsight.serving.app import create_app
from shopsight.serving.auth import AccessPolicy

READ_TOKEN = "read-only-token-fedcba9876543210"


def read_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {READ_TOKEN}"}


@dataclass
class Secured:
    url: str
    models: Path
    outside: Path
    store: Path
    user: str


@pytest.fixture(scope="module")
def secured(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    from shopsight.models.artifact import load_artifact
    from shopsight.personas.core import build_personas

    d = tmp_path_factory.mktemp("secured")
    store = copy_store(shop, d / "store")
    models = d / "models"
    shutil.copytree(shop.model, models / "current")
    shutil.copytree(shop.model2, models / "second")
    with Store(store) as st:
        build_personas(st, use_features=False).save(models / "current" / "personas")
    outside = d / "elsewhere"
    shutil.copytree(shop.model2, outside)
    (models / "escape").symlink_to(outside, target_is_directory=True)
    linked = models / "linked"  # a real folder inside whose weights lead outside
    linked.mkdir()
    for f in (models / "second").iterdir():
        if f.is_file():
            shutil.copy(f, linked / f.name)
    (linked / "model.safetensors").unlink()
    (linked / "model.safetensors").symlink_to(outside / "model.safetensors")
    (d / "admin").write_text(TOKEN + "\n")
    (d / "read").write_text(READ_TOKEN + "\n")
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SHOPSIGHT_API_TOKEN", None)
    env.pop("SHOPSIGHT_API_READ_TOKEN", None)
    cmd = [
        str(Path(sys.executable).with_name("shopsight")),
        *("serve", "--store", str(store), "--model", str(models / "current")),
        *("--models-root", str(models), "--port", str(port)),
        *("--token-file", str(d / "admin"), "--read-token-file", str(d / "read"), "--json"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    user = str(load_artifact(shop.model).user_ids[4])
    try:
        wait_ready(url, proc)
        yield Secured(url=url, models=models, outside=outside, store=store, user=user)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _concrete(path: str, user: str) -> str:
    return path.replace("{user_id}", user).replace("{item_id}", "i0001")


def test_every_route_but_health_needs_a_token(secured: Secured) -> None:
    spec = httpx.get(secured.url + "/openapi.json", headers=auth()).json()
    routes = [
        (m.upper(), _concrete(p, secured.user)) for p, ops in spec["paths"].items() for m in ops
    ]
    extra = [
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/static-offline-docs/swagger-ui-bundle.js"),
        ("GET", "/dashboard"),
        ("GET", "/dashboard/api/segments"),
        ("GET", "/dashboard/api/map?limit=100000"),
        ("GET", f"/dashboard/user/{secured.user}"),
        ("GET", f"/dashboard/api/users/{secured.user}"),
        ("GET", "/no-such-route"),
    ]
    assert len(routes) >= 12
    for method, path in routes + extra:
        if path == "/health":
            continue
        r = httpx.request(method, secured.url + path, json={} if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert r.headers["www-authenticate"].startswith("Bearer")
        bad = {"Authorization": "Bearer not-the-token-at-all-000"}
        r = httpx.request(method, secured.url + path, headers=bad)
        assert r.status_code == 403, (method, path, r.status_code)
    assert httpx.get(secured.url + "/health").status_code == 200
    # with the token they answer (the dashboard included)
    for path in ("/dashboard", "/dashboard/api/map?limit=100000", f"/persona/{secured.user}"):
        assert httpx.get(secured.url + path, headers=auth()).status_code == 200, path


def test_health_is_minimal_and_shows_no_paths(secured: Secured) -> None:
    h = httpx.get(secured.url + "/health")
    assert h.status_code == 200
    assert set(h.json()) == {"status", "model_version", "reload"}
    assert "/" not in h.text and str(secured.models) not in h.text
    s = httpx.get(secured.url + "/status", headers=read_auth()).json()
    assert s["model_dir"] == "current" and str(secured.models) not in str(s)


def test_read_token_reads_but_cannot_write_or_administer(secured: Secured) -> None:
    with httpx.Client(base_url=secured.url, headers=read_auth()) as c:
        assert c.get(f"/recommend/{secured.user}").status_code == 200
        assert c.post("/recommend", json={"user_ids": [secured.user]}).status_code == 200
        assert c.get(f"/persona/{secured.user}").status_code == 200
        assert c.get("/dashboard").status_code == 200
        assert c.get("/online/report").status_code == 200  # lists served above are reported
        ev = {"user_id": secured.user, "item_id": "i0001", "event_type": "view"}
        for method, path, body in (
            ("POST", "/events", ev),
            ("POST", "/admin/reload", {}),
            ("GET", "/admin/reload", None),
            ("POST", f"/admin/forget/{secured.user}", None),
        ):
            r = c.request(method, path, json=body)
            assert r.status_code == 403 and "read token" in r.json()["detail"], (path, r.text)
    assert httpx.get(secured.url + "/admin/reload", headers=auth()).status_code == 200


def _raw_request(url: str, head: bytes, body: bytes, wait_s: float) -> bytes:
    """Send a request head and part of its body, then read what comes back within ``wait_s``."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=wait_s) as s:
        s.sendall(head + body)
        out = b""
        try:
            while b"\r\n\r\n" not in out:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
    return out


def test_unauthenticated_request_is_refused_before_its_body_is_read(secured: Secured) -> None:
    # The head announces 500 kB but only 10 bytes follow: a server that read the body first
    # would sit waiting for the rest; the refusal comes at once.
    head = (
        b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500000\r\n\r\n"
    )
    out = _raw_request(secured.url, head, b'{"user_ids', wait_s=10)
    assert out.startswith(b"HTTP/1.1 401"), out[:200]
    # the same unfinished body with the token: the server waits for the rest (no answer)
    authed = head.replace(b"Host: x\r\n", f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode())
    assert _raw_request(secured.url, authed, b'{"user_ids', wait_s=1.5) == b""
    # a malformed body without a token is a 401, never a 422 (it is not parsed)
    r = httpx.post(secured.url + "/predict", content=b"{not json", headers={"Content-Type": "x"})
    assert r.status_code == 401


def test_dashboard_in_a_browser_signs_in_with_a_session_cookie(secured: Secured) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    r = httpx.get(secured.url + "/dashboard", headers=html)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fdashboard"
    form = httpx.get(secured.url + "/login", params={"next": "/dashboard"})
    assert form.status_code == 200 and 'type="password"' in form.text
    wrong = httpx.post(secured.url + "/login", data={"token": "nope", "next": "/dashboard"})
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    ok = httpx.post(secured.url + "/login", data={"token": READ_TOKEN, "next": "/dashboard"})
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert READ_TOKEN not in cookie and TOKEN not in cookie
    jar = {"shopsight_session": ok.cookies["shopsight_session"]}
    with httpx.Client(base_url=secured.url, cookies=jar) as c:
        assert c.get("/dashboard").status_code == 200
        assert c.get("/dashboard/api/map", params={"limit": 10}).status_code == 200
        assert c.get("/docs").status_code == 200
        # the cookie opens reads only: no writes, no admin, no POST of any kind
        assert c.post("/recommend", json={"user_ids": ["u1"]}).status_code == 401
        assert c.get("/admin/reload").status_code == 401
    # an expired session, or one whose expiry was moved, is refused
    policy = AccessPolicy(admin_token=TOKEN, read_token=READ_TOKEN)
    old = policy.session_cookie(READ_TOKEN, now=time.time() - 13 * 3600)
    assert old is not None
    stamp, mac = old.split(".")
    for value in (old, f"{int(stamp) + 2 * 86400}.{mac}"):
        r = httpx.get(secured.url + "/dashboard", cookies={"shopsight_session": value})
        assert r.status_code == 401, value
    # a sign-in never redirects to another site
    away = httpx.post(secured.url + "/login", data={"token": READ_TOKEN, "next": "//evil.example"})
    assert away.headers["location"] == "/dashboard"


def test_recommend_work_per_request_is_bounded(secured: Secured) -> None:
    users = [f"u{i:04d}" for i in range(100)]
    with httpx.Client(base_url=secured.url, headers=auth(), timeout=60) as c:
        r = c.post("/recommend", json={"user_ids": users, "k": 200})
        assert r.status_code == 422 and "at most 2000" in str(r.json()["detail"])
        r = c.post("/recommend", json={"user_ids": users, "k": 20})
        assert r.status_code == 200 and len(r.json()["results"]) == 100
        r = c.post("/recommend", json={"user_ids": users[:10], "k": 50, "explain": True})
        assert r.status_code == 422 and "explained" in str(r.json()["detail"])
        r = c.post("/predict", json={"pairs": [{"user_id": "u1", "item_id": "i1"}] * 1001})
        assert r.status_code == 422


class LockProbe:
    """A predictor that records whether the store lock is held in each of its two steps (and
    that its store reads)."""

    def __init__(self) -> None:
        self.lock: Any = None
        self.held: dict[str, bool] = {}

    def prepare(self, store: Store, user_ids: Sequence[str], item_ids: Sequence[str]) -> int:
        self.held["prepare"] = self.lock.locked()
        self.held["reads"] = store.conn.execute("SELECT count(*) FROM events").fetchall()[0][0] > 0
        return len(user_ids)

    def predict_examples(self, n: int) -> dict[str, np.ndarray]:
        self.held["score"] = self.lock.locked()
        return {k: np.full(n, 0.5) for k in ("click", "add_to_cart", "purchase")}


def test_predict_scores_without_holding_the_store_lock(shop: Shop, tmp_path: Path) -> None:
    probe = LockProbe()
    app = create_app(
        copy_store(shop, tmp_path), shop.model, token=TOKEN, predictor_loader=lambda d: probe
    )
    probe.lock = app.state.runtime.store_lock
    with ThreadServer(app) as srv:
        pairs = [{"user_id": "u0001", "item_id": "i0001"}] * 3
        r = httpx.post(srv.url + "/predict", json={"pairs": pairs}, headers=auth())
        assert r.status_code == 200, r.text
    assert probe.held == {"prepare": False, "reads": True, "score": False}


def test_reload_loads_only_folders_below_the_models_folder(secured: Secured) -> None:
    with httpx.Client(base_url=secured.url, headers=auth(), timeout=60) as c:
        for bad in (
            "../elsewhere",
            "second/../../elsewhere",
            str(secured.outside),
            "escape",  # a link inside the folder to a model outside
            "linked",  # a folder inside whose weights link outside
        ):
            r = c.post("/admin/reload", json={"model_dir": bad, "wait": True})
            assert r.status_code == 422, (bad, r.text)
        assert c.post("/admin/reload", json={"model_dir": "nothing-here"}).status_code == 404
        r = c.post("/admin/reload", json={"model_dir": "second", "wait": True})
        assert r.status_code == 200 and r.json()["model_dir"] == "second"
        r = c.post(
            "/admin/reload", json={"model_dir": str(secured.models / "current"), "wait": True}
        )
        assert r.status_code == 200 and r.json()["model_dir"] == "current"


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "tab\there", "del\x7f", "c1\x85"])
def test_control_characters_in_ids_are_refused(secured: Secured, bad: str) -> None:
    from urllib.parse import quote

    with httpx.Client(base_url=secured.url, headers=auth()) as c:
        for path in (
            f"/recommend/{quote(bad)}",
            f"/similar/{quote(bad)}",
            f"/persona/{quote(bad)}",
        ):
            r = c.get(path)
            assert r.status_code == 422, (path, r.text)
        assert c.post("/recommend", json={"user_ids": [bad]}).status_code == 422
        assert (
            c.post("/predict", json={"pairs": [{"user_id": bad, "item_id": "i1"}]}).status_code
            == 422
        )
        ev = {"user_id": bad, "item_id": "i0001", "event_type": "view"}
        r = c.post("/events", json=ev)
        assert r.status_code == 422 and r.json()["detail"][0]["field"].endswith("user_id")
        ev = {"user_id": "ok-user", "item_id": bad, "event_type": "view"}
        assert c.post("/events", json=ev).status_code == 422
        # nothing was stored: the user has no live state and no stored history
        assert c.get("/recommend/ok-user").json()["source"] == "fallback"


def test_standalone_dashboard_needs_the_token_too(secured: Secured, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("shopsight"))
    personas = secured.models / "current" / "personas"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSIGHT_API")}
    wide = subprocess.run(
        [exe, "dashboard", "--personas", str(personas), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert wide.returncode == 2 and "--token-file" in wide.stderr, wide.stderr
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    cmd = [exe, "dashboard", "--personas", str(personas), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--token-file", str(tmp_path / "token")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(url + "/login").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(url + "/dashboard/api/map").status_code == 401
        page = httpx.get(url + "/dashboard", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert httpx.get(url + "/dashboard/api/segments", headers=auth()).status_code == 200
        ok = httpx.post(url + "/login", data={"token": TOKEN, "next": "/dashboard"})
        jar = {"shopsight_session": ok.cookies["shopsight_session"]}
        assert httpx.get(url + "/dashboard", cookies=jar).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
