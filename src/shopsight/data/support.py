"""What a store's data can support, said in one line when it cannot.

A command that would otherwise train on all-negative labels or rank by a constant score asks
here first; the error names what the data lacks and which events or files would supply it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shopsight.errors import DataError

if TYPE_CHECKING:
    from shopsight.data.store import Store

# The event that gives each prediction task its positive label (after a ``view`` impression).
TASK_EVENTS: dict[str, str] = {
    "click": "click",
    "add_to_cart": "add_to_cart",
    "purchase": "purchase",
}


def event_counts(store: Store) -> dict[str, int]:
    """Events per type in the table the models read (``events_clean`` when cleaned)."""
    table = "events_clean" if store.has_table("events_clean") else "events"
    rows = store.conn.execute(
        f'SELECT event_type, count(*) FROM "{table}" WHERE item_id IS NOT NULL GROUP BY ALL'
    ).fetchall()
    return {str(t): int(n) for t, n in rows}


def describe(counts: dict[str, int]) -> str:
    """``"rate 100,000, tag 3,683"`` or ``"no item events"``."""
    if not counts:
        return "no item events"
    return ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def require_funnel(store: Store, tasks: Sequence[str]) -> dict[str, int]:
    """Raise :class:`DataError` unless the store has view impressions and, for every task, the
    event that labels it positive; returns the event counts."""
    counts = event_counts(store)
    if not counts.get("view"):
        raise DataError(
            "predict: no impressions to learn from: needs `view` events (item views, ideally "
            "with session ids) followed by click / add_to_cart / purchase events; this store has "
            f"{describe(counts)}"
        )
    missing = [t for t in tasks if not counts.get(TASK_EVENTS.get(t, t))]
    if missing:
        names = " / ".join(TASK_EVENTS.get(t, t) for t in missing)
        raise DataError(
            f"predict: no positive label for {', '.join(missing)}: the store has "
            f"{counts['view']:,} view events but no {names} events, so every example would be "
            f"negative; ingest the shop's {names} log (event_type {names})"
        )
    return counts


def require_interactions(store: Store, n_interactions: int, what: str) -> None:
    """Raise :class:`DataError` when the store has no interactions for ``what`` to use."""
    if n_interactions:
        return
    raise DataError(
        f"{what}: no interactions in {store.path} (it has {describe(event_counts(store))}); "
        "ingest events, ratings, reviews or sequences first"
    )


def require_catalogue(store: Store, n_items: int, what: str) -> None:
    """Raise :class:`DataError` when the store has no catalogue rows for ``what``."""
    if n_items:
        return
    raise DataError(
        f"{what}: no catalogue in {store.path}: item ids come only from events, with no title, "
        "description or image to embed; ingest an items file (e.g. meta_*.json, movies.csv, "
        "styles.csv + images/)"
    )


__all__ = [
    "TASK_EVENTS",
    "describe",
    "event_counts",
    "require_catalogue",
    "require_funnel",
    "require_interactions",
]
