"""Ingest benchmark: N synthetic events from CSV, full validation + dedupe, vs DuckDB's bare scan.

Both runs happen in this script, one after the other, each in a fresh subprocess so peak memory
is measured per run. The bare scan (``read_csv`` + ``COUNT(*)`` of the same file, every column
read as text) is the physical floor: no store can ingest a CSV faster than it can read it.

    python bench/ingest.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD_INGEST = """
import json, resource, sys, time
from shopsight.data.store import Store
from shopsight.data.ingest import ingest_file
t = time.perf_counter()
with Store(sys.argv[1]) as s:
    r = ingest_file(s, sys.argv[2])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "read": r.read, "stored": r.stored, "duplicates": r.duplicates,
                  "quarantined": r.quarantined, "error": r.error,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_BARE = """
import json, resource, sys, time
import duckdb
t = time.perf_counter()
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
n = con.execute("SELECT count(*) FROM read_csv(?, header=true, all_varchar=true)", [sys.argv[1]]).fetchone()[0]
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


CHILD_LOAD = """
import json, resource, sys, time
import duckdb
t = time.perf_counter()
con = duckdb.connect(sys.argv[2])
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TABLE events AS SELECT * FROM read_csv(?, header=true, all_varchar=true)", [sys.argv[1]])
con.close()
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--workdir", type=Path, default=HERE / "_work")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json")
    args = ap.parse_args()

    from shopsight.data.synthetic import write_events_csv

    args.workdir.mkdir(parents=True, exist_ok=True)
    csv_path = args.workdir / f"events_{args.rows}.csv"
    if not csv_path.exists():
        t = time.perf_counter()
        write_events_csv(csv_path, args.rows, seed=0)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    store = args.workdir / "bench_ingest.duckdb"
    for p in (store, Path(str(store) + ".wal")):
        p.unlink(missing_ok=True)

    bare = child(CHILD_BARE, str(csv_path))
    # A second floor: copy the file into a DuckDB file as text, no validation, keys or dedupe.
    load_db = args.workdir / "bench_load.duckdb"
    load_db.unlink(missing_ok=True)
    load = child(CHILD_LOAD, str(csv_path), str(load_db))
    load_db.unlink(missing_ok=True)
    ing = child(CHILD_INGEST, str(store), str(csv_path))
    rows = int(ing["read"])  # type: ignore[call-overload]
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "rows": rows,
        "file_mb": round(csv_path.stat().st_size / 1e6, 1),
        "ingest_seconds": round(float(ing["seconds"]), 2),  # type: ignore[arg-type]
        "ingest_rows_per_s": round(rows / float(ing["seconds"])),  # type: ignore[arg-type]
        "ingest_peak_rss_mb": round(float(ing["peak_rss_mb"])),  # type: ignore[arg-type]
        "bare_scan_seconds": round(float(bare["seconds"]), 2),  # type: ignore[arg-type]
        "bare_peak_rss_mb": round(float(bare["peak_rss_mb"])),  # type: ignore[arg-type]
        "ratio_to_bare_scan": round(float(ing["seconds"]) / float(bare["seconds"]), 2),  # type: ignore[arg-type]
        "plain_load_seconds": round(float(load["seconds"]), 2),  # type: ignore[arg-type]
        "ratio_to_plain_load": round(float(ing["seconds"]) / float(load["seconds"]), 2),  # type: ignore[arg-type]
        "load_average": list(__import__("os").getloadavg()),
        "stored": ing["stored"],
        "duplicates": ing["duplicates"],
        "quarantined": ing["quarantined"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| rows | ingest s | rows/s | peak RSS MB | bare scan s | ratio | plain load s | ratio "
        "| stored | dup | quarantined |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    r = result
    print(
        f"| {r['rows']:,} | {r['ingest_seconds']} | {r['ingest_rows_per_s']:,} | "
        f"{r['ingest_peak_rss_mb']} | {r['bare_scan_seconds']} | {r['ratio_to_bare_scan']}x | "
        f"{r['plain_load_seconds']} | {r['ratio_to_plain_load']}x | "
        f"{r['stored']:,} | {r['duplicates']:,} | {r['quarantined']:,} |"
    )


if __name__ == "__main__":
    main()
