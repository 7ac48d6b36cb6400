"""Shilling detection: coordinated one-visit accounts that push one item.

The cleaning stage's bot rules look at event *rates* of users with many events; shilling
accounts are few-eventful and human-paced, so they pass. What gives them away is coordination:
many one-visit accounts that all convert the same item and otherwise copy one recipe (the same
popular fillers). :func:`detect_shilling` finds them; :func:`shopsight.data.clean.clean_store`
runs it as its ``shilling`` step, and :mod:`shopsight.evaluation.robustness` measures how much
it limits an attack. It is a documented heuristic, not a proof: fake accounts spread over
several days, or with varied fillers, evade it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopsight.data.schema import BEHAVIOUR_TYPES
from shopsight.data.store import Store

__all__ = ["PROFILE_TYPES", "ShillingReport", "detect_shilling"]

FloatArray = npt.NDArray[np.float64]
PROFILE_TYPES: Final[tuple[str, ...]] = tuple(t for t in BEHAVIOUR_TYPES if t != "search")


@dataclass
class ShillingReport:
    """Who :func:`detect_shilling` flagged, the items they push, and the evidence."""

    flagged: list[str]
    pushed_items: list[str]
    thin_accounts: int
    thin_share: float
    config: dict[str, Any] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flagged"] = len(self.flagged)
        d["examples"] = self.flagged[:3]
        return d


def _mean_cosine_to_others(profiles: sp.csr_matrix) -> FloatArray:
    """Per row, the mean cosine of its binary profile to every other row."""
    x = sp.csr_matrix(profiles, dtype=np.float64)
    x.data[:] = 1.0
    n = x.shape[0]
    if n < 2:
        return np.zeros(n)
    norms = np.sqrt(np.asarray(x.sum(axis=1)).ravel())
    x = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x)
    total = np.asarray(x @ np.asarray(x.sum(axis=0)).ravel()).ravel()
    self_sim = (norms > 0).astype(np.float64)
    return np.asarray((total - self_sim) / (n - 1), np.float64)


def detect_shilling(
    store: Store,
    *,
    table: str = "events",
    max_span_hours: float = 24.0,
    min_group: int = 5,
    min_share: float = 0.3,
    min_lift: float = 3.0,
    min_similarity: float = 0.2,
    conversion_types: Sequence[str] = ("add_to_cart", "purchase"),
) -> ShillingReport:
    """Coordinated one-visit accounts that convert the same item (see the module docstring).

    1. *Thin* accounts: all their behavioural events within ``max_span_hours``.
    2. An item is *pushed* when at least ``min_group`` thin accounts converted it (an event in
       ``conversion_types``), they are at least ``min_share`` of its converting users, and that
       share is at least ``min_lift`` times the share of thin accounts among all converting
       users (so a shop where most buyers are one-visit guests flags nothing).
    3. Flagged: thin converters of a pushed item whose profiles (the pushed item left out)
       have a mean cosine of at least ``min_similarity`` to the other members of that group:
       fake accounts copy one recipe (the same popular fillers), while real newcomers who buy
       a trending item browse different things.
    """
    config = {
        "table": table,
        "max_span_hours": max_span_hours,
        "min_group": min_group,
        "min_share": min_share,
        "min_lift": min_lift,
        "min_similarity": min_similarity,
        "conversion_types": list(conversion_types),
    }
    types = ", ".join(f"'{t}'" for t in PROFILE_TYPES)
    conv_sql = ", ".join("'" + t.replace("'", "''") + "'" for t in conversion_types) or "NULL"
    ev = store.arrow(
        f"""WITH ev AS (
                SELECT user_id, item_id, event_type, timestamp FROM "{table}"
                WHERE item_id IS NOT NULL AND NOT ts_ordinal AND event_type IN ({types})),
            span AS (
                SELECT user_id,
                       (epoch_us(max(timestamp)) - epoch_us(min(timestamp))) / 3.6e9 AS hours
                FROM ev GROUP BY user_id)
            SELECT ev.user_id, ev.item_id, bool_or(ev.event_type IN ({conv_sql})) AS converted,
                   any_value(span.hours) AS hours
            FROM ev JOIN span USING (user_id) GROUP BY ev.user_id, ev.item_id"""
    )
    if ev.num_rows == 0:
        return ShillingReport([], [], 0, 0.0, config)
    users, u_idx = np.unique(
        np.asarray(ev.column("user_id").to_pylist(), object), return_inverse=True
    )
    items, i_idx = np.unique(
        np.asarray(ev.column("item_id").to_pylist(), object), return_inverse=True
    )
    converted = np.asarray(ev.column("converted").to_pylist(), bool)
    hours = np.zeros(len(users))
    hours[u_idx] = np.asarray(ev.column("hours").to_pylist(), np.float64)
    thin = hours <= max_span_hours
    shape = (len(users), len(items))
    profiles = sp.csr_matrix((np.ones(len(u_idx)), (u_idx, i_idx)), shape=shape)
    profiles.data[:] = 1.0
    conv = sp.csr_matrix(
        (np.ones(int(converted.sum())), (u_idx[converted], i_idx[converted])), shape=shape
    )
    conv.data[:] = 1.0
    converters = np.asarray(conv.sum(axis=1)).ravel() > 0
    n_conv = max(int(converters.sum()), 1)
    thin_share = float((thin & converters).sum() / n_conv)
    by_item = np.asarray(conv.sum(axis=0)).ravel()
    thin_by_item = np.asarray(conv[thin].sum(axis=0)).ravel()
    share = thin_by_item / np.maximum(by_item, 1)
    pushed = (
        (thin_by_item >= min_group)
        & (share >= min_share)
        & (share >= min_lift * max(thin_share, 1e-12))
    )
    flagged = np.zeros(len(users), bool)
    groups: list[dict[str, Any]] = []
    conv_csc = conv.tocsc()
    thin_idx = np.flatnonzero(thin)
    for i in np.flatnonzero(pushed).tolist():
        members = np.intersect1d(
            conv_csc.indices[conv_csc.indptr[i] : conv_csc.indptr[i + 1]], thin_idx
        )
        rest = profiles[members].tolil()
        rest[:, i] = 0
        sim = _mean_cosine_to_others(sp.csr_matrix(rest))
        hit = members[sim >= min_similarity]
        flagged[hit] = True
        groups.append(
            {
                "item": str(items[i]),
                "thin_converters": len(members),
                "share_of_converters": round(float(share[i]), 4),
                "flagged": len(hit),
                "mean_similarity": round(float(sim.mean()), 4) if len(sim) else 0.0,
            }
        )
    return ShillingReport(
        flagged=sorted(str(u) for u in users[flagged]),
        pushed_items=sorted(str(g["item"]) for g in groups if g["flagged"]),
        thin_accounts=int(thin.sum()),
        thin_share=round(thin_share, 4),
        config=config,
        groups=groups,
    )
