"""Segments side by side with all users: one comparison table, and plain words for map axes.

Every metric is computed for all users (the baseline) and for each segment the same way, only
when its signal exists: rates pooled over the members' items (view -> cart -> purchase),
means or medians of the profile fields otherwise. The report draws each row on one scale
shared by the baseline and every segment.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from shopsight.personas.profile import ProfileTables, _col
from shopsight.personas.signals import available

FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

READABLE = {
    "activity": "more events",
    "sessions": "more visits",
    "events_per_session": "longer visits",
    "view_to_buy": "buy more of what they view",
    "cart_abandonment": "abandon more carts",
    "purchase_propensity": "more likely to buy",
    "search_share": "search more",
    "social_share": "share more",
    "price_z": "pricier items",
    "price_sensitivity": "buy cheaper than they browse",
    "night_share": "more night activity",
    "morning_share": "more morning activity",
    "weekend_share": "more weekend activity",
    "brand_concentration": "more brand-loyal",
    "monetary": "more value",
    "rating_bias": "rate more generously",
    "mean_rating": "higher ratings",
    "session_minutes": "longer sessions",
    "review_sentiment": "warmer reviews",
}


def _ratio(num: FloatArray, den: FloatArray, m: Mask) -> float | None:
    d = float(np.nansum(den[m]))
    return float(np.nansum(num[m])) / d if d > 0 else None


def _stat(x: FloatArray, m: Mask, how: str = "mean") -> float | None:
    v = x[m]
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    return float(np.median(v) if how == "median" else np.mean(v))


def comparison(
    t: ProfileTables,
    d: dict[str, np.ndarray],
    cl: Any,
    propensity: FloatArray,
    signals: dict[str, dict[str, Any]],
    segs: list[dict[str, Any]],
) -> dict[str, Any]:
    """Rows ``{key, label, kind, baseline, segments[]}`` for every metric the data supports."""
    s = t.scalars
    n = s.num_rows
    labels = cl.labels
    masks = [labels == seg["id"] for seg in segs]
    everyone: Mask = labels >= 0 if (labels >= 0).any() else np.ones(n, bool)
    rows: list[dict[str, Any]] = []

    def add(key: str, label: str, kind: str, f: Callable[[Mask], float | None]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            base = f(everyone)
            vals = [f(m) for m in masks]
        if base is None and all(v is None for v in vals):
            return
        rows.append(
            {
                "key": key,
                "label": label,
                "kind": kind,
                "baseline": _round(base),
                "segments": [_round(v) for v in vals],
            }
        )

    ones = np.ones(n)
    add("share_users", "share of users", "pct", lambda m: float(m.sum()) / max(everyone.sum(), 1))
    if t.info.get("value_basis") != "ratings":
        value = np.nan_to_num(np.asarray(d["monetary"], np.float64))
        tot = float(value[everyone].sum()) or 1.0
        basis = "spend" if t.info.get("value_basis") == "spend" else "price of items reviewed"
        add(
            "share_value", f"share of value ({basis})", "pct", lambda m: float(value[m].sum()) / tot
        )
    add("events", "events per user", "num", lambda m: _stat(_col(s, "n_events"), m))
    add("items", "distinct items per user", "num", lambda m: _stat(_col(s, "n_items"), m))
    if available(signals, "funnel"):
        br, ca = _col(s, "items_browsed"), _col(s, "items_carted")
        ab, bo = _col(s, "items_abandoned"), _col(s, "items_bought")
        add("view_to_cart", "viewed items carted", "pct", lambda m: _ratio(ca, br, m))
        add("cart_to_purchase", "carted items bought", "pct", lambda m: _ratio(ca - ab, ca, m))
        add("view_to_purchase", "viewed items bought", "pct", lambda m: _ratio(bo, br, m))
        add("purchases", "purchases per user", "num", lambda m: _stat(_col(s, "n_purchases"), m))
        add("propensity", "purchase propensity", "pct", lambda m: _stat(propensity, m))
    if available(signals, "price"):
        add(
            "price",
            "median price of items engaged",
            "num",
            lambda m: _stat(_col(s, "avg_price"), m, "median"),
        )
        band = np.asarray(d["price_band"])
        add("premium", "premium price band", "pct", lambda m: _stat((band == "premium") * ones, m))
        add("budget", "budget price band", "pct", lambda m: _stat((band == "budget") * ones, m))
    if available(signals, "time_of_day"):
        hours = t.hours.astype(np.float64)
        night = hours[:, [21, 22, 23, 0, 1]].sum(axis=1)
        tot_h = hours.sum(axis=1)
        wd = t.weekdays.astype(np.float64)
        add(
            "peak_hour",
            "busiest hour (UTC)",
            "hour",
            lambda m: float(np.argmax(hours[m].sum(axis=0))) if hours[m].sum() > 0 else None,
        )
        add("night", "events at night (21-02 h)", "pct", lambda m: _ratio(night, tot_h, m))
        add(
            "weekend",
            "events at weekends",
            "pct",
            lambda m: _ratio(wd[:, 5:].sum(axis=1), wd.sum(axis=1), m),
        )
    if available(signals, "sessions"):
        add("sessions", "visits per user", "num", lambda m: _stat(_col(s, "n_sessions"), m))
        add(
            "events_per_session",
            "events per visit",
            "num",
            lambda m: _stat(_col(s, "events_per_session"), m, "median"),
        )
    if available(signals, "searches"):
        add("searches", "searches per user", "num", lambda m: _stat(_col(s, "n_searches"), m))
    if available(signals, "ratings"):
        add("mean_rating", "mean rating", "num", lambda m: _stat(_col(s, "mean_rating"), m))
        add(
            "rating_bias",
            "rating vs item average",
            "signed",
            lambda m: _stat(_col(s, "rating_bias"), m),
        )
    if available(signals, "review_text"):
        sent = _col(s, "sentiment")
        add("reviews", "reviews per user", "num", lambda m: _stat(_col(s, "n_reviews"), m))
        add("sentiment", "review sentiment (-1..1)", "signed", lambda m: _stat(sent, m))
        add(
            "negative",
            "users with negative reviews",
            "pct",
            lambda m: _stat(np.where(np.isfinite(sent), (sent < -0.05) * 1.0, np.nan), m),
        )
    stage = np.asarray(d["lifecycle"])
    add(
        "active",
        "active or new",
        "pct",
        lambda m: _stat(np.isin(stage, ("active", "new")).astype(np.float64), m),
    )
    add("churned", "churned", "pct", lambda m: _stat((stage == "churned") * ones, m))
    stab = cl.stability
    if stab.get("jaccard"):
        rows.append(
            {
                "key": "stability",
                "label": "stability (bootstrap Jaccard; all users: ARI)",
                "kind": "score",
                "baseline": stab.get("ari_mean"),
                "segments": [seg.get("stability_jaccard") for seg in segs],
            }
        )
    return {"metrics": rows, "segments": [seg["id"] for seg in segs]}


def _round(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def map_axes(
    xy: FloatArray, fm: Any, t: ProfileTables, signals: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Each map axis in words: the profile columns its coordinate correlates with most."""
    from shopsight.personas.segments import _short

    cols: list[tuple[str, FloatArray]] = []
    for j, name in enumerate(fm.behaviour_names):
        cols.append((READABLE.get(name, name.replace("_", " ")), fm.raw_behaviour[:, j]))
    for kind, (vocab, mat) in t.dense.items():
        if kind == "visual":
            continue
        for j, key in enumerate(vocab[:40]):
            word = _short("style" if kind == "style" else kind, key)
            if kind == "topic":
                word = "reviews on " + key.split(" · ")[0]
            cols.append((f"more {word}" if kind != "topic" else word, mat[:, j].astype(np.float64)))
    out: dict[str, str] = {}
    for axis, name in ((0, "x"), (1, "y")):
        v = xy[:, axis]
        best: list[tuple[float, str]] = []
        for label, c in cols:
            ok = np.isfinite(c)
            if ok.sum() < 3 or np.std(c[ok]) < 1e-12 or np.std(v[ok]) < 1e-12:
                continue
            r = float(np.corrcoef(v[ok], c[ok])[0, 1])
            if np.isfinite(r):
                best.append((r, label))
        if not best:
            out[name] = "(no profile column varies along this axis)"
            continue
        best.sort()
        lo, hi = best[0], best[-1]
        neg = lo[1] if lo[0] < -0.2 else f"less: {hi[1]}"
        pos = hi[1] if hi[0] > 0.2 else f"less: {lo[1]}"
        arrows = ("←", "→") if axis == 0 else ("↓", "↑")
        out[name] = f"{arrows[0]} {neg} · {pos} {arrows[1]}"
    return out
