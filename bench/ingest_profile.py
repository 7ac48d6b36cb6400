"""Where an ingest's time goes: ``ingest_file`` with every SQL statement over 0.2 s timed.

Takes the first ``--rows`` rows of the benchmark CSV (``bench/ingest.py`` writes it) into a
fresh store and prints each slow statement with its seconds, then the file's counts.

    python bench/ingest_profile.py --rows 2000000 [--out bench/results/ingest_profile.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shopsight.data.ingest import ingest_file
from shopsight.data.store import Store

HERE = Path(__file__).resolve().parent


class _TimedConnection:
    """The store's connection, reporting statements slower than ``threshold`` seconds."""

    def __init__(self, conn: Any, threshold: float) -> None:
        self._conn, self._threshold = conn, threshold
        self.slow: list[dict[str, Any]] = []

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = self._conn.execute(sql, *args, **kwargs)
        dt = time.perf_counter() - t
        if dt > self._threshold:
            text = " ".join(sql.split())
            self.slow.append({"seconds": round(dt, 3), "sql": text[:300]})
            print(f"{dt:7.2f}s  {text[:110]}")
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--csv", type=Path, default=HERE / "_work" / "events_10000000.csv")
    ap.add_argument("--out", type=Path, default=None, help="also write the timings as JSON")
    args = ap.parse_args()
    if not args.csv.exists():
        sys.exit(f"{args.csv}: missing; run bench/ingest.py first (it writes the file)")
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / f"events_{args.rows}.csv"
        with args.csv.open() as src, part.open("w") as dst:
            dst.writelines(itertools.islice(src, args.rows + 1))  # + the header
        with Store(Path(tmp) / "profile.duckdb") as store:
            timed = _TimedConnection(store.conn, 0.2)
            store.conn = timed  # type: ignore[assignment]
            t = time.perf_counter()
            r = ingest_file(store, part)
            seconds = time.perf_counter() - t
            print(
                f"{r.read:,} read, {r.stored:,} stored, {r.duplicates:,} duplicates, "
                f"{r.quarantined:,} quarantined in {seconds:.1f}s"
            )
    if args.out is not None:
        result = {
            "benchmark": "ingest_profile",
            "rows": args.rows,
            "read": r.read,
            "stored": r.stored,
            "duplicates": r.duplicates,
            "quarantined": r.quarantined,
            "seconds": round(seconds, 2),
            "slow_statements": timed.slow,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
