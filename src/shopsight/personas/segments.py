"""Segments: clustering of fused behaviour + content vectors, automatic names, privacy floor.

Each user is one vector made of blocks: behaviour (activity, funnel, price position, rhythm,
loyalty, ratings), and content (square-rooted shares of engagement per category, style,
keyword, brand, visual cluster and, when item text embeddings exist, the projected mean text
embedding). Every column is standardised, then each block is scaled by ``weight / sqrt(width)``
so a 40-column block does not drown a 10-column one. k-means (k chosen by the silhouette on a
sample) or HDBSCAN groups the users; segments smaller than ``k_min`` are merged into their
nearest segment or suppressed, so no report singles anyone out.

A segment is described by what distinguishes it: keys whose mean share in the segment is
well above the population's (lift), its typical price band and its most atypical behaviour
(largest standardised difference), and named from those facts.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shopsight.personas.profile import ProfileTables, _col

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Behaviour columns of the segment vector: (name, label when high, label when low).
BEHAVIOUR_TRAITS: tuple[tuple[str, str | None, str | None], ...] = (
    ("activity", "frequent visitors", "occasional visitors"),
    ("sessions", None, None),
    ("events_per_session", "long browsers", "quick visitors"),
    ("view_to_buy", "decisive buyers", "window shoppers"),
    ("cart_abandonment", "cart abandoners", None),
    ("purchase_propensity", "frequent buyers", "rare buyers"),
    ("search_share", "searchers", None),
    ("social_share", "sharers", None),
    ("price_z", None, None),
    ("price_sensitivity", "bargain seekers", None),
    ("night_share", "night owls", None),
    ("morning_share", "early birds", None),
    ("weekend_share", "weekend shoppers", "weekday shoppers"),
    ("brand_concentration", "brand loyalists", "brand hoppers"),
    ("monetary", "big spenders", None),
    ("rating_bias", "generous raters", "critical raters"),
    ("mean_rating", None, None),
    ("session_minutes", None, None),
    ("review_sentiment", "enthusiastic reviewers", "critical reviewers"),
)


@dataclass(frozen=True)
class SegmentConfig:
    method: Literal["kmeans", "hdbscan"] = "kmeans"
    k: int | None = None  # None: chosen by silhouette over k_range
    k_range: tuple[int, int] = (2, 10)
    k_tolerance: float = 0.005  # silhouette slack that prefers fewer segments
    k_min: int = 20  # privacy floor: smallest segment shown
    small: Literal["merge", "suppress"] = "merge"
    seed: int = 0
    n_init: int = 4
    n_boot: int = 5  # bootstrap refits for the stability estimate (0: skip)
    sample: int = 5000  # users used for silhouette / bootstrap fits on big shops
    time_halves: bool = False  # also cluster each half of the time span and compare (ARI)
    block_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "behaviour": 1.0,
            "category": 1.0,
            "style": 1.0,
            "keyword": 1.0,
            "brand": 0.5,
            "visual": 1.0,
            "text": 1.0,
            # Review topics describe segments (lift, aspects) but do not form them: on the
            # synthetic shop they cost planted-segment recovery (ARI 0.99 -> 0.81, k 5 -> 4),
            # being mostly what the category and style blocks already say.
            "topic": 0.0,
        }
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["k_range"] = list(self.k_range)
        d["block_weights"] = dict(self.block_weights)
        return d


@dataclass
class FeatureMatrix:
    X: npt.NDArray[np.float32]
    behaviour: FloatArray  # standardised behaviour columns (for trait descriptions)
    behaviour_names: list[str]
    raw_behaviour: FloatArray
    blocks: dict[str, tuple[int, int]]  # block -> column range in X


def behaviour_columns(
    t: ProfileTables,
    d: Mapping[str, np.ndarray],
    signals: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, FloatArray]:
    """Behaviour columns of the segment vector: only those whose signals the store has."""
    from shopsight.personas.signals import trait_available

    s = t.scalars
    tot = np.maximum(t.hours.sum(axis=1), 1.0)
    night = t.hours[:, [21, 22, 23, 0, 1]].sum(axis=1) / tot
    morning = t.hours[:, 6:10].sum(axis=1) / tot
    no_clock = t.hours.sum(axis=1) == 0
    cols = {
        "activity": np.log1p(_col(s, "n_events")),
        "sessions": np.log1p(_col(s, "n_sessions")),
        "events_per_session": np.log1p(_col(s, "events_per_session")),
        "view_to_buy": d["view_to_buy"],
        "cart_abandonment": d["cart_abandonment"],
        "purchase_propensity": d["purchase_propensity"],
        "search_share": d["search_share"],
        "social_share": d["social_share"],
        "price_z": _col(s, "price_z"),
        "price_sensitivity": d["price_sensitivity"],
        "night_share": np.where(no_clock, np.nan, night),
        "morning_share": np.where(no_clock, np.nan, morning),
        "weekend_share": _col(s, "weekend_share"),
        "brand_concentration": d["brand_concentration"],
        "monetary": np.log1p(np.nan_to_num(d["monetary"])),
        "rating_bias": _col(s, "rating_bias"),
        "mean_rating": _col(s, "mean_rating"),
        "session_minutes": np.log1p(_col(s, "session_minutes")),
        "review_sentiment": _col(s, "sentiment"),
    }
    sig = dict(signals or {})
    return {k: v for k, v in cols.items() if trait_available(sig, k)}


def _standardise(m: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Column z-scores; missing values get the column median (0 after centring if all miss)."""
    m = np.array(m, np.float64)
    with warnings.catch_warnings():  # all-missing columns are expected (e.g. no ratings)
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(m, axis=0) if len(m) else np.zeros(m.shape[1])
    med = np.where(np.isfinite(med), med, 0.0)
    m = np.where(np.isfinite(m), m, med)
    sd = m.std(axis=0)
    keep = sd > 1e-9
    out = np.zeros_like(m)
    out[:, keep] = (m[:, keep] - m[:, keep].mean(axis=0)) / sd[keep]
    return out, keep


