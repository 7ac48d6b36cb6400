"""Robustness: how much noise and attacks hurt a recommender, and how much cleaning limits it.

Three kinds of noise are injected into a store's **raw** ``events`` table (lineage
``source = "noise:<kind>"``), so the cleaning stage sees them exactly as it would see real data:

- :class:`RandomClicks`: accidental clicks of real users on uniformly random items, a
  ``fraction`` of the behavioural events, at random times within each user's active span;
- :class:`BotUsers`: scraper accounts (``fraction`` of the users) clicking uniformly random
  items in fast bursts, one or two seconds apart, as :mod:`shopsight.data.synthetic` plants them;
- :class:`ShillingAttack`: fake accounts (``fraction`` of the users) that each view, click,
  cart and buy one ``target`` item and view and click ``n_filler`` items drawn from the
  ``filler_pool`` most popular ones (a bandwagon attack), in one human-paced session (20-90 s
  between events), so they look like ordinary light shoppers to rate-based bot rules.

:func:`evaluate_robustness` runs scenarios (lists of noise) through three defences: ``none``
(the raw tables), ``clean`` (:func:`shopsight.data.clean.clean_store` with its rate-based bot
rules only) and ``clean+shilling`` (the default cleaning, whose ``shilling`` step runs
:func:`~shopsight.data.shilling.detect_shilling`). Every run starts from a copy of the same base store and
is evaluated on the same hold-out of real users (the last ``holdout`` of each real user's events
in time, as found in the cleaned base store; injected events after a user's cut-off are not
trained on), reporting NDCG@K / Recall@K (:func:`~shopsight.evaluation.ranking.
evaluate_ranking`, training items excluded), their change against the noise-free scenario
with the same defence, and the **target exposure**: the share of evaluated users whose top-K
contains the attacked item.

**Shilling detector** (:func:`detect_shilling`). The cleaning stage's bot rules look at event
*rates* of users with at least 50 events; shilling accounts are few-eventful and human-paced,
so they pass. What gives them away is coordination: many one-visit accounts that all convert
the same item and otherwise copy one recipe. *Thin* accounts have all their behavioural events
within ``max_span_hours``; an item is *pushed* when at least ``min_group`` thin accounts
converted it, they are at least ``min_share`` of its converting users, and that share is at
least ``min_lift`` times the share of thin accounts among all converting users (a shop whose
buyers are mostly one-visit guests flags nothing); flagged are the thin converters of a pushed
item whose profiles (the item left out) have a mean cosine of at least ``min_similarity`` to
the group's other members. It is a documented heuristic, not a proof: fake accounts spread
over several days, or with varied fillers, evade it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

from shopsight.data.clean import CleanConfig, clean_store
from shopsight.data.keys import key_sql
from shopsight.data.shilling import PROFILE_TYPES, ShillingReport, detect_shilling
from shopsight.data.store import Store
from shopsight.errors import InputError

FloatArray = npt.NDArray[np.float64]
Defence = Literal["none", "clean", "clean+shilling"]
DEFENCES: Final[tuple[Defence, ...]] = ("none", "clean", "clean+shilling")


class RobustnessError(InputError):
    """A robustness run cannot be done as asked (one-line message)."""


# -- noise -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomClicks:
    """Clicks of real users on uniform random items: ``fraction`` of the behavioural events."""

    fraction: float = 0.1
    kind: ClassVar[str] = "random_clicks"


@dataclass(frozen=True)
class BotUsers:
    """Scraper accounts, ``fraction`` of the users, clicking random items 1-2 s apart."""

    fraction: float = 0.02
    bursts: tuple[int, int] = (4, 10)
    burst_len: tuple[int, int] = (80, 250)
    kind: ClassVar[str] = "bots"


@dataclass(frozen=True)
class ShillingAttack:
    """Fake accounts (``fraction`` of the users) pushing ``target`` with popular filler items.

    ``target``: an item id; None picks one with :func:`pick_target`.
    """

    fraction: float = 0.05
    target: str | None = None
    n_filler: int = 10
    filler_pool: int = 30
    kind: ClassVar[str] = "shilling"


Noise = RandomClicks | BotUsers | ShillingAttack


@dataclass
class NoiseReport:
    kind: str
    rows_added: int
    fake_users: list[str]
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows_added": self.rows_added,
            "fake_users": len(self.fake_users),
            "target": self.target,
        }


def _behaviour_events(store: Store, table: str = "events") -> pa.Table:
    types = ", ".join(f"'{t}'" for t in PROFILE_TYPES)
    return store.arrow(
        f'SELECT user_id, item_id, timestamp FROM "{table}" '
        f"WHERE item_id IS NOT NULL AND NOT ts_ordinal AND event_type IN ({types}) "
        # a fixed row order: the injected noise depends only on the data and the seed
        "ORDER BY user_id, timestamp, item_id, event_type"
    )


def pick_target(store: Store, seed: int = 0, table: str = "events") -> str:
    """A plausible attack target: an item between the 10th and 40th popularity percentile."""
    rows = store.conn.execute(
        f'SELECT i.item_id, count(DISTINCT e.user_id) AS n FROM items i LEFT JOIN "{table}" e '
        "USING (item_id) GROUP BY i.item_id ORDER BY n, i.item_id"
    ).fetchall()
    if not rows:
        raise RobustnessError(f"{store.path}: no items to attack")
    lo, hi = int(0.1 * len(rows)), max(int(0.4 * len(rows)), int(0.1 * len(rows)) + 1)
    rng = np.random.default_rng(seed)
    return str(rows[int(rng.integers(lo, min(hi, len(rows))))][0])


def _append_events(store: Store, rows: Mapping[str, Sequence[Any]], source: str) -> int:
    n = len(rows["user_id"])
    if not n:
        return 0
    table = pa.table(
        {
            "user_id": pa.array(rows["user_id"], pa.string()),
            "item_id": pa.array(rows["item_id"], pa.string()),
            "event_type": pa.array(rows["event_type"], pa.string()),
            "timestamp": pa.array(rows["timestamp"], pa.timestamp("us")),
            "session_id": pa.array(rows["session_id"], pa.string()),
            "query": pa.nulls(n, pa.string()),
            "value": pa.nulls(n, pa.float64()),
            "line": pa.array(np.arange(1, n + 1), pa.int64()),
        }
    )
    conn = store.conn
    conn.register("_noise_rows", table)
    try:
        with store.transaction():
            conn.execute(
                f"""INSERT INTO events (event_key, user_id, item_id, event_type, timestamp,
                        ts_ordinal, session_id, query, value, source, line)
                    SELECT {key_sql("events")}, user_id, item_id, event_type, timestamp, false,
                           session_id, query, value, ?, line FROM _noise_rows""",
                [source],
            )
    finally:
        conn.unregister("_noise_rows")
    return n


def inject_noise(store: Store, noise: Noise, *, seed: int = 0) -> NoiseReport:
    """Append the noise's events to the raw ``events`` table (one transaction)."""
    rng = np.random.default_rng(seed)
    ev = _behaviour_events(store)
    if ev.num_rows == 0:
        raise RobustnessError(f"{store.path}: no timed behavioural events to add noise to")
    users = np.asarray(ev.column("user_id").to_pylist(), dtype=object)
    ts = ev.column("timestamp").cast(pa.int64()).to_numpy()
    t0, t1 = int(ts.min()), int(ts.max())
    item_ids = np.asarray(
        store.arrow("SELECT item_id FROM items ORDER BY item_id").column(0).to_pylist(), object
    )
    if not len(item_ids):
        item_ids = np.unique(np.asarray(ev.column("item_id").to_pylist(), object))
    n_users = len(np.unique(users))
    rows: dict[str, list[Any]] = {
        k: [] for k in ("user_id", "item_id", "event_type", "timestamp", "session_id")
    }
    fake: list[str] = []
    target: str | None = None
    second = 1_000_000

    if isinstance(noise, RandomClicks):
        if not noise.fraction > 0:
            raise RobustnessError(f"RandomClicks.fraction={noise.fraction}: expected > 0")
        n = round(noise.fraction * len(users))
        pick = rng.integers(0, len(users), n)  # users in proportion to their activity
        uniq, inv = np.unique(users, return_inverse=True)
        first = np.full(len(uniq), np.iinfo(np.int64).max)
        last = np.full(len(uniq), np.iinfo(np.int64).min)
        np.minimum.at(first, inv, ts)
        np.maximum.at(last, inv, ts)
        u = inv[pick]
        when = first[u] + (rng.random(n) * (last[u] - first[u] + 1)).astype(np.int64)
        rows["user_id"] = uniq[u].tolist()
        rows["item_id"] = item_ids[rng.integers(0, len(item_ids), n)].tolist()
        rows["event_type"] = ["click"] * n
        rows["timestamp"] = when.tolist()
        rows["session_id"] = [None] * n
    elif isinstance(noise, BotUsers):
        n_bots = max(1, round(noise.fraction * n_users))
        for b in range(n_bots):
            uid = f"noise-bot-{seed}-{b:05d}"
            fake.append(uid)
            for burst in range(int(rng.integers(noise.bursts[0], noise.bursts[1] + 1))):
                length = int(rng.integers(noise.burst_len[0], noise.burst_len[1] + 1))
                start = int(rng.integers(t0, max(t1 - length * 2 * second, t0 + 1)))
                gaps = rng.integers(1, 3, length) * second
                gaps[0] = 0
                rows["user_id"] += [uid] * length
                rows["item_id"] += item_ids[rng.integers(0, len(item_ids), length)].tolist()
                rows["event_type"] += np.where(rng.random(length) < 0.85, "view", "click").tolist()
                rows["timestamp"] += (start + np.cumsum(gaps)).tolist()
                rows["session_id"] += [f"{uid}-s{burst}"] * length
    elif isinstance(noise, ShillingAttack):
        target = noise.target if noise.target is not None else pick_target(store, seed)
        if target not in set(item_ids.tolist()):
            raise RobustnessError(f"ShillingAttack.target: unknown item {target!r}")
        pop_ids, pop_counts = np.unique(
            np.asarray(ev.column("item_id").to_pylist(), object), return_counts=True
        )
        pool = [i for i in pop_ids[np.argsort(-pop_counts, kind="stable")] if i != target]
        pool = pool[: noise.filler_pool]
        n_fake = max(1, round(noise.fraction * n_users))
        for f in range(n_fake):
            uid = f"noise-shill-{seed}-{f:05d}"
            fake.append(uid)
            fillers = rng.choice(len(pool), min(noise.n_filler, len(pool)), replace=False)
            visit = [pool[int(j)] for j in fillers] + [target]
            order = rng.permutation(len(visit))
            types_of = {target: ["view", "click", "add_to_cart", "purchase"]}
            t = int(rng.integers(t0, max(t1 - 3600 * second, t0 + 1)))
            for j in order.tolist():
                item = visit[j]
                for etype in types_of.get(item, ["view", "click"]):
                    t += int(rng.integers(20, 91)) * second
                    rows["user_id"].append(uid)
                    rows["item_id"].append(item)
                    rows["event_type"].append(etype)
                    rows["timestamp"].append(t)
                    rows["session_id"].append(f"{uid}-s0")
    else:
        raise RobustnessError(f"unknown noise {noise!r}")
    added = _append_events(store, rows, f"noise:{noise.kind}")
    return NoiseReport(noise.kind, added, fake, target)


