"""Simulated shoppers answering served lists, so the online loop can be tested offline.

The synthetic shop's ground truth (``ground_truth.json``) plants each user's taste: their
segment's favourite styles and categories (with its focus), price position and tolerance, two
favourite brands with the segment's loyalty, and each item's quality. :class:`ShopSimulator`
rebuilds that planted affinity for a user over the whole catalogue, standardises it per user,
and answers a served list the way the shop's own funnel does: each position is examined with a
probability falling with rank, an examined item is clicked with a probability rising with its
affinity and the user's conversion propensity, and a click may lead to add-to-cart and a
purchase at the item's true price. A list of items the user likes more therefore earns more
clicks and purchases, which is what an A/B test on the shop must detect.

:func:`replay` drives a running server: it asks ``/recommend`` for each user and posts the
simulated events to ``/events``, exactly as a shop front end would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReplayStats", "ShopSimulator", "replay"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


class ShopSimulator:
    """Planted responses of the synthetic shop's users (see the module doc)."""

    def __init__(
        self,
        ground_truth: dict[str, Any],
        seed: int = 0,
        position_decay: float = 0.85,
        click_base: float = -2.2,
    ) -> None:
        gt = ground_truth
        self.rng = np.random.default_rng(seed)
        self.position_decay = position_decay
        self.click_base = click_base
        items = gt["items"]
        self.item_ids = list(items)
        self.index = {iid: n for n, iid in enumerate(self.item_ids)}
        self.style_names = style_names = [s["name"] for s in gt["styles"]]
        self.categories = cats = list(gt["categories"])
        self.n_styles, self.n_cats = len(style_names), len(cats)
        self.style = np.array([style_names.index(items[i]["style_name"]) for i in self.item_ids])
        self.cat = np.array([cats.index(items[i]["category"]) for i in self.item_ids])
        self.brand = np.array([items[i]["brand"] for i in self.item_ids], dtype=object)
        self.price = np.array([items[i]["true_price"] for i in self.item_ids], np.float64)
        self.quality = np.array([items[i]["quality"] for i in self.item_ids], np.float64)
        lp = np.log(np.maximum(self.price, 1e-6))
        self.price_z = np.zeros(len(lp))
        for c in range(self.n_cats):
            m = self.cat == c
            if m.any():
                sd = lp[m].std()
                self.price_z[m] = (lp[m] - lp[m].mean()) / (sd if sd > 0 else 1.0)
        self.segments = gt["segments"]
        self.users = gt["users"]
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ShopSimulator:
        with Path(path).open(encoding="utf-8") as fh:
            return cls(json.load(fh), **kwargs)

    def humans(self) -> list[str]:
        return [u for u, info in self.users.items() if not info.get("bot")]

    def _taste(self, favs: Sequence[str], names: Sequence[str], focus: float) -> np.ndarray:
        n = len(names)
        w = np.full(n, (1.0 - focus) / n)
        fav = [names.index(f) for f in favs if f in names]
        if fav:
            w[fav] += focus / len(fav)
        return np.maximum(w, 1e-4)

    def affinity_z(self, user_id: str) -> np.ndarray:
        """The user's planted affinity for every catalogue item, standardised over items."""
        z = self._cache.get(user_id)
        if z is not None:
            return z
        info = self.users[user_id]
        seg = self.segments[info["segment"]] if not info.get("bot") else None
        if seg is None:
            z = np.zeros(len(self.item_ids))
        else:
            t = seg["traits"]
            a = np.log(self._taste(seg["favourite_styles"], self.style_names, t["focus"]))
            a = (
                a[self.style]
                + np.log(self._taste(seg["favourite_categories"], self.categories, t["focus"]))[
                    self.cat
                ]
            )
            a -= (self.price_z - t["price_z"]) ** 2 / (2.0 * t["price_tolerance"] ** 2)
            a += 3.0 * t["brand_loyalty"] * np.isin(self.brand, info["favourite_brands"])
            a += 0.3 * self.quality
            z = (a - a.mean()) / max(float(a.std()), 1e-9)
        self._cache[user_id] = z
        return z

    def conversion(self, user_id: str) -> float:
        info = self.users[user_id]
        if info.get("bot"):
            return -3.0
        return float(self.segments[info["segment"]]["traits"]["conversion"])

    def respond(
        self, user_id: str, item_ids: Sequence[str], served_at: datetime
    ) -> list[dict[str, Any]]:
        """Events (``/events`` bodies) of one user after seeing ``item_ids`` in this order."""
        if user_id not in self.users or not item_ids:
            return []
        z_all = self.affinity_z(user_id)
        idx = np.array([self.index.get(i, -1) for i in item_ids])
        known = idx >= 0
        z = np.where(known, z_all[np.maximum(idx, 0)], -3.0)
        conv = self.conversion(user_id)
        pos = np.arange(len(item_ids))
        examined = self.rng.random(len(pos)) < self.position_decay**pos
        click = examined & (self.rng.random(len(pos)) < _sigmoid(self.click_base + 1.2 * z + conv))
        cart = click & (self.rng.random(len(pos)) < _sigmoid(-0.3 + 0.9 * z + conv))
        buy = cart & (self.rng.random(len(pos)) < _sigmoid(0.2 + 0.7 * z + conv))
        events: list[dict[str, Any]] = []
        base = served_at.astimezone(UTC)
        for n in np.flatnonzero(click).tolist():
            t = base + timedelta(seconds=float(2 + 60 * self.rng.random()))
            item = item_ids[n]
            events.append(_event(user_id, item, "click", t))
            if cart[n]:
                t += timedelta(seconds=float(5 + 120 * self.rng.random()))
                events.append(_event(user_id, item, "add_to_cart", t))
            if buy[n]:
                t += timedelta(seconds=float(10 + 300 * self.rng.random()))
                price = float(self.price[idx[n]]) if known[n] else 0.0
                events.append(_event(user_id, item, "purchase", t, value=price))
        return events


def _event(
    user: str, item: str, kind: str, t: datetime, value: float | None = None
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if value is not None:
        ev["value"] = round(value, 2)
    return ev


@dataclass
class ReplayStats:
    users: int = 0
    lists: int = 0
    events_posted: int = 0
    events_stored: int = 0


def replay(
    client: Any,
    sim: ShopSimulator,
    users: Sequence[str],
    *,
    k: int = 10,
    token: str | None = None,
    batch: int = 200,
) -> ReplayStats:
    """Ask ``client`` (an ``httpx.Client`` on a running server) for each user's top-k, answer
    with the simulator and post the events in batches. Returns what was sent."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = ReplayStats()
    pending: list[dict[str, Any]] = []

    def post() -> None:
        if not pending:
            return
        r = client.post("/events", json={"events": pending}, headers=headers)
        if r.status_code not in (200, 422):
            raise RuntimeError(f"/events answered {r.status_code}: {r.text[:300]}")
        out.events_posted += len(pending)
        out.events_stored += int(r.json().get("stored", 0))
        pending.clear()

    for u in users:
        r = client.get(f"/recommend/{u}", params={"k": k}, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"/recommend/{u} answered {r.status_code}: {r.text[:300]}")
        items = [it["item_id"] for it in r.json()["items"]]
        out.users += 1
        out.lists += 1
        pending.extend(sim.respond(u, items, datetime.now(UTC)))
        if len(pending) >= batch:
            post()
    post()
    return out
