"""Right to be forgotten: after ``forget_user`` the id is nowhere, not in any table, not in the
store file's bytes (old blocks included), not in the feature cache or a model folder, and the
audit log records the deletion without the id."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shopsight.cli import app
from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.pseudonym import Pseudonymizer, PseudonymKeyError
from shopsight.data.store import Store
from shopsight.features.base import Encoded
from shopsight.features.cache import FeatureCache
from shopsight.models.artifact import load_artifact, save_artifact
from shopsight.models.mf import BPR
from shopsight.privacy.forget import AUDIT_TABLE, audit_log, forget_user, residual_matches


class ToyEncoder:
    """A deterministic stand-in text encoder (the cache only needs name/version/content_key)."""

    name = "toy-text"
    version = "1"
    dim = 4

    def content_key(self, item: Any) -> bytes | None:
        return str(item).encode() if item else None

    def encode(self, inputs: Sequence[Any]) -> Encoded:
        vecs = np.array(
            [[len(str(x)), hash(str(x)) % 97, 1.0, 0.0] for x in inputs], dtype=np.float32
        )
        return Encoded(vecs.reshape(len(inputs), 4), np.ones(len(inputs), bool))


def _all_bytes(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def _target(store: Path) -> str:
    """A user whose id is everywhere: events, quarantined raw text and cleaning-log examples."""
    with Store(store, read_only=True) as st:
        raws = st.conn.execute("SELECT raw FROM quarantine WHERE raw IS NOT NULL").fetchall()
        logs = st.conn.execute("SELECT detail FROM cleaning_log").fetchall()
    in_q = {m for (r,) in raws for m in re.findall(r"u\d{4}", r)}
    in_log = {m for (r,) in logs for m in re.findall(r'"(u\d{4})"', r)}
    both = sorted(in_q & in_log)
    assert both, "the test shop should have a user both quarantined and in cleaning examples"
    return both[0]


def _counts(store: Path) -> dict[str, int]:
    with Store(store, read_only=True) as st:
        names = [r[0] for r in st.conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {n: st.count(n) for n in names}


def test_forget_leaves_no_trace_in_the_store_file(raw_store: Path, tmp_path: Path) -> None:
    uid = _target(raw_store)
    assert raw_store.read_bytes().count(uid.encode()) > 0  # the byte search can see it
    before = _counts(raw_store)
    with Store(raw_store) as st:
        n_events = st.conn.execute("SELECT count(*) FROM events WHERE user_id = ?", [uid])
        own_events = int(n_events.fetchall()[0][0])
        report = forget_user(st, uid)
        assert residual_matches(st, [uid]) == {}
        audit = audit_log(st)
        audit_text = json.dumps(
            st.conn.execute(f"SELECT * FROM {AUDIT_TABLE}").fetchall(), default=str
        )
    assert report["tables"]["events"] == own_events > 0
    assert report["tables"]["quarantine"] >= 1 and report["tables"]["cleaning_log"] >= 1
    assert report["residual"] == {} and report["store_rewritten"]
    # No trace in the file, its WAL or any leftover of the rewrite.
    assert uid.encode() not in raw_store.read_bytes()
    assert not Path(str(raw_store) + ".wal").exists()
    assert not list(tmp_path.glob("*.rewrite*"))
    # Only the user's rows went; the audit row names no one.
    after = _counts(raw_store)
    for table in before:
        if table != "cleaning_log":
            assert before[table] - after[table] == report["tables"].get(table, 0), table
    assert len(audit) == 1 and audit[0]["rows_removed"] == report["rows_removed"]
    assert uid not in audit_text and after[AUDIT_TABLE] == 1


def test_store_still_works_after_forget(raw_store: Path, shop: Any) -> None:
    uid = _target(raw_store)
    with Store(raw_store) as st:
        forget_user(st, uid)
        # Sequences and keys survive the rewrite: a re-ingest appends and dedups as before.
        report = ingest_files(st, [shop.files.items])
        assert report.ok and report.files[0].stored == 0 and report.files[0].duplicates > 0
        st.set_meta("probe", "1")
        st.set_meta("probe", "2")
        assert st.get_meta("probe") == "2"
        ds = Dataset.from_store(st)
    assert uid not in set(ds.user_ids.tolist())


def test_forget_purges_feature_cache_and_model_folder(raw_store: Path, tmp_path: Path) -> None:
    uid = _target(raw_store)
    private_query, shared_query = f"gift idea for my sister {uid}-x", "shared query"
    with Store(raw_store) as st:
        other = st.conn.execute(
            "SELECT user_id FROM events WHERE user_id <> ? LIMIT 1", [uid]
        ).fetchall()[0][0]
        for user, q in ((uid, private_query), (uid, shared_query), (other, shared_query)):
            st.conn.execute(
                """INSERT INTO events SELECT 1000000 + count(*) OVER (), ?, NULL, 'search',
                TIMESTAMP '2025-03-10 10:00:00', false, NULL, ?, NULL, 'test', 0""",
                [user, q],
            )
        ds = Dataset.from_store(st, clean=False)  # the target is a bot: not in *_clean
    cache_dir = tmp_path / "raw.duckdb.features"
    cache = FeatureCache(cache_dir)
    enc = ToyEncoder()
    cache.encode(enc, [private_query, shared_query, "item title"])
    assert cache.size(enc) == 3
    pq.write_table(
        pa.table({"user_id": [uid, other], "recency": [1.0, 2.0]}), cache_dir / "users.parquet"
    )
    (cache_dir / "blob.bin").write_bytes(b"\x00\x01" + uid.encode() + b"\x02")
    model_dir = tmp_path / "model"
    save_artifact(BPR(factors=4, epochs=1, seed=0).fit(ds), ds, model_dir)
    before = load_artifact(model_dir)
    row = before.user_index(uid)
    assert row >= 0 and before.model.seen_[row].nnz > 0
    export = tmp_path / "export.jsonl"
    export.write_text(
        json.dumps({"user_id": uid, "n": 1}) + "\n" + json.dumps({"user_id": other, "n": 2}) + "\n"
    )

    with Store(raw_store) as st:
        report = forget_user(st, uid, feature_cache=cache_dir, extra_paths=[model_dir, export])

    assert report["cache_vectors_removed"] == 1  # the private query only; the shared one stays
    assert FeatureCache(cache_dir).size(enc) == 2
    assert pq.read_table(cache_dir / "users.parquet").column("user_id").to_pylist() == [other]
    # A file naming the id outside any user field is never deleted: left and reported.
    assert (cache_dir / "blob.bin").read_bytes() == b"\x00\x01" + uid.encode() + b"\x02"
    assert report["unhandled"] == [str(cache_dir / "blob.bin")]
    (cache_dir / "blob.bin").unlink()
    assert uid.encode() not in _all_bytes(cache_dir)
    actions = {Path(f["path"]).name: f["action"] for f in report["files"]}
    assert actions["model"] == "folded_out" and actions["blob.bin"] == "unhandled"
    # The model: the user is a cold user now, their state zeroed; everyone else unchanged.
    assert uid.encode() not in _all_bytes(model_dir)
    after = load_artifact(model_dir)
    assert after.user_index(uid) == -1 and after.model.seen_[row].nnz == 0
    assert not after.model.user_factors_[row].any()
    keep = np.arange(len(before.user_ids)) != row
    np.testing.assert_array_equal(after.model.user_factors_[keep], before.model.user_factors_[keep])
    assert after.recommend(str(other), 5) == before.recommend(str(other), 5)
    assert json.loads(export.read_text()) == {"user_id": other, "n": 2}


def test_forget_in_a_pseudonymised_store(
    pseudo_store: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    pz = Pseudonymizer(key)
    with Store(pseudo_store, read_only=True) as st:
        pseudos = {r[0] for r in st.conn.execute("SELECT DISTINCT user_id FROM events").fetchall()}
    uid = next(u for u in (f"u{i:04d}" for i in range(300)) if pz(u) in pseudos)
    pid = pz(uid)
    assert pid.encode() in pseudo_store.read_bytes()
    monkeypatch.delenv("SHOPSIGHT_PSEUDONYM_KEY")
    with Store(pseudo_store) as st, pytest.raises(PseudonymKeyError, match="needs its key"):
        forget_user(st, uid)
    monkeypatch.setenv("SHOPSIGHT_PSEUDONYM_KEY", key.hex())
    with Store(pseudo_store) as st:
        report = forget_user(st, uid)
    assert report["identities_searched"] == 2 and report["tables"]["events"] > 0
    data = pseudo_store.read_bytes()
    assert pid.encode() not in data and uid.encode() not in data


def test_cli_forget(raw_store: Path) -> None:
    uid = _target(raw_store)
    runner = CliRunner()
    res = runner.invoke(app, ["forget", uid, "--store", str(raw_store), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["rows_removed"] > 0 and out["residual"] == {}
    assert uid.encode() not in raw_store.read_bytes()
    res = runner.invoke(app, ["forget", uid, "--store", str(raw_store.with_name("none.duckdb"))])
    assert res.exit_code == 2 and res.output.startswith("error:") and res.output.count("\n") == 1