# -- evaluation under noise ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    noise: tuple[Noise, ...] = ()


DEFAULT_SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("clean data"),
    Scenario("+random clicks", (RandomClicks(0.1),)),
    Scenario("+bots", (BotUsers(0.02),)),
    Scenario("+shilling", (ShillingAttack(0.05),)),
)


@dataclass
class Holdout:
    """Real users' test items and training cut-off (microseconds), by raw id."""

    cutoff: dict[str, int]
    items: dict[str, list[str]]


def copy_store(src: str | Path, dst: str | Path) -> Path:
    """Copy a closed DuckDB store file (and its WAL, if any)."""
    s, d = Path(src), Path(dst)
    d.parent.mkdir(parents=True, exist_ok=True)
    for extra in (d, d.with_name(d.name + ".wal")):
        extra.unlink(missing_ok=True)
    shutil.copyfile(s, d)
    wal = s.with_name(s.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, d.with_name(d.name + ".wal"))
    return d


def make_holdout(base_store: str | Path, workdir: Path, holdout: float = 0.2) -> Holdout:
    """The last ``holdout`` of each real user's events (in the cleaned base store) are test."""
    from shopsight.data.dataset import Dataset

    path = copy_store(base_store, workdir / "_holdout.duckdb")
    with Store(path) as store:
        clean_store(store)
        ds = Dataset.from_store(store, clean=True)
    path.unlink(missing_ok=True)
    cutoff: dict[str, int] = {}
    items: dict[str, list[str]] = {}
    indptr = ds.seq_indptr
    for u in range(ds.n_users):
        a, b = int(indptr[u]), int(indptr[u + 1])
        n = b - a
        if n < 5:
            continue
        c = a + int(np.ceil((1 - holdout) * n))
        if c >= b:
            continue
        before = set(ds.item[a:c].tolist())
        test = sorted(set(ds.item[c:b].tolist()) - before)
        if not test:
            continue
        uid = str(ds.user_ids[u])
        cutoff[uid] = int(ds.timestamp[c])
        items[uid] = [str(ds.item_ids[i]) for i in test]
    if not items:
        raise RobustnessError(f"{base_store}: no user has enough events for a hold-out")
    return Holdout(cutoff, items)


