"""The live loop: impression log, A/B variants, online report and the simulated shop.

The end-to-end test serves EASE against popularity on the synthetic shop through a real uvicorn
server, replays simulated users through the API (``/recommend`` then ``/events``), and checks
that the online report finds the better model, with intervals, lift and p-value.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serving_support import TOKEN, free_port, wait_ready

from shopsight.data.store import Store
from shopsight.evaluation.online import (
    OnlineReportError,
    compare,
    online_report,
    ratio_stat,
)
from shopsight.evaluation.simulator import ShopSimulator, replay
from shopsight.serving.impressions import ImpressionLog
from shopsight.serving.variants import Experiment, VariantsError, VariantSpec, parse_variants

KEY = "live-loop-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPSIGHT_PSEUDONYM_KEY", KEY)


def _pz(user: str) -> str:
    from shopsight.data.pseudonym import Pseudonymizer

    return Pseudonymizer(KEY.encode()).pseudonymize(user)


# ---------------------------------------------------------------------------------- variants
def test_parse_variants_and_errors() -> None:
    specs = parse_variants(["a=m1", "b=m2"], "70/30")
    assert [(s.name, s.model_dir, round(s.share, 2)) for s in specs] == [
        ("a", Path("m1"), 0.7),
        ("b", Path("m2"), 0.3),
    ]
    assert [s.share for s in parse_variants(["a=m1", "b=m2", "c=m3"])] == [1 / 3] * 3
    for bad, split, msg in [
        (["a=m1"], None, "at least two"),
        (["a=m1", "a=m2"], None, "given twice"),
        (["a", "b=m2"], None, "NAME=MODEL_DIR"),
        (["a=m1", "b=m2"], "50", "need 2 shares"),
        (["a=m1", "b=m2"], "50/x", "numbers"),
        (["a=m1", "b=m2"], "100/0", "positive"),
    ]:
        with pytest.raises(VariantsError, match=msg):
            parse_variants(bad, split)


def test_assignment_is_sticky_keyed_and_follows_the_split() -> None:
    specs = [VariantSpec("a", Path("x"), 0.7), VariantSpec("b", Path("y"), 0.3)]
    deps: Any = {"a": object(), "b": object()}
    exp = Experiment(specs, deps, b"k" * 32)
    users = [f"u{i}" for i in range(20_000)]
    first = [exp.assign(u) for u in users]
    assert first == [Experiment(specs, deps, b"k" * 32).assign(u) for u in users]  # sticky
    share_a = first.count("a") / len(first)
    assert abs(share_a - 0.7) < 0.02  # 20k draws: 0.7 +- 4.5 sd would be 0.0145
    other = [Experiment(specs, deps, b"j" * 32).assign(u) for u in users]
    agree = sum(x == y for x, y in zip(first, other, strict=True)) / len(users)
    assert agree < 0.65  # another key reshuffles users (independent: 0.7^2 + 0.3^2 = 0.58)


# ------------------------------------------------------------------------------ impressions
def test_impression_log_batches_rows_off_the_request(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    lock = threading.Lock()
    imp = ImpressionLog(store, lock, store.path, pseudonymize=_pz, flush_seconds=60)
    ids = np.array(["i0", "i1", "i2", "i3"], dtype=object)
    imp.add("user", "u1", "a", "ease", "v1", "model", ids, np.array([2, 0, 3]))
    imp.add("similar", None, None, "ease", "v1", "model", ids, np.array([1]))
    assert store.count("impressions") == 0  # nothing written on the request's thread
    imp.close()
    rows = store.arrow(
        "SELECT request_id, user_id, surface, variant, item_id, position FROM impressions "
        "ORDER BY surface DESC, position"
    ).to_pylist()
    store.close()
    assert [(r["item_id"], r["position"]) for r in rows[:3]] == [("i2", 1), ("i0", 2), ("i3", 3)]
    assert {r["user_id"] for r in rows[:3]} == {_pz("u1")}  # pseudonymised, never the raw id
    assert len({r["request_id"] for r in rows[:3]}) == 1
    assert rows[3]["user_id"] is None and rows[3]["surface"] == "similar"
    assert rows[3]["request_id"] != rows[0]["request_id"]


def test_read_only_server_spools_impressions(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    store = Store(path, read_only=True)
    imp = ImpressionLog(
        store, threading.Lock(), path, read_only=True, pseudonymize=_pz, flush_seconds=60
    )
    imp.add("user", "u1", None, "pop", "v", "model", np.array(["a", "b"]), np.array([0, 1]))
    imp.close()
    store.close()
    files = list((tmp_path / "s.duckdb.spool" / "impressions").glob("*.parquet"))
    assert len(files) == 1
    import pyarrow.parquet as pq

    assert pq.read_table(files[0]).column("item_id").to_pylist() == ["a", "b"]
    # The report reads the spool beside the table.
    with Store(path) as st:
        st.conn.execute(
            "INSERT INTO events VALUES (1, 'u1', 'b', 'click', now()::TIMESTAMP, false, NULL, "
            "NULL, NULL, 'api', 1)"
        )
        rep = online_report(st, pseudonymize=_pz)
    assert rep["impressions"] == 2
    assert rep["groups"][0]["ctr"]["value"] == pytest.approx(1 / 2)


# ----------------------------------------------------------------------------------- report
def test_ratio_statistics() -> None:
    num, den = np.array([1.0, 0.0, 3.0, 2.0]), np.array([10.0, 10.0, 10.0, 10.0])
    s = ratio_stat(num, den)
    assert s.value == pytest.approx(6 / 40)
    # Equal denominators: the delta method reduces to the SE of the per-user mean.
    assert s.se == pytest.approx(np.std(num / 10, ddof=1) / 2)
    a = ratio_stat(np.array([1.0] * 50 + [0.0] * 50), np.ones(100))
    b = ratio_stat(np.array([1.0] * 52 + [0.0] * 48), np.ones(100))
    c = compare(a, b)
    assert not c["significant"] and 0.5 < c["p_value"] < 1.0
    assert c["lift"] == pytest.approx(0.04)
    assert c["users_needed_per_variant"] > 1000  # a 2-point difference needs many users
    big = compare(a, ratio_stat(np.array([1.0] * 80 + [0.0] * 20), np.ones(100)))
    assert big["significant"] and big["p_value"] < 1e-4


def _store_with(
    tmp_path: Path, imps: list[tuple[Any, ...]], events: list[tuple[Any, ...]]
) -> Store:
    st = Store(tmp_path / "r.duckdb")
    from shopsight.serving.impressions import ensure_table

    ensure_table(st)
    st.conn.executemany(
        "INSERT INTO impressions VALUES (?, ?, ?, 'user', ?, ?, 'v1', 'model', ?, ?)", imps
    )
    if events:
        st.conn.executemany(
            "INSERT INTO events VALUES (hash(?), ?, ?, ?, ?, false, NULL, NULL, ?, 'api', 1)",
            [(str(e), *e) for e in events],
        )
    st.conn.execute(
        "INSERT INTO items (item_id, item_key, source, line) "
        "SELECT 'i' || x, x, 't', x FROM range(10) t(x)"
    )
    return st


def test_online_report_credits_events_to_the_latest_impression_in_the_window(
    tmp_path: Path,
) -> None:
    t = datetime(2026, 1, 1, 12, 0, 0)
    p1, p2 = _pz("u1"), _pz("u2")
    imps = [
        ("r1", t, p1, "a", "ease", "i1", 1),
        ("r1", t, p1, "a", "ease", "i2", 2),
        ("r2", t + timedelta(minutes=5), p1, "a", "ease", "i1", 1),
        ("r3", t, p2, "b", "popularity", "i3", 1),
        ("r3", t, p2, "b", "popularity", "i4", 2),
    ]
    events = [
        ("u1", "i1", "click", t + timedelta(minutes=6), None),  # -> r2 (the latest before it)
        ("u1", "i1", "purchase", t + timedelta(minutes=7), 20.0),  # -> r2
        ("u1", "i2", "click", t - timedelta(minutes=1), None),  # before serving: not credited
        ("u2", "i4", "click", t + timedelta(hours=3), None),  # outside the 1 h window
        ("u2", "i9", "click", t + timedelta(minutes=1), None),  # item not served
    ]
    with _store_with(tmp_path, imps, events) as st:
        rep = online_report(st, window_s=3600, k=10, pseudonymize=_pz)
        rep1 = online_report(st, window_s=3600, k=1, pseudonymize=_pz)
        wide = online_report(st, window_s=4 * 3600, k=10, pseudonymize=_pz)
    groups = {g["variant"]: g for g in rep["groups"]}
    a, b = groups["a"], groups["b"]
    assert (a["impressions"], a["lists"], a["users"]) == (3, 2, 1)
    assert a["ctr"]["value"] == pytest.approx(1 / 3)
    assert a["conversion"]["value"] == pytest.approx(1 / 3)
    assert a["revenue_per_impression"]["value"] == pytest.approx(20 / 3)
    assert b["ctr"]["value"] == 0.0
    assert a["coverage"] == pytest.approx(2 / 10) and b["coverage"] == pytest.approx(2 / 10)
    assert rep["ab"]["control"] == "b"  # the popularity variant by default
    assert {g["variant"]: g["ctr"]["value"] for g in wide["groups"]}["b"] == pytest.approx(1 / 2)
    assert {g["variant"]: g["ctr"]["value"] for g in rep1["groups"]}["a"] == pytest.approx(1 / 2)


def test_online_report_says_when_nothing_was_served(tmp_path: Path) -> None:
    with (
        Store(tmp_path / "e.duckdb") as st,
        pytest.raises(OnlineReportError, match="no impressions"),
    ):
        online_report(st, pseudonymize=_pz)


# ----------------------------------------------------------------------------- simulation
def test_simulated_users_click_more_on_what_they_like(shop_files: Any) -> None:
    sim = ShopSimulator.from_file(shop_files.ground_truth, seed=3)
    users = sim.humans()[:150]
    now = datetime.now(UTC)
    liked = disliked = 0
    for u in users:
        order = np.argsort(-sim.affinity_z(u))
        top = [sim.item_ids[i] for i in order[:10]]
        bottom = [sim.item_ids[i] for i in order[-10:]]
        liked += sum(e["event_type"] == "click" for e in sim.respond(u, top, now))
        disliked += sum(e["event_type"] == "click" for e in sim.respond(u, bottom, now))
    assert liked > 3 * max(disliked, 1)


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from shopsight.data.synthetic import ShopConfig, generate_shop

    return generate_shop(tmp_path_factory.mktemp("sim") / "shop", ShopConfig.small(images=False))


@pytest.fixture(scope="module")
def ab_shop(shop_files: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from shopsight.data.clean import CleanConfig, clean_store
    from shopsight.data.dataset import Dataset
    from shopsight.data.ingest import ingest_files
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import create_model

    root = tmp_path_factory.mktemp("ab")
    store = root / "shop.duckdb"
    with Store(store) as st:
        assert ingest_files(st, shop_files.data_files()).ok
        clean_store(st, CleanConfig())
        ds = Dataset.from_store(st)
        fp = st.fingerprint()
    for name in ("ease", "popularity"):
        save_artifact(create_model(name).fit(ds), ds, root / name, seed=0, store_fingerprint=fp)
    yield {"store": store, "ease": root / "ease", "pop": root / "popularity", "root": root}


def _serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopsight.cli", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc, url


def test_ab_test_on_the_simulated_shop_finds_the_better_model(
    ab_shop: dict[str, Path], shop_files: Any, tmp_path: Path
) -> None:
    """`shopsight serve --variant ... --split 50/50` as a real server, simulated users replayed
    through the API, then `shopsight online-report --json`: the better model must win."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SHOPSIGHT_PSEUDONYM_KEY": KEY}
    env.pop("SHOPSIGHT_API_TOKEN", None)
    args = [
        "--store",
        str(ab_shop["store"]),
        "--variant",
        f"ease={ab_shop['ease']}",
        "--variant",
        f"control={ab_shop['pop']}",
        "--split",
        "50/50",
        "--token-file",
        str(token_file),
    ]
    proc, url = _serve(args, env)
    sim = ShopSimulator.from_file(shop_files.ground_truth, seed=7)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            stats = replay(client, sim, sim.humans(), k=10, token=TOKEN)
            served = client.get("/online/report", headers=bearer)
            page = client.get("/online", headers=bearer)
            unauthorised = client.get("/online/report").status_code
            again = client.get(f"/recommend/{sim.humans()[0]}", headers=bearer).json()  # sticky
            again2 = client.get(f"/recommend/{sim.humans()[0]}", headers=bearer).json()
    finally:
        proc.terminate()  # a clean shutdown flushes the impression log
        proc.wait(timeout=30)
    assert unauthorised in (401, 403)
    assert again["model_version"] == again2["model_version"]
    assert stats.lists == len(sim.humans()) and stats.events_stored > 0
    assert served.status_code == 200, served.text
    assert {g["variant"] for g in served.json()["groups"]} == {"ease", "control"}
    assert page.status_code == 200 and "A/B test against control" in page.text
    with Store(ab_shop["store"]) as st:
        logged = st.arrow("SELECT count(DISTINCT request_id) AS n FROM impressions").to_pylist()
    assert logged[0]["n"] == stats.lists + 2  # every served list, flushed at shutdown
    html = tmp_path / "online.html"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsight.cli",
            "online-report",
            "--store",
            str(ab_shop["store"]),
            "--window",
            "3600",
            "-k",
            "10",
            "--html",
            str(html),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rep = json.loads(out.stdout)
    assert html.read_text().startswith("<!doctype html>")
    groups = {g["variant"]: g for g in rep["groups"]}
    assert set(groups) == {"ease", "control"}
    assert groups["ease"]["model"] == "ease" and groups["control"]["model"] == "popularity"
    for g in groups.values():
        assert g["users"] > 100  # both arms served (about half the users each)
        for m in ("ctr", "conversion"):
            assert g[m]["lo"] <= g[m]["value"] <= g[m]["hi"]
    ab = rep["ab"]
    assert ab["control"] == "control"
    ctr = ab["comparisons"][0]["ctr"]
    print(
        f"\nA/B on the simulated shop: CTR@10 ease {groups['ease']['ctr']['value']:.4f} "
        f"[{groups['ease']['ctr']['lo']:.4f}, {groups['ease']['ctr']['hi']:.4f}] vs popularity "
        f"{groups['control']['ctr']['value']:.4f} [{groups['control']['ctr']['lo']:.4f}, "
        f"{groups['control']['ctr']['hi']:.4f}]; conversion ease "
        f"{groups['ease']['conversion']['value']:.4f} "
        f"[{groups['ease']['conversion']['lo']:.4f}, {groups['ease']['conversion']['hi']:.4f}] "
        f"vs {groups['control']['conversion']['value']:.4f} "
        f"[{groups['control']['conversion']['lo']:.4f}, "
        f"{groups['control']['conversion']['hi']:.4f}]; CTR lift {ctr['lift']:+.1%}, "
        f"p = {ctr['p_value']:.2g}, users needed per variant {ctr['users_needed_per_variant']}"
    )
    assert ctr["lift"] > 0 and ctr["significant"] and ctr["p_value"] < 0.01
    assert ab["comparisons"][0]["conversion"]["lift"] > 0
    assert math.isfinite(groups["ease"]["novelty"])


