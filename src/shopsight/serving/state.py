"""What the server holds in memory: the deployed model and the users' live state.

- :class:`Deployment`: everything one model version needs to answer requests (the artifact,
  the catalogue attributes aligned with the model's item indices for filters, content vectors
  for ``/similar``, an optional ANN index, predictor and personas). It is built completely
  before it is published; a reload builds a new one and swaps a single reference, so a request
  that started on the old version finishes on it.
- :class:`LiveState`: per-user recent history (raw item ids, weights, event keys) fed by
  ``POST /events``. Recommendations for a user with live state fold the history into the model
  (``score_history``) instead of using the trained user vector: new events count at once,
  without retraining. The store stays the source of truth; live state is a bounded cache that
  is re-read from the store for a user on their next event after eviction.
- :func:`ingest_events`: live events go through the same staging rows, Python twin of the
  validation rules, content keys, deduplication and quarantine as file ingest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shopsight.app.explain import IndexedHistory, align_content, index_history, normalise_rows
from shopsight.data.dataset import event_weight
from shopsight.data.store import Store
from shopsight.models.artifact import ModelArtifact, load_artifact
from shopsight.models.base import FloatArray, IntArray, topk

log = logging.getLogger("shopsight.serving")

MAX_HISTORY = 500  # events kept per live user (most recent)


# ------------------------------------------------------------------------------ protocols
class Predictor(Protocol):
    """Funnel probabilities in two steps: ``prepare`` reads the pairs' features from the store
    (the server gives it a connection of its own), ``predict_examples`` scores them."""

    def prepare(self, store: Store, user_ids: Sequence[str], item_ids: Sequence[str]) -> Any: ...

    def predict_examples(self, prepared: Any) -> dict[str, np.ndarray]: ...


class PersonaBook(Protocol):
    def profile(self, user_id: str) -> dict[str, Any] | None: ...

    def segments(self) -> list[dict[str, Any]]: ...


ExplainFn = Callable[..., list[dict[str, Any]]]
ForgetFn = Callable[..., dict[str, Any]]


def load_predictor(model_dir: Path) -> Predictor | None:
    """``<model_dir>/predictor`` when it exists (:func:`shopsight.app.models.load_predictor`)."""
    from shopsight.app.models import load_predictor as load

    return load(model_dir)


def load_personas(model_dir: Path) -> PersonaBook | None:
    """``<model_dir>/personas`` when it exists (:func:`shopsight.app.models.load_personas`)."""
    from shopsight.app.models import load_personas as load

    return load(model_dir)


# ------------------------------------------------------------------------------ catalogue
@dataclass
class Catalogue:
    """Item attributes aligned with the model's item indices (for filters and titles)."""

    categories: list[str | None]
    prices: np.ndarray  # float64, NaN when unknown
    titles: list[str | None]
    _masks: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_store(cls, store: Store, item_ids: np.ndarray) -> Catalogue:
        table = "items_clean" if store.has_table("items_clean") else "items"
        rows = store.conn.execute(
            f"""SELECT item_id, any_value(category), any_value(price), any_value(title)
                FROM "{table}" GROUP BY item_id"""
        ).fetchall()
        by_id = {str(r[0]): r for r in rows}
        n = len(item_ids)
        cats: list[str | None] = [None] * n
        titles: list[str | None] = [None] * n
        prices = np.full(n, np.nan)
        for i, item in enumerate(item_ids.tolist()):
            r = by_id.get(str(item))
            if r is not None:
                cats[i] = r[1]
                prices[i] = np.nan if r[2] is None else float(r[2])
                titles[i] = r[3]
        return cls(categories=cats, prices=prices, titles=titles)

    def category_mask(self, category: str) -> np.ndarray:
        """Items in ``category``: the one rule of :mod:`shopsight.data.categories` (a ``|``
        member, a path prefix or a segment)."""
        key = category.strip().lower()
        with self._lock:
            hit = self._masks.get(key)
            if hit is not None:
                self._masks.move_to_end(key)
                return hit
        from shopsight.data.categories import matches

        mask = np.fromiter(
            (matches(c, category) for c in self.categories), bool, len(self.categories)
        )
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > 256:
                self._masks.popitem(last=False)
        return mask

    def allowed(self, category: str | None, price_max: float | None) -> np.ndarray | None:
        """Boolean mask of items passing the filters; ``None`` when there is no filter."""
        mask: np.ndarray | None = None
        if category:
            mask = self.category_mask(category).copy()
        if price_max is not None:
            # An item with an unknown price cannot be shown to satisfy a price ceiling.
            ok = np.nan_to_num(self.prices, nan=np.inf) <= price_max
            mask = ok if mask is None else mask & ok
        return mask


