"""What one user did, read from the store with the dataset's event-weight rule.

The CLI (``shopsight explain``) and the HTTP API (``?explain=true``) both explain a user's
recommendations from this history, so they name the same past items with the same verbs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shopsight.data.clean import has_clean_tables
from shopsight.data.dataset import event_weight
from shopsight.data.store import Store


@dataclass
class UserHistory:
    """A user's interactions per item, in order of first interaction.

    ``weights`` sums the event weights per item (as the implicit matrix does); ``events`` is
    the item's strongest event type (the verb of a reason: "Because you bought ...").
    """

    items: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_events(cls, rows: Sequence[tuple[object, str, float | None]]) -> UserHistory:
        """``(item_id, event_type, value)`` rows, oldest first; events weighing 0 (searches,
        cart removals) and itemless ones are not interactions."""
        out = cls()
        pos: dict[str, int] = {}
        best: list[float] = []
        for item, etype, value in rows:
            w = event_weight(str(etype), value)
            if item is None or w <= 0:
                continue
            key = str(item)
            j = pos.get(key)
            if j is None:
                pos[key] = len(out.items)
                out.items.append(key)
                out.events.append(str(etype))
                out.weights.append(w)
                best.append(w)
                continue
            out.weights[j] += w
            if w > best[j]:
                best[j], out.events[j] = w, str(etype)
        return out


def events_table(store: Store) -> str:
    """The events table a model trained on this store learnt from (clean when cleaned)."""
    return "events_clean" if has_clean_tables(store) else "events"


def user_history(store: Store, user_id: str) -> UserHistory:
    """The user's history from the store's (clean when cleaned) events table."""
    rows = store.conn.execute(
        f'SELECT item_id, event_type, value FROM "{events_table(store)}" '
        "WHERE user_id = ? AND item_id IS NOT NULL ORDER BY timestamp, event_type",
        [user_id],
    ).fetchall()
    return UserHistory.from_events(rows)


def item_titles(store: Store, item_ids: Sequence[str]) -> list[str | None]:
    """Titles of ``item_ids`` (None where unknown), from the clean items table when cleaned."""
    table = "items_clean" if has_clean_tables(store) else "items"
    by_id = {
        str(i): t
        for i, t in store.conn.execute(
            f'SELECT item_id, any_value(title) FROM "{table}" GROUP BY item_id'
        ).fetchall()
    }
    return [by_id.get(str(i)) for i in item_ids]
