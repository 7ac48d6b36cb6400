"""End to end against ``shopsight serve`` running as a real uvicorn process on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_support import TOKEN, Shop, auth

from shopsight.models.artifact import load_artifact
from shopsight.models.base import topk


def _ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [it["item_id"] for it in resp.json()["items"]]


def test_health_openapi_and_metrics(served: str) -> None:
    h = httpx.get(served + "/status", headers=auth()).json()
    assert h["status"] == "ok" and h["model"] == "als" and h["n_items"] > 0
    spec = httpx.get(served + "/openapi.json", headers=auth()).json()
    for path in (
        "/recommend/{user_id}",
        "/recommend",
        "/similar/{item_id}",
        "/predict",
        "/events",
        "/admin/reload",
        "/admin/forget/{user_id}",
        "/persona/{user_id}",
        "/segments",
        "/health",
        "/status",
        "/metrics",
    ):
        assert path in spec["paths"], path
    httpx.get(served + "/recommend/anyone", headers=auth())
    text = httpx.get(served + "/metrics", headers=auth()).text
    assert (
        'shopsight_requests_total{method="GET",route="/recommend/{user_id}",status="200"}' in text
    )
    assert "shopsight_request_seconds_bucket" in text
    assert f'version="{h["version"]}"' in text


def test_known_user_matches_the_model_exactly(served: str, shop: Shop) -> None:
    art = load_artifact(shop.model)
    user = str(art.user_ids[3])
    want = [r["item_id"] for r in art.recommend(user, 7)]
    got = httpx.get(f"{served}/recommend/{user}", params={"k": 7}, headers=auth())
    assert got.json()["source"] == "model"
    assert _ids(got) == want


def test_plain_recommend_fast_path_agrees_with_the_documented_route(
    served: str, shop: Shop
) -> None:
    # A repeated parameter is not the plain form: FastAPI's route answers it (last value wins).
    art = load_artifact(shop.model)
    user = str(art.user_ids[5])
    cases = [
        ({"k": "6"}, [("k", "6"), ("k", "6")]),
        ({"k": "4", "exclude_seen": "false"}, [("k", "4"), ("exclude_seen", "false")] * 2),
    ]
    for fast, documented in cases:
        a = httpx.get(f"{served}/recommend/{user}", params=fast, headers=auth())
        b = httpx.get(f"{served}/recommend/{user}", params=documented, headers=auth())
        assert a.status_code == b.status_code == 200
        assert a.json() == b.json()
    # Invalid values get FastAPI's own 422 body whichever way they arrive.
    for bad in ({"k": "0"}, {"k": "ten"}, {"price_max": "-1"}, {"exclude_seen": "maybe"}):
        a = httpx.get(f"{served}/recommend/{user}", params=bad, headers=auth())
        b = httpx.get(
            f"{served}/recommend/{user}", params=[*bad.items(), *bad.items()], headers=auth()
        )
        assert a.status_code == b.status_code == 422, bad
        assert a.json() == b.json()
    # Unknown parameters are ignored, as by the documented route.
    c = httpx.get(
        f"{served}/recommend/{user}", params={"k": "6", "utm_source": "mail"}, headers=auth()
    )
    assert c.status_code == 200 and _ids(c) == [x["item_id"] for x in art.recommend(user, 6)]


def test_unknown_user_gets_the_fallback_ranking_not_an_error(served: str, shop: Shop) -> None:
    art = load_artifact(shop.model)
    r = httpx.get(f"{served}/recommend/never-seen-before", params={"k": 5}, headers=auth())
    assert r.json()["source"] == "fallback"
    assert _ids(r) == [x["item_id"] for x in art.recommend("never-seen-before", 5)]


def test_filters_are_applied_before_top_k(served: str, shop: Shop) -> None:
    art = load_artifact(shop.model)
    user = str(art.user_ids[5])
    from shopsight.data.store import Store

    with Store(shop.store, read_only=True) as st:
        rows = st.conn.execute("SELECT item_id, category, price FROM items_clean").fetchall()
    cat = {r[0]: r[1] for r in rows}
    price = {r[0]: r[2] for r in rows}
    top_level = Counter(c.split(" > ")[0] for c in cat.values()).most_common()[-1][0]
    k = 6
    got = _ids(
        httpx.get(
            f"{served}/recommend/{user}", params={"k": k, "category": top_level}, headers=auth()
        )
    )
    # exact top-k among the category's items, computed here from the model itself
    scores = art.model.score([art.user_index(user)])[0]
    ip, ind = art.model.seen_.indptr, art.model.seen_.indices
    u = art.user_index(user)
    scores[ind[ip[u] : ip[u + 1]]] = -np.inf
    ok = np.array([cat.get(str(t), "").startswith(top_level) for t in art.item_ids])
    scores[~ok] = -np.inf
    idx, vals = topk(scores[None, :], k)
    want = [str(art.item_ids[i]) for i, v in zip(idx[0], vals[0], strict=True) if np.isfinite(v)]
    assert got == want and len(got) == min(k, int(ok.sum()))
    cheap = float(np.nanpercentile([p for p in price.values() if p is not None], 20))
    got = _ids(
        httpx.get(f"{served}/recommend/{user}", params={"k": k, "price_max": cheap}, headers=auth())
    )
    assert len(got) == k and all(price[i] is not None and price[i] <= cheap for i in got)


def test_new_user_events_change_the_next_recommendation(served: str, shop: Shop) -> None:
    from shopsight.data.store import Store

    with Store(shop.store, read_only=True) as st:
        rows = st.conn.execute(
            "SELECT item_id, category FROM items_clean ORDER BY item_id"
        ).fetchall()
    by_cat: dict[str, list[str]] = {}
    for item, c in rows:
        by_cat.setdefault(c, []).append(item)
    cat, items = max(by_cat.items(), key=lambda kv: len(kv[1]))
    user = "live-newcomer"
    before = httpx.get(f"{served}/recommend/{user}", params={"k": 10}, headers=auth()).json()
    assert before["source"] == "fallback"
    events = [
        {"user_id": user, "item_id": it, "event_type": t, "timestamp": f"2024-05-0{d}T10:00:00Z"}
        for d, (it, t) in enumerate(
            [
                (items[0], "view"),
                (items[1], "add_to_cart"),
                (items[2], "purchase"),
                (items[3], "purchase"),
            ],
            start=1,
        )
    ]
    with httpx.Client(base_url=served, headers=auth()) as c:
        t0 = time.perf_counter()
        posted = c.post("/events", json={"events": events})
        assert posted.status_code == 200, posted.text
        assert posted.json()["stored"] == 4
        # the very first request after the write already reflects it
        after = c.get(f"/recommend/{user}", params={"k": 10}).json()
        lag = time.perf_counter() - t0
    # Correctness is that the very next request reflects the events; the lag is reported
    # (issue: within 1 s), not asserted: tests do not check wall-clock time.
    print(f"\nevents posted -> reflected in the next recommendation: {lag:.3f} s")
    assert after["source"] == "live"
    got = [it["item_id"] for it in after["items"]]
    assert got != [it["item_id"] for it in before["items"]]
    assert not set(got) & {e["item_id"] for e in events}  # seen items are excluded
    share_after = np.mean([it["category"] == cat for it in after["items"]])
    share_before = np.mean([it["category"] == cat for it in before["items"]])
    assert share_after > share_before and share_after >= 0.5
    with httpx.Client(base_url=served, headers=auth()) as c:
        again = c.post("/events", json={"events": events}).json()
    assert again["stored"] == 0 and again["duplicates"] == 4


def test_event_validation_matches_ingest_and_quarantines(served: str) -> None:
    bad = [
        {"user_id": "v1", "item_id": "i0001", "event_type": "teleport"},
        {"user_id": "v1", "item_id": "i0001", "event_type": "view", "timestamp": "garbage"},
        {"user_id": "v1", "event_type": "purchase", "timestamp": "2024-01-01"},
        {
            "user_id": "v1",
            "item_id": "i0002",
            "event_type": "rate",
            "value": 9,
            "timestamp": "2024-01-01",
        },
        {
            "user_id": "v1",
            "item_id": "i0003",
            "event_type": "addtocart",
            "timestamp": "2024-01-01T00:00:00+02:00",
        },
    ]
    r = httpx.post(served + "/events", json={"events": bad}, headers=auth())
    assert r.status_code == 422
    body = r.json()
    assert [x["field"] for x in body["rejected"]] == ["event_type", "timestamp", "item_id", "value"]
    assert "unknown 'teleport'" in body["rejected"][0]["reason"]
    assert body["quarantined"] == 4 and body["stored"] == 1  # the alias row is good


def test_write_endpoints_need_the_token_and_bodies_are_bounded(served: str) -> None:
    ev = {"user_id": "a", "item_id": "i0001", "event_type": "view"}
    r = httpx.post(served + "/events", json=ev)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = httpx.post(
        served + "/events", json=ev, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
    )
    assert r.status_code == 403
    r = httpx.post(served + "/admin/reload", json={})
    assert r.status_code == 401
    big = {"events": [ev] * 20000}
    r = httpx.post(served + "/events", json=big, headers=auth())
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = httpx.post(served + "/events", json={"events": [ev] * 1001}, headers=auth())
    assert r.status_code == 422
    r = httpx.get(served + "/recommend/u1", params={"k": 0}, headers=auth())
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "query.k"
    assert (
        "access-control-allow-origin"
        not in httpx.get(served + "/health", headers={"Origin": "http://evil.example"}).headers
    )


def test_similar_modalities(served: str, shop: Shop) -> None:
    art = load_artifact(shop.model)
    item = str(art.item_ids[10])
    beh = httpx.get(f"{served}/similar/{item}", params={"k": 5}, headers=auth())
    assert _ids(beh) == [x["item_id"] for x in art.similar(item, 5)]
    txt = httpx.get(f"{served}/similar/{item}", params={"k": 5, "modality": "text"}, headers=auth())
    same = [it["category"] for it in txt.json()["items"]]
    from shopsight.data.store import Store

    with Store(shop.store, read_only=True) as st:
        mine = st.conn.execute(
            "SELECT category FROM items_clean WHERE item_id = ?", [item]
        ).fetchall()[0][0]
    assert same.count(mine) >= 3  # the text (which names the category) finds its neighbours
    assert (
        httpx.get(
            f"{served}/similar/{item}", params={"modality": "fused"}, headers=auth()
        ).status_code
        == 200
    )
    img = httpx.get(f"{served}/similar/{item}", params={"modality": "image"}, headers=auth())
    assert img.status_code == 409 and "image" in img.json()["detail"]
    assert httpx.get(f"{served}/similar/nope", headers=auth()).status_code == 404


def test_predict_and_personas_say_when_nothing_is_deployed(served: str) -> None:
    r = httpx.post(
        served + "/predict", json={"pairs": [{"user_id": "u1", "item_id": "i1"}]}, headers=auth()
    )
    assert r.status_code == 404 and "predictor" in r.json()["detail"]
    assert httpx.get(served + "/persona/u1", headers=auth()).status_code == 404
    assert httpx.get(served + "/segments", headers=auth()).status_code == 404


@pytest.mark.parametrize("rounds", [2])
def test_reload_under_concurrent_traffic_has_no_failed_request(
    served: str, shop: Shop, rounds: int
) -> None:
    art = load_artifact(shop.model)
    users = [str(u) for u in art.user_ids[:20]] + ["cold-1", "cold-2"]
    failures: list[str] = []
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def hammer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=served, headers=auth(), timeout=10) as c:
            while not stop.is_set():
                u = users[int(rng.integers(len(users)))]
                try:
                    r = c.get(f"/recommend/{u}", params={"k": 10})
                    if r.status_code != 200 or len(r.json()["items"]) != 10:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        versions[r.json()["model_version"]] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=served, headers=auth(), timeout=60) as c:
            for i in range(rounds):
                target = shop.model2 if i % 2 == 0 else shop.model
                time.sleep(0.5)
                r = c.post("/admin/reload", json={"model_dir": str(target), "wait": True})
                assert r.status_code == 200 and r.json()["state"] == "done", r.text
            time.sleep(0.5)
            # a background reload (no wait) is accepted (202) and reports progress
            r = c.post("/admin/reload", json={})
            assert r.status_code == 202
            for _ in range(100):
                if c.get("/admin/reload").json()["state"] != "loading":
                    break
                time.sleep(0.1)
            bad = c.post("/admin/reload", json={"model_dir": str(shop.root), "wait": True})
            assert bad.status_code == 404
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert len(versions) == 2 and sum(versions.values()) > 20
    assert httpx.get(served + "/status", headers=auth()).json()["model_dir"] == shop.model.name


def test_token_file_is_what_authorises(served: str) -> None:
    assert len(TOKEN) >= 16
    r = httpx.get(served + "/admin/reload", headers=auth())
    assert r.status_code == 200


def test_serve_cli_fails_in_one_line(shop: Shop, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("shopsight"))
    r = subprocess.run(
        [exe, "serve", "--store", str(tmp_path / "none.duckdb"), "--model", str(shop.model)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    short = tmp_path / "token"
    short.write_text("abc\n")
    r = subprocess.run(
        [
            exe,
            "serve",
            "--store",
            str(shop.store),
            "--model",
            str(shop.model),
            "--token-file",
            str(short),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "token too short" in r.stderr
