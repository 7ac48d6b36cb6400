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
import pyarrow as pa
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
    conn = store.conn
    ev = f"""SELECT user_id, item_id, event_type, timestamp FROM "{table}"
        WHERE item_id IS NOT NULL AND NOT ts_ordinal AND event_type IN ({types})"""
    # Per user and per item aggregates stay in DuckDB: only the converters of pushed items (a
    # few groups of thin accounts) come to Python, so memory does not grow with the shop.
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _shill_users AS
        SELECT user_id,
               (epoch_us(max(timestamp)) - epoch_us(min(timestamp))) / 3.6e9 <= {float(max_span_hours)!r}
                   AS thin,
               bool_or(event_type IN ({conv_sql})) AS converter
        FROM ({ev}) GROUP BY user_id"""
    )
    try:
        n_users, n_thin, n_conv_users, n_thin_conv = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE thin), count(*) FILTER (WHERE converter),
                      count(*) FILTER (WHERE thin AND converter) FROM _shill_users"""
        ).fetchall()[0]
        if not n_users:
            return ShillingReport([], [], 0, 0.0, config)
        n_conv = max(int(n_conv_users), 1)
        thin_share = float(np.int64(n_thin_conv) / n_conv)
        per_item = conn.execute(
            f"""SELECT c.item_id, count(*) AS n, count(*) FILTER (WHERE u.thin) AS n_thin
            FROM (SELECT DISTINCT user_id, item_id FROM ({ev}) WHERE event_type IN ({conv_sql})) c
            JOIN _shill_users u USING (user_id)
            GROUP BY c.item_id HAVING count(*) FILTER (WHERE u.thin) >= {int(min_group)}
            ORDER BY c.item_id"""
        ).fetchall()
        pushed: list[tuple[str, int, float]] = []
        for item, by_item, thin_by_item in per_item:
            share = float(np.int64(thin_by_item) / np.int64(max(by_item, 1)))
            if share >= min_share and share >= min_lift * max(thin_share, 1e-12):
                pushed.append((str(item), int(thin_by_item), share))
        # Each pushed item's thin converters and their profiles without the pushed item: two
        # scans for all pushed items together.
        conn.register("_shill_pushed", pa.table({"item_id": [p[0] for p in pushed]}))
        try:
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE _shill_members AS
                SELECT DISTINCT e.item_id AS pushed, e.user_id
                FROM ({ev}) e JOIN _shill_users u USING (user_id)
                WHERE u.thin AND e.event_type IN ({conv_sql})
                  AND e.item_id IN (SELECT item_id FROM _shill_pushed)"""
            )
        finally:
            conn.unregister("_shill_pushed")
        members_of: dict[str, list[str]] = {}
        for p_item, user in conn.execute("SELECT pushed, user_id FROM _shill_members").fetchall():
            members_of.setdefault(str(p_item), []).append(str(user))
        profiles_of: dict[str, list[tuple[str, str]]] = {}
        for p_item, user, item in conn.execute(
            f"""SELECT DISTINCT m.pushed, e.user_id, e.item_id
            FROM ({ev}) e JOIN _shill_members m USING (user_id) WHERE e.item_id <> m.pushed"""
        ).fetchall():
            profiles_of.setdefault(str(p_item), []).append((str(user), str(item)))
        flagged: list[str] = []
        groups: list[dict[str, Any]] = []
        for item, _, share in pushed:
            members = sorted(members_of.get(item, []))
            rows = profiles_of.get(item, [])
            row_of = {u: k for k, u in enumerate(members)}
            cols = sorted({i for _, i in rows})
            col_of = {c: k for k, c in enumerate(cols)}
            rest = sp.csr_matrix(
                (
                    np.ones(len(rows)),
                    ([row_of[u] for u, _ in rows], [col_of[i] for _, i in rows]),
                ),
                shape=(len(members), len(cols)),
            )
            rest.sum_duplicates()
            rest.sort_indices()
            sim = _mean_cosine_to_others(rest)
            hit = [members[k] for k in np.flatnonzero(sim >= min_similarity).tolist()]
            flagged += hit
            groups.append(
                {
                    "item": item,
                    "thin_converters": len(members),
                    "share_of_converters": round(share, 4),
                    "flagged": len(hit),
                    "mean_similarity": round(float(sim.mean()), 4) if len(sim) else 0.0,
                }
            )
    finally:
        conn.execute("DROP TABLE IF EXISTS _shill_users")
        conn.execute("DROP TABLE IF EXISTS _shill_members")
    return ShillingReport(
        flagged=sorted(set(flagged)),
        pushed_items=sorted(str(g["item"]) for g in groups if g["flagged"]),
        thin_accounts=int(n_thin),
        thin_share=round(thin_share, 4),
        config=config,
        groups=groups,
    )
