"""Endpoints that call other stages (predictor, personas, explanations, forget), each through
the interface agreed between stages, here with small fakes so these tests do not depend on
how those stages are built. The server is a real uvicorn on a loopback port."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serving_support import TOKEN, Shop, ThreadServer, auth, copy_store

from shopsight.data.store import Store
from shopsight.models.artifact import load_artifact
from shopsight.serving.app import create_app


def _p(u: str, i: str, salt: str) -> float:
    h = hashlib.sha256(f"{u}|{i}|{salt}".encode()).digest()
    return int.from_bytes(h[:4], "little") / 2**32


class FakePredictor:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def prepare(
        self, store: Store, user_ids: Sequence[str], item_ids: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        assert isinstance(store, Store)
        self.calls.append((list(user_ids), list(item_ids)))
        return list(user_ids), list(item_ids)

    def predict_examples(self, prepared: tuple[list[str], list[str]]) -> dict[str, np.ndarray]:
        user_ids, item_ids = prepared
        return {
            k: np.array([_p(u, i, k) for u, i in zip(user_ids, item_ids, strict=True)])
            for k in ("click", "add_to_cart", "purchase")
        }


class FakePersonas:
    def profile(self, user_id: str) -> dict[str, Any] | None:
        if user_id.startswith("u"):
            pid = "p_" + hashlib.sha256(user_id.encode()).hexdigest()[:24]
            return {"user": pid, "segment": {"id": 1, "name": "Bargain hunters"}}
        return None

    def segments(self) -> list[dict[str, Any]]:
        return [{"id": 1, "name": "Bargain hunters", "size": 10}]


class Recorder:
    def __init__(self) -> None:
        self.explain_calls: list[dict[str, Any]] = []
        self.forgotten: list[str] = []

    def explain(
        self,
        model: Any,
        history_items: np.ndarray,
        history_weights: np.ndarray,
        items: np.ndarray,
        *,
        item_titles: Sequence[str] | None = None,
        content: dict[str, np.ndarray] | None = None,
        top: int = 3,
        history_events: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        self.explain_calls.append(
            {"history": np.asarray(history_items).tolist(), "items": np.asarray(items).tolist()}
        )
        assert item_titles is not None and len(item_titles) == model.n_items_
        assert content is not None and content["text"].shape[0] == model.n_items_
        return [
            {
                "item": int(i),
                "reason": f"because of {len(history_items)} past items",
                "history": [{"item": int(h), "weight": 1.0} for h in history_items[:top]],
                "modalities": {"text": 0.2, "image": 0.0, "behaviour": 0.8},
            }
            for i in np.asarray(items).tolist()
        ]

    def forget(
        self, store: Store, user_id: str, *, feature_cache: Path | None = None
    ) -> dict[str, Any]:
        self.forgotten.append(user_id)
        n = store.conn.execute("SELECT count(*) FROM events WHERE user_id = ?", [user_id])
        count = int(n.fetchall()[0][0])
        store.conn.execute("DELETE FROM events WHERE user_id = ?", [user_id])
        return {"tables": {"events": count}}


@pytest.fixture(scope="module")
def fake_server(
    shop: Shop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FakePredictor, Recorder]]:
    store = copy_store(shop, tmp_path_factory.mktemp("hooks"))
    pred = FakePredictor()
    rec = Recorder()
    app = create_app(
        store,
        shop.model,
        token=TOKEN,
        predictor_loader=lambda d: pred,
        personas_loader=lambda d: FakePersonas(),
        explain_fn=rec.explain,
        forget_fn=rec.forget,
        cors_origins=["http://shop.example"],
    )
    with ThreadServer(app) as srv:
        yield srv.url, pred, rec


def test_predict_goes_through_the_predictor_interface(
    fake_server: tuple[str, FakePredictor, Recorder],
) -> None:
    url, pred, _ = fake_server
    pairs = [{"user_id": "u0001", "item_id": "i0003"}, {"user_id": "new", "item_id": "i9999"}]
    r = httpx.post(url + "/predict", json={"pairs": pairs}, headers=auth())
    assert r.status_code == 200, r.text
    out = r.json()["predictions"]
    assert pred.calls[-1] == (["u0001", "new"], ["i0003", "i9999"])
    for p, row in zip(pairs, out, strict=True):
        for k in ("click", "add_to_cart", "purchase"):
            assert row[k] == pytest.approx(_p(p["user_id"], p["item_id"], k))
    too_many = {"pairs": [pairs[0]] * 1001}
    assert httpx.post(url + "/predict", json=too_many, headers=auth()).status_code == 422


def test_personas_and_segments(fake_server: tuple[str, FakePredictor, Recorder]) -> None:
    url, _, _ = fake_server
    r = httpx.get(url + "/persona/u0005", headers=auth())
    assert r.status_code == 200 and r.json()["user"].startswith("p_")
    assert httpx.get(url + "/persona/zzz", headers=auth()).status_code == 404
    assert (
        httpx.get(url + "/segments", headers=auth()).json()["segments"][0]["name"]
        == "Bargain hunters"
    )


def test_explain_gets_the_users_history_and_is_attached_per_item(
    fake_server: tuple[str, FakePredictor, Recorder], shop: Shop
) -> None:
    url, _, rec = fake_server
    art = load_artifact(shop.model)
    user = str(art.user_ids[7])
    r = httpx.get(f"{url}/recommend/{user}", params={"k": 4, "explain": True}, headers=auth())
    assert r.status_code == 200, r.text
    call = rec.explain_calls[-1]
    u = art.user_index(user)
    seen = art.model.seen_.indices[art.model.seen_.indptr[u] : art.model.seen_.indptr[u + 1]]
    assert sorted(call["history"]) == sorted(seen.tolist())
    items = r.json()["items"]
    assert [art.item_index(it["item_id"]) for it in items] == call["items"]
    # explanations name items by id and title, never by the model's internal index
    assert all(it["explanation"]["item_id"] == it["item_id"] for it in items)
    assert all("item" not in it["explanation"] for it in items)
    # an anonymous session is explained by its own items
    s = httpx.post(
        url + "/recommend",
        json={"session": {"items": ["i0001", "i0002"]}, "k": 3, "explain": True},
        headers=auth(),
    )
    assert s.status_code == 200
    assert sorted(rec.explain_calls[-1]["history"]) == sorted(
        [art.item_index("i0001"), art.item_index("i0002")]
    )
    assert s.json()["results"][0]["items"][0]["explanation"]["reason"].startswith("because")


def test_forget_drops_live_state_and_the_trained_vector(
    fake_server: tuple[str, FakePredictor, Recorder], shop: Shop
) -> None:
    url, _, rec = fake_server
    art = load_artifact(shop.model)
    user = str(art.user_ids[11])
    ev = {"user_id": user, "item_id": "i0004", "event_type": "purchase"}
    with httpx.Client(base_url=url, headers=auth()) as c:
        assert c.post("/events", json=ev).status_code == 200
        assert c.get(f"/recommend/{user}").json()["source"] == "live"
        assert c.post(f"/admin/forget/{user}").status_code == 200
        assert rec.forgotten == [user]
        after = c.get(f"/recommend/{user}").json()
        assert after["source"] == "fallback"
        assert httpx.post(f"{url}/admin/forget/{user}").status_code == 401


def test_cors_only_for_configured_origins(fake_server: tuple[str, FakePredictor, Recorder]) -> None:
    url, _, _ = fake_server
    ok = httpx.get(url + "/health", headers={"Origin": "http://shop.example"})
    assert ok.headers.get("access-control-allow-origin") == "http://shop.example"
    other = httpx.get(url + "/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_without_a_token_writes_are_refused(shop: Shop, tmp_path: Path) -> None:
    store = copy_store(shop, tmp_path)
    app = create_app(store, shop.model, token=None)
    with ThreadServer(app) as srv:
        ev = {"user_id": "a", "item_id": "i0001", "event_type": "view"}
        r = httpx.post(srv.url + "/events", json=ev, headers=auth())
        assert r.status_code == 403 and "no API token" in r.json()["detail"]
        assert httpx.get(srv.url + "/recommend/a").status_code == 200  # no token: reads open
