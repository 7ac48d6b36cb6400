"""Audiences for targeting: who is most likely to buy a category or item, or looks like a seed.

Three scorers, all returning pseudonymised ids:

* ``category`` / ``item`` from a trained recommender artifact: the user's score for the item,
  or the mean of their top scores over the category's items, turned into a rank percentile;
  the expected response of the audience is estimated from the profiles as the mean purchase
  propensity of its members times their (smoothed) share of engagement with the target.
* ``category`` without a model: a propensity from the profiles alone: the user's engagement
  share of that category (from ``affinities`` when it is among their top keys) times their
  purchase propensity.
* ``lookalike``: users nearest (cosine) to the centroid of a seed list in the standardised
  segment space (the same fused vectors the segments come from), excluding the seeds.

Export is CSV or Parquet of pseudonymised ids with score and rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsight.data.store import Store
from shopsight.errors import DataError, InputError
from shopsight.personas.core import Personas


@dataclass
class Audience:
    target: str
    method: str
    users: list[str]  # pseudonyms, best first
    scores: npt.NDArray[np.float64]
    expected_response: float  # expected number of responders (sum of probabilities)
    details: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.users)

    def to_table(self) -> pa.Table:
        return pa.table(
            {
                "user": pa.array(self.users, pa.string()),
                "score": pa.array(self.scores.astype(np.float64)),
                "rank": pa.array(np.arange(1, len(self.users) + 1, dtype=np.int64)),
            }
        )

    def export(self, path: str | Path) -> Path:
        """Write CSV or Parquet (by extension) of pseudonymised ids, score and rank."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        table = self.to_table()
        if out.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, out)
        elif out.suffix.lower() in (".csv", ".txt"):
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, out)
        else:
            raise InputError(f"{out}: expected a .csv or .parquet file name")
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "method": self.method,
            "size": self.size,
            "expected_response": round(self.expected_response, 3),
            "expected_response_rate": round(self.expected_response / max(self.size, 1), 4),
            **self.details,
        }


def _propensity(p: Personas) -> npt.NDArray[np.float64]:
    v = p.users.column("purchase_propensity").to_numpy(zero_copy_only=False)
    return np.nan_to_num(np.asarray(v, np.float64))


def _category_share(p: Personas, category: str) -> npt.NDArray[np.float64]:
    """Each user's engagement share of ``category`` (0 when not among their top keys)."""
    rows = {u: i for i, u in enumerate(p.users.column("user").to_pylist())}
    share = np.zeros(len(p))
    cols = p.affinities.to_pydict()
    from shopsight.data.categories import matches

    for u, kind, key, w in zip(
        cols["user"], cols["kind"], cols["key"], cols["weight"], strict=True
    ):
        # "Drama" takes the user's share of "Comedy|Drama" too: one rule for every filter
        if kind == "category" and matches(key, category):
            share[rows[u]] += float(w)
    return np.minimum(share, 1.0)