# ------------------------------------------------------------------------------ content
@dataclass
class ContentIndex:
    """L2-normalised item vectors per modality (text, image, fused) from the feature cache."""

    item_ids: list[str]
    vectors: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    row: dict[str, int]

    @classmethod
    def from_store(cls, store_path: Path, behaviour: dict[str, np.ndarray] | None) -> ContentIndex:
        """Load ``featurize`` output; ``behaviour`` (item id -> vector) joins the fused view."""
        from shopsight.features.fusion import ConcatFusion
        from shopsight.features.pipeline import load_item_features

        feats = load_item_features(store_path)
        mods: dict[str, tuple[np.ndarray, np.ndarray]] = dict(feats.modalities())
        vectors: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for name, (x, m) in mods.items():
            vectors[name] = normalise_rows(np.asarray(x, np.float32))
            masks[name] = np.asarray(m, bool)
        fuse_in = dict(mods)
        if behaviour:
            dim = len(next(iter(behaviour.values())))
            bx = np.zeros((len(feats.item_ids), dim), np.float32)
            bm = np.zeros(len(feats.item_ids), bool)
            for i, item in enumerate(feats.item_ids):
                v = behaviour.get(item)
                if v is not None:
                    bx[i], bm[i] = v, True
            if bm.any():
                fuse_in["behaviour"] = (bx, bm)
        fused = ConcatFusion().fit_transform(fuse_in)
        vectors["fused"] = normalise_rows(fused.vectors)
        masks["fused"] = fused.mask
        row = {item: i for i, item in enumerate(feats.item_ids)}
        return cls(item_ids=feats.item_ids, vectors=vectors, masks=masks, row=row)

    def similar(self, item_id: str, modality: str, k: int) -> list[dict[str, Any]]:
        x, m = self.vectors[modality], self.masks[modality]
        i = self.row[item_id]
        if not m[i]:
            raise LookupError(f"item {item_id!r} has no {modality} vector")
        sims = x @ x[i]
        sims[~m] = -np.inf
        sims[i] = -np.inf
        idx, vals = topk(sims[None, :].astype(np.float32), k)
        return [
            {"item_id": self.item_ids[j], "score": float(s)}
            for j, s in zip(idx[0].tolist(), vals[0].tolist(), strict=True)
            if np.isfinite(s)
        ]

    def aligned(self, item_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Text/image vectors aligned with the model's item indices (zero where missing)."""
        return align_content(self.row, self.vectors, self.masks, item_ids)


# ------------------------------------------------------------------------------ deployment
def model_version(model_dir: Path) -> str:
    """Content hash of the saved model (config + weights): changes with every retraining."""
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        p = model_dir / name
        if p.exists():
            with p.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


@dataclass
class Deployment:
    """One model version with everything needed to serve it; immutable once published."""

    model_dir: Path
    artifact: ModelArtifact
    version: str
    catalogue: Catalogue
    content: ContentIndex | None
    content_error: str | None
    ann: Any | None
    predictor: Predictor | None
    personas: PersonaBook | None
    loaded_at: str

    @property
    def model(self) -> Any:
        return self.artifact.model

    def describe(self) -> dict[str, Any]:
        m = self.artifact.model
        return {
            "model": m.name,
            "version": self.version,
            "model_dir": str(self.model_dir),
            "n_users": int(m.n_users_),
            "n_items": int(m.n_items_),
            "trained_at": self.artifact.info.get("trained_at"),
            "loaded_at": self.loaded_at,
            "ann": self.ann is not None,
            "content_modalities": sorted(self.content.vectors) if self.content else [],
            "predictor": self.predictor is not None,
            "personas": self.personas is not None,
            "privacy": self.artifact.privacy,
        }


def load_deployment(
    model_dir: Path,
    store: Store,
    store_lock: threading.Lock,
    store_path: Path,
    *,
    ann: bool = False,
    predictor_loader: Callable[[Path], Predictor | None] = load_predictor,
    personas_loader: Callable[[Path], PersonaBook | None] = load_personas,
) -> Deployment:
    """Load and check a model folder; raises (FileNotFoundError, ValueError...) on failure."""
    from shopsight.serving.ann import AnnIndex

    model_dir = Path(model_dir)
    art = load_artifact(model_dir)
    model = art.model
    # A smoke test before publishing: a model that cannot score must never be swapped in.
    model.score(np.array([-1], np.int64))
    with store_lock:
        catalogue = Catalogue.from_store(store, art.item_ids)
    content: ContentIndex | None = None
    content_error: str | None = None
    try:
        emb = None
        try:
            e = model.item_embeddings()
            if e is not None:
                emb = {str(t): e[i] for i, t in enumerate(art.item_ids.tolist())}
        except (NotImplementedError, AttributeError):
            emb = None
        content = ContentIndex.from_store(store_path, emb)
    except FileNotFoundError as exc:
        content_error = str(exc)
    index = AnnIndex.build(model) if ann else None
    return Deployment(
        model_dir=model_dir,
        artifact=art,
        version=model_version(model_dir),
        catalogue=catalogue,
        content=content,
        content_error=content_error,
        ann=index,
        predictor=predictor_loader(model_dir),
        personas=personas_loader(model_dir),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# ------------------------------------------------------------------------------ live state
EventKey = tuple[Any, ...]


@dataclass
class LiveUser:
    items: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    keys: set[EventKey] = field(default_factory=set)

    def add(self, key: EventKey, item: str | None, weight: float) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        if item is not None and weight != 0.0:
            self.items.append(item)
            self.weights.append(weight)
            if len(self.items) > MAX_HISTORY:
                del self.items[0], self.weights[0]
        return True


class LiveState:
    """Per-user recent history, bounded (least recently updated users are evicted)."""

    def __init__(self, max_users: int = 100_000) -> None:
        self.max_users = max_users
        self._users: OrderedDict[str, LiveUser] = OrderedDict()
        self._forgotten: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._users)

    def history(self, user_id: str) -> tuple[list[str], list[float]] | None:
        with self._lock:
            u = self._users.get(user_id)
            return None if u is None else (list(u.items), list(u.weights))

    def has(self, user_id: str) -> bool:
        return user_id in self._users

    def is_forgotten(self, user_id: str) -> bool:
        return user_id in self._forgotten

    def replace(self, user_id: str, user: LiveUser) -> None:
        with self._lock:
            self._users[user_id] = user
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def add(self, user_id: str, rows: list[tuple[EventKey, str | None, float]]) -> bool:
        """Append events to a user already held; False when the user is not held."""
        with self._lock:
            u = self._users.get(user_id)
            if u is None:
                return False
            for key, item, w in rows:
                u.add(key, item, w)
            self._users.move_to_end(user_id)
            return True

    def forget(self, user_id: str) -> bool:
        """Drop the user's state; their trained vector is not used again by this process."""
        with self._lock:
            self._forgotten.add(user_id)
            return self._users.pop(user_id, None) is not None


def event_key(
    item: str | None,
    event_type: str,
    ts: datetime,
    session: str | None,
    query: str | None,
    value: float | None,
) -> EventKey:
    return (item, event_type, ts, session, query, value)


def load_user_history(store: Store, user_id: str) -> LiveUser:
    """The user's stored events (raw table: includes earlier live events), oldest first."""
    rows = store.conn.execute(
        """SELECT item_id, event_type, timestamp, session_id, query, value FROM events
           WHERE user_id = ? ORDER BY timestamp, event_key""",
        [user_id],
    ).fetchall()
    user = LiveUser()
    for item, et, ts, session, query, value in rows:
        user.add(event_key(item, et, ts, session, query, value), item, event_weight(et, value))
    return user


# ------------------------------------------------------------------------------ events
def _trim_id(value: object) -> str | None:
    if value is None:
        return None
    s = str(value).strip(" ")
    return s or None


def stage_events(
    events: Sequence[dict[str, Any]], now: datetime
) -> tuple[list[dict[str, object]], list[dict[str, Any]]]:
    """Staging rows (as file ingest builds them) and the rejected rows with field and reason."""
    from shopsight.data.formats import ReadOptions
    from shopsight.data.formats.generic import python_row, resolve_columns
    from shopsight.data.validate import event_reason, normalise_event_type, now_bound

    rows: list[dict[str, object]] = []
    rejected: list[dict[str, Any]] = []
    bound = now_bound()
    for i, ev in enumerate(events):
        obj = {k: v for k, v in ev.items()}
        if obj.get("timestamp") is None:
            obj["timestamp"] = now.isoformat()  # a live event without a time happened now
        text = json.dumps(obj, default=str, ensure_ascii=False)
        cols = resolve_columns(list(obj), ReadOptions())
        row = python_row("events", obj, cols, ReadOptions(), i + 1, text)
        row["raw"] = text  # unclipped: it is the line ingested
        for c in ("user_id", "item_id", "session_id"):
            row[c] = _trim_id(row[c])
        row["event_type"] = normalise_event_type(row["event_type"])  # type: ignore[arg-type]
        reason = event_reason(row, bound)
        if reason is not None:
            rejected.append({"index": i, "field": reason.split(":", 1)[0], "reason": reason})
        rows.append(row)
    return rows, rejected


class EventsRejected(RuntimeError):
    """The store refused a whole batch (not a row): e.g. a pseudonymised store without its key."""


def ingest_events(store: Store, rows: list[dict[str, object]]) -> tuple[int, int, int]:
    """Append events through file ingest itself; returns (stored, duplicates, quarantined).

    The request's records are written as a JSON-lines file and ingested with
    :func:`shopsight.data.ingest.ingest_file`: the same parsing, SQL validation, content keys,
    deduplication, quarantine, pseudonymisation and one transaction, with the file (named
    ``live-events-...jsonl``) as the lineage source. The file is removed afterwards. It waits
    in the store's private spool (``<store>.spool``, 0700; the file 0600), where ``forget``
    looks too, should a kill leave it behind.
    """
    import uuid

    from shopsight.data.formats import ReadOptions
    from shopsight.data.ingest import ingest_file
    from shopsight.data.spool import spool_dir

    folder = spool_dir(store.path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"live-events-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(str(r["raw"]) + "\n" for r in rows))
        report = ingest_file(store, path, format="jsonl", options=ReadOptions(target="events"))
    finally:
        path.unlink(missing_ok=True)
    if report.error is not None:
        raise EventsRejected(report.error)
    return report.stored, report.duplicates, report.quarantined


# ------------------------------------------------------------------------------ scoring
@dataclass
class Ranked:
    items: IntArray
    scores: FloatArray
    source: str  # model | live | fallback | session | ann
    history: tuple[IntArray, FloatArray] | None = None


def _history_indices(
    dep: Deployment, items: Sequence[str], weights: Sequence[float]
) -> tuple[IntArray, FloatArray]:
    idx = np.array([dep.artifact.item_index(i) for i in items], np.int64)
    w = np.asarray(weights, np.float32)
    ok = idx >= 0
    return idx[ok], w[ok]


def _finish(scores: FloatArray, k: int, allowed: np.ndarray | None) -> tuple[IntArray, FloatArray]:
    if allowed is not None:
        scores[~allowed] = -np.inf
    idx, vals = topk(scores[None, :], k)
    ok = np.isfinite(vals[0])
    return idx[0][ok], vals[0][ok]


def rank_user(
    dep: Deployment,
    live: LiveState,
    user_id: str,
    k: int,
    exclude_seen: bool,
    allowed: np.ndarray | None,
) -> Ranked:
    """Top-k for a user id: live fold-in, else trained vector, else cold-start fallback."""
    model = dep.model
    uidx = -1 if live.is_forgotten(user_id) else dep.artifact.user_index(user_id)
    hist = live.history(user_id)
    seen: IntArray | None = None
    if exclude_seen and uidx >= 0:
        ip, ind = model.seen_.indptr, model.seen_.indices
        seen = ind[ip[uidx] : ip[uidx + 1]].astype(np.int64)
    if hist is not None:
        h_idx, h_w = _history_indices(dep, *hist)
        scores = np.array(model.score_history(h_idx, h_w), np.float32, copy=True)
        if exclude_seen:
            scores[h_idx] = -np.inf
            if seen is not None:
                scores[seen] = -np.inf
        idx, vals = _finish(scores, k, allowed)
        return Ranked(idx, vals, "live", (h_idx, h_w))
    if uidx >= 0:
        if dep.ann is not None:
            idx, vals = dep.ann.query(uidx, k, exclude=seen, allowed=allowed)
            return Ranked(idx, vals, "ann")
        scores = model.score(np.array([uidx], np.int64))[0]
        if seen is not None:
            scores[seen] = -np.inf
        idx, vals = _finish(scores, k, allowed)
        return Ranked(idx, vals, "model")
    scores = model.score(np.array([-1], np.int64))[0]
    idx, vals = _finish(scores, k, allowed)
    return Ranked(idx, vals, "fallback")


def rank_session(
    dep: Deployment,
    items: Sequence[str],
    weights: Sequence[float] | None,
    k: int,
    exclude_seen: bool,
    allowed: np.ndarray | None,
) -> Ranked:
    """Top-k for an anonymous session known only by the items it touched."""
    w = [1.0] * len(items) if weights is None else list(weights)
    h_idx, h_w = _history_indices(dep, items, w)
    scores = np.array(dep.model.score_history(h_idx, h_w), np.float32, copy=True)
    if exclude_seen and len(h_idx):
        scores[h_idx] = -np.inf
    idx, vals = _finish(scores, k, allowed)
    return Ranked(idx, vals, "session" if len(h_idx) else "fallback", (h_idx, h_w))


def user_history_for_explain(
    dep: Deployment, live: LiveState, user_id: str, store: Store, store_lock: threading.Lock
) -> IndexedHistory:
    """The history a user's recommendations are explained by: their live history when held,
    else their stored one (:func:`shopsight.data.history.user_history`, as ``shopsight
    explain`` reads it)."""
    from shopsight.data.history import UserHistory, user_history

    hist = live.history(user_id)
    if hist is not None:
        h_idx, h_w = _history_indices(dep, *hist)
        return IndexedHistory(h_idx, h_w)
    if live.is_forgotten(user_id):
        return index_history(dep.artifact, UserHistory())
    with store_lock:
        stored = user_history(store, user_id)
    return index_history(dep.artifact, stored)