def feature_matrix(
    t: ProfileTables,
    d: Mapping[str, np.ndarray],
    cfg: SegmentConfig,
    text: FloatArray | None = None,
    signals: Mapping[str, Mapping[str, Any]] | None = None,
) -> FeatureMatrix:
    """The fused, standardised, block-weighted user vectors (see the module docstring)."""
    beh = behaviour_columns(t, d, signals)
    names = list(beh)
    raw = np.column_stack([beh[n] for n in names]) if names else np.zeros((len(t), 0))
    z_beh, _ = _standardise(raw)
    parts: list[FloatArray] = []
    blocks: dict[str, tuple[int, int]] = {}
    col = 0

    def add(name: str, block: FloatArray) -> None:
        nonlocal col
        w = float(cfg.block_weights.get(name, 0.0))
        zb, keep = _standardise(block)
        zb = zb[:, keep]
        if w <= 0 or zb.shape[1] == 0:
            return
        parts.append(zb * (w / np.sqrt(zb.shape[1])))
        blocks[name] = (col, col + zb.shape[1])
        col += zb.shape[1]

    add("behaviour", raw)
    for kind, (_, mat) in t.dense.items():
        add(kind, np.sqrt(mat.astype(np.float64)))
    if text is not None:
        add("text", text)
    X = np.hstack(parts).astype(np.float32) if parts else np.zeros((len(t), 1), np.float32)
    return FeatureMatrix(
        X=X, behaviour=z_beh, behaviour_names=names, raw_behaviour=raw, blocks=blocks
    )


@dataclass
class Clustering:
    labels: IntArray  # -1: suppressed (segment below k_min) or HDBSCAN noise
    centers: FloatArray
    k: int
    silhouette: dict[int, float]
    stability: dict[str, Any]
    merged: int  # users moved out of too-small segments
    suppressed: int