def _run_one(
    store_path: Path,
    defence: Defence,
    holdout: Holdout,
    model_name: str,
    model_params: Mapping[str, Any],
    target: str | None,
    k: int,
    seed: int,
) -> dict[str, Any]:
    from shopsight.data.dataset import Dataset
    from shopsight.evaluation.ranking import evaluate_ranking
    from shopsight.models.registry import create_model

    removed: dict[str, Any] = {}
    with Store(store_path) as store:
        if defence != "none":
            # "clean": the rate-based bot rules only; "clean+shilling": the default cleaning,
            # whose shilling step runs the coordinated-account detector.
            rep = clean_store(store, CleanConfig(shilling=defence == "clean+shilling"))
            removed["bots_removed"] = rep.removed_by_step().get("bots", 0)
        if defence == "clean+shilling":
            removed["shilling_users_removed"] = sum(
                int(s.detail.get("flagged", 0))
                for s in rep.steps
                if s.step == "shilling" and s.table == "events"
            )
        ds = Dataset.from_store(store, clean=defence != "none")
    uids = [str(u) for u in ds.user_ids.tolist()]
    big = np.iinfo(np.int64).max
    cut_by_user = np.array([holdout.cutoff.get(u, big) for u in uids], np.int64)
    train = ds.subset(np.flatnonzero(ds.timestamp < cut_by_user[ds.user]))
    index = ds.item_index
    rows, cols = [], []
    for u, uid in enumerate(uids):
        for it in holdout.items.get(uid, ()):
            if it in index:
                rows.append(u)
                cols.append(index[it])
    truth = sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(ds.n_users, ds.n_items), dtype=np.float64
    )
    users = np.unique(np.asarray(rows, np.int64))
    model = create_model(model_name, **dict(model_params)).fit(train)
    res = evaluate_ranking(
        model, truth, exclude=train.implicit, users=users, ks=(k,), metrics=("ndcg", "recall")
    )
    exposure = None
    if target is not None and target in index:
        top, _ = model.recommend(users, k)
        exposure = float((top == index[target]).any(axis=1).mean())
    return {
        f"ndcg@{k}": float(res.metrics[f"ndcg@{k}"]),
        f"recall@{k}": float(res.metrics[f"recall@{k}"]),
        "target_exposure": exposure,
        "users_evaluated": len(users),
        **removed,
    }