def category_audience(
    p: Personas,
    category: str,
    *,
    size: int = 1000,
    artifact: Any = None,
    store: Store | None = None,
) -> Audience:
    """Users most likely to buy in ``category`` (recommender scores if given, else profiles)."""
    if store is not None:
        from shopsight.personas.profile import _table

        n = store.conn.execute(
            f'SELECT count(*) FROM "{_table(store, "items")}" WHERE category IS NOT NULL'
        ).fetchone()
        if not (n and n[0]):
            raise DataError(
                "audience: the catalogue has no categories: --category needs an items file with "
                "a category column (or use --item / --seed-user)"
            )
    share = _category_share(p, category)
    prop = _propensity(p)
    ids = p.users.column("user").to_pylist()
    if artifact is not None and store is not None:
        from shopsight.personas.profile import _table

        items = _table(store, "items")
        from shopsight.data.categories import matches

        rows = store.conn.execute(
            f'SELECT DISTINCT item_id, category FROM "{items}" WHERE category IS NOT NULL'
        ).fetchall()
        target_items = [str(r[0]) for r in rows if matches(r[1], category)]
        if not target_items:
            raise InputError(f"category: no catalogue item is in {category!r} (check the name)")
        score = _artifact_scores(p, artifact, target_items)
        method = "recommender"
    else:
        if not share.any():
            raise InputError(f"category: no user engages with {category!r} (check the name)")
        if not prop.any():
            raise DataError(
                f"audience: no real score for {category!r}: purchase propensity is 0 for every "
                "user (the store has no purchase events), so all would score 0; pass "
                "--model-dir to rank by a trained recommender, or ingest purchases"
            )
        score = share * prop
        method = "profile"
    scored = int(np.count_nonzero(score > 0))
    if not scored or np.ptp(score) == 0:
        raise DataError(
            f"audience: no real score for {category!r}: every user scores {float(score[0]):g}; "
            "ranking them would be arbitrary"
        )
    # Expected response: P(purchase on the next visit) x P(it is in the category), the latter
    # the user's engagement share shrunk towards the population's (20%).
    prob = prop * (0.8 * share + 0.2 * float(share.mean()))
    # users scoring 0 are not an audience: the list stops at the last one with a real score
    order = np.argsort(-score, kind="stable")[: min(size, scored)]
    return Audience(
        target=f"category:{category}",
        method=method,
        users=[ids[i] for i in order],
        scores=score[order],
        expected_response=float(prob[order].sum()),
        details={"engaged_users": int(np.sum(share > 0)), "scored_users": scored},
    )


def _artifact_scores(
    p: Personas, artifact: Any, item_ids: Sequence[str]
) -> npt.NDArray[np.float64]:
    """Rank-percentile of each user's best score over ``item_ids`` (recommender scores)."""
    from shopsight.models.artifact import load_artifact

    art = load_artifact(artifact) if isinstance(artifact, str | Path) else artifact
    if p._pseudo is None:
        from shopsight.data.pseudonym import Pseudonymizer

        p._pseudo = Pseudonymizer()
    # Artifacts hold raw ids; map our pseudonyms back through the artifact's own id list.
    back = p._pseudo.recover(p.users.column("user").to_pylist(), [str(u) for u in art.user_ids])
    idx = np.array([art.user_index(back.get(u, "")) for u in p.users.column("user").to_pylist()])
    items = np.array([art.item_index(i) for i in item_ids], np.int64)
    items = items[items >= 0]
    if not len(items):
        raise InputError("target: none of the target items is known to the model")
    best = np.full(len(idx), -np.inf)
    known = np.flatnonzero(idx >= 0)
    for start in range(0, len(known), 1024):
        part = known[start : start + 1024]
        s = np.asarray(art.model.score(idx[part], items), np.float64)
        best[part] = s.max(axis=1)
    finite = np.isfinite(best)
    pct = np.zeros(len(best))
    if finite.any():
        order = np.argsort(best[finite], kind="stable")
        r = np.empty(int(finite.sum()))
        r[order] = np.arange(1, len(r) + 1) / len(r)
        pct[finite] = r
    return pct


def item_audience(
    p: Personas, item_id: str, *, artifact: Any, store: Store | None = None, size: int = 1000
) -> Audience:
    """Users the recommender scores highest for one item."""
    score = _artifact_scores(p, artifact, [item_id])
    prop = _propensity(p)
    ids = p.users.column("user").to_pylist()
    order = np.argsort(-score, kind="stable")[:size]
    # Expected response: members' purchase propensity x the item's observed conversion
    # (buyers / users who engaged with it, smoothed with one pseudo-buyer in ten).
    conversion = 0.1
    if store is not None:
        from shopsight.personas.profile import _table

        events = _table(store, "events")
        row = store.conn.execute(
            f"""SELECT count(DISTINCT user_id) FILTER (event_type = 'purchase'),
                       count(DISTINCT user_id) FROM "{events}" WHERE item_id = ?""",
            [item_id],
        ).fetchall()
        if row:
            conversion = (float(row[0][0]) + 1.0) / (float(row[0][1]) + 10.0)
    prob = np.clip(prop * conversion * 2 * score, 0, 1)  # top-ranked members count double
    return Audience(
        target=f"item:{item_id}",
        method="recommender",
        users=[ids[i] for i in order],
        scores=score[order],
        expected_response=float(prob[order].sum()),
        details={"item_conversion": round(conversion, 4)},
    )


