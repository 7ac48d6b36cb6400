"""``shopsight explain``: a user's recommendations, each with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import InputError

app = group()


def user_history(store: Any, user_id: str) -> tuple[list[str], list[str], list[float]]:
    """A user's item events in time order: item ids, event types, implicit weights.

    Reads ``events_clean`` when the store is cleaned, else ``events``; weights are the
    dataset defaults (ratings weigh their value).
    """
    from shopsight.data.clean import has_clean_tables
    from shopsight.data.dataset import DEFAULT_WEIGHTS

    table = "events_clean" if has_clean_tables(store) else "events"
    rows = store.conn.execute(
        f'SELECT item_id, event_type, value FROM "{table}" '
        "WHERE user_id = ? AND item_id IS NOT NULL ORDER BY timestamp, event_type",
        [user_id],
    ).fetchall()
    items, events, weights = [], [], []
    for item, etype, value in rows:
        w = DEFAULT_WEIGHTS.get(etype, 0.0)
        weight = float(value) if w == "value" and value is not None else w
        if not isinstance(weight, float) or weight <= 0:
            continue  # searches, cart removals: not interactions
        items.append(str(item))
        events.append(str(etype))
        weights.append(weight)
    return items, events, weights


def item_titles(store: Any, item_ids: list[str]) -> list[str | None]:
    from shopsight.data.clean import has_clean_tables

    table = "items_clean" if has_clean_tables(store) else "items"
    by_id = dict(store.conn.execute(f'SELECT item_id, title FROM "{table}"').fetchall())
    return [by_id.get(i) for i in item_ids]


@app.command()
@friendly_errors
def explain(
    user: Annotated[str, typer.Option("--user", help="User id whose recommendations to explain.")],
    model: Annotated[Path, typer.Option("--model", help="A model folder written by `train`.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    k: Annotated[int, typer.Option("-k", help="How many recommendations.")] = 10,
    top: Annotated[int, typer.Option("--top", help="Past items listed per recommendation.")] = 3,
    method: Annotated[
        str, typer.Option("--method", help="loo (any model) or gradient (SASRec).")
    ] = "loo",
    as_json: JsonOpt = False,
) -> None:
    """Recommendations for a user with the reason for each: past items, modalities, one line."""
    import numpy as np
    from rich.table import Table

    import shopsight.models.quantize  # noqa: F401  (registers quantised models for loading)
    from shopsight.explain.items import explain_items
    from shopsight.models.artifact import load_artifact

    if k < 1 or top < 1:
        raise InputError(f"-k {k} / --top {top}: expected integers >= 1")
    if method not in ("loo", "gradient"):
        raise InputError(f"--method: expected loo or gradient, got {method!r}")
    art = load_artifact(model)
    with Store(store, read_only=True) as st:
        hist_ids, events, weights = user_history(st, user)
        titles = item_titles(st, [str(i) for i in art.item_ids.tolist()])
    idx = np.array([art.item_index(i) for i in hist_ids], np.int64)
    known = idx >= 0
    h = idx[known]
    w = np.asarray(weights, np.float32)[known]
    ev = [e for e, ok in zip(events, known.tolist(), strict=True) if ok]
    rec, _ = art.model.recommend_history(h, k, weights=w)
    rec = rec[np.isfinite(art.model.score_history(h, w)[rec])]
    explained = explain_items(
        art.model,
        h,
        w,
        rec,
        item_titles=titles,
        top=top,
        history_events=ev,
        method=method,  # type: ignore[arg-type]
    )

    def item_id(i: int) -> str:
        return str(art.item_ids[i])

    recs = [
        {
            "rank": rank,
            "item_id": item_id(e["item"]),
            "title": titles[e["item"]],
            "score": e["score"],
            "reason": e["reason"],
            "history": [
                {"item_id": item_id(p["item"]), "title": titles[p["item"]], "weight": p["weight"]}
                for p in e["history"]
            ],
            "modalities": e["modalities"],
        }
        for rank, e in enumerate(explained, 1)
    ]
    result = {
        "user": user,
        "model": art.model.name,
        "method": method,
        "history_events": int(known.sum()),
        "recommendations": recs,
    }
    emit(result, as_json)
    if not as_json:
        table = Table("rank", "item", "score", "why", "text/image/behaviour", title=user)
        for r in recs:
            mod = r["modalities"]
            table.add_row(
                str(r["rank"]),
                r["title"] or r["item_id"],
                f"{r['score']:.3f}",
                r["reason"],
                f"{mod['text']:.2f}/{mod['image']:.2f}/{mod['behaviour']:.2f}",
            )
        err.print(table)
