"""Pseudonymisation at ingest, of an existing store and of exports: no raw id stored, ids
recoverable with the key only, and the store refuses to mix keys or raw ids with pseudonyms."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shopsight.cli import app
from shopsight.data.ingest import ingest_files
from shopsight.data.pseudonym import (
    Pseudonymizer,
    PseudonymKeyError,
    is_pseudonym,
    redact_id,
)
from shopsight.data.store import Store
from shopsight.privacy.exports import (
    export_table,
    pseudonymize_records,
    pseudonymize_store,
    pseudonymize_table,
)


def _raw_ids_in_file(path: Path, ids: list[str]) -> set[str]:
    data = path.read_bytes()
    return {i for i in ids if i.encode() in data}


def _user_ids(store: Path) -> set[str]:
    with Store(store, read_only=True) as st:
        return {
            str(r[0])
            for t in ("events", "users", "reviews", "events_clean", "users_clean", "reviews_clean")
            for r in st.conn.execute(f"SELECT DISTINCT user_id FROM {t}").fetchall()
        }


def test_pseudonymised_ingest_stores_no_raw_id(shop: Any) -> None:
    # The raw store really does contain the ids as bytes, so the search below can find them.
    assert len(_raw_ids_in_file(shop.raw_store, shop.raw_ids)) > 0.9 * len(shop.raw_ids)
    assert _raw_ids_in_file(shop.pseudo_store, shop.raw_ids) == set()
    ids = _user_ids(shop.pseudo_store)
    assert ids and all(is_pseudonym(u) for u in ids)
    with Store(shop.pseudo_store, read_only=True) as st:
        raws = [r[0] for r in st.conn.execute("SELECT raw FROM quarantine").fetchall() if r[0]]
        counts_p = st.counts()
    assert raws, "the synthetic shop has quarantined rows with raw text"
    pat = re.compile(r"(?<![A-Za-z0-9_])u\d{4}(?![A-Za-z0-9_])")
    assert not any(pat.search(r) for r in raws)
    with Store(shop.raw_store, read_only=True) as st:
        counts_r = st.counts()
    # Same rows, only the ids differ (ingest_log rows are per file, equal too).
    assert counts_p == counts_r


def test_ids_recover_with_the_key_only(shop: Any, key: bytes) -> None:
    pseudonyms = _user_ids(shop.pseudo_store)
    raw = _user_ids(shop.raw_store)
    found = Pseudonymizer(key).recover(pseudonyms, shop.raw_ids)
    assert set(found) == pseudonyms and set(found.values()) == raw
    assert Pseudonymizer(b"another key of 32 bytes, not it!").recover(pseudonyms, raw) == {}


def test_store_refuses_mixing_keys_and_raw_ids(
    shop: Any, pseudo_store: Path, raw_store: Path, monkeypatch: pytest.MonkeyPatch, key: bytes
) -> None:
    events = [shop.files.events]
    with Store(pseudo_store) as st, pytest.raises(PseudonymKeyError, match="another key"):
        ingest_files(st, events, pseudonymizer=Pseudonymizer(b"x" * 32))
    # No pseudonymiser given: the store's own key (from the env) is used, never raw ids.
    with Store(pseudo_store) as st:
        report = ingest_files(st, events)
        assert report.ok
    assert all(is_pseudonym(u) for u in _user_ids(pseudo_store))
    monkeypatch.delenv("SHOPSIGHT_PSEUDONYM_KEY")
    with Store(pseudo_store) as st, pytest.raises(PseudonymKeyError, match="not found"):
        ingest_files(st, events)
    with Store(raw_store) as st, pytest.raises(PseudonymKeyError, match="raw user ids"):
        ingest_files(st, events, pseudonymizer=Pseudonymizer(key))


def test_pseudonymize_existing_store_matches_ingest_time(
    shop: Any, raw_store: Path, key: bytes
) -> None:
    with Store(raw_store) as st:
        report = pseudonymize_store(st, Pseudonymizer(key))
        detail = st.conn.execute("SELECT detail FROM cleaning_log").fetchall()
        again = pseudonymize_store(st, Pseudonymizer(key))
    assert report["rows_changed"] > 0 and again["rows_changed"] == 0
    assert _user_ids(raw_store) == _user_ids(shop.pseudo_store)
    assert _raw_ids_in_file(raw_store, shop.raw_ids) == set()
    assert not any(re.search(r'"u\d{4}"', d[0]) for d in detail)


def test_exports_are_pseudonymised_by_default(raw_store: Path, tmp_path: Path) -> None:
    with Store(raw_store, read_only=True) as st:
        out = export_table(st, "events_clean", tmp_path / "ev.parquet")
        raw = export_table(st, "users", tmp_path / "users.csv", raw_ids=True)
    table = pq.read_table(tmp_path / "ev.parquet")
    assert out["pseudonymized"] and all(
        is_pseudonym(u) for u in table.column("user_id").to_pylist()
    )
    assert not raw["pseudonymized"] and "u0" in (tmp_path / "users.csv").read_text()


def test_table_and_record_helpers(key: bytes) -> None:
    pz = Pseudonymizer(key)
    t = pa.table({"user_id": ["u1", None], "item_id": ["i1", "i2"]})
    out = pseudonymize_table(t, pz)
    assert out.column("user_id").to_pylist() == [pz("u1"), None]
    assert out.column("item_id").to_pylist() == ["i1", "i2"]
    recs = pseudonymize_records([{"user_id": "u1", "items": [{"customer_id": "u2"}], "n": 3}], pz)
    assert recs == [{"user_id": pz("u1"), "items": [{"customer_id": pz("u2")}], "n": 3}]
    assert pz(pz("u1")) == pz("u1")  # idempotent
    assert redact_id("u1,u12,xu1,u1", "u1", "P") == "P,u12,xu1,P"


def test_cli_pseudonymize_and_recover(tmp_path: Path, key: bytes) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["pseudonymize", "--id", "u0001", "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.stdout)["pseudonyms"]["u0001"]
    assert p == Pseudonymizer(key)("u0001")
    cands = tmp_path / "customers.txt"
    cands.write_text("u0000\nu0001\nu0002\n")
    res = runner.invoke(app, ["pseudonymize", "--recover", p, "--candidates", str(cands), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recovered"] == {p: "u0001"}
    res = runner.invoke(app, ["pseudonymize", "--recover", p])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "error:" in res.output