def _kmeans(X: FloatArray, k: int, cfg: SegmentConfig, seed: int) -> Any:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    # One thread: on small inputs OpenMP start-up dominates, and it oversubscribes shared CPUs.
    with threadpool_limits(limits=1):
        return KMeans(n_clusters=k, n_init=cfg.n_init, random_state=seed).fit(X)


def _sample(n: int, size: int, rng: np.random.Generator) -> IntArray:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    out: IntArray = np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
    return out


def cluster(X: npt.NDArray[np.float32], cfg: SegmentConfig) -> Clustering:
    """Cluster users; enforce the ``k_min`` floor; estimate stability by bootstrap refits."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    n = X.shape[0]
    rng = np.random.default_rng(cfg.seed)
    Xd = X.astype(np.float64)
    sil: dict[int, float] = {}
    if n < cfg.k_min:
        # Fewer users than the privacy floor: any segment would single them out.
        labels = np.full(n, -1, np.int64)
        return Clustering(labels, np.zeros((0, X.shape[1])), 0, sil, {"method": "none"}, 0, n)
    if n < 2 * max(cfg.k_min, 2) or n < 4:
        # Too few users for two segments that respect the floor: one segment.
        labels = np.zeros(n, np.int64)
        centers = Xd.mean(axis=0, keepdims=True)
        return Clustering(labels, centers, 1, sil, {"method": "none"}, 0, 0)
    sample = _sample(n, cfg.sample, rng)
    if cfg.method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        hd = HDBSCAN(min_cluster_size=max(cfg.k_min, 5), copy=True).fit(Xd)
        labels = np.asarray(hd.labels_, np.int64)
        if labels.max() < 0:
            labels = np.zeros(n, np.int64)
        ids = sorted(set(labels.tolist()) - {-1})
        centers = np.stack([Xd[labels == c].mean(axis=0) for c in ids])
        remap = {c: j for j, c in enumerate(ids)}
        labels = np.array([remap.get(int(v), -1) for v in labels], np.int64)
        if cfg.small == "merge":  # noise joins its nearest cluster
            noise = labels < 0
            if noise.any():
                labels[noise] = _nearest(Xd[noise], centers)
    else:
        if cfg.k is not None:
            k = int(cfg.k)
        else:
            lo, hi = cfg.k_range
            hi = min(hi, n // max(cfg.k_min, 1), n - 1)
            best_k, best_s = max(lo, 2), -2.0
            for k_try in range(max(lo, 2), max(hi, 2) + 1):
                km = _kmeans(Xd[sample], k_try, cfg, cfg.seed)
                if len(set(km.labels_.tolist())) < 2:
                    continue
                s_val = float(silhouette_score(Xd[sample], km.labels_))
                sil[k_try] = round(s_val, 4)
                if s_val > best_s:
                    best_k, best_s = k_try, s_val
            # Parsimony: the smallest k within ``k_tolerance`` of the best silhouette.
            k = (
                min(kk for kk, sv in sil.items() if sv >= best_s - cfg.k_tolerance)
                if sil
                else best_k
            )
        km = _kmeans(Xd, k, cfg, cfg.seed)
        labels = np.asarray(km.labels_, np.int64)
        centers = np.asarray(km.cluster_centers_, np.float64)
    labels, centers, merged, suppressed = enforce_k_min(Xd, labels, centers, cfg.k_min, cfg.small)
    k_final = int(centers.shape[0])

    stability: dict[str, Any] = {"method": "bootstrap", "n_boot": 0}
    if cfg.n_boot > 0 and cfg.method == "kmeans" and k_final >= 2:
        aris: list[float] = []
        jacc = np.zeros((cfg.n_boot, k_final))
        ref = labels
        for b in range(cfg.n_boot):
            idx = rng.choice(n, size=min(n, cfg.sample), replace=True)
            km_b = _kmeans(Xd[idx], k_final, cfg, cfg.seed + 1 + b)
            pred = np.asarray(km_b.predict(Xd), np.int64)
            ok = ref >= 0
            aris.append(float(adjusted_rand_score(ref[ok], pred[ok])))
            for c in range(k_final):
                a = ref == c
                best = 0.0
                for c2 in range(k_final):
                    bm = pred == c2
                    inter = np.sum(a & bm)
                    union = np.sum(a | bm)
                    best = max(best, inter / union if union else 0.0)
                jacc[b, c] = best
        stability = {
            "method": "bootstrap",
            "n_boot": cfg.n_boot,
            "ari_mean": round(float(np.mean(aris)), 4),
            "ari_std": round(float(np.std(aris)), 4),
            "jaccard": [round(float(v), 4) for v in jacc.mean(axis=0)],
        }
    return Clustering(labels, centers, k_final, sil, stability, merged, suppressed)


def _nearest(X: FloatArray, centers: FloatArray) -> IntArray:
    d2 = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    out: IntArray = np.argmin(d2, axis=1).astype(np.int64)
    return out


def enforce_k_min(
    X: FloatArray,
    labels: IntArray,
    centers: FloatArray,
    k_min: int,
    how: Literal["merge", "suppress"],
) -> tuple[IntArray, FloatArray, int, int]:
    """Merge (members to their nearest remaining centre) or suppress (label -1) every segment
    smaller than ``k_min``, smallest first; then renumber segments by size (0 = largest)."""
    labels = labels.copy()
    merged = suppressed = 0
    active = sorted(set(labels.tolist()) - {-1})
    while True:
        sizes = {c: int(np.sum(labels == c)) for c in active}
        small = [c for c in active if sizes[c] < k_min]
        if not small or len(active) <= 1:
            break
        c = min(small, key=lambda x: (sizes[x], x))
        members = labels == c
        active.remove(c)
        if how == "merge":
            rest = np.array(active)
            labels[members] = rest[_nearest(X[members], centers[rest])]
            merged += int(members.sum())
            for a in active:  # centres move with their new members
                centers[a] = X[labels == a].mean(axis=0)
        else:
            labels[members] = -1
            suppressed += int(members.sum())
    if len(active) == 1 and how == "suppress" and np.sum(labels == active[0]) < k_min:
        suppressed += int(np.sum(labels == active[0]))
        labels[labels == active[0]] = -1
        active = []
    order = sorted(active, key=lambda c: (-int(np.sum(labels == c)), c))
    remap = {c: j for j, c in enumerate(order)}
    new = np.array([remap.get(int(v), -1) for v in labels], np.int64)
    new_centers = (
        np.stack([X[new == j].mean(axis=0) for j in range(len(order))])
        if order
        else np.zeros((0, X.shape[1]))
    )
    return new, new_centers, merged, suppressed


# -- descriptions and names -----------------------------------------------------------------------


def _short(kind: str, key: str) -> str:
    if kind == "category":
        if "|" in key:  # a set of genres (MovieLens): keep them all
            return "/".join(p.strip() for p in key.split("|") if p.strip())
        parts = [p.strip() for p in key.split(">") if p.strip()]
        return parts[-1] if parts else key
    if kind == "style" and ": " in key:
        return key.split(": ", 1)[1]
    return key


def lift_table(
    mat: npt.NDArray[np.float32], vocab: list[str], members: npt.NDArray[np.bool_], top: int = 5
) -> list[dict[str, Any]]:
    """Keys over-represented in the segment: lift = mean share inside / mean share overall."""
    if mat.shape[1] == 0 or not members.any():
        return []
    inside = mat[members].mean(axis=0)
    overall = mat.mean(axis=0)
    lift = np.where(overall > 0, inside / np.maximum(overall, 1e-12), 0.0)
    # Rank by lift, but require a real presence in the segment (a tiny share is noise).
    score = np.where(inside >= 0.02, lift, 0.0)
    out = []
    for j in np.argsort(-score, kind="stable")[:top]:
        if score[j] <= 1.1:
            break
        out.append(
            {
                "key": vocab[j],
                "lift": round(float(lift[j]), 3),
                "share": round(float(inside[j]), 4),
            }
        )
    return out


def _band(pz: float) -> str:
    if not np.isfinite(pz):
        return "unknown"
    return "budget" if pz < -0.43 else "premium" if pz > 0.43 else "mid"


def describe(
    t: ProfileTables,
    fm: FeatureMatrix,
    labels: IntArray,
    seg: int,
    value: FloatArray,
    signals: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Facts about one segment and a short name built from them (present signals only)."""
    from shopsight.personas.signals import available

    members = labels == seg
    n_members = int(members.sum())
    over: dict[str, list[dict[str, Any]]] = {}
    for kind, (vocab, mat) in t.dense.items():
        over[kind] = lift_table(mat, vocab, members)
    beh = fm.behaviour[members].mean(axis=0) if n_members else np.zeros(len(fm.behaviour_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        raw_mean = (
            np.nanmean(fm.raw_behaviour[members], axis=0)
            if n_members
            else np.zeros(len(fm.behaviour_names))
        )
    traits = {
        name: {"z": round(float(beh[j]), 3), "mean": _num(raw_mean[j])}
        for j, name in enumerate(fm.behaviour_names)
    }
    labels_of = {n: (hi, lo) for n, hi, lo in BEHAVIOUR_TRAITS}
    if t.info.get("value_basis") == "ratings":  # value is a count of ratings, not money
        labels_of["monetary"] = ("heavy raters", None)
    elif t.info.get("value_basis") == "reviewed_price":  # no spend: prices of what they reviewed
        labels_of["monetary"] = ("reviewers of pricier items", None)
    if not available(signals, "funnel") and available(signals, "ratings"):
        labels_of["activity"] = ("heavy raters", "light raters")  # a rating/review dump
    elif not available(signals, "sessions"):  # no visits to count: activity is events
        labels_of["activity"] = ("very active users", "light users")
    ranked = sorted(
        (
            (abs(float(beh[j])), name, float(beh[j]))
            for j, name in enumerate(fm.behaviour_names)
            if labels_of.get(name, (None, None))[0 if beh[j] > 0 else 1]
        ),
        reverse=True,
    )
    behaviour_words = [
        str(labels_of[name][0 if z > 0 else 1]) for a, name, z in ranked[:2] if a >= 0.5
    ]
    more_words = [str(labels_of[name][0 if z > 0 else 1]) for a, name, z in ranked[2:6] if a >= 0.2]
    pz = _col(t.scalars, "price_z")[members]
    band = _band(float(np.nanmedian(pz))) if np.isfinite(pz).any() else "unknown"

    words: list[str] = []
    if band in ("budget", "premium"):
        words.append(band.capitalize())
    conc = t.info.get("keyword_concentration", {})
    style_words = [o["key"] for o in over.get("keyword", []) if conc.get(o["key"], 1.0) < 0.5][:1]
    if not style_words:
        style_words = [_short("style", o["key"]) for o in over.get("style", [])[:1]]
    words += style_words[:2]
    cats = [_short("category", o["key"]) for o in over.get("category", [])[:2]]
    if any("|" in o["key"] for o in over.get("category", [])[:2]):
        # Genre sets (MovieLens) make long names: name by the single genres instead.
        cats = [_short("style", o["key"]) for o in over.get("style", [])[:2]]
        words = [w for w in words if w not in style_words]
    if not cats and over.get("brand"):  # one category (a gift-card shop): brands tell apart
        cats = [o["key"] for o in over["brand"][:2]]
    if cats:
        words.append(" & ".join(cats))
    noun = (
        ", ".join(behaviour_words)
        if behaviour_words
        else ("shoppers" if available(signals, "funnel") else "users")
    )
    name = " ".join([*words[:3], noun]).strip()
    name = name[:1].upper() + name[1:]
    # Further true facts, in order, to tell apart two segments that would share a name.
    extras = [_short("category", o["key"]) for o in over.get("category", [])[2:4]]
    extras += [_short("style", o["key"]) for o in over.get("style", [])[:3]]
    extras += [o["key"] for o in over.get("keyword", [])[:3]]
    extras += [f"on {o['key'].split(' · ')[0]}" for o in over.get("topic", [])[:2]]
    extras += more_words
    extras = [e for e in dict.fromkeys(extras) if e and e.lower() not in name.lower()]

    facts = []
    if cats:
        facts.append("over-index on " + ", ".join(cats))
    if over.get("brand"):
        facts.append("brands " + ", ".join(o["key"] for o in over["brand"][:3]))
    if over.get("style"):
        facts.append("styles " + ", ".join(_short("style", o["key"]) for o in over["style"][:3]))
    if over.get("keyword"):
        facts.append("keywords " + ", ".join(o["key"] for o in over["keyword"][:4]))
    if over.get("topic"):
        facts.append("reviews about " + "; ".join(o["key"] for o in over["topic"][:2]))
    if band != "unknown":
        facts.append(f"{band} price band")
    if behaviour_words:
        facts.append(" and ".join(behaviour_words))
    return {
        "name": name,
        "description": "; ".join(facts) + "." if facts else "No distinguishing traits.",
        "over_represented": over,
        "price_band": band,
        "traits": traits,
        "behaviour_words": behaviour_words,
        "name_extras": extras,
        "value": _num(float(np.nansum(value[members]))),
    }


def _num(v: float) -> float | None:
    return round(float(v), 4) if np.isfinite(v) else None


def unique_names(names: list[str], extras: list[list[str]] | None = None) -> list[str]:
    """Tell equal names apart by each segment's next distinguishing fact, not by a counter.

    ``extras[i]``: further facts of segment ``i`` in order of strength. Each member of a group
    of equal names gets its first fact that no other member of the group has; a group whose
    facts run out is told apart by letters ("group A", "group B").
    """
    out = list(names)
    more = [list(e) for e in (extras or [[] for _ in names])]
    for _ in range(4):
        groups: dict[str, list[int]] = {}
        for i, nm in enumerate(out):
            groups.setdefault(nm.lower(), []).append(i)
        dups = [g for g in groups.values() if len(g) > 1]
        if not dups:
            return out
        for g in dups:
            for i in g:
                others = {e.lower() for j in g if j != i for e in more[j]}
                pick = next((e for e in more[i] if e.lower() not in others), None)
                pick = pick or (more[i][0] if more[i] else None)
                if pick is not None:
                    more[i].remove(pick)
                    out[i] = f"{out[i]}, {pick}"
    groups = {}
    for i, nm in enumerate(out):
        groups.setdefault(nm.lower(), []).append(i)
    for g in groups.values():
        if len(g) > 1:
            for n_, i in enumerate(g):
                out[i] = f"{out[i]} — group {chr(ord('A') + n_ % 26)}"
    return out


def time_halves_ari(
    halves: tuple[FeatureMatrix, FeatureMatrix],
    users: tuple[list[str], list[str]],
    k: int,
    cfg: SegmentConfig,
) -> dict[str, Any]:
    """Stability over time: cluster the users of each half of the time span on that half's
    behaviour (same k, same vocabulary) and compare the two partitions of the users active in
    both halves with the adjusted Rand index (1: the same groups; 0: chance)."""
    from sklearn.metrics import adjusted_rand_score

    pos_b = {u: i for i, u in enumerate(users[1])}
    common = [(i, pos_b[u]) for i, u in enumerate(users[0]) if u in pos_b]
    if len(common) < max(2 * k, 10) or k < 2:
        return {"method": "time_halves", "users_both_halves": len(common), "ari": None}
    ia = np.array([c[0] for c in common])
    ib = np.array([c[1] for c in common])
    la = _kmeans(halves[0].X.astype(np.float64), k, cfg, cfg.seed).labels_[ia]
    lb = _kmeans(halves[1].X.astype(np.float64), k, cfg, cfg.seed).labels_[ib]
    return {
        "method": "time_halves",
        "users_both_halves": len(common),
        "ari": round(float(adjusted_rand_score(la, lb)), 4),
    }
