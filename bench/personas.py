"""Profiles of 100,000 users in bounded memory: time and peak RSS against a bare DuckDB scan.

The events come from :func:`shopsight.data.synthetic.write_events_csv` (Zipf-like users and
items, sessions, searches, purchases, ratings; 3 M events over an id space of 200,000 users, of
whom about 114,000 are active, so that well over 100,000 users get a profile), loaded
into a store's ``events`` table by DuckDB; a 20,000-item catalogue (category, brand, price,
style attributes, titles with style words) is made in SQL. Each measurement runs in a fresh
subprocess so that its peak resident memory (``VmHWM``: interpreter, DuckDB, numpy and the
results) is its own:

* ``baseline``: a bare DuckDB scan + per-user aggregate of the same events (count, distinct
  items, spend, first/last time) fetched to Arrow: the floor of any per-user profile;
* ``profiles``: :func:`compute_profiles` + :func:`derived_fields` (every profile field,
  chunked by user hash, 25,000 users per chunk);
* ``profiles_1chunk``: the same in a single chunk, to show what chunking buys;
* ``personas``: the whole :func:`build_personas` (profiles, segments with k by silhouette on a
  5,000-user sample, descriptions, 2-D map, pseudonyms) — what ``shopsight personas`` runs.

    python bench/personas.py                      # ~114k active users, 3M events (minutes)
    python bench/personas.py --users 20000 --events 400000

Writes ``bench/results/personas.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _machine import machine

HERE = Path(__file__).resolve().parent
KEY = "bench-personas-key-0123456789"


def build_store(work: Path, n_users: int, n_events: int, n_items: int, seed: int) -> Path:
    from shopsight.data.store import Store
    from shopsight.data.synthetic import CATEGORIES, STYLES, write_events_csv

    csv = work / "events.csv"
    store = work / "bench.duckdb"
    for p in (store, Path(str(store) + ".wal")):
        p.unlink(missing_ok=True)
    write_events_csv(csv, n_events, seed=seed, n_users=n_users, n_items=n_items)
    width = max(4, len(str(n_items - 1)))
    cats = [c.path for c in CATEGORIES]
    words = [s.words[0] for s in STYLES]
    patterns = [s.pattern for s in STYLES]
    with Store(store) as st:
        c = st.conn
        c.execute(
            f"""INSERT INTO events
            SELECT hash(user_id, item_id, event_type, timestamp, session_id, query, value,
                        row_number() OVER ()), user_id, item_id, event_type,
                   CAST(timestamp AS TIMESTAMP), false, session_id, query,
                   TRY_CAST(value AS DOUBLE), '{csv}', row_number() OVER () + 1
            FROM read_csv('{csv}', all_varchar = true, header = true)
            WHERE user_id IS NOT NULL AND TRY_CAST(timestamp AS TIMESTAMP) IS NOT NULL
              AND event_type IN ('view', 'click', 'add_to_cart', 'remove_from_cart', 'purchase',
                                 'favorite', 'share', 'rate', 'search')
              AND coalesce(TRY_CAST(value AS DOUBLE), 0) >= 0"""
        )
        c.execute(
            f"""INSERT INTO items (item_id, title, description, brand, category, price, currency,
                                   attributes, item_key, source, line)
            SELECT 'i' || lpad(CAST(i AS VARCHAR), {width}, '0'),
                   ({words})[1 + (i * 7) % {len(words)}] || ' item ' || CAST(i AS VARCHAR),
                   'A ' || ({words})[1 + (i * 7) % {len(words)}] || ' piece.',
                   'Brand' || CAST(i % 60 AS VARCHAR),
                   ({cats})[1 + i % {len(cats)}],
                   round(exp(3 + (hash(i) % 1000) / 1000.0 * 2), 2), 'EUR',
                   '{{"pattern": "' || ({patterns})[1 + (i * 7) % {len(patterns)}] || '"}}',
                   hash(i), 'bench', i + 1
            FROM range({n_items}) t(i)"""
        )
    return store


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: reset by exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(kind: str, store: str, chunk_users: int) -> dict[str, Any]:
    os.environ["SHOPSIGHT_PSEUDONYM_KEY"] = KEY
    from shopsight.data.store import Store

    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    out: dict[str, Any] = {}
    with Store(store, read_only=True) as st:
        if kind == "baseline":
            t = st.conn.sql(
                """SELECT user_id, count(*) AS n, count(DISTINCT item_id) AS items,
                          sum(value) FILTER (event_type = 'purchase') AS spend,
                          min(timestamp) AS first_ts, max(timestamp) AS last_ts
                   FROM events GROUP BY user_id"""
            ).to_arrow_table()
            out["users"] = t.num_rows
        elif kind == "personas":
            from shopsight.personas import build_personas
            from shopsight.personas.profile import ProfileConfig
            from shopsight.personas.segments import SegmentConfig

            p = build_personas(
                st,
                profile_config=ProfileConfig(chunk_users=chunk_users),
                segment_config=SegmentConfig(n_boot=2, k_range=(2, 8)),
                use_features=False,
            )
            out["users"] = len(p)
            out["k"] = p.meta["clustering"]["k"]
        else:
            from shopsight.personas.profile import ProfileConfig, compute_profiles, derived_fields

            cfg = ProfileConfig(chunk_users=chunk_users)
            t = compute_profiles(st, cfg)
            derived_fields(t, cfg)
            out["users"] = len(t)
            out["chunks"] = t.info["n_chunks"]
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["cpu_seconds"] = round(time.process_time() - c0, 3)
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_after_imports_mb"] = rss0
    return out


def run_child(kind: str, store: Path, chunk_users: int) -> dict[str, Any]:
    res = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--store",
            str(store),
            "--chunk",
            str(chunk_users),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--chunk", type=int, default=25_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "personas")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "personas.json")
    ap.add_argument("--child", default=None)
    ap.add_argument("--store", default=None)
    args = ap.parse_args(argv)
    if args.child == "build":
        build_store(args.work, args.users, args.events, args.items, args.seed)
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.store, args.chunk)))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # Built in a child too: this process stays small, so the measured children start small.
    subprocess.run(
        [sys.executable, __file__, "--child", "build", "--work", str(args.work),
         "--users", str(args.users), "--events", str(args.events), "--items", str(args.items),
         "--seed", str(args.seed)],
        check=True,
    )  # fmt: skip
    store = args.work / "bench.duckdb"
    build_s = time.perf_counter() - t0
    runs = {
        "baseline": run_child("baseline", store, args.chunk),
        "profiles": run_child("profiles", store, args.chunk),
        "profiles_1chunk": run_child("profiles", store, 10**9),
        "personas": run_child("personas", store, args.chunk),
    }
    base = runs["baseline"]["seconds"]
    result = {
        "benchmark": "personas",
        "config": {
            "users": args.users,
            "events": args.events,
            "items": args.items,
            "chunk_users": args.chunk,
            "duckdb_memory_limit": os.environ.get("SHOPSIGHT_DUCKDB_MEMORY", "1500MB"),
        },
        "store_build_seconds": round(build_s, 2),
        "runs": runs,
        "ratios": {
            "profiles_vs_scan_time": round(runs["profiles"]["seconds"] / base, 2),
            "personas_vs_scan_time": round(runs["personas"]["seconds"] / base, 2),
            "profiles_vs_scan_peak_rss": round(
                runs["profiles"]["peak_rss_mb"] / runs["baseline"]["peak_rss_mb"], 2
            ),
            "chunked_vs_one_chunk_peak_rss": round(
                runs["profiles"]["peak_rss_mb"] / runs["profiles_1chunk"]["peak_rss_mb"], 2
            ),
        },
        "machine": machine("duckdb"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| run | users | seconds | CPU s | peak RSS MB |\n|---|---|---|---|---|")
    for name, r in runs.items():
        print(
            f"| {name} | {r['users']:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    print(json.dumps(result["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
