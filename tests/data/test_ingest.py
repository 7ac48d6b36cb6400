"""The ingest engine: counts add up, bad rows quarantined with reasons, idempotent, atomic."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shopsight.data.formats import ReadOptions
from shopsight.data.ingest import ingest_file, ingest_files
from shopsight.data.schema import EVENT_TYPE_ALIASES, EVENT_TYPES
from shopsight.data.staging import STAGING
from shopsight.data.store import Store
from shopsight.data.validate import event_reason, event_reason_sql, normalise_event_type

HEADER = "user_id,item_id,event_type,timestamp,session_id,query,value\n"
GOOD = [
    "u1,i1,view,2024-01-01T10:00:00Z,s1,,",
    "u1,i1,click,2024-01-01T10:00:05Z,s1,,",
    "u1,i1,purchase,2024-01-01T10:01:00Z,s1,,19.99",
    "u2,,search,2024-01-02T08:00:00+02:00,s2,red shoes,",
    "u2,i2,rate,1704189600,s2,,4",
]
BROKEN = [
    "u3,i3,view",  # missing columns
    "u4,i4,teleport,2024-01-01T10:00:00Z,s4,,",  # unknown event type
    "u5,i5,view,2199-01-01T00:00:00Z,s5,,",  # future
    "u6,i6,view,1970-01-02T00:00:00Z,s6,,",  # before 1990
    "u7,i7,purchase,2024-01-01T00:00:00Z,s7,,-5",  # negative price
    "u8,i8,view,not-a-date,s8,,",  # bad timestamp
    ",i9,view,2024-01-01T00:00:00Z,s9,,",  # missing user
    "u10,i10,rate,2024-01-01T00:00:00Z,s10,,9",  # rating out of range
    "u11,i11,purchase,2024-01-01T00:00:00Z,s11,,abc",  # value not a number
]


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def test_counts_add_up_and_reasons_name_the_field(tmp_path: Path) -> None:
    f = write(tmp_path / "events.csv", GOOD + BROKEN + [GOOD[0]])
    with Store(tmp_path / "s.duckdb") as s:
        rep = ingest_file(s, f)
        assert rep.error is None
        assert (rep.read, rep.stored, rep.duplicates, rep.quarantined) == (15, 5, 1, 9)
        assert rep.read == rep.stored + rep.duplicates + rep.quarantined
        q = s.arrow("SELECT line, reason FROM quarantine ORDER BY line").to_pylist()
        reasons = {r["line"]: r["reason"] for r in q}
        # line numbers are physical file lines (header is line 1)
        assert reasons[7].startswith("structure:")
        assert "event_type: unknown 'teleport'" in reasons[8]
        assert "in the future" in reasons[9]
        assert "before 1990" in reasons[10]
        assert reasons[11].startswith("value: negative")
        assert reasons[12].startswith("timestamp: cannot parse 'not-a-date'")
        assert reasons[13] == "user_id: missing"
        assert "out of range" in reasons[14]
        assert reasons[15].startswith("value: not a number")
        ev = s.arrow("SELECT * FROM events ORDER BY line").to_pylist()
        assert [e["line"] for e in ev] == [2, 3, 4, 5, 6]
        assert ev[3]["item_id"] is None and ev[3]["query"] == "red shoes"
        # +02:00 converted to UTC; epoch seconds understood
        assert ev[3]["timestamp"] == datetime(2024, 1, 2, 6, 0, 0)
        assert ev[4]["timestamp"] == datetime(2024, 1, 2, 10, 0, 0)
        log = s.arrow("SELECT * FROM ingest_log").to_pylist()
        assert log[0]["stored"] == 5 and len(log[0]["fingerprint"]) == 64


def test_reingest_adds_nothing(tmp_path: Path) -> None:
    f = write(tmp_path / "events.csv", GOOD + BROKEN)
    with Store(tmp_path / "s.duckdb") as s:
        ingest_file(s, f)
        before = s.counts()
        rep = ingest_file(s, f)
        after = s.counts()
    assert rep.stored == 0 and rep.duplicates == len(GOOD)
    assert {k: after[k] for k in ("events", "quarantine")} == {
        k: before[k] for k in ("events", "quarantine")
    }
    assert after["ingest_log"] == before["ingest_log"] + 1


def test_aliases_mapping_and_defaults(tmp_path: Path) -> None:
    f = tmp_path / "orders.csv"
    f.write_text(
        "customer_id,sku,ts,amount\nc1,p1,2024-03-01 12:00:00,10.5\nc2,p2,1709294400000,3\n"
    )
    with Store(tmp_path / "s.duckdb") as s:
        opts = ReadOptions(
            mapping={"user_id": "customer_id", "item_id": "sku", "value": "amount"},
            target="events",
            defaults={"event_type": "purchase"},
        )
        rep = ingest_file(s, f, options=opts)
        assert rep.error is None and rep.stored == 2
        rows = s.arrow("SELECT user_id, event_type, timestamp, value FROM events ORDER BY 1")
        r = rows.to_pylist()
    assert r[0] == {
        "user_id": "c1",
        "event_type": "purchase",
        "timestamp": datetime(2024, 3, 1, 12),
        "value": 10.5,
    }
    assert r[1]["timestamp"] == datetime(2024, 3, 1, 12)  # epoch milliseconds


def test_event_type_aliases_normalised(tmp_path: Path) -> None:
    f = write(
        tmp_path / "events.csv",
        ["u1,i1,AddToCart,2024-01-01,s1,,", "u1,i1,Transaction,2024-01-01,s1,,5"],
    )
    with Store(tmp_path / "s.duckdb") as s:
        ingest_file(s, f)
        types = [
            r[0] for r in s.conn.execute("SELECT event_type FROM events ORDER BY 1").fetchall()
        ]
    assert types == ["add_to_cart", "purchase"]


def test_missing_required_column_is_one_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,event_type\nu1,i1,view\n")
    with Store(tmp_path / "s.duckdb") as s:
        rep = ingest_file(s, f, format="csv")
        assert rep.error is not None
        assert "missing column(s) timestamp" in rep.error and str(f) in rep.error
        assert s.count("events") == 0 and s.count("ingest_log") == 0


def test_binary_and_missing_files(tmp_path: Path) -> None:
    b = tmp_path / "data.csv"
    b.write_bytes(bytes(range(256)) * 10)
    with Store(tmp_path / "s.duckdb") as s:
        good = write(tmp_path / "events.csv", GOOD)
        ingest_file(s, good)
        before = s.counts()
        rep = ingest_files(s, [b, tmp_path / "nope.csv"])
        assert not rep.ok
        assert "binary data" in (rep.files[0].error or "")
        assert "no such file" in (rep.files[1].error or "")
        assert s.counts() == before  # earlier data intact


def test_truncated_gzip_keeps_good_lines_and_quarantines_the_break(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "user_id": f"u{i}",
                "item_id": f"i{i % 7}",
                "event_type": "view",
                "timestamp": f"2024-01-01T00:{i % 60:02d}:00Z",
            }
        )
        for i in range(3000)
    ]
    full = gzip.compress(("\n".join(lines) + "\n").encode())
    f = tmp_path / "events.jsonl.gz"
    f.write_bytes(full[: len(full) // 2])
    with Store(tmp_path / "s.duckdb") as s:
        rep = ingest_file(s, f)
        assert rep.error is None, rep.error
        assert rep.stored > 100
        assert rep.read == rep.stored + rep.duplicates + rep.quarantined
        q = s.arrow("SELECT reason FROM quarantine").to_pylist()
    assert any("truncated gzip stream after line" in r["reason"] for r in q)


def test_invalid_json_lines_quarantined(tmp_path: Path) -> None:
    f = tmp_path / "reviews.jsonl"
    rows = [
        {"user_id": "u1", "item_id": "i1", "rating": 5, "text": "great", "timestamp": 1700000000},
        "{not json",
        {"user_id": "u2", "item_id": "i1", "rating": "five", "text": "meh"},
        [1, 2],
        {"user_id": "u3", "item_id": "i2", "rating": 2, "text": "bad", "timestamp": 1700000001},
    ]
    f.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    with Store(tmp_path / "s.duckdb") as s:
        rep = ingest_file(s, f)
        assert (rep.read, rep.stored, rep.quarantined) == (5, 2, 3)
        reasons = sorted(r[0] for r in s.conn.execute("SELECT reason FROM quarantine").fetchall())
    assert reasons[0].startswith("json: expected an object")
    assert reasons[1].startswith("json: invalid")
    assert reasons[2].startswith("rating: not a number 'five'")


def test_item_conflicts_are_quarantined_not_overwritten(tmp_path: Path) -> None:
    a = tmp_path / "items.csv"
    a.write_text("item_id,title,price\ni1,Red shoe,$25.00\ni2,Blue hat,10\ni1,Red shoe v2,30\n")
    b = tmp_path / "items2.csv"
    b.write_text("item_id,title,price\ni2,Blue hat,10\ni2,Blue hat XL,12\ni3,Cap,-1\n")
    with Store(tmp_path / "s.duckdb") as s:
        r1 = ingest_file(s, a)
        assert (r1.stored, r1.quarantined) == (2, 1)
        r2 = ingest_file(s, b)
        assert (r2.read, r2.stored, r2.duplicates, r2.quarantined) == (3, 0, 1, 2)
        items = dict(s.conn.execute("SELECT item_id, price FROM items").fetchall())
        reasons = [
            r[0]
            for r in s.conn.execute(
                "SELECT reason FROM quarantine ORDER BY ingest_id, line"
            ).fetchall()
        ]
    assert items == {"i1": 25.0, "i2": 10.0}
    assert "repeated with different content" in reasons[0]
    assert "already stored with different content" in reasons[1]
    assert reasons[2].startswith("price: negative")


def test_parquet_fast_path(tmp_path: Path) -> None:
    import pyarrow as pa

    t = pa.table(
        {
            "user_id": ["u1", "u2", None],
            "item_id": ["i1", "i2", "i3"],
            "event_type": ["view", "purchase", "view"],
            "timestamp": ["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"],
        }
    )
    f = tmp_path / "events.parquet"
    pq.write_table(t, f)
    with Store(tmp_path / "s.duckdb") as s:
        rep = ingest_file(s, f)
    assert (rep.format, rep.read, rep.stored, rep.quarantined) == ("parquet", 3, 2, 1)


def test_lines_follow_the_file_across_parallel_chunks(tmp_path: Path) -> None:
    """Line lineage survives DuckDB's parallel scan: every row keeps its physical line, even
    past lines rejected for their structure, in a file spanning many chunks and row groups."""
    n = 400_000
    broken_after = {150_000: "u,i,view", 300_000: "u,i,view,2024-01-01T00:00:00Z,s,,,extra"}
    f = tmp_path / "events.csv"
    with f.open("w") as fh:
        fh.write(HEADER)
        for i in range(n):
            fh.write(f"u{i % 977},i{i % 313},view,2024-01-01T00:00:00Z,s{i},,\n")
            if i in broken_after:
                fh.write(broken_after[i] + "\n")
    with Store(tmp_path / "s.duckdb") as s:
        rep = ingest_file(s, f)
        assert (rep.read, rep.stored, rep.quarantined) == (n + 2, n, 2)
        # row i sits on line i + 2, plus one for each broken line written before it
        wrong = s.conn.execute(
            """SELECT count(*) FROM (SELECT line, CAST(substr(session_id, 2) AS BIGINT) AS i
            FROM events) WHERE line <> i + 2 + (i > 150000)::INT + (i > 300000)::INT"""
        ).fetchall()[0][0]
        assert wrong == 0
        q = s.conn.execute("SELECT line FROM quarantine ORDER BY line").fetchall()
        assert [r[0] for r in q] == [150_000 + 3, 300_000 + 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10)),
        ("2024-03-01 10:00:00", datetime(2024, 3, 1, 10)),
        ("2024-03-01T10:00:00", datetime(2024, 3, 1, 10)),
        ("2024-03-01T10:00:00+02:00", datetime(2024, 3, 1, 8)),
        ("2024-03-01 10:00:00-0500", datetime(2024, 3, 1, 15)),
        ("2024-03-01T10:00:00.250Z", datetime(2024, 3, 1, 10, 0, 0, 250_000)),
        ("2024-03-01", datetime(2024, 3, 1)),
        (" 2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10)),
        ("1709287200", datetime(2024, 3, 1, 10)),
        ("1709287200000", datetime(2024, 3, 1, 10)),
        ("2024-02-30T10:00:00Z", None),
        ("2024-03-01T25:00:00Z", None),
        ("2024-03-01T10:00:0xZ", None),
        ("not-a-timestamp", None),
    ],
)
def test_timestamp_parsing_fast_and_full_paths_agree(text: str, expected: datetime | None) -> None:
    """The cheap cast for whole-second UTC/naive shapes never disagrees with the offset-aware
    parse, and every other shape still reaches it."""
    from shopsight.data.formats.generic import timestamp_sql

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(f"SELECT {timestamp_sql('x')} FROM (SELECT ? AS x)", [text]).fetchall()
    assert got[0][0] == expected


def _big_csv(path: Path, n: int) -> None:
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT 'u' || (i % 5000) AS user_id, 'i' || (i % 997) AS item_id,
        'view' AS event_type, TIMESTAMP '2024-01-01' + to_seconds(i) AS timestamp,
        's' || (i // 10) AS session_id, NULL AS query, NULL AS value FROM range({n}) t(i))
        TO '{path}' (HEADER, DELIMITER ',')"""
    )
    con.close()


