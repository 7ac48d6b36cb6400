"""Database ingest on real servers with real data: the figures of the first, incremental and
repeated runs of ``shopsight ingest --from``.

Starts a throwaway PostgreSQL (and MariaDB when installed) from the distribution's packages,
loads MovieLens-100K ratings into PostgreSQL (the oldest 90,000 first, plus three broken rows)
and the Diginetica view sample into MariaDB (the first 10,000 rows; its ``NA`` users as NULL),
then runs the CLI: a first ingest, an incremental one after inserting the remaining rows, and a
re-run. Needs ../shared/data.

    PYTHONPATH=src python bench/ingest_database.py   # -> bench/results/ingest_database.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
sys.path.insert(0, str(ROOT / "tests"))
from dbservers import ServerUnavailable, mariadb_server, postgres_server  # noqa: E402


def cli(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "shopsight.cli", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"shopsight {' '.join(args)} failed: {out.stderr.strip()}")
    res: dict[str, Any] = json.loads(out.stdout)
    f = res["files"][0]
    res["summary"] = {
        k: f[k] for k in ("read", "stored", "duplicates", "quarantined", "watermark", "error")
    }
    res["summary"]["wall_s"] = round(time.perf_counter() - t0, 2)
    return res


def movielens() -> pa.Table:
    rows = []
    with (DATA / "movielens-100k" / "u.data").open() as fh:
        for line in fh:
            u, i, r, t = line.split("\t")
            rows.append((int(u), int(i), int(r), int(t)))
    rows.sort(key=lambda x: x[3])
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int32()),
            "item_id": pa.array([r[1] for r in rows], pa.int32()),
            "rating": pa.array([r[2] for r in rows], pa.int32()),
            "rated_at": pa.array(
                [datetime.fromtimestamp(r[3], UTC) for r in rows], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def run_postgres(store: Path) -> list[dict[str, Any]]:
    import adbc_driver_postgresql.dbapi as pg

    table = movielens()
    with postgres_server() as url:
        with pg.connect(url) as conn:
            with conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE ratings (user_id INT, item_id INT, rating INT, "
                    "rated_at TIMESTAMPTZ)"
                )
                cur.adbc_ingest("ratings", table.slice(0, 90_000), mode="append")
                # Three broken rows, as an order database has them.
                cur.execute(
                    "INSERT INTO ratings VALUES (1, 50, 9, '1997-12-01 00:00:00+00'), "
                    "(NULL, 50, 4, '1997-12-01 00:00:01+00'), (2, NULL, 3, '1997-12-01 00:00:02+00')"
                )
            conn.commit()
        args = [
            "ingest",
            "--store",
            str(store),
            "--from",
            url,
            "--table",
            "ratings",
            "--target",
            "events",
            "--map",
            "value=rating,timestamp=rated_at",
            "--default",
            "event_type=rate",
            "--watermark",
            "rated_at",
        ]
        first = cli(*args)
        with pg.connect(url) as conn:
            with conn.cursor() as cur:
                cur.adbc_ingest("ratings", table.slice(90_000), mode="append")
            conn.commit()
        second = cli(*args)
        third = cli(*args)
    return [
        {"run": "first", **first["summary"]},
        {"run": f"after inserting {table.num_rows - 90_000} rows", **second["summary"]},
        {"run": "re-run", **third["summary"]},
    ]


def run_mariadb(store: Path) -> list[dict[str, Any]]:
    import pymysql

    with (DATA / "diginetica-sample" / "sample_train-item-views.csv").open() as fh:
        rows = [
            (
                int(r["session_id"]),
                None if r["user_id"] == "NA" else r["user_id"],
                r["item_id"],
                int(r["timeframe"]),
                r["eventdate"],
            )
            for r in csv.DictReader(fh, delimiter=";")
        ]
    with mariadb_server() as url:
        from urllib.parse import urlsplit

        p = urlsplit(url)
        conn = pymysql.connect(host=p.hostname, port=p.port, user=p.username, database="shop")
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE item_views (id INT AUTO_INCREMENT PRIMARY KEY, session_id INT, "
                "user_id VARCHAR(20), item_id VARCHAR(20), timeframe BIGINT, eventdate DATE)"
            )
            sql = (
                "INSERT INTO item_views (session_id, user_id, item_id, timeframe, eventdate) "
                "VALUES (%s, %s, %s, %s, %s)"
            )
            cur.executemany(sql, rows[:10_000])
        conn.commit()
        args = [
            "ingest",
            "--store",
            str(store),
            "--from",
            url,
            "--query",
            "SELECT id, user_id, item_id, session_id, eventdate FROM item_views",
            "--map",
            "timestamp=eventdate",
            "--default",
            "event_type=view",
            "--target",
            "events",
            "--watermark",
            "id",
        ]
        first = cli(*args)
        with conn.cursor() as cur:
            cur.executemany(sql, rows[10_000:])
        conn.commit()
        conn.close()
        second = cli(*args)
        third = cli(*args)
    return [
        {"run": "first", **first["summary"]},
        {"run": f"after inserting {len(rows) - 10_000} rows", **second["summary"]},
        {"run": "re-run", **third["summary"]},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest_database.json")
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"needs {DATA} (the public datasets)")
    result: dict[str, Any] = {"load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        result["postgresql_movielens"] = run_postgres(Path(tmp) / "pg.duckdb")
        try:
            result["mariadb_diginetica"] = run_mariadb(Path(tmp) / "my.duckdb")
        except ServerUnavailable as exc:
            result["mariadb_diginetica"] = f"skipped: {exc}"
    print(json.dumps(result, indent=1, default=str))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
