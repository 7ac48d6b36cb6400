"""Catalogue look-ups by item id: what a recommendation is, for people (titles) and for
programs (``--json`` item metadata)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shopsight.data.store import Store

FIELDS: tuple[str, ...] = ("title", "category", "brand", "price", "currency", "image")


def item_metadata(store: Store, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{item_id: {title, category, brand, price, currency, image, attributes}}`` for the ids
    the catalogue has (the latest ingested row of each; ids are matched exactly)."""
    ids = sorted({str(i) for i in item_ids})
    if not ids:
        return {}
    table = "items_clean" if store.has_table("items_clean") else "items"
    cols = ", ".join(f'"{c}"' for c in FIELDS)
    rows = store.conn.execute(
        f"""SELECT item_id, {cols}, attributes FROM "{table}" WHERE item_id IN (
                SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY source DESC, line DESC) = 1""",
        [ids],
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        meta = {c: v for c, v in zip(FIELDS, r[1:-1], strict=True) if v is not None}
        if r[-1]:
            try:
                attrs = json.loads(r[-1])
            except ValueError:
                attrs = None
            if isinstance(attrs, dict) and attrs:
                meta["attributes"] = attrs
        out[str(r[0])] = meta
    return out


__all__ = ["FIELDS", "item_metadata"]