def test_killed_ingest_leaves_store_readable_and_unchanged(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    with Store(store) as s:
        ingest_file(s, write(tmp_path / "events.csv", GOOD))
        before = s.counts()
    big = tmp_path / "big_events.csv"
    n = 3_000_000
    _big_csv(big, n)
    code = (
        "import sys; from shopsight.data.store import Store; "
        "from shopsight.data.ingest import ingest_file; "
        "s = Store(sys.argv[1]); print('started', flush=True); ingest_file(s, sys.argv[2]); "
        "print('finished', flush=True)"
    )
    killed_mid_way = False
    for delay in (1.0, 0.5, 0.2):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(store), str(big)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_mid_way = True
            break
        proc.wait()
    assert killed_mid_way, "ingest finished before it could be killed; use a bigger file"
    with Store(store) as s:
        assert s.counts() == before
        # and the store still takes the same file completely afterwards
        rep = ingest_file(s, big)
        assert rep.stored == n and s.count("events") == before["events"] + n


# -- property tests: the SQL and Python validators agree, and every row is accounted for ------

NOW = datetime.now().replace(microsecond=0)
_types = st.sampled_from([*EVENT_TYPES, *EVENT_TYPE_ALIASES, "teleport", "", " View "])
_ids = st.one_of(st.none(), st.just(""), st.just("  "), st.text(min_size=1, max_size=8))
_ts = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
)
_vals = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, min_value=None, max_value=None),
    st.floats(min_value=-10, max_value=12),
)
_row = st.fixed_dictionaries(
    {
        "user_id": _ids,
        "item_id": _ids,
        "event_type": _types,
        "timestamp": _ts,
        "timestamp_raw": st.one_of(st.none(), st.just("garbage"), st.just("")),
        "query": st.one_of(st.none(), st.just(""), st.just("shoes")),
        "value": _vals,
        "value_raw": st.one_of(st.none(), st.just("x"), st.just("")),
        "error": st.one_of(st.none(), st.just("json: invalid")),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=20))
