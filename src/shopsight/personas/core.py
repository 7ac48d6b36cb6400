"""``build_personas``: profiles + segments + 2-D map, held by a JSON-ready ``Personas`` object.

Privacy by design: a ``Personas`` object never holds raw user ids. They are replaced by keyed
HMAC pseudonyms (:class:`shopsight.data.pseudonym.Pseudonymizer`) as soon as the profiles
are computed; a raw id given to :meth:`Personas.profile` is pseudonymised with the same key to
look it up. Segments below ``k_min`` users are merged or suppressed (see ``segments.py``).

Saved as a folder (by convention ``<model_dir>/personas/``): ``users.parquet`` (one row per
user: scalars, derived fields, segment, map position, hour/weekday histograms),
``affinities.parquet`` (top keys per user and kind), ``segments.json`` and ``meta.json``.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shopsight.data.pseudonym import Pseudonymizer, is_pseudonym
from shopsight.data.store import Store
from shopsight.errors import MissingFileError
from shopsight.personas.profile import (
    ProfileConfig,
    ProfileTables,
    compute_profiles,
    derived_fields,
)
from shopsight.personas.segments import (
    Clustering,
    SegmentConfig,
    cluster,
    describe,
    feature_matrix,
    unique_names,
)

USERS_FILE = "users.parquet"
AFFINITIES_FILE = "affinities.parquet"
SEGMENTS_FILE = "segments.json"
META_FILE = "meta.json"
THUMB_PX = 96
_FUNNEL = ("n_views", "n_clicks", "n_carts", "n_purchases")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if not math.isfinite(float(v)) else round(float(v), 4)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


@dataclass
class Personas:
    """Profiles and segments of a shop's users (pseudonymised); see the module docstring."""

    users: pa.Table
    affinities: pa.Table
    segment_list: list[dict[str, Any]]
    meta: dict[str, Any]
    _pseudo: Pseudonymizer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        ids = self.users.column("user").to_pylist()
        self._row = {str(u): i for i, u in enumerate(ids)}
        self._aff: dict[str, dict[str, list[dict[str, Any]]]] | None = None

    def __len__(self) -> int:
        return self.users.num_rows

    # -- lookup -----------------------------------------------------------------------------
    def pseudonym(self, user_id: str) -> str:
        """The id this object knows a user by (a raw id is pseudonymised with the key)."""
        if is_pseudonym(user_id):
            return user_id
        if self._pseudo is None:
            self._pseudo = Pseudonymizer()
        return self._pseudo(user_id)

    def _affinity_index(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        if self._aff is None:
            idx: dict[str, dict[str, list[dict[str, Any]]]] = {}
            cols = self.affinities.to_pydict()
            for u, kind, key, w in zip(
                cols["user"], cols["kind"], cols["key"], cols["weight"], strict=True
            ):
                idx.setdefault(u, {}).setdefault(kind, []).append(
                    {"key": key, "weight": round(float(w), 4)}
                )
            self._aff = idx
        return self._aff

    def profile(self, user_id: str) -> dict[str, Any] | None:
        """One user's profile (JSON-ready), or None for a user without events."""
        pid = self.pseudonym(user_id)
        i = self._row.get(pid)
        if i is None:
            return None
        r = {k: _jsonable(v) for k, v in self.users.slice(i, 1).to_pylist()[0].items()}
        seg = int(r["segment"])
        seg_info = next((s for s in self.segment_list if s["id"] == seg), None)
        visual = None
        aff = self._affinity_index().get(pid, {})
        if aff.get("visual"):
            top = aff["visual"][0]["key"]
            vis = self.meta.get("visual_clusters", {}).get(top, {})
            visual = {"cluster": top, "weight": aff["visual"][0]["weight"], **vis}
        return {
            "user": pid,
            "segment": {"id": seg, "name": seg_info["name"] if seg_info else "suppressed"},
            "map": {"x": r["map_x"], "y": r["map_y"]},
            "demographics": {
                k: r[k] for k in ("age_band", "gender", "region", "occupation") if r.get(k)
            },
            "activity": {
                k: r[k]
                for k in (
                    "n_events",
                    "n_views",
                    "n_clicks",
                    "n_carts",
                    "n_purchases",
                    "n_searches",
                    "n_favorites",
                    "n_shares",
                    "n_ratings",
                    "n_items",
                    "first_ts",
                    "last_ts",
                )
            },
            "affinities": {k: v for k, v in aff.items() if k != "visual"},
            "price": {
                "avg_price": r["avg_price"],
                "price_z": r["price_z"],
                "band": r["price_band"],
                "sensitivity": r["price_sensitivity"],
            },
            "rhythm": {
                "peak_hour": r["peak_hour"],
                "hour_concentration": r["hour_concentration"],
                "weekend_share": r["weekend_share"],
                "sessions": r["n_sessions"],
                "session_minutes": r["session_minutes"],
                "events_per_session": r["events_per_session"],
                "hours": [round(float(x), 2) for x in r["hours"]],
                "weekdays": [round(float(x), 2) for x in r["weekdays"]],
            },
            "funnel": {
                "items_browsed": r["items_browsed"],
                "items_carted": r["items_carted"],
                "items_bought": r["items_bought"],
                "view_to_buy": r["view_to_buy"],
                "cart_abandonment": r["cart_abandonment"],
            },
            "rfm": {
                "recency_days": r["recency_days"],
                "frequency": r["frequency"],
                "monetary": r["monetary"],
                "r": r["r_score"],
                "f": r["f_score"],
                "m": r["m_score"],
                "score": r["rfm_score"],
                "lifecycle": r["lifecycle"],
            },
            "reviews": {
                "n_reviews": r["n_reviews"],
                "mean_rating": r["mean_rating"],
                "rating_bias": r["rating_bias"],
                "sentiment": r["sentiment"],
            },
            "visual_style": visual,
            "prediction": {
                "purchase_propensity": r["purchase_propensity"],
                "propensity_source": self.meta.get("propensity_source", "profile"),
                "next_category": r.get("next_category"),
                "recommended": list(r.get("recommended") or []),
            },
        }

    def segments(self) -> list[dict[str, Any]]:
        """Segments (JSON-ready), largest first; suppressed users are not a segment."""
        return [dict(s) for s in self.segment_list]

    def search(self, query: str, limit: int = 20) -> list[str]:
        """Pseudonymised ids matching a raw id, a pseudonym or a pseudonym prefix."""
        q = query.strip()
        if not q:
            return []
        if q in self._row:
            return [q]
        if q.startswith("p_"):
            return [u for u in self._row if u.startswith(q)][:limit]
        pid = self.pseudonym(q)
        return [pid] if pid in self._row else []

    def map_points(self, max_points: int | None = None, seed: int = 0) -> dict[str, list[Any]]:
        """2-D map coordinates with segment per user (a stratified sample if too many)."""
        n = len(self)
        idx = np.arange(n)
        if max_points is not None and n > max_points:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        t = self.users.take(pa.array(idx))
        return {
            "user": t.column("user").to_pylist(),
            "x": [round(float(v), 4) for v in t.column("map_x").to_numpy()],
            "y": [round(float(v), 4) for v in t.column("map_y").to_numpy()],
            "segment": [int(v) for v in t.column("segment").to_numpy()],
        }

    def segment_users(self, segment: int) -> list[str]:
        """Pseudonyms of a segment's members (row order of the users table)."""
        seg = self.users.column("segment").to_numpy()
        ids = self.users.column("user").to_pylist()
        return [ids[i] for i in np.flatnonzero(seg == segment)]

    def segment_csv(self, segment: int) -> str:
        """A segment's members as CSV: pseudonyms and the profile fields its signals support.

        No raw id and no demographics (they would help re-identify a pseudonym)."""
        import csv

        from shopsight.personas.signals import available

        if not any(s["id"] == segment for s in self.segment_list):
            raise KeyError(
                f"no segment {segment} (segments: {[s['id'] for s in self.segment_list]})"
            )
        sig = self.meta.get("signals", {})
        cols = ["user", "segment", "lifecycle", "n_events", "n_items", "recency_days", "rfm_score"]
        cols += [
            c
            for c, need in (
                ("n_purchases", "funnel"),
                ("purchase_propensity", "funnel"),
                ("avg_price", "price"),
                ("price_band", "price"),
                ("mean_rating", "ratings"),
                ("sentiment", "review_text"),
                ("next_category", ""),
            )
            if c in self.users.column_names and (not need or available(sig, need))
        ]
        if "next_category" in cols and not self.meta.get("has_next_category"):
            cols.remove("next_category")
        t = self.users.filter(pc.equal(self.users.column("segment"), segment)).select(cols)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for row in zip(*(t.column(c).to_pylist() for c in cols), strict=True):
            w.writerow(["" if v is None else _jsonable(v) for v in row])
        return buf.getvalue()

    def export_segment(self, segment: int, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.segment_csv(segment), encoding="utf-8")
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.users, d / USERS_FILE)
        pq.write_table(self.affinities, d / AFFINITIES_FILE)
        (d / SEGMENTS_FILE).write_text(json.dumps(self.segment_list, default=str), "utf-8")
        (d / META_FILE).write_text(json.dumps(self.meta, default=str), "utf-8")
        return d

    @classmethod
    def load(cls, path: str | Path) -> Personas:
        d = Path(path)
        for name in (USERS_FILE, AFFINITIES_FILE, SEGMENTS_FILE, META_FILE):
            if not (d / name).exists():
                raise MissingFileError(
                    f"{d / name}: not a personas folder (run `shopsight personas --save`)"
                )
        return cls(
            users=pq.read_table(d / USERS_FILE),
            affinities=pq.read_table(d / AFFINITIES_FILE),
            segment_list=json.loads((d / SEGMENTS_FILE).read_text("utf-8")),
            meta=json.loads((d / META_FILE).read_text("utf-8")),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "users": len(self),
            "signals": self.meta.get("signals", {}),
            "segments": [
                {
                    **{k: s.get(k) for k in ("id", "name", "size", "share", "value_share")},
                    "stability": s.get("stability_jaccard"),
                    "stability_warning": s.get("stability_warning"),
                }
                for s in self.segment_list
            ],
            "k": self.meta.get("clustering", {}).get("k"),
            "silhouette": self.meta.get("clustering", {}).get("silhouette"),
            "stability": self.meta.get("clustering", {}).get("stability"),
            "suppressed_users": self.meta.get("clustering", {}).get("suppressed"),
        }


