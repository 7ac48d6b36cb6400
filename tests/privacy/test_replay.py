"""Pseudonyms that hold under the replay attack.

The attacker holds a pseudonymised export or store and a list of candidate raw ids (a shop's ids
are guessable: ``u0000``..``u9999``, or 1..943). Each row's content key is DuckDB's ``hash`` of
the user id and the row's other columns; if that key was computed over the raw id, hashing each
candidate with the row's other columns finds the raw id behind every pseudonym, no key needed.
The attack below does exactly that; it recovers every user from an unprotected export (the
control) and none from what ``export`` and ``pseudonymize --store`` now produce.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopsight.data.ingest import ingest_files
from shopsight.data.keys import CONTENT_COLUMNS
from shopsight.data.pseudonym import Pseudonymizer, keys_are_pseudonymised
from shopsight.data.schema import KEY_COLUMN
from shopsight.data.store import Store
from shopsight.privacy.exports import export_table, pseudonymize_store, pseudonymize_table

# Tables whose key is hashed over the user id.
USER_KEYED = ("events", "reviews", "users")


def replay_attack(data: pa.Table, table: str, candidates: list[str]) -> dict[str, str]:
    """Pseudonym -> raw id, for every user of ``data`` whose key the candidates reproduce.

    One row per user is enough: hash each candidate with that row's other content columns the
    way the store computes keys, and compare with the row's key.
    """
    key = KEY_COLUMN[table]
    cols = CONTENT_COLUMNS[table]
    if key not in data.column_names:
        return {}
    others = ", ".join(f"r.{c}" for c in cols if c != "user_id")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("data_in", data)
    con.register("cand", pa.table({"raw": pa.array(candidates, pa.string())}))
    rows = con.execute(
        f"""WITH one AS (SELECT * FROM data_in QUALIFY row_number() OVER (PARTITION BY user_id) = 1)
        SELECT r.user_id, c.raw FROM one r CROSS JOIN cand c
        WHERE hash(c.raw, {others}) = r.{key}"""
    ).fetchall()
    con.close()
    return {str(u): str(raw) for u, raw in rows}


def _users(data: pa.Table) -> int:
    return len(set(data.column("user_id").to_pylist()))


def _store_table(path: Path, table: str) -> pa.Table:
    with Store(path, read_only=True) as st:
        return st.table(table)


def test_attack_recovers_every_user_from_an_unprotected_export(shop: Any, key: bytes) -> None:
    """The control: user ids pseudonymised, keys kept as stored (what exports used to do)."""
    pz = Pseudonymizer(key)
    for table in ("events", "users"):
        data = pseudonymize_table(_store_table(shop.raw_store, table), pz, ["user_id"])
        found = replay_attack(data, table, shop.raw_ids)
        assert len(found) == _users(data) > 50, table
        assert all(pz(raw) == p for p, raw in found.items())


def test_exports_give_no_id_back(shop: Any, tmp_path: Path, key: bytes) -> None:
    pz = Pseudonymizer(key)
    figures = {}
    with Store(shop.raw_store, read_only=True) as st:
        for table in ("events", "events_clean", "reviews", "users", "users_clean"):
            base = table.removesuffix("_clean")
            out = tmp_path / f"{table}.parquet"
            export_table(st, table, out, pseudonymizer=pz)
            data = pq.read_table(out)
            assert set(data.column("user_id").to_pylist()).isdisjoint(shop.raw_ids)
            found = replay_attack(data, base, shop.raw_ids)
            figures[table] = (_users(data), len(found))
            assert found == {}, table
            # Re-keyed, not dropped: equal keys stay equal across the export's tables.
            assert data.column(KEY_COLUMN[base]).null_count == 0
        clean_keys = set(pq.read_table(tmp_path / "events_clean.parquet")["event_key"].to_pylist())
        raw_keys = set(pq.read_table(tmp_path / "events.parquet")["event_key"].to_pylist())
        assert clean_keys <= raw_keys
    assert all(n > 50 for n, _ in figures.values()), figures
    print("export replay (users, recovered):", figures)


def test_a_converted_store_gives_no_id_back(shop: Any, tmp_path: Path, key: bytes) -> None:
    store = tmp_path / "converted.duckdb"
    shutil.copy(shop.raw_store, store)
    pz = Pseudonymizer(key)
    with Store(store) as st:
        report = pseudonymize_store(st, pz)
        assert report["keys_recomputed"] > 0 and keys_are_pseudonymised(st)
    figures = {}
    for table in (*USER_KEYED, "events_clean"):
        data = _store_table(store, table)
        found = replay_attack(data, table.removesuffix("_clean"), shop.raw_ids)
        figures[table] = (_users(data), len(found))
        assert found == {}, table
    # Keys now equal those of a store pseudonymised at ingest: the same rows, the same keys.
    for table in USER_KEYED:
        conv = set(_store_table(store, table)[KEY_COLUMN[table]].to_pylist())
        ing = set(_store_table(shop.pseudo_store, table)[KEY_COLUMN[table]].to_pylist())
        assert conv == ing, table
    # *_clean copies carry the new keys too (they still join with the raw table).
    with Store(store, read_only=True) as st:
        orphans = st.conn.execute(
            "SELECT count(*) FROM events_clean c ANTI JOIN events e USING (event_key)"
        ).fetchone()
    assert orphans == (0,)
    print("converted store replay (users, recovered):", figures)


def test_reingest_into_a_converted_store_adds_nothing(
    shop: Any, tmp_path: Path, key: bytes
) -> None:
    store = tmp_path / "converted.duckdb"
    shutil.copy(shop.raw_store, store)
    with Store(store) as st:
        pseudonymize_store(st, Pseudonymizer(key))
        before = st.counts()
        report = ingest_files(st, shop.files.data_files())
        assert report.ok and sum(f.stored for f in report.files) == 0
        after = st.counts()
    assert after.pop("ingest_log") > before.pop("ingest_log")  # the runs are logged, no more
    assert after == before


def test_exports_leave_raw_text_out_unless_asked(shop: Any, tmp_path: Path, key: bytes) -> None:
    pz = Pseudonymizer(key)
    known = set(shop.raw_ids)
    with Store(shop.raw_store, read_only=True) as st:
        q = tmp_path / "quarantine.parquet"
        res = export_table(st, "quarantine", q, pseudonymizer=pz)
        assert set(res["text_columns_left_out"]) == {"raw", "reason"}
        assert not {"raw", "reason"} & set(pq.read_table(q).column_names)
        log = tmp_path / "log.csv"
        export_table(st, "cleaning_log", log, pseudonymizer=pz)
        assert "detail" not in log.read_text().splitlines()[0]
        # Opt in: the text is there, with every known raw id replaced by its pseudonym.
        for table in ("quarantine", "cleaning_log"):
            out = tmp_path / f"{table}-text.parquet"
            export_table(st, table, out, pseudonymizer=pz, include_text=True)
            data = pq.read_table(out)
            text_cols = [c for c in ("raw", "reason", "detail") if c in data.column_names]
            assert text_cols
            words = {
                w
                for c in text_cols
                for v in data.column(c).to_pylist()
                if v
                for w in re.findall(r"[A-Za-z0-9_\-]+", v)
            }
            assert words.isdisjoint(known), table
            assert any(w.startswith("p_") for w in words), table


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_raw_ids_export_is_as_stored(shop: Any, tmp_path: Path, fmt: str) -> None:
    with Store(shop.raw_store, read_only=True) as st:
        res = export_table(st, "users", tmp_path / f"u.{fmt}", raw_ids=True)
    assert res["keys_rekeyed"] == [] and res["pseudonymized"] is False