def test_serve_rejects_bad_variant_options(ab_shop: dict[str, Path]) -> None:
    env = {**os.environ, "SHOPSIGHT_PSEUDONYM_KEY": KEY}
    base = [sys.executable, "-m", "shopsight.cli", "serve", "--store", str(ab_shop["store"])]
    for extra, msg in [
        (["--variant", f"a={ab_shop['ease']}"], "at least two variants"),
        (["--variant", f"a={ab_shop['ease']}", "--variant", "b=/nope"], "not a trained model"),
        (["--model", str(ab_shop["ease"]), "--split", "50/50"], "--split needs"),
    ]:
        out = subprocess.run(base + extra, capture_output=True, text=True, env=env)
        assert out.returncode == 2 and msg in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_online_report_without_engagement_says_so(tmp_path: Path) -> None:
    t = datetime(2026, 1, 1, 12, 0, 0)
    imps = [
        ("r1", t, _pz("u1"), "a", "ease", "i1", 1),
        ("r2", t, _pz("u2"), "b", "popularity", "i2", 1),
    ]
    with _store_with(tmp_path, imps, []) as st:
        rep = online_report(st, pseudonymize=_pz)
    assert rep["notes"] and "no click/add_to_cart/purchase" in rep["notes"][0]
    for m in ("ctr", "conversion", "revenue_per_impression"):
        assert "undefined" in rep["ab"]["comparisons"][0][m]