# -- helpers used by build_personas -------------------------------------------------------------


def thumbnail_uri(path: Path | None, px: int = THUMB_PX) -> str | None:
    """A small PNG of an image file as a ``data:`` URI (embedded, so reports work offline)."""
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as src:
            im = src.convert("RGB")
        im.thumbnail((px, px))
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _item_catalog(store: Store, items: str | None) -> dict[str, dict[str, Any]]:
    if items is None:
        return {}
    rows = store.conn.execute(
        f"""SELECT item_id, any_value(title), any_value(category), any_value(brand),
                   any_value(price), any_value(image), any_value(source)
            FROM "{items}" GROUP BY item_id"""
    ).fetchall()
    return {
        str(r[0]): {
            "title": r[1],
            "category": r[2],
            "brand": r[3],
            "price": r[4],
            "image": r[5],
            "source": r[6],
        }
        for r in rows
    }


def _image_path(store: Store, item_id: str, info: dict[str, Any]) -> Path | None:
    from shopsight.features.image import resolve_image

    dirs: list[Path] = [store.path.parent]
    if info.get("source"):
        dirs.insert(0, Path(str(info["source"])).parent)
    ref = info.get("image")
    try:
        return resolve_image(ref if isinstance(ref, str) else None, item_id, dirs)
    except OSError:
        return None


