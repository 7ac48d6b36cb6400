"""``forget`` over every kind of artifact a shop has, checked on DECODED content.

Each case builds a store (cleaned), a feature cache beside it, model folders (factor vectors,
histories, a sequence model), a personas folder with its HTML report, a leftover live-event
spool file and a folder of unrelated files; forgets one user; then reads every file back as
data (Parquet as tables, JSON / JSONL / CSV parsed, safetensors metadata and npz arrays, the
store through DuckDB) and counts where the user is still named. Expected: 0 hits, every model and
the personas still load, and every file the report does not list is byte-for-byte unchanged,
modes included. Cases: a synthetic-shop user with no review or search text; a MovieLens-100K
user whose numeric id is also an item id (the item must survive); an unknown id. Then the same
through the server (``POST /admin/forget``) and a restart; and a crash half-way, finished by the
next run's journal replay.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import html
import io
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open

from shopsight.data.clean import CleanConfig, clean_store
from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.pseudonym import Pseudonymizer
from shopsight.data.store import Store
from shopsight.features.base import Encoded
from shopsight.features.cache import FeatureCache
from shopsight.models.artifact import load_artifact, save_artifact
from shopsight.models.itemknn import ItemKNN
from shopsight.models.mf import BPR
from shopsight.personas.core import Personas, build_personas
from shopsight.personas.report import write_report
from shopsight.privacy import forget as forget_mod
from shopsight.privacy.forget import forget_user, journal_dir

TOKEN = "t" * 32
USER_FIELD = re.compile(
    r"^(user|user_?id|customer|customer_?id|visitor_?id|member_?id|reviewer_?id|uid)$|_user_?id$",
    re.IGNORECASE,
)
FIGURES: dict[str, Any] = {}


class ToyEncoder:
    name, version, dim = "toy-text", "1", 4

    def content_key(self, item: Any) -> bytes | None:
        return str(item).encode() if item else None

    def encode(self, inputs: Sequence[Any]) -> Encoded:
        vecs = np.array([[len(str(x)), 1.0, 0.0, 2.0] for x in inputs], np.float32)
        return Encoded(vecs.reshape(len(inputs), 4), np.ones(len(inputs), bool))


# -- searching decoded content ----------------------------------------------------------------
class Hits:
    """Where ``ids`` are still named. A strong id (a pseudonym, or one that is not a plain
    number) counts anywhere as a whole token; a numeric raw id only in user fields, since
    ``414`` elsewhere is as likely an item, a price or a count."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = set(ids)
        strong = [i for i in ids if not i.isdigit()]
        self.token = (
            re.compile(
                r"(?<![A-Za-z0-9_\-])(" + "|".join(map(re.escape, strong)) + r")(?![A-Za-z0-9_\-])"
            )
            if strong
            else None
        )
        self.found: list[str] = []
        self.files = 0

    def text(self, where: str, value: object) -> None:
        if self.token is not None and isinstance(value, str) and self.token.search(value):
            self.found.append(where)

    def field(self, where: str, name: str, value: object) -> None:
        if USER_FIELD.search(name) and value is not None and str(value) in self.ids:
            self.found.append(f"{where}:{name}")
        self.text(where, value)

    def walk(self, where: str, value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self.text(where, k)
                if USER_FIELD.search(str(k)) and str(k) not in ("users",):
                    self.field(where, str(k), v if not isinstance(v, dict | list) else None)
                self.walk(where, v, str(k))
        elif isinstance(value, list):
            for v in value:
                if key in ("users", "user_ids", "members") and str(v) in self.ids:
                    self.found.append(f"{where}:{key}")
                self.walk(where, v, key)
        else:
            self.text(where, value)

    def table(self, where: str, t: pa.Table) -> None:
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                for v in col.to_pylist():
                    self.field(where, name, v)
                    if isinstance(v, str) and v[:1] in "{[":
                        with contextlib.suppress(ValueError):
                            self.walk(where, json.loads(v))

    def store(self, path: Path) -> None:
        con = duckdb.connect(str(path), read_only=True)
        try:
            tables = con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT internal"
            ).fetchall()
            for (t,) in tables:
                self.table(f"{path.name}:{t}", con.sql(f'SELECT * FROM "{t}"').to_arrow_table())
        finally:
            con.close()
        if self.token is not None:  # old blocks of the file too
            self.text(f"{path.name}:bytes", path.read_bytes().decode("latin-1"))

    def file(self, path: Path) -> None:
        self.files += 1
        s = path.suffix.lower()
        where = str(path)
        if s == ".duckdb":
            self.store(path)
        elif s == ".parquet":
            self.table(where, pq.read_table(path))
        elif s == ".json":
            self.walk(where, json.loads(path.read_text()))
        elif s in (".jsonl", ".ndjson"):
            for line in path.read_text().splitlines():
                self.walk(where, json.loads(line))
        elif s == ".csv":
            for row in csv.DictReader(io.StringIO(path.read_text())):
                for k, v in row.items():
                    self.field(where, k or "", v)
        elif s == ".safetensors":
            with safe_open(str(path), framework="numpy") as fh:
                self.walk(where, dict(fh.metadata() or {}))
        elif s == ".npz":
            with np.load(path) as z:
                for k in z.files:
                    if z[k].dtype.kind in "US":
                        for v in z[k].tolist():
                            self.field(where, k, v)
        elif s in (".html", ".htm"):
            self.text(where, html.unescape(path.read_text()))
        else:
            self.text(where, path.read_bytes().decode("latin-1"))