def test_forget_removes_a_users_impressions(tmp_path: Path) -> None:
    from shopsight.privacy.forget import forget_user

    t = datetime(2026, 1, 1, 12, 0, 0)
    imps = [("r1", t, _pz("u1"), "a", "ease", "i1", 1), ("r2", t, _pz("u2"), "a", "ease", "i1", 1)]
    events = [("u1", "i1", "click", t + timedelta(minutes=1), None)]
    with _store_with(tmp_path, imps, events) as st:
        forget_user(st, "u1", rewrite=False)
        left = st.arrow("SELECT user_id FROM impressions").column("user_id").to_pylist()
    assert left == [_pz("u2")]


def test_variants_in_process_reload_refused_and_batch_per_variant(
    ab_shop: dict[str, Path],
) -> None:
    from serving_support import ThreadServer

    from shopsight.serving.app import create_app

    specs = parse_variants([f"a={ab_shop['ease']}", f"b={ab_shop['pop']}"], "50/50")
    app = create_app(ab_shop["store"], ab_shop["ease"], token=TOKEN, variants=specs)
    exp = app.state.runtime.experiment
    users = [f"u{i:04d}" for i in range(1, 41)]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        r = client.post("/admin/reload", json={"wait": True}, headers=bearer)
        assert r.status_code == 409 and "A/B test" in r.text
        batch = client.post("/recommend", json={"user_ids": users, "k": 5}, headers=bearer).json()
    versions = {v: exp.deployments[v].version for v in ("a", "b")}
    for u, res in zip(users, batch["results"], strict=True):
        assert res["model_version"] == versions[exp.assign(u)]  # each user from their variant
    assert {exp.assign(u) for u in users} == {"a", "b"}
