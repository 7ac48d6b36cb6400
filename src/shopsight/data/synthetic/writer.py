"""Writing a shop: the catalogue once, then users, reviews and events block by block.

Each block's rows are built in memory, written, and dropped, so memory stays bounded by the
catalogue and one block. Events are in time order within a block (a one-block shop, the
default size, is one time-ordered file); later blocks follow. Ground truth is written last, its
per-user part streamed from a side file.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._util import _events_table, _ids, _iso, _iso_utc_array, _take, _write_events_table
from .config import ShopConfig, ShopFiles
from .generator import _Catalog, _ShopGenerator, _Users
from .world import (
    _BRAND_TIERS,
    _ET,
    _PURCHASE,
    _RATE,
    AGE_BANDS,
    EVENTS_HEADER,
    GENDERS,
    ITEMS_HEADER,
    MALFORMED_KINDS,
    REGIONS,
    USERS_HEADER,
    IntArray,
)


def generate_shop(
    out_dir: str | Path,
    config: ShopConfig | None = None,
    *,
    user_range: tuple[int, int] | None = None,
) -> ShopFiles:
    """Generate a synthetic shop into ``out_dir`` (created if needed) and return its files.

    Writes ``events.csv``, ``items.csv``, ``reviews.jsonl``, ``users.csv``, ``images/*.png``
    (unless ``config.images`` is False) and ``ground_truth.json``. Same config, same bytes.

    ``user_range=(start, end)`` writes only those users (whole blocks of
    ``config.block_users``), as ``events-START-END.csv``, ``users-START-END.csv``,
    ``reviews-START-END.jsonl`` and ``ground_truth-START-END.json`` (its users, and noise lines of
    its own events file), beside the full catalogue: one part per worker, with the same rows a
    full run writes for those users. The parts' files ingest together like one shop.
    """
    cfg = config or ShopConfig()
    blocks = cfg.blocks_for(user_range)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = "" if user_range is None else f"-{user_range[0]}-{user_range[1]}"
    files = ShopFiles(
        root=out,
        events=out / f"events{tag}.csv",
        items=out / "items.csv",
        reviews=out / f"reviews{tag}.jsonl",
        users=out / f"users{tag}.csv",
        images=out / "images" if cfg.images else None,
        ground_truth=out / f"ground_truth{tag}.json",
    )
    gen = _ShopGenerator(cfg)
    _atomic_write(files.items, lambda fh: _write_items(fh, cfg, gen.cat, *gen.item_texts()))

    truth = _Truth(len(gen.segments))
    users_part = out / f".ground_truth{tag}.users.tmp"
    with (
        files.users.open("w", encoding="utf-8", newline="") as users_fh,
        files.reviews.open("w", encoding="utf-8", newline="\n") as reviews_fh,
        files.events.open("wb") as events_fh,
        users_part.open("w", encoding="utf-8", newline="\n") as gt_users_fh,
    ):
        csv.writer(users_fh, lineterminator="\n").writerow(USERS_HEADER)
        events_fh.write((",".join(EVENTS_HEADER) + "\n").encode())
        for block in blocks:
            rngs = gen.block_rngs(block)
            users = gen.users(block, rngs["users"])
            beh = gen.behaviour(users, rngs)
            reviews = gen.reviews(users, beh, rngs["reviews"])
            bots = gen.bots(users, rngs["bots"])
            _write_users(users_fh, users)
            _write_reviews(reviews_fh, gen.cat, users, reviews)
            sess_fmt = _session_ids(cfg, block)
            log = _write_events(events_fh, gen, users, beh, reviews, bots, rngs, sess_fmt, truth)
            truth.add_block(gen, users, log, len(reviews), gt_users_fh)
            del users, beh, reviews, bots
    if files.images is not None:
        gen.images(files.images)
    try:
        with files.ground_truth.open("w", encoding="utf-8", newline="\n") as fh:
            _write_ground_truth(fh, gen, truth, users_part, user_range)
    finally:
        users_part.unlink(missing_ok=True)
    return files


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file and rename, so parallel workers never see a torn file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        write(fh)
    os.replace(tmp, path)


def _session_ids(cfg: ShopConfig, block: int) -> Any:
    """Session id strings for block-local numbers: global-unique without coordination."""
    if cfg.n_blocks == 1:
        return lambda n: _ids("s", max(1, n))
    return lambda n: [f"s{block:03d}-{k:06d}" for k in range(n)]


def _write_items(
    fh: IO[str],
    cfg: ShopConfig,
    cat: _Catalog,
    titles: list[str],
    descs: list[str],
    attrs: list[str],
) -> None:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(ITEMS_HEADER)
    for i, item_id in enumerate(cat.item_ids):
        w.writerow(
            [
                item_id,
                titles[i],
                descs[i],
                cat.brand_names[cat.brand[i]],
                cat.categories[cat.cat[i]].path,
                f"{cat.listed_price[i]:.2f}",
                cfg.currency,
                f"images/{item_id}.png",
                attrs[i],
            ]
        )


def _write_users(fh: IO[str], users: _Users) -> None:
    w = csv.writer(fh, lineterminator="\n")
    signup = _iso_utc_array(users.signup).to_pylist()
    for u, user_id in enumerate(users.user_ids):
        w.writerow(
            [
                user_id,
                AGE_BANDS[users.age[u]],
                GENDERS[users.gender[u]],
                REGIONS[users.region[u]],
                signup[u][:10],
            ]
        )


def _write_reviews(
    fh: IO[str], cat: _Catalog, users: _Users, reviews: list[dict[str, Any]]
) -> None:
    """One JSON object per line, keys in :data:`REVIEW_KEYS` order."""
    for r in reviews:
        obj = {
            "user_id": users.user_ids[r["user_idx"]],
            "item_id": cat.item_ids[r["item_idx"]],
            "rating": r["rating"],
            "summary": r["summary"],
            "text": r["text"],
            "timestamp": _iso(r["ts"]),
            "helpful_votes": r["helpful_votes"],
            "verified": r["verified"],
        }
        fh.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _value_strings(value: np.ndarray, etype: IntArray) -> pa.Array:
    """Purchase values with two decimals, ratings as integers, empty (null) otherwise."""
    pur = etype == _PURCHASE
    has = ~np.isnan(value)
    cents = np.where(pur & has, np.round(np.nan_to_num(value) * 100), 0).astype(np.int64)
    money = pc.binary_join_element_wise(
        pa.array(cents // 100).cast(pa.string()),
        pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, "0"),
        ".",
    )
    whole = pa.array(np.nan_to_num(value).astype(np.int64)).cast(pa.string())
    out = pc.if_else(pa.array(pur), money, whole)
    return pc.if_else(pa.array(has), out, pa.scalar(None, pa.string()))


def _write_events(
    fh: IO[bytes],
    gen: _ShopGenerator,
    users: _Users,
    beh: dict[str, Any],
    reviews: list[dict[str, Any]],
    bots: dict[str, IntArray],
    rngs: dict[str, np.random.Generator],
    sess_fmt: Any,
    truth: _Truth,
) -> dict[str, Any]:
    """One block's human, review (``rate``) and bot events in time order, plus planted
    duplicates and malformed rows; returns where the noise went and what was written."""
    cfg, cat = gen.cfg, gen.cat
    ev = beh["events"]
    n_rate = len(reviews)
    n_bot = len(bots["user"])
    user = np.concatenate(
        [ev["user"], np.array([r["user_idx"] for r in reviews], dtype=np.int64), bots["user"]]
    )
    item = np.concatenate(
        [ev["item"], np.array([r["item_idx"] for r in reviews], dtype=np.int64), bots["item"]]
    )
    etype = np.concatenate([ev["type"], np.full(n_rate, _RATE, dtype=np.int64), bots["type"]])
    ts = np.concatenate(
        [ev["ts"], np.array([r["ts"] for r in reviews], dtype=np.int64), bots["ts"]]
    )
    n_human_sess = beh["n_sessions"]
    session = np.concatenate(
        [ev["session"], np.full(n_rate, -1, dtype=np.int64), n_human_sess + bots["burst"]]
    )
    order_key = np.concatenate(
        [ev["order"], np.zeros(n_rate, dtype=np.int64), np.zeros(n_bot, dtype=np.int64)]
    )
    query = np.concatenate([ev["query"], np.full(n_rate + n_bot, -1, dtype=np.int64)])
    value_num = np.concatenate(
        [
            ev["value"],
            np.array([r["rating"] for r in reviews], dtype=np.float64),
            np.full(n_bot, np.nan),
        ]
    )
    del ev
    # Export order: by time; within a second by session and funnel order.
    srt = np.lexsort((order_key, session, user, ts))
    user, item, etype, ts = user[srt], item[srt], etype[srt], ts[srt]
    session, query, value_num = session[srt], query[srt], value_num[srt]
    del srt, order_key
    n_valid = len(user)
    # Number sessions (human and bot alike) by first appearance in the block.
    has_sess = session >= 0
    uniq, first_at = np.unique(session[has_sess], return_index=True)
    renum = np.empty(len(uniq), dtype=np.int64)
    renum[np.argsort(first_at, kind="stable")] = np.arange(len(uniq))
    session[has_sess] = renum[np.searchsorted(uniq, session[has_sess])]
    sess_ids = sess_fmt(len(uniq))
    value_str = _value_strings(value_num, etype)
    for q in beh["queries"]:
        if any(ch in q for ch in ',"\n\r'):
            raise AssertionError(f"query {q!r} would need CSV quoting")

    nrng = rngs["noise"]
    # Exact duplicates: copies of random valid rows placed at a random later position.
    n_dup = round(cfg.duplicate_fraction * n_valid)
    dup_src = (
        np.sort(nrng.choice(n_valid, size=n_dup, replace=False)) if n_dup else np.zeros(0, np.int64)
    )
    dup_pos = dup_src + nrng.random(n_dup) * (n_valid - dup_src)
    # Malformed rows: corrupted copies of valid rows (one defect each), at random positions.
    n_bad = round(cfg.malformed_fraction * n_valid)
    kinds = [MALFORMED_KINDS[k % len(MALFORMED_KINDS)] for k in range(n_bad)]
    purchases = np.flatnonzero(etype == _PURCHASE)
    item_rows = np.flatnonzero(item >= 0)
    bad_rows: list[list[str | None]] = []
    used_src: set[int] = set()
    for kind in kinds:
        pool = purchases if kind == "negative_value" and len(purchases) else item_rows
        while True:
            src = int(pool[nrng.integers(len(pool))])
            if src not in used_src:
                used_src.add(src)
                break
        row: list[str | None] = [
            users.user_ids[user[src]],
            cat.item_ids[item[src]] if item[src] >= 0 else None,
            _ET[etype[src]],
            _iso(int(ts[src])),
            sess_ids[session[src]] if session[src] >= 0 else None,
            beh["queries"][query[src]] if query[src] >= 0 else None,
            value_str[src].as_py(),
        ]
        if kind == "bad_timestamp":
            row[3] = ("2025-02-30T25:61:00Z", "not-a-timestamp", "13/45/2025 99:99")[
                int(nrng.integers(3))
            ]
        elif kind == "unknown_event_type":
            row[2] = "teleport"
        elif kind == "negative_value":
            row[2], row[6] = "purchase", f"-{cat.true_price[item[src]]:.2f}"
        elif kind == "missing_user_id":
            row[0] = None
        elif kind == "missing_item_id":
            row[1], row[2] = None, "view"
        bad_rows.append(row)
    bad_pos = nrng.random(n_bad) * n_valid

    # Final order: valid rows at integer positions, extras slotted in after their position.
    pos = np.concatenate([np.arange(n_valid, dtype=np.float64), dup_pos, bad_pos])
    tie = np.concatenate([np.zeros(n_valid), np.ones(n_dup), np.ones(n_bad)])
    src_index = np.concatenate([np.arange(n_valid), dup_src, n_valid + np.arange(n_bad)])
    file_order = np.lexsort((np.arange(len(pos)), tie, pos))
    final = src_index[file_order]
    del pos, tie

    by_type = {
        name: int(np.sum(etype == code)) for code, name in enumerate(_ET) if np.any(etype == code)
    }
    good = _events_table(
        _take(users.user_ids, user),
        _take(cat.item_ids, item),
        _take(list(_ET), etype),
        _iso_utc_array(ts),
        _take(sess_ids, session),
        _take(beh["queries"], query),
        value_str,
    )
    del user, item, etype, ts, session, query, value_num, value_str
    bad = pa.table(
        [pa.array([r[k] for r in bad_rows], pa.string()) for k in range(len(EVENTS_HEADER))],
        names=list(EVENTS_HEADER),
    )
    table = pa.concat_tables([good, bad]).take(pa.array(final))
    del good
    _write_events_table(fh, table)
    del table

    # Position in the file of each appended row (rows n_valid.. of the pre-order list).
    where = np.empty(len(final), dtype=np.int64)
    where[file_order] = np.arange(len(final))
    line0 = truth.rows + 2  # the header is line 1
    dup_lines = (where[n_valid : n_valid + n_dup] + line0).tolist()
    bad_lines = (where[n_valid + n_dup :] + line0).tolist()
    return {
        "rows": len(final),
        "valid": n_valid,
        "n_dup": n_dup,
        "dup_lines": sorted(dup_lines),
        "malformed": [
            {"line": ln, "kind": k} for ln, k in sorted(zip(bad_lines, kinds, strict=True))
        ],
        "by_type": by_type,
        "sessions": n_human_sess,
        "bot_events": n_bot,
        "bot_sessions": len(np.unique(bots["burst"])),
    }


class _Truth:
    """What the blocks planted, summed as they are written."""

    def __init__(self, n_segments: int) -> None:
        self.segment_users = np.zeros(n_segments, dtype=np.int64)
        self.bot_ids: list[str] = []
        self.rows = 0
        self.valid = 0
        self.n_dup = 0
        self.dup_lines: list[int] = []
        self.malformed: list[dict[str, Any]] = []
        self.by_type: Counter[str] = Counter()
        self.sessions = 0
        self.bot_events = 0
        self.bot_sessions = 0
        self.reviews = 0
        self.users = 0
        self.first_user = True

    def add_block(
        self,
        gen: _ShopGenerator,
        users: _Users,
        log: dict[str, Any],
        n_reviews: int,
        users_fh: IO[str],
    ) -> None:
        seg = users.segment
        self.segment_users += np.bincount(seg[seg >= 0], minlength=len(self.segment_users))
        self.bot_ids.extend(users.user_ids[u] for u in np.flatnonzero(users.bot))
        self.rows += log["rows"]
        self.valid += log["valid"]
        self.n_dup += log["n_dup"]
        self.dup_lines.extend(log["dup_lines"])
        self.malformed.extend(log["malformed"])
        self.by_type.update(log["by_type"])
        self.sessions += log["sessions"]
        self.bot_events += log["bot_events"]
        self.bot_sessions += log["bot_sessions"]
        self.reviews += n_reviews
        self.users += len(users.user_ids)
        names = gen.cat.brand_names
        for u, uid in enumerate(users.user_ids):
            entry = {
                "segment": int(seg[u]),
                "segment_name": "bot" if users.bot[u] else gen.segments[seg[u]].name,
                "bot": bool(users.bot[u]),
                "favourite_brands": [names[b] for b in users.fav_brands[u] if b >= 0],
            }
            sep = "" if self.first_user else ",\n"
            self.first_user = False
            users_fh.write(f"{sep}  {json.dumps(uid)}: {json.dumps(entry, ensure_ascii=False)}")


def _write_ground_truth(
    fh: IO[str],
    gen: _ShopGenerator,
    truth: _Truth,
    users_part: Path,
    user_range: tuple[int, int] | None,
) -> None:
    cfg, cat = gen.cfg, gen.cat
    users_range = [0, cfg.n_users] if user_range is None else list(user_range)
    head: dict[str, Any] = {
        "version": 2,
        "config": cfg.to_dict(),
        "users_range": users_range,
        "period": {"start": _iso(gen.start), "end": _iso(gen.end)},
        "segments": [
            {
                "index": k,
                "name": s.name,
                "description": s.description,
                "n_users": int(truth.segment_users[k]),
                "favourite_styles": [cat.styles[j].name for j in gen.seg_styles[k]],
                "favourite_categories": [cat.categories[j].path for j in gen.seg_cats[k]],
                "traits": {
                    "price_z": s.price_z,
                    "price_tolerance": s.price_tolerance,
                    "brand_loyalty": s.brand_loyalty,
                    "sessions_per_week": s.sessions_per_week,
                    "views_per_session": s.views_per_session,
                    "conversion": s.conversion,
                    "search_rate": s.search_rate,
                    "favorite_rate": s.favorite_rate,
                    "share_rate": s.share_rate,
                    "review_rate": s.review_rate,
                    "peak_hours": list(s.peak_hours),
                    "weekend_factor": s.weekend_factor,
                    "focus": s.focus,
                },
            }
            for k, s in enumerate(gen.segments)
        ],
        "styles": [
            {
                "index": k,
                "name": s.name,
                "palette": [c for c, _ in s.palette],
                "shape": s.shape,
                "pattern": s.pattern,
                "words": list(s.words),
            }
            for k, s in enumerate(cat.styles)
        ],
        "categories": [c.path for c in cat.categories],
        "brands": {
            name: {
                "category": cat.categories[cat.brand_category[b]].path,
                "tier": _BRAND_TIERS[cat.brand_tier[b]][0],
                "signature_style": cat.styles[cat.brand_style[b]].name,
            }
            for b, name in enumerate(cat.brand_names)
        },
    }
    tail: dict[str, Any] = {
        "bot_user_ids": truth.bot_ids,
        "noise": {
            "n_bot_users": len(truth.bot_ids),
            "n_bot_events": truth.bot_events,
            "n_duplicate_rows": truth.n_dup,
            "duplicate_lines": truth.dup_lines,
            "n_malformed_rows": len(truth.malformed),
            "malformed": truth.malformed,
            "n_outlier_prices": len(cat.outliers),
            "outlier_prices": {
                cat.item_ids[i]: {
                    "kind": kind,
                    "listed": float(cat.listed_price[i]),
                    "true": float(cat.true_price[i]),
                }
                for i, kind in sorted(cat.outliers.items())
            },
        },
        "counts": {
            "rows": truth.rows,
            "valid_events": truth.valid,
            "events_by_type": {name: truth.by_type[name] for name in _ET if truth.by_type[name]},
            "sessions": truth.sessions,
            "bot_sessions": truth.bot_sessions,
            "reviews": truth.reviews,
            "users": truth.users,
            "items": cfg.n_items,
        },
        "line_numbers": "1-based lines of the events file; the header is line 1",
    }
    fh.write("{\n")
    for key, val in head.items():
        fh.write(f" {json.dumps(key)}: {json.dumps(val, ensure_ascii=False)},\n")
    fh.write(' "users": {\n')
    with users_part.open(encoding="utf-8") as part:
        shutil.copyfileobj(part, fh)
    fh.write('\n },\n "items": {\n')
    for i, iid in enumerate(cat.item_ids):
        entry = {
            "style": int(cat.style[i]),
            "style_name": cat.styles[cat.style[i]].name,
            "category": cat.categories[cat.cat[i]].path,
            "brand": cat.brand_names[cat.brand[i]],
            "true_price": float(cat.true_price[i]),
            "quality": round(float(cat.quality[i]), 4),
        }
        sep = ",\n" if i else ""
        fh.write(f"{sep}  {json.dumps(iid)}: {json.dumps(entry, ensure_ascii=False)}")
    fh.write("\n }")
    for key, val in tail.items():
        fh.write(f",\n {json.dumps(key)}: {json.dumps(val, ensure_ascii=False)}")
    fh.write("\n}\n")