def _files(roots: Sequence[Path]) -> Iterator[Path]:
    for r in roots:
        if r.is_file():
            yield r
        elif r.is_dir():
            yield from sorted(p for p in r.rglob("*") if p.is_file())


def _snapshot(roots: Sequence[Path]) -> dict[Path, tuple[str, int]]:
    return {
        p: (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in _files(roots)
    }


# -- a shop with every artifact kind ------------------------------------------------------------
@dataclass
class Site:
    store: Path
    cache: Path
    models: list[Path]
    personas: Path
    report: Path
    spool: Path
    misc: Path

    @property
    def roots(self) -> list[Path]:
        return [self.store, self.cache, *self.models, self.report.parent, self.spool, self.misc]


def _build_site(root: Path, store: Path, target: str, other: str, *, seq: bool) -> Site:
    with Store(store) as st:
        ds = Dataset.from_store(st)
        personas = build_personas(st, use_features=False)
    cache = store.with_name(store.name + ".features")
    fc = FeatureCache(cache)
    fc.encode(ToyEncoder(), ["an item title", "another item title", f"note about {other}"])
    pq.write_table(pa.table({"item_id": ds.item_ids[:20].tolist()}), cache / "items.parquet")
    models = []
    for name, model in (
        ("bpr", BPR(factors=4, epochs=1, seed=0)),
        ("itemknn", ItemKNN(neighbours=10)),
    ):
        d = root / name
        save_artifact(model.fit(ds), ds, d)
        models.append(d)
    if seq:
        from shopsight.models.sasrec import SASRec

        d = root / "sasrec"
        sas = SASRec(dim=8, n_layers=1, n_heads=1, epochs=1, max_len=8, n_negatives=8, seed=0)
        save_artifact(sas.fit(ds), ds, d)
        models.append(d)
    pdir = models[0] / "personas"
    personas.save(pdir)
    report = root / "reports" / "personas.html"
    write_report(personas, report, n_user_pages=min(len(personas), 300))
    spool = store.with_name(store.name + ".spool")
    spool.mkdir(mode=0o700, exist_ok=True)
    # In a numeric-id shop, an item numbered like the user (must stay).
    same = target if target.isdigit() else "i2"
    lines = [
        {"user_id": target, "item_id": "i1", "event_type": "view"},
        {"user_id": other, "item_id": same, "event_type": "view"},
    ]
    (spool / "live-events-1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    misc = root / "misc"
    misc.mkdir()
    (misc / "users.csv").write_text(f"user_id,score\n{target},1\n{other},2\n")
    os.chmod(misc / "users.csv", 0o640)
    (misc / "items.csv").write_text(f"item_id,score\n{same},1\n")
    (misc / "app.js").write_text('const s = "\\u0153";\n')
    np.savez(misc / "ids.npz", user_ids=np.array([target, other]), x=np.array([1.0, 2.0]))
    os.chmod(models[0] / "model.safetensors", 0o640)
    os.chmod(pdir / "users.parquet", 0o600)
    return Site(store, cache, models, pdir, report, spool, misc)


def _forget_and_check(site: Site, uid: str, *, found: bool) -> dict[str, Any]:
    pz = Pseudonymizer()
    ids = [uid, pz(uid)]
    before = _snapshot(site.roots)
    loaded = {d: load_artifact(d) for d in site.models}
    seen = Hits(ids)  # the search finds the user before: it can fail
    for p in _files(site.roots):
        seen.file(p)
    assert bool(seen.found) is found, seen.found[:5]
    with Store(site.store) as st:
        report = forget_user(
            st, uid, feature_cache=site.cache, extra_paths=[*site.models, site.report, site.misc]
        )
    assert report["found"] is found and report["residual"] == {}
    after = _snapshot(site.roots)
    # Nothing deleted; modes kept; only what the report names changed.
    assert set(before) <= set(after), set(before) - set(after)
    assert all(after[p][1] == before[p][1] for p in before)
    listed = {Path(f["path"]) for f in report["files"] if f["action"] == "rewritten"}
    for f in report["files"]:
        if f["action"] == "folded_out":
            listed |= {Path(f["path"]) / n for n in ("users.parquet", "model.safetensors")}
            listed.add(Path(f["path"]) / "config.json")
    changed = {p for p in before if after[p][0] != before[p][0]} - {site.store}
    assert changed <= listed, changed - listed
    # Decoded content: the user is named nowhere.
    hits = Hits(ids)
    for p in _files(site.roots):
        hits.file(p)
    assert hits.found == [], hits.found[:10]
    # Every model and the personas still load; other users are served as before.
    for d, old in loaded.items():
        new = load_artifact(d)
        assert new.user_index(uid) == -1
        other = next(u for u in old.user_ids.tolist() if u and u != uid)
        assert new.recommend(other, 5) == old.recommend(other, 5)
        np.testing.assert_array_equal(new.item_ids, old.item_ids)  # items survive
    p = Personas.load(site.personas)
    assert p.profile(uid) is None and len(p) > 0
    return {
        "report": report,
        "files_checked": hits.files,
        "hits_before": len(seen.found),
        "files_naming_before": len({h.split(":")[0] for h in seen.found}),
        "hits": len(hits.found),
    }


# -- the synthetic shop: a user with no text --------------------------------------------------
@pytest.fixture
def synthetic_site(shop: Any, tmp_path: Path) -> tuple[Site, str, str]:
    store = tmp_path / "shop.duckdb"
    shutil.copy(shop.raw_store, store)
    with Store(store, read_only=True) as st:
        rows = st.conn.execute(
            """SELECT user_id FROM events_clean GROUP BY user_id
            HAVING count(query) = 0 AND user_id NOT IN (SELECT user_id FROM reviews)
            ORDER BY count(*) DESC LIMIT 2"""
        ).fetchall()
    target, other = rows[0][0], rows[1][0]
    return _build_site(tmp_path, store, target, other, seq=True), target, other


def test_forget_a_user_without_text_everywhere(synthetic_site: tuple[Site, str, str]) -> None:
    site, uid, other = synthetic_site
    out = _forget_and_check(site, uid, found=True)
    report = out["report"]
    assert report["tables"]["events"] > 0 and report["rows_removed"] > 0
    actions = {Path(f["path"]).name: f["action"] for f in report["files"]}
    assert actions["bpr"] == actions["itemknn"] == actions["sasrec"] == "folded_out"
    assert actions["live-events-1.jsonl"] == actions["users.csv"] == "rewritten"
    assert actions["personas.html"] == "rewritten" and actions["ids.npz"] == "rewritten"
    # The other user's rows stay, including their event on an item named like the target.
    spooled = [json.loads(x) for x in (site.spool / "live-events-1.jsonl").read_text().splitlines()]
    assert spooled == [{"user_id": other, "item_id": "i2", "event_type": "view"}]
    page = site.report.read_text()
    assert f'data-user="{Pseudonymizer()(other)}"' in page and 'id="segment-map"' in page
    assert FeatureCache(site.cache).size(ToyEncoder()) == 3
    # The audit row, without the id.
    with Store(site.store, read_only=True) as st:
        audit = st.conn.execute("SELECT * FROM privacy_audit").fetchall()
    assert len(audit) == 1 and uid not in str(audit)
    assert not journal_dir(site.store).exists()
    # Already forgotten: exit 0, nothing found, nothing touched but a new audit row.
    again = _forget_and_check(site, uid, found=False)
    assert again["report"]["rows_removed"] == 0
    FIGURES["synthetic"] = {k: v for k, v in out.items() if k != "report"}


def test_forget_an_unknown_id_touches_nothing(synthetic_site: tuple[Site, str, str]) -> None:
    site, _, _ = synthetic_site
    out = _forget_and_check(site, "nobody-at-all", found=False)
    assert out["report"]["files"] == [] and out["report"]["tables"] == {}
    with Store(site.store, read_only=True) as st:
        assert st.conn.execute("SELECT count(*) FROM privacy_audit").fetchone() == (1,)


# -- a numeric-id shop ----------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.slow
def test_forget_in_a_numeric_id_shop_keeps_the_same_numbered_item(
    shared: Any, tmp_path: Path
) -> None:
    d = shared.path("movielens-100k")
    store = tmp_path / "ml.duckdb"
    with Store(store) as st:
        assert ingest_files(st, [d / "u.item", d / "u.user", d / "u.data"]).ok
        clean_store(st, CleanConfig())
        uid = "414"
        assert st.conn.execute("SELECT count(*) FROM items WHERE item_id = ?", [uid]).fetchone()[0]
        n_item = st.conn.execute(
            "SELECT count(*) FROM events WHERE item_id = ? AND user_id <> ?", [uid, uid]
        ).fetchone()[0]
    site = _build_site(tmp_path, store, uid, "1", seq=False)
    before = {m: load_artifact(m).item_index(uid) for m in site.models}
    out = _forget_and_check(site, uid, found=True)
    with Store(store, read_only=True) as st:
        assert st.conn.execute(
            "SELECT count(*) FROM items WHERE item_id = ?", [uid]
        ).fetchone() == (1,)
        left = st.conn.execute(
            "SELECT count(*) FROM events WHERE item_id = ? AND user_id <> ?", [uid, uid]
        ).fetchone()[0]
    assert left == n_item > 0
    assert {m: load_artifact(m).item_index(uid) for m in site.models} == before
    assert (site.misc / "items.csv").read_text() == f"item_id,score\n{uid},1\n"
    FIGURES["movielens"] = {k: v for k, v in out.items() if k != "report"}


# -- through the server, and a restart --------------------------------------------------------
def _client(site: Site) -> TestClient:
    from shopsight.serving.app import create_app

    return TestClient(create_app(site.store, site.models[0], token=TOKEN))


def test_forget_through_the_api_survives_a_restart(synthetic_site: tuple[Site, str, str]) -> None:
    site, uid, other = synthetic_site
    h = {"Authorization": f"Bearer {TOKEN}"}
    with _client(site) as c:
        assert c.get(f"/recommend/{uid}", headers=h).json()["source"] == "model"
        assert c.get(f"/persona/{uid}", headers=h).status_code == 200
        r = c.post(f"/admin/forget/{uid}", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["report"]["found"] is True
        assert c.get(f"/recommend/{uid}", headers=h).json()["source"] != "model"
        assert c.get(f"/persona/{uid}", headers=h).status_code == 404
        assert c.get(f"/recommend/{other}", headers=h).json()["source"] == "model"
    # Nothing left of them once the server is down (lists served before the forget included;
    # after it, in this process, they are served unlinked).
    hits = Hits([uid, Pseudonymizer()(uid)])
    for p in _files([site.store, site.cache, site.models[0], site.spool]):
        hits.file(p)
    assert hits.found == []
    with _client(site) as c:  # a restart: everything read back from disk
        assert c.get(f"/recommend/{uid}", headers=h).json()["source"] != "model"
        assert c.get(f"/persona/{uid}", headers=h).status_code == 404
        assert c.get(f"/persona/{other}", headers=h).status_code == 200


# -- a crash half-way ------------------------------------------------------------------------
def test_a_crash_never_leaves_a_half_forgotten_user(
    synthetic_site: tuple[Site, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    site, uid, _ = synthetic_site
    real = forget_mod._purge_paths
    calls = {"n": 0}

    def crash(paths: Any, ids: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # after the store and the spool, before the cache and models
            raise KeyboardInterrupt("killed")
        return real(paths, ids)

    monkeypatch.setattr(forget_mod, "_purge_paths", crash)
    paths = [*site.models, site.report, site.misc]
    with Store(site.store) as st, pytest.raises(KeyboardInterrupt):
        forget_user(st, uid, feature_cache=site.cache, extra_paths=paths)
    assert list(journal_dir(site.store).glob("*.json"))  # the request is pending
    assert load_artifact(site.models[0]).user_index(uid) >= 0  # not reached yet
    monkeypatch.setattr(forget_mod, "_purge_paths", real)
    with Store(site.store) as st:  # the next run, for anyone, finishes it first
        report = forget_user(st, "nobody-at-all")
    assert len(report["replayed"]) == 1 and not journal_dir(site.store).exists()
    hits = Hits([uid, Pseudonymizer()(uid)])
    for p in _files(site.roots):
        hits.file(p)
    assert hits.found == []
    with Store(site.store, read_only=True) as st:
        rows = st.conn.execute("SELECT rows_removed, files FROM privacy_audit").fetchall()
    assert len(rows) == 2 and rows[0][0] > 0 and json.loads(rows[0][1])["folded_out"] == 3


def test_figures_for_the_report() -> None:
    """Prints what the cases above measured (run with -s)."""
    print("forget everywhere:", json.dumps(FIGURES))
