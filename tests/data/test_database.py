"""Ingest from a real PostgreSQL and a real MariaDB server (throwaway clusters in temp folders).

Both servers come from the distribution's packages (``.ci/run`` installs them); the tests skip
with the package to install when the binaries are absent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shopsight.data.database import DatabaseError, ingest_database, parse_database_url, urlsplit
from shopsight.data.formats import ReadOptions
from shopsight.data.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dbservers import ServerUnavailable, mariadb_server, postgres_server

EVENTS_MAP = ReadOptions(
    mapping={
        "user_id": "customer_id",
        "item_id": "sku",
        "event_type": "kind",
        "timestamp": "created_at",
        "value": "amount",
    },
    target="events",
)

ROWS = [
    ("c1", "s1", "view", None, "2024-03-01 10:00:00"),
    ("c1", "s1", "purchase", "12.50", "2024-03-01 10:05:00"),
    ("c2", "s2", "addtocart", None, "2024-03-01 11:00:00"),
    ("c2", "s3", "teleport", None, "2024-03-01 11:30:00"),  # unknown event type
    (None, "s3", "view", None, "2024-03-01 12:00:00"),  # no user
    ("c3", "s2", "purchase", "7.00", "2024-03-02 09:00:00"),
]
NEW_ROWS = [
    ("c4", "s1", "view", None, "2024-03-03 08:00:00"),
    ("c4", "s1", "purchase", "12.50", "2024-03-03 08:01:00"),
    ("c1", "s3", "click", None, "2024-03-03 09:00:00"),
]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except ServerUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture(scope="module")
def my_url() -> Iterator[str]:
    try:
        with mariadb_server() as url:
            yield url
    except ServerUnavailable as exc:
        pytest.skip(f"no MariaDB server: {exc}")


def _pg(url: str, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(url) as conn:
        with conn.cursor() as cur:
            if rows:
                cur.executemany(sql, rows)
            else:
                cur.execute(sql)
        conn.commit()


def _my(url: str, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    import pymysql

    p = urlsplit(url)
    conn = pymysql.connect(
        host=p.hostname, port=p.port, user=p.username, database=p.path.lstrip("/")
    )
    with conn.cursor() as cur:
        if rows:
            cur.executemany(sql, rows)
        else:
            cur.execute(sql)
    conn.commit()
    conn.close()


Exec = Callable[[str, str, "list[tuple[Any, ...]] | None"], None]


def _check_incremental(url: str, run: Exec, insert: str, ts_type: str, store_path: Path) -> None:
    """6 rows (2 bad), 3 new rows, a re-run, then a full re-read: the figures of each."""
    run(
        url,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id VARCHAR(20), "
        f"sku VARCHAR(20), kind VARCHAR(20), amount DECIMAL(10,2), created_at {ts_type})",
        None,
    )
    run(url, insert, [(n, *r) for n, r in enumerate(ROWS, 1)])
    with Store(store_path) as st:
        f = ingest_database(
            st, url, tables=["orders"], watermark="created_at", options=EVENTS_MAP
        ).files[0]
        assert f.error is None, f.error
        assert (f.read, f.stored, f.quarantined) == (6, 4, 2)
        assert f.watermark is not None and f.watermark["from"] is None
        assert str(f.watermark["to"]).startswith("2024-03-02 09:00:00")
        q = st.arrow("SELECT line, reason, raw FROM quarantine ORDER BY line").to_pylist()
        assert [r["line"] for r in q] == [4, 5]
        assert q[0]["reason"].startswith("event_type: unknown 'teleport'")
        assert json.loads(q[0]["raw"])["customer_id"] == "c2"
        assert q[1]["reason"].startswith("user_id")
        stored = st.arrow(
            "SELECT user_id, item_id, event_type, value FROM events ORDER BY timestamp"
        ).to_pylist()
        assert stored[1] == {
            "user_id": "c1",
            "item_id": "s1",
            "event_type": "purchase",
            "value": 12.5,
        }
        assert stored[2]["event_type"] == "add_to_cart"
        log = st.arrow("SELECT source, watermark_column FROM ingest_log").to_pylist()
        assert log[0]["watermark_column"] == "created_at"
        assert log[0]["source"].endswith("#orders")

        run(url, insert, [(n, *r) for n, r in enumerate(NEW_ROWS, 10)])
        second = ingest_database(
            st, url, tables=["orders"], watermark="created_at", options=EVENTS_MAP
        ).files[0]
        assert second.error is None, second.error
        assert (second.read, second.stored, second.quarantined) == (3, 3, 0)
        assert second.watermark is not None and second.watermark["from"] == f.watermark["to"]

        third = ingest_database(
            st, url, tables=["orders"], watermark="created_at", options=EVENTS_MAP
        ).files[0]
        assert (third.read, third.stored, third.error) == (0, 0, None)
        assert third.watermark is not None and third.watermark["to"] == second.watermark["to"]

        full = ingest_database(
            st, url, tables=["orders"], watermark="created_at", options=EVENTS_MAP, full=True
        ).files[0]
        assert (full.read, full.stored, full.duplicates, full.quarantined) == (9, 0, 7, 2)
        assert st.count("events") == 7
        assert st.count("quarantine") == 2  # the same rows are not quarantined twice


def test_postgres_incremental_by_watermark(pg_url: str, tmp_path: Path) -> None:
    insert = (
        "INSERT INTO orders VALUES ($1, $2, $3, $4, CAST($5 AS NUMERIC), CAST($6 AS TIMESTAMPTZ))"
    )
    _check_incremental(pg_url, _pg, insert, "TIMESTAMPTZ", tmp_path / "s.duckdb")


def test_mariadb_incremental_by_watermark(my_url: str, tmp_path: Path) -> None:
    insert = "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s)"
    _check_incremental(my_url, _my, insert, "DATETIME(6)", tmp_path / "s.duckdb")


def test_postgres_query_into_items_and_errors(pg_url: str, tmp_path: Path) -> None:
    _pg(pg_url, "CREATE TABLE products (sku TEXT, name TEXT, price NUMERIC(8,2), cat TEXT)")
    _pg(
        pg_url,
        "INSERT INTO products VALUES ($1, $2, CAST($3 AS NUMERIC), $4)",
        [
            ("s1", "Mug", "9.50", "Home"),
            ("s2", "Lamp", "-3", "Home"),
            ("s3", "Pen", None, "Office"),
        ],
    )
    opts = ReadOptions(mapping={"item_id": "sku", "title": "name", "category": "cat"})
    with Store(tmp_path / "s.duckdb") as st:
        rep = ingest_database(
            st, pg_url, query="SELECT sku, name, price, cat FROM products", options=opts
        )
        f = rep.files[0]
        assert f.error is None, f.error
        assert (f.read, f.stored, f.quarantined) == (3, 2, 1)
        assert "#query:" in f.source
        assert (
            st.arrow("SELECT reason FROM quarantine").to_pylist()[0]["reason"].startswith("price")
        )
        assert (
            ingest_database(
                st, pg_url, query="SELECT sku, name, price, cat FROM products", options=opts
            )
            .files[0]
            .stored
            == 0
        )

        bad_wm = ingest_database(
            st, pg_url, tables=["products"], watermark="updated_at", options=opts
        ).files[0]
        assert bad_wm.error is not None and "updated_at" in bad_wm.error
        assert "\n" not in bad_wm.error
        text_wm = ingest_database(
            st, pg_url, tables=["products"], watermark="name", options=opts
        ).files[0]
        assert text_wm.error is not None and "expected a timestamp" in text_wm.error
        missing = ingest_database(st, pg_url, tables=["nope"], options=opts).files[0]
        assert missing.error is not None and "query failed" in missing.error
        assert st.count("items") == 2


def test_database_url_errors(tmp_path: Path) -> None:
    assert parse_database_url("postgresql://u:secret@h:5/db?sslmode=off") == (
        "postgresql",
        "postgresql://u@h:5/db",
    )
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(DatabaseError, match="expected a postgresql"):
            ingest_database(st, "sqlite:///x.db", tables=["t"])
        with pytest.raises(DatabaseError, match="cannot connect") as exc:
            ingest_database(st, "postgresql://u:secret@127.0.0.1:1/db", tables=["t"])
        assert "secret" not in str(exc.value)
        with pytest.raises(DatabaseError, match="--table"):
            ingest_database(st, "mysql://u@127.0.0.1:1/db")


def test_cli_ingest_from_postgres(pg_url: str, tmp_path: Path) -> None:
    import os
    import subprocess

    _pg(pg_url, "CREATE TABLE clicks (who TEXT, what TEXT, at TIMESTAMP)")
    _pg(
        pg_url,
        "INSERT INTO clicks VALUES ($1, $2, CAST($3 AS TIMESTAMP))",
        [("a", "x", "2024-05-01 10:00:00"), ("b", "y", "2024-05-01 11:00:00")],
    )
    cmd = [
        sys.executable, "-m", "shopsight.cli", "ingest", "--store", str(tmp_path / "s.duckdb"),
        "--from", pg_url, "--table", "clicks", "--map", "user_id=who,item_id=what,timestamp=at",
        "--default", "event_type=click", "--target", "events", "--watermark", "at", "--json",
    ]  # fmt: skip
    env = dict(os.environ)
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    f1, f2 = json.loads(first.stdout)["files"][0], json.loads(again.stdout)["files"][0]
    assert (f1["read"], f1["stored"]) == (2, 2)
    assert (f2["read"], f2["stored"]) == (0, 0)
    assert f2["watermark"] == {
        "column": "at",
        "from": "2024-05-01 11:00:00",
        "to": "2024-05-01 11:00:00",
    }
    bad = subprocess.run(
        [*cmd[:-1], "--format", "csv"], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode == 2 and "--format applies to files" in bad.stderr
    assert "Traceback" not in bad.stderr