def test_sql_and_python_validators_agree(rows: list[dict[str, object]]) -> None:
    for r in rows:
        ts = r["timestamp"]
        # Stay clear of the moving "now + 1 day" boundary, where two clocks can disagree.
        assume(ts is None or abs((ts - (NOW + timedelta(days=1))).total_seconds()) > 3600)  # type: ignore[operator]
        if r["value"] is not None:
            r["value_raw"] = None if r["value_raw"] == "x" else r["value_raw"]
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    import pyarrow as pa

    full = [{**{n: None for n in STAGING["events"].names}, **r} for r in rows]
    for i, r in enumerate(full):
        r["line"] = i
        r["event_type"] = normalise_event_type(r["event_type"])  # type: ignore[arg-type]
    tbl = pa.Table.from_pylist(full, schema=STAGING["events"])
    con.register("t", tbl)
    now_sql = "(now()::TIMESTAMP + INTERVAL 1 DAY)"
    got = con.execute(
        f"SELECT line, {event_reason_sql(now_sql, 0, 5)} FROM t ORDER BY line"
    ).fetchall()
    now = datetime.utcnow() + timedelta(days=1)
    for (_line, sql_reason), r in zip(got, full, strict=True):
        py_reason = event_reason(r, now, 0, 5)
        assert (sql_reason is None) == (py_reason is None), (r, sql_reason, py_reason)
        if sql_reason is not None and py_reason is not None:
            assert sql_reason.split(":")[0] == py_reason.split(":")[0], (r, sql_reason, py_reason)