def lookalike_audience(
    p: Personas, seeds: Sequence[str], vectors: npt.NDArray[np.float64], *, size: int = 1000
) -> Audience:
    """Users most similar (cosine) to the seed list's centroid, seeds excluded."""
    rows = {u: i for i, u in enumerate(p.users.column("user").to_pylist())}
    seed_rows = sorted({rows[pid] for s in seeds if (pid := p.pseudonym(s)) in rows})
    if not seed_rows:
        raise InputError("seeds: none of the seed users is known")
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    centroid = v[seed_rows].mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    sim = v @ centroid
    sim[seed_rows] = -np.inf
    order = np.argsort(-sim, kind="stable")[: min(size, len(sim) - len(seed_rows))]
    prop = _propensity(p)
    seed_rate = float(prop[seed_rows].mean())
    ids = p.users.column("user").to_pylist()
    # Expected response: members' own propensity, pulled towards the seeds' by similarity.
    w = np.clip(sim[order], 0, 1)
    prob = w * seed_rate + (1 - w) * prop[order]
    return Audience(
        target=f"lookalike:{len(seed_rows)} seeds",
        method="lookalike",
        users=[ids[i] for i in order],
        scores=sim[order],
        expected_response=float(prob.sum()),
        details={"seeds_found": len(seed_rows), "seed_propensity": round(seed_rate, 4)},
    )


def segment_vectors(p: Personas) -> npt.NDArray[np.float64]:
    """The standardised numeric profile columns used for lookalikes (from the saved users)."""
    from shopsight.personas.segments import _standardise

    cols = [
        "n_events",
        "n_sessions",
        "events_per_session",
        "view_to_buy",
        "cart_abandonment",
        "purchase_propensity",
        "search_share",
        "social_share",
        "price_z",
        "price_sensitivity",
        "weekend_share",
        "brand_concentration",
        "monetary",
        "peak_hour",
        "mean_rating",
        "rating_bias",
    ]
    mats = []
    for c in cols:
        if c in p.users.column_names:
            v = np.asarray(
                [np.nan if x is None else x for x in p.users.column(c).to_pylist()], np.float64
            )
            if c in ("n_events", "n_sessions", "monetary"):
                v = np.log1p(np.maximum(v, 0))
            if c == "peak_hour":
                a = 2 * np.pi * v / 24
                mats += [np.sin(a), np.cos(a)]
                continue
            mats.append(v)
    beh, _ = _standardise(np.column_stack(mats))
    # Content: category affinities as a sparse-ish one-hot of top keys.
    cols_d = p.affinities.to_pydict()
    keys = sorted(
        {
            k
            for kind, k in zip(cols_d["kind"], cols_d["key"], strict=True)
            if kind in ("category", "style")
        }
    )
    kidx = {k: j for j, k in enumerate(keys)}
    rows = {u: i for i, u in enumerate(p.users.column("user").to_pylist())}
    content = np.zeros((len(p), len(keys)))
    for u, kind, key, w in zip(
        cols_d["user"], cols_d["kind"], cols_d["key"], cols_d["weight"], strict=True
    ):
        if kind in ("category", "style"):
            content[rows[u], kidx[key]] = np.sqrt(float(w))
    content_z, keep = _standardise(content)
    content_z = content_z[:, keep]
    parts = [beh / np.sqrt(max(beh.shape[1], 1))]
    if content_z.shape[1]:
        parts.append(content_z / np.sqrt(content_z.shape[1]))
    return np.hstack(parts)