@dataclass
class RobustnessResult:
    rows: list[dict[str, Any]]
    target: str | None
    model: str
    k: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A markdown table: one row per scenario, NDCG change and exposure per defence."""
        k = self.k
        head = "| scenario | defence | NDCG@{k} | change | Recall@{k} | change | target exposure |"
        lines = [head.format(k=k), "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            exp = "-" if r["target_exposure"] is None else f"{r['target_exposure']:.1%}"
            lines.append(
                f"| {r['scenario']} | {r['defence']} | {r[f'ndcg@{k}']:.4f} | "
                f"{r[f'ndcg@{k}_change']:+.1%} | {r[f'recall@{k}']:.4f} | "
                f"{r[f'recall@{k}_change']:+.1%} | {exp} |"
            )
        return "\n".join(lines)


def evaluate_robustness(
    base_store: str | Path,
    *,
    workdir: str | Path,
    scenarios: Sequence[Scenario] = DEFAULT_SCENARIOS,
    defences: Sequence[Defence] = DEFENCES,
    model: str = "als",
    model_params: Mapping[str, Any] | None = None,
    holdout: float = 0.2,
    k: int = 10,
    seed: int = 0,
) -> RobustnessResult:
    """Every scenario x defence from a fresh copy of ``base_store`` (module docstring).

    Changes are relative to the first scenario (the noise-free one, by convention) under the
    same defence. The shilling target (fixed once from the base store when a scenario does not
    name one) is the item whose exposure every row reports.
    """
    t_start = time.perf_counter()
    base = Path(base_store)
    Store(base, read_only=True).close()  # a missing base store fails here, in one line
    bad = [d for d in defences if d not in DEFENCES]
    if bad:
        raise RobustnessError(f"defences: unknown {bad} (expected some of {list(DEFENCES)})")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    hold = make_holdout(base, work, holdout)
    target: str | None = None
    for sc in scenarios:
        for nz in sc.noise:
            if isinstance(nz, ShillingAttack):
                target = nz.target
    if target is None:
        with Store(base, read_only=True) as store:
            target = pick_target(store, seed)
    rows: list[dict[str, Any]] = []
    baseline: dict[str, dict[str, Any]] = {}
    for s_i, sc in enumerate(scenarios):
        for defence in defences:
            path = copy_store(base, work / f"run_{s_i}_{defence.replace('+', '_')}.duckdb")
            added: list[dict[str, Any]] = []
            with Store(path) as store:
                for n_i, nz in enumerate(sc.noise):
                    if isinstance(nz, ShillingAttack) and nz.target is None:
                        nz = ShillingAttack(nz.fraction, target, nz.n_filler, nz.filler_pool)
                    added.append(inject_noise(store, nz, seed=seed + 7919 * n_i).to_dict())
            row = {
                "scenario": sc.name,
                "defence": defence,
                "noise": added,
                **_run_one(path, defence, hold, model, model_params or {}, target, k, seed),
            }
            path.unlink(missing_ok=True)
            base_row = baseline.setdefault(defence, row)
            for m in (f"ndcg@{k}", f"recall@{k}"):
                ref = base_row[m]
                row[f"{m}_change"] = (row[m] - ref) / ref if ref else 0.0
            rows.append(row)
    return RobustnessResult(rows, target, model, k, time.perf_counter() - t_start)


__all__ = [
    "DEFAULT_SCENARIOS",
    "DEFENCES",
    "BotUsers",
    "Holdout",
    "NoiseReport",
    "RandomClicks",
    "RobustnessError",
    "RobustnessResult",
    "Scenario",
    "ShillingAttack",
    "ShillingReport",
    "copy_store",
    "detect_shilling",
    "evaluate_robustness",
    "inject_noise",
    "make_holdout",
    "pick_target",
]