_cell = st.one_of(
    st.just(""),
    st.sampled_from(["u1", "i1", "view", "purchase", "2024-01-01", "1700000000", "-1", "x"]),
    st.text(alphabet="abc,\"' 01:-", max_size=6),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(st.lists(_cell, min_size=5, max_size=9), min_size=1, max_size=30))
def test_every_row_is_stored_duplicate_or_quarantined(
    tmp_path: Path, lines: list[list[str]]
) -> None:
    f = tmp_path / "fuzz_events.csv"
    f.write_text(HEADER + "\n".join(",".join(c) for c in lines) + "\n")
    db = tmp_path / "fuzz.duckdb"
    if db.exists():
        db.unlink()
    with Store(db) as s:
        rep = ingest_file(s, f, format="csv")
        if rep.error is not None:  # an unterminated quote can swallow the rest: still no crash
            assert str(f) in rep.error
            assert s.count("events") == 0
            return
        assert rep.read == rep.stored + rep.duplicates + rep.quarantined
        assert s.count("events") == rep.stored
        assert s.count("quarantine") == rep.quarantined
        bad = s.conn.execute(
            "SELECT count(*) FROM events WHERE user_id IS NULL OR timestamp < '1990-01-01' OR value < 0"
        ).fetchone()
        assert bad == (0,)


def test_store_connection_keeps_stdout_for_json(tmp_path: Path) -> None:
    # DuckDB's own progress bar writes to stdout on long queries; `--json` must stay one object.
    with Store(tmp_path / "s.duckdb") as store:
        setting = store.conn.execute("SELECT current_setting('enable_progress_bar')").fetchone()
    assert setting == (False,)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (duckdb.IOException("IO Error: Could not write file: No space left on device"), "disk"),
        (duckdb.OutOfMemoryException("Out of Memory Error: could not allocate"), "memory"),
    ],
)
def test_full_disk_or_memory_is_the_machine_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: duckdb.Error, expected: str
) -> None:
    """Not "not readable as csv": the error reaches the CLI, which names the machine's limit."""
    from shopsight.cli._common import machine_limit
    from shopsight.data import ingest as ingest_mod

    path = write(tmp_path / "events.csv", ["u1,i1,view,2024-01-01T00:00:00"])

    def boom(*_: object, **__: object) -> None:
        raise exc

    monkeypatch.setattr(ingest_mod, "file_fingerprint", boom)
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(type(exc)) as raised:
            ingest_file(store, path)
        assert store.count("events") == 0
    assert f"out of {expected}" in (machine_limit(raised.value) or "")