def _content_features(
    store: Store, catalog: dict[str, dict[str, Any]], seed: int, n_visual: int
) -> tuple[dict[str, str], dict[str, dict[str, Any]], Any]:
    """Visual clusters of item images and the item text matrix, from the feature cache.

    Returns (item -> visual cluster label, cluster label -> {examples, thumbnails}, ItemFeatures
    or None). Nothing when ``shopsight featurize`` has not been run for this store.
    """
    from shopsight.features.pipeline import load_item_features

    try:
        feats = load_item_features(store.path)
    except (FileNotFoundError, ValueError, KeyError):
        return {}, {}, None
    item_visual: dict[str, str] = {}
    clusters: dict[str, dict[str, Any]] = {}
    if feats.image is not None and feats.image_mask is not None and feats.image_mask.sum() >= 10:
        from sklearn.cluster import KMeans

        rows = np.flatnonzero(feats.image_mask)
        v = feats.image[rows].astype(np.float64)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        k = int(min(n_visual, max(2, len(rows) // 10)))
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(v)
        for j, r in enumerate(rows):
            item_visual[feats.item_ids[r]] = f"visual {int(km.labels_[j]) + 1}"
        for c in range(k):
            members = np.flatnonzero(km.labels_ == c)
            d = np.linalg.norm(v[members] - km.cluster_centers_[c], axis=1)
            near = [feats.item_ids[rows[members[i]]] for i in np.argsort(d)[:4]]
            clusters[f"visual {c + 1}"] = {
                "size": len(members),
                "examples": near,
                "thumbnails": [
                    u
                    for u in (
                        thumbnail_uri(_image_path(store, it, catalog.get(it, {}))) for it in near
                    )
                    if u
                ],
            }
    return item_visual, clusters, feats


def _text_block(
    store: Store, events: str, user_ids: list[str], feats: Any, dims: int, seed: int
) -> npt.NDArray[np.float64] | None:
    """Each user's engagement-weighted mean item text embedding, projected to ``dims``."""
    if feats is None or feats.text is None or not feats.text_mask.any():
        return None
    import scipy.sparse as sp
    from sklearn.decomposition import PCA

    item_pos = {it: j for j, it in enumerate(feats.item_ids) if feats.text_mask[j]}
    user_pos = {u: i for i, u in enumerate(user_ids)}
    rows = store.conn.execute(
        f"""SELECT user_id, item_id, sum(CASE WHEN event_type IN ('rate', 'review')
                   THEN coalesce(value, 3) WHEN event_type = 'purchase' THEN 8
                   WHEN event_type = 'add_to_cart' THEN 4 WHEN event_type IN ('click') THEN 2
                   WHEN event_type = 'view' THEN 1 ELSE 0 END)
            FROM "{events}" WHERE item_id IS NOT NULL GROUP BY 1, 2"""
    ).fetchall()
    r_i, c_i, w_i = [], [], []
    for u, it, w in rows:
        if u in user_pos and it in item_pos and w:
            r_i.append(user_pos[u])
            c_i.append(item_pos[it])
            w_i.append(float(w))
    if not r_i:
        return None
    m = sp.csr_matrix((w_i, (r_i, c_i)), shape=(len(user_ids), len(feats.item_ids)))
    m = sp.diags(1.0 / np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1e-12)) @ m
    emb = np.asarray(m @ feats.text.astype(np.float64))
    k = int(min(dims, emb.shape[1], max(1, emb.shape[0] - 1)))
    out: npt.NDArray[np.float64] = PCA(n_components=k, random_state=seed).fit_transform(emb)
    return out


def _project(X: npt.NDArray[np.float32], method: str, seed: int) -> npt.NDArray[np.float64]:
    if X.shape[0] < 3:
        return np.zeros((X.shape[0], 2))
    if method == "tsne" and X.shape[0] <= 20_000:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(5, (X.shape[0] - 1) // 4)))
        out: npt.NDArray[np.float64] = TSNE(
            n_components=2, perplexity=perplexity, random_state=seed, init="pca"
        ).fit_transform(X.astype(np.float64))
        return out
    from sklearn.decomposition import PCA

    k = min(2, X.shape[1])
    p = PCA(n_components=k, random_state=seed).fit_transform(X.astype(np.float64))
    return np.column_stack([p, np.zeros((X.shape[0], 2 - k))]) if k < 2 else p


def _segment_items(
    store: Store,
    events: str,
    user_ids: list[str],
    labels: npt.NDArray[np.int64],
    k: int,
    per_segment: int = 4,
    top_n: int = 10,
) -> tuple[dict[int, list[tuple[str, float, int]]], dict[int, list[tuple[str, int]]]]:
    """Per segment: items engaged with most distinctively (lift, at least 3 members engaged),
    as (item, lift, members) candidates; and the items most of its members engaged with."""
    conn = store.conn
    conn.register(
        "_p_useg",
        pa.table({"user_id": pa.array(user_ids, pa.string()), "seg": pa.array(labels, pa.int64())}),
    )
    try:
        rows = conn.execute(
            f"""WITH ui AS (
                SELECT e.user_id, e.item_id, s.seg FROM "{events}" e JOIN _p_useg s USING (user_id)
                WHERE e.item_id IS NOT NULL AND s.seg >= 0 AND e.event_type <> 'search'
                GROUP BY 1, 2, 3),
            per AS (SELECT seg, item_id, count(*) AS n FROM ui GROUP BY 1, 2),
            tot AS (SELECT item_id, sum(n) AS n_all FROM per GROUP BY 1),
            sz AS (SELECT seg, count(*) AS size FROM _p_useg WHERE seg >= 0 GROUP BY 1),
            al AS (SELECT count(*) AS size FROM _p_useg WHERE seg >= 0),
            sc AS (
                SELECT per.seg, per.item_id, per.n,
                       (per.n / sz.size) / (tot.n_all / al.size) AS lift
                FROM per JOIN tot USING (item_id) JOIN sz USING (seg), al)
            SELECT seg, item_id, lift, n,
                   row_number() OVER (PARTITION BY seg ORDER BY lift DESC, n DESC, item_id) AS rl,
                   row_number() OVER (PARTITION BY seg ORDER BY n DESC, item_id) AS rn
            FROM sc
            QUALIFY (n >= 3 AND rl <= {per_segment * (k + 2)}) OR rn <= {top_n}"""
        ).fetchall()
    finally:
        conn.unregister("_p_useg")
    sizes = {int(c): int(np.sum(labels == c)) for c in range(k)}
    distinct: dict[int, list[tuple[str, float, int]]] = {c: [] for c in range(k)}
    top: dict[int, list[tuple[str, int]]] = {c: [] for c in range(k)}
    for seg, item, lift, n, rl, _rn in sorted(rows, key=lambda r: (r[0], r[4])):
        if n >= max(3, 0.02 * sizes.get(int(seg), 0)) and rl <= per_segment * (k + 2):
            distinct.setdefault(int(seg), []).append((str(item), float(lift), int(n)))
    for seg, item, _lift, n, _rl, rn in sorted(rows, key=lambda r: (r[0], r[5])):
        if rn <= top_n:
            top.setdefault(int(seg), []).append((str(item), int(n)))
    return distinct, top


def assign_examples(
    candidates: dict[int, list[tuple[str, float, int]]], per_segment: int = 4
) -> dict[int, list[tuple[str, float]]]:
    """Each item is an example of one segment only: the one where its lift is highest."""
    pool = sorted(
        ((lift, n, seg, item) for seg, rows in candidates.items() for item, lift, n in rows),
        key=lambda r: (-r[0], -r[1], r[2], r[3]),
    )
    used: set[str] = set()
    out: dict[int, list[tuple[str, float]]] = {seg: [] for seg in candidates}
    for lift, _n, seg, item in pool:
        if item in used or len(out[seg]) >= per_segment or lift <= 1.0:
            continue
        used.add(item)
        out[seg].append((item, lift))
    return out


def _next_category(
    artifact: Any, user_ids: list[str], catalog: dict[str, dict[str, Any]], k: int = 10
) -> tuple[list[str | None], dict[str, list[str]]]:
    """Most likely next category per user: rank-weighted vote over the top-k recommendations."""
    idx = np.array([artifact.user_index(u) for u in user_ids], np.int64)
    out: list[str | None] = [None] * len(user_ids)
    recs: dict[str, list[str]] = {}
    for start in range(0, len(idx), 2048):
        part = idx[start : start + 2048]
        items, scores = artifact.model.recommend(part, k)
        for j in range(len(part)):
            votes: dict[str, float] = {}
            ids = [
                str(artifact.item_ids[i])
                for i, s in zip(items[j], scores[j], strict=True)
                if np.isfinite(s)
            ]
            recs[user_ids[start + j]] = ids
            for rank, it in enumerate(ids):
                cat = catalog.get(it, {}).get("category")
                if cat:
                    votes[str(cat)] = votes.get(str(cat), 0.0) + 1.0 / (rank + 1)
            if votes:
                out[start + j] = max(votes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return out, recs


def build_personas(
    store: Store,
    *,
    profile_config: ProfileConfig | None = None,
    segment_config: SegmentConfig | None = None,
    projection: str = "pca",
    artifact: Any = None,
    predictor: Any = None,
    pseudonymizer: Pseudonymizer | None = None,
    use_features: bool = True,
    n_visual: int = 8,
    review_topics: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Personas:
    """Profiles, segments and a 2-D map of every user of ``store`` (see the module docstring).

    ``artifact``: a trained recommender (``ModelArtifact`` or its folder) for each user's
    predicted next category; ``predictor``: a ``FunnelPredictor`` (``predict(store, users,
    items)["purchase"]``) for purchase propensity over those recommendations (else a smoothed
    purchase-session rate from the profile). ``use_features``: use the item feature cache
    (visual clusters, text embeddings) when ``shopsight featurize`` has been run.
    ``review_topics``: embed review text for topics and aspects (sentiment is always computed
    when the store has review text).

    Only signals the store holds (:func:`shopsight.personas.signals.signal_inventory`) shape the
    profiles, segments, names and claims.
    """
    from shopsight.personas.signals import signal_inventory

    pcfg = profile_config or ProfileConfig()
    scfg = segment_config or SegmentConfig()
    say = progress or (lambda _m: None)
    pseudo = pseudonymizer or Pseudonymizer()
    from shopsight.personas.profile import _table

    items_table = _table(store, "items")
    catalog = _item_catalog(store, items_table)
    item_visual: dict[str, str] = {}
    visual_clusters: dict[str, dict[str, Any]] = {}
    feats = None
    if use_features:
        item_visual, visual_clusters, feats = _content_features(store, catalog, scfg.seed, n_visual)
    say("signals")
    signals = signal_inventory(store)
    say("profiles")
    tables = compute_profiles(store, pcfg, item_visual=item_visual or None, progress=progress)
    user_ids = tables.user_ids
    reviews = None
    if signals["review_text"]["available"] and tables.info.get("reviews_table"):
        from shopsight.personas.reviews import review_text

        reviews = review_text(
            store,
            str(tables.info["reviews_table"]),
            user_ids,
            seed=scfg.seed,
            n_topics=None if review_topics else 0,
            progress=progress,
        )
        _add_review_text(tables, reviews)
    derived = derived_fields(tables, pcfg, signals)
    _mask_unavailable(tables, signals)
    text = _text_block(store, tables.info["events_table"], user_ids, feats, 16, scfg.seed)
    say("segments")
    fm = feature_matrix(tables, derived, scfg, text=text, signals=signals)
    cl = cluster(fm.X, scfg)
    xy = _project(fm.X, projection, scfg.seed)
    if scfg.time_halves:
        cl.stability["time_halves"] = _time_halves(store, pcfg, scfg, tables, cl.k, item_visual)

    # Predictions (optional hooks).
    next_cat: list[str | None] = [None] * len(user_ids)
    recs: dict[str, list[str]] = {}
    propensity = np.asarray(derived["purchase_propensity"], np.float64)
    propensity_source = "profile"
    if artifact is not None:
        from shopsight.models.artifact import load_artifact

        art = load_artifact(artifact) if isinstance(artifact, str | Path) else artifact
        say("predicted next categories")
        next_cat, recs = _next_category(art, user_ids, catalog)
        if predictor is not None:
            say("purchase propensity")
            pairs_u: list[str] = []
            pairs_i: list[str] = []
            for u in user_ids:
                for it in recs.get(u, [])[:5]:
                    pairs_u.append(u)
                    pairs_i.append(it)
            if pairs_u:
                p = np.asarray(predictor.predict(store, pairs_u, pairs_i)["purchase"], np.float64)
                miss = np.ones(len(user_ids))
                pos = {u: i for i, u in enumerate(user_ids)}
                for u, pv in zip(pairs_u, p, strict=True):
                    miss[pos[u]] *= 1.0 - float(np.clip(pv, 0.0, 1.0))
                propensity = 1.0 - miss
                propensity_source = "predictor"

    users = _users_table(tables, derived, cl, xy, pseudo, next_cat, propensity, recs)
    aff = tables.top
    # One HMAC per user, not per affinity row.
    aff_rows = pc.index_in(aff.column("user_id"), value_set=pa.array(user_ids, pa.string()))
    aff_table = pa.table(
        {
            "user": users.column("user").take(aff_rows),
            "kind": aff.column("kind"),
            "key": aff.column("key"),
            "weight": aff.column("weight"),
            "rank": aff.column("rank"),
        }
    )
    say("describing segments")
    seg_items, seg_top = _segment_items(
        store, tables.info["events_table"], user_ids, cl.labels, cl.k
    )
    segs = _segment_records(
        store,
        tables,
        derived,
        fm,
        cl,
        catalog,
        (seg_items, seg_top),
        visual_clusters,
        propensity,
        signals,
        reviews,
        recs,
        user_ids,
    )
    from shopsight.personas.compare import comparison, map_axes

    compare = comparison(tables, derived, cl, propensity, signals, segs)
    meta = {
        "version": 1,
        "profiles": {k: v for k, v in tables.info.items() if k not in ("vocab",)},
        "lifecycle_windows_days": dict(
            zip(
                ("new", "at_risk", "churn"),
                [float(x) for x in derived["lifecycle_windows"]],
                strict=True,
            )
        ),
        "clustering": {
            "method": scfg.method,
            "k": cl.k,
            "silhouette": {str(k): v for k, v in cl.silhouette.items()},
            "stability": cl.stability,
            "merged": cl.merged,
            "suppressed": cl.suppressed,
            "blocks": {k: list(v) for k, v in fm.blocks.items()},
            "config": scfg.to_dict(),
            "projection": projection,
        },
        "visual_clusters": visual_clusters,
        "signals": signals,
        "comparison": compare,
        "map_axes": map_axes(xy, fm, tables, signals),
        "review_text": reviews.info if reviews is not None else None,
        # Titles of recommended items, so user pages name them rather than show codes.
        "item_titles": {
            it: str(catalog[it]["title"])
            for it in sorted({i for r in recs.values() for i in r})
            if catalog.get(it, {}).get("title")
        },
        "propensity_source": propensity_source,
        "has_next_category": artifact is not None,
        "store": str(store.path),
        "store_fingerprint": store.fingerprint(),
    }
    return Personas(users=users, affinities=aff_table, segment_list=segs, meta=meta, _pseudo=pseudo)


def _add_review_text(tables: ProfileTables, rt: Any) -> None:
    """Review sentiment into the scalars; topic shares as one more affinity kind."""
    s = tables.scalars
    i = s.column_names.index("sentiment")
    tables.scalars = s.set_column(i, "sentiment", pa.array(rt.sentiment, pa.float64()))
    if not rt.topics:
        return
    tables.dense["topic"] = (list(rt.topics), rt.topic_shares)
    rows, cols = np.nonzero(rt.topic_shares)
    w = rt.topic_shares[rows, cols].astype(np.float64)
    order = np.lexsort((-w, rows))
    rows, cols, w = rows[order], cols[order], w[order]
    rank = np.ones(len(rows), np.int64)
    for j in range(1, len(rows)):
        rank[j] = rank[j - 1] + 1 if rows[j] == rows[j - 1] else 1
    keep = rank <= 3
    extra = pa.table(
        {
            "user_id": pa.array([rt.users[r] for r in rows[keep]], pa.string()),
            "kind": pa.array(["topic"] * int(keep.sum()), pa.string()),
            "key": pa.array([rt.topics[c] for c in cols[keep]], pa.string()),
            "weight": pa.array(w[keep], pa.float64()),
            "rank": pa.array(rank[keep], pa.int64()),
        }
    )
    tables.top = pa.concat_tables([tables.top, extra])


def _mask_unavailable(tables: ProfileTables, signals: dict[str, dict[str, Any]]) -> None:
    """Profile fields whose signal the store lacks become null (unknown), not 0 or a guess."""
    from shopsight.personas.signals import FIELD_SIGNALS, available

    s = tables.scalars
    for name, need in FIELD_SIGNALS.items():
        if name in s.column_names and not available(signals, *need):
            i = s.column_names.index(name)
            s = s.set_column(i, name, pa.nulls(s.num_rows, pa.float64()))
    tables.scalars = s
    if not available(signals, "time_of_day"):
        tables.hours = np.zeros_like(tables.hours)
        tables.weekdays = np.zeros_like(tables.weekdays)


def _time_halves(
    store: Store,
    pcfg: ProfileConfig,
    scfg: SegmentConfig,
    tables: ProfileTables,
    k: int,
    item_visual: dict[str, str],
) -> dict[str, Any]:
    """Profiles of each half of the time span (same vocabulary), clustered and compared."""
    from dataclasses import replace
    from datetime import datetime

    from shopsight.personas.segments import time_halves_ari

    first = datetime.fromisoformat(str(tables.info["first_event"]))
    last = datetime.fromisoformat(str(tables.info["as_of"]))
    mid = first + (last - first) / 2
    fms, ids = [], []
    for since, until in ((None, mid), (mid, None)):
        t = compute_profiles(
            store,
            replace(pcfg, since=since, until=until),
            item_visual=item_visual or None,
            vocab=tables.info["vocab"],
        )
        d = derived_fields(t, pcfg)
        fms.append(feature_matrix(t, d, scfg))
        ids.append(t.user_ids)
    out = time_halves_ari((fms[0], fms[1]), (ids[0], ids[1]), k, scfg)
    out["split"] = mid.isoformat()
    return out


def _users_table(
    t: ProfileTables,
    d: dict[str, np.ndarray],
    cl: Clustering,
    xy: npt.NDArray[np.float64],
    pseudo: Pseudonymizer,
    next_cat: Sequence[str | None],
    propensity: npt.NDArray[np.float64],
    recs: dict[str, list[str]] | None = None,
) -> pa.Table:
    s = t.scalars
    cols: dict[str, Any] = {"user": pa.array(pseudo.many(t.user_ids), pa.string())}
    for name in s.column_names:
        if name != "user_id":
            cols[name] = s.column(name)
    for name, arr in d.items():
        if name == "lifecycle_windows":
            continue
        if name == "purchase_propensity":
            arr = propensity
        cols[name] = pa.array(
            arr.tolist() if arr.dtype.kind in "OU" else arr,
            pa.string() if arr.dtype.kind in "OU" else None,
        )
    cols["segment"] = pa.array(cl.labels, pa.int64())
    cols["map_x"] = pa.array(xy[:, 0].astype(np.float64))
    cols["map_y"] = pa.array(xy[:, 1].astype(np.float64))
    cols["hours"] = pa.array(t.hours.tolist(), pa.list_(pa.float32()))
    cols["weekdays"] = pa.array(t.weekdays.tolist(), pa.list_(pa.float32()))
    cols["next_category"] = pa.array(list(next_cat), pa.string())
    if recs:
        cols["recommended"] = pa.array(
            [recs.get(u, [])[:10] for u in t.user_ids], pa.list_(pa.string())
        )
    return pa.table(cols)


STABILITY_WARN = 0.6  # mean bootstrap Jaccard under this: a segment that may not come back


def _item_ref(item: str, catalog: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    info = catalog.get(item, {})
    title = info.get("title")
    return {
        "item_id": item,
        "title": str(title).strip() if title and str(title).strip() else None,
        "category": info.get("category"),
        **extra,
    }


def _segment_records(
    store: Store,
    t: ProfileTables,
    d: dict[str, np.ndarray],
    fm: Any,
    cl: Clustering,
    catalog: dict[str, dict[str, Any]],
    seg_items: tuple[dict[int, list[tuple[str, float, int]]], dict[int, list[tuple[str, int]]]],
    visual_clusters: dict[str, dict[str, Any]],
    propensity: npt.NDArray[np.float64],
    signals: dict[str, dict[str, Any]],
    reviews: Any,
    recs: dict[str, list[str]],
    user_ids: list[str],
) -> list[dict[str, Any]]:
    from shopsight.personas.profile import _col
    from shopsight.personas.signals import available

    value = np.nan_to_num(np.asarray(d["monetary"], np.float64))
    total_value = float(value[cl.labels >= 0].sum()) or 1.0
    n_shown = int(np.sum(cl.labels >= 0)) or 1
    out: list[dict[str, Any]] = []
    extras: list[list[str]] = []
    demo_cols = ("age_band", "gender", "occupation", "region")
    s = t.scalars
    examples_by_seg = assign_examples(seg_items[0])
    for c in range(cl.k):
        members = cl.labels == c
        size = int(members.sum())
        desc = describe(t, fm, cl.labels, c, value, signals)
        funnel = (
            {k.removeprefix("n_"): float(np.sum(_col(s, k)[members])) for k in _FUNNEL}
            if available(signals, "funnel")
            else {}
        )
        lifecycle = {
            stage: int(np.sum(members & (d["lifecycle"] == stage)))
            for stage in ("new", "active", "at_risk", "churned")
        }
        demographics: dict[str, list[dict[str, Any]]] = {}
        for col in demo_cols:
            vals = np.array([v if v is not None else "" for v in s.column(col).to_pylist()], object)
            known = vals != ""
            if known.sum() < 10:
                continue
            rows = []
            for v in sorted(set(vals[known].tolist())):
                inside = (
                    float(np.mean(vals[members & known] == v)) if (members & known).any() else 0.0
                )
                overall = float(np.mean(vals[known] == v))
                if overall > 0 and inside >= 0.05:
                    rows.append(
                        {"key": v, "share": round(inside, 4), "lift": round(inside / overall, 3)}
                    )
            demographics[col] = sorted(rows, key=lambda r: -r["lift"])[:3]
        examples = []
        for item, lift in examples_by_seg.get(c, []):
            info = catalog.get(item, {})
            thumb = thumbnail_uri(_image_path(store, item, info)) if info else None
            examples.append(_item_ref(item, catalog, lift=round(lift, 3), thumbnail=thumb))
        top_items = [
            _item_ref(item, catalog, members=n, share=round(n / max(size, 1), 4))
            for item, n in seg_items[1].get(c, [])
        ]
        recommended: list[dict[str, Any]] = []
        if recs:
            votes: dict[str, int] = {}
            for i in np.flatnonzero(members):
                for it in recs.get(user_ids[i], [])[:10]:
                    votes[it] = votes.get(it, 0) + 1
            recommended = [
                _item_ref(it, catalog, users=n, share=round(n / max(size, 1), 4))
                for it, n in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            ]
        vis = desc["over_represented"].get("visual", [])
        stab = cl.stability.get("jaccard")
        jac = stab[c] if stab and c < len(stab) else None
        value_known = t.info.get("value_basis") != "ratings"
        out.append(
            {
                "id": c,
                "name": desc["name"],
                "description": desc["description"],
                "size": size,
                "share": round(size / n_shown, 4),
                "value": desc["value"] if value_known else None,
                "value_share": (
                    round(float(value[members].sum()) / total_value, 4) if value_known else None
                ),
                "price_band": desc["price_band"],
                "over_represented": desc["over_represented"],
                "traits": desc["traits"],
                "behaviour_words": desc["behaviour_words"],
                "funnel": funnel,
                "view_to_buy": _mean(d["view_to_buy"][members]),
                "cart_abandonment": _mean(d["cart_abandonment"][members]),
                "purchase_propensity": _mean(propensity[members]),
                "lifecycle": lifecycle,
                "rfm_score": _mean(np.asarray(d["rfm_score"], np.float64)[members]),
                "demographics": demographics,
                "example_items": examples,
                "top_items": top_items,
                "recommended_items": recommended,
                "aspects": reviews.aspects(members) if reviews is not None else None,
                "visual_style": [
                    {**v, "thumbnails": visual_clusters.get(v["key"], {}).get("thumbnails", [])}
                    for v in vis[:2]
                ],
                "stability_jaccard": jac,
                "stability_warning": (
                    f"unstable: bootstrap Jaccard {jac:.2f} < {STABILITY_WARN}: this segment may "
                    "not come back on other data"
                    if jac is not None and jac < STABILITY_WARN
                    else None
                ),
            }
        )
        extras.append(desc["name_extras"])
    names = unique_names([s_["name"] for s_ in out], extras)
    for s_, nm in zip(out, names, strict=True):
        s_["name"] = nm
    return out


def _mean(x: np.ndarray) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 4) if len(x) else None
