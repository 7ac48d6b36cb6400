"""``--nproc 2`` on train, recommend --all, evaluate and the sharded feature cache: real
torch.distributed runs (2 gloo processes on this machine, started by torchrun), compared with
one process.

ALS splits its solves (bit-identical factors); BPR trains DDP (equal up to float summation
order); batch recommendations and evaluation tables are identical; the feature cache's shards,
written by content hash, are reused by a run with another number of processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from shopsight.app import parallel
from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.models.registry import create_model

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT = 300


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "shopsight.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )


def cli_json(*args: str) -> dict[str, Any]:
    proc = cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nproc")
    files = generate_shop(
        root / "files", ShopConfig.small(n_users=1500, n_items=120, days=12, images=False, seed=3)
    )
    path = root / "shop.duckdb"
    with Store(path) as store:
        ingest_files(store, files.data_files())
    return path


@pytest.fixture(scope="module")
def dataset(store_path: Path) -> Dataset:
    with Store(store_path, read_only=True) as store:
        return Dataset.from_store(store)


@pytest.fixture(scope="module")
def als_dir(store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("als") / "model"
    res = cli_json(
        "train", "--store", str(store_path), "--model", "als", "--set", "iterations=4",
        "--set", "factors=8", "--nproc", "2", "--out", str(out),
    )  # fmt: skip
    assert res["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "fit": "sharded",
        "dataset": "shared snapshot",  # built once by rank 0, memory-mapped by both ranks
    }
    return out


def test_als_two_processes_equal_one(als_dir: Path, dataset: Dataset) -> None:
    one = create_model("als", iterations=4, factors=8).fit(dataset)
    two = load_file(str(als_dir / "model.safetensors"))
    assert np.array_equal(two["state.user_factors"], one.user_factors_)
    assert np.array_equal(two["state.item_factors"], one.item_factors_)
    # The same folder as one process: id maps and the world size in the manifest.
    info = json.loads((als_dir / "config.json").read_text())["training"]
    assert info["distributed"]["world_size"] == 2
    users = pq.read_table(als_dir / "users.parquet").column("user_id").to_pylist()
    assert users == dataset.user_ids.tolist()
    assert (als_dir / "items.parquet").exists()


def test_bpr_ddp_then_recommend(store_path: Path, dataset: Dataset, tmp_path: Path) -> None:
    params = ["--set", "epochs=2", "--set", "factors=8", "--set", "batch_size=256"]
    out = tmp_path / "bpr"
    res = cli_json(
        "train", "--store", str(store_path), "--model", "bpr", *params, "--nproc", "2",
        "--out", str(out),
    )  # fmt: skip
    assert res["distributed"]["fit"] == "ddp"
    one = create_model("bpr", epochs=2, factors=8, batch_size=256, seed=0).fit(dataset)
    two = load_file(str(out / "model.safetensors"))
    # DDP averages the two halves of each global batch: float summation order only.
    np.testing.assert_allclose(two["state.item_factors"], one.item_factors_, atol=1e-5)
    np.testing.assert_allclose(two["state.user_factors"], one.user_factors_, atol=1e-5)
    user = str(dataset.user_ids[0])
    rec = cli_json("recommend", "--model-dir", str(out), "--user", user, "-k", "5")
    assert rec["recommendations"][user]["known_user"]
    assert len(rec["recommendations"][user]["items"]) == 5


def test_recommend_all_is_identical(als_dir: Path, tmp_path: Path) -> None:
    one = parallel.run_single(
        "recommend",
        {"model_dir": str(als_dir), "k": 7, "out": str(tmp_path / "one.parquet")},
    )
    two = cli_json(
        "recommend", "--model-dir", str(als_dir), "--all", "-k", "7", "--nproc", "2",
        "--out", str(tmp_path / "two.parquet"),
    )  # fmt: skip
    assert two["world_size"] == 2 and two["users"] == one["users"] > parallel.RECOMMEND_BATCH
    a, b = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "two.parquet")
    assert a.num_rows == one["rows"] == two["rows"] > 0
    assert a.equals(b)
    assert a.column_names == ["user_id", "rank", "item_id", "score"]
    assert not list(tmp_path.glob(".*parts*"))


def _without_timings(x: Any) -> Any:
    if isinstance(x, dict):
        return {
            k: _without_timings(v)
            for k, v in x.items()
            if not k.endswith("seconds") and k not in ("world_size", "written")
        }
    if isinstance(x, list):
        return [_without_timings(v) for v in x]
    return x


def test_evaluate_is_identical(store_path: Path) -> None:
    args = {
        "store": str(store_path),
        "protocol": "random-811",
        "models": "popularity,als",
        "seeds": [0],
        "ks": "5,10",
        "quiet": True,
    }
    one = parallel.run_single("evaluate", args)
    two = cli_json(
        "evaluate", "--store", str(store_path), "--protocol", "random-811",
        "--models", "popularity,als", "--ks", "5,10", "--nproc", "2",
    )  # fmt: skip
    assert two["world_size"] == 2
    users = one["runs"][0]["info"]["users"]
    assert users > 256  # several chunks, so both ranks scored some
    assert _without_timings(two) == _without_timings(one)


def test_launch_options_are_checked(store_path: Path, tmp_path: Path) -> None:
    proc = cli("train", "--store", str(store_path), "--model", "als", "--nnodes", "2")
    assert proc.returncode == 2
    assert "--rdzv-endpoint" in proc.stderr.strip().splitlines()[-1]
    proc = cli("recommend", "--model-dir", str(tmp_path), "--all")
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_a_workers_input_error_is_one_line_not_torchruns_traceback(
    store_path: Path, tmp_path: Path
) -> None:
    # Both ranks refuse the same input in the workers (a protocol whose k-core filter keeps
    # nothing): the user gets their one line, not torchrun's report and traceback of the exit.
    protocol = tmp_path / "huge-core.yaml"
    protocol.write_text("split: {method: random, core: 100000}\n", encoding="utf-8")
    proc = cli(
        "evaluate", "--store", str(store_path), "--models", "popularity", "--nproc", "2",
        "--protocol", str(protocol),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "torch/distributed" not in proc.stderr, proc.stderr
    assert "100000-core filter keeps 0 of" in proc.stderr.strip().splitlines()[-1]


WORKER = """
import json, sys
import numpy as np
from shopsight.features.base import Encoded
from shopsight.features.cache import FeatureCache
from shopsight import distributed as D


class Fake:
    name, version, dim = "fake", "1", 4

    def content_key(self, x):
        return x.encode() if x else None

    def encode(self, xs):
        v = np.array([[len(x or ""), sum(map(ord, x or "")) % 97, 1.0, 0.0] for x in xs], np.float32)
        return Encoded(v, np.array([bool(x) for x in xs]), stats={"texts": len(xs)})


root, texts, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
enc, cache = Fake(), FeatureCache(root)
with D.process_group() as ctx:
    part = cache.encode(enc, texts, shard=(ctx.rank, ctx.world_size), sync=lambda: D.barrier(ctx))
    D.barrier(ctx)
    cache.fill(enc, texts, part)
    json.dump({"computed": part.computed, "reused": part.reused, "mask": part.mask.tolist(),
               "vectors": part.vectors.tolist()}, open(f"{out}.{ctx.rank}", "w"))
"""


def test_feature_cache_shards_by_content_and_reuses_across_world_sizes(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    texts = [f"item {i}" for i in range(40)] + ["", "item 3"]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def run(n: int, tag: str) -> list[dict[str, Any]]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={n}", str(script), str(tmp_path / "cache"),
               json.dumps(texts), str(tmp_path / tag)]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads((tmp_path / f"{tag}.{r}").read_text()) for r in range(n)]

    two = run(2, "two")
    # Each distinct content computed by exactly one rank; both ranks end with every vector.
    assert sum(r["computed"] for r in two) == 40
    assert all(0 < r["computed"] < 40 for r in two)
    assert two[0]["vectors"] == two[1]["vectors"]
    assert two[0]["mask"] == [True] * 40 + [False, True]
    shards = list((tmp_path / "cache").rglob("shard-*.safetensors"))
    assert len(shards) == 2
    # Three processes later: everything comes from the two-process shards.
    three = run(3, "three")
    assert sum(r["computed"] for r in three) == 0
    assert all(r["reused"] == 41 for r in three)
    assert three[0]["vectors"] == two[0]["vectors"]


FEATURIZE_WORKER = """
import json, sys
import numpy as np
from shopsight.features.base import Encoded
from shopsight.features.pipeline import featurize
from shopsight import distributed as D


class Fake:
    name, version, dim = "fake-text", "1", 3

    def content_key(self, x):
        return x.encode() if x else None

    def encode(self, xs):
        v = np.array([[len(x), sum(map(ord, x)) % 101, 1.0] for x in xs], np.float32)
        return Encoded(v, np.ones(len(xs), bool), stats={"texts": len(xs)})


with D.process_group() as ctx:
    report = featurize(sys.argv[1], text_encoder=Fake(), with_images=False).to_dict()
    if ctx.is_main:
        json.dump(report, open(sys.argv[2], "w"))
"""


def test_featurize_two_processes_equal_one(store_path: Path, tmp_path: Path) -> None:
    """The pipeline under torchrun: the same matrices and counts as one process."""
    import shutil

    from shopsight.features.pipeline import featurize, load_item_features

    one_store, two_store = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    shutil.copy(store_path, one_store)
    shutil.copy(store_path, two_store)
    ns: dict[str, Any] = {}
    exec(FEATURIZE_WORKER.split("with D.process_group")[0], ns)
    one = featurize(one_store, text_encoder=ns["Fake"](), with_images=False).to_dict()
    script = tmp_path / "worker.py"
    script.write_text(FEATURIZE_WORKER)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(script), str(two_store), str(tmp_path / "two.json")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["text"] == one["text"] and one["text"]["computed"] == one["items"] > 0
    a, b = load_item_features(one_store), load_item_features(two_store)
    assert a.item_ids == b.item_ids
    assert np.array_equal(a.text, b.text) and np.array_equal(a.text_mask, b.text_mask)
    shards = list((tmp_path / "two.duckdb.features").rglob("shard-*.safetensors"))
    assert len(shards) == 2  # one per rank


def test_worker_out_of_memory_is_a_one_line_limit(tmp_path: Path, monkeypatch) -> None:
    """A worker that hits DuckDB's memory cap reports the machine's limit, not a bug."""
    import duckdb

    def job(kw: dict[str, Any], ctx: Any) -> dict[str, Any]:
        raise duckdb.OutOfMemoryException("could not allocate block of size 256.0 KiB")

    monkeypatch.setitem(parallel.JOBS, "train", job)
    result = tmp_path / "result.json"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"job": "train", "kwargs": {}, "result": str(result)}))
    assert parallel.main([str(spec)]) == 2
    error = json.loads((tmp_path / "result.json.error-0").read_text())
    assert error["kind"] == "limit"
    assert error["message"].startswith("out of memory: could not allocate block")
    assert "SHOPSIGHT_DUCKDB_MEMORY" in error["message"]


def test_stopped_launch_leaves_no_user_data(store_path: Path, tmp_path: Path) -> None:
    """SIGTERM to `shopsight ... --nproc 2` stops the workers and removes the shared snapshot
    (user data) and the launcher's folder."""
    import signal
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.update(OMP_NUM_THREADS="1", TMPDIR=str(tmp))
    cmd = [sys.executable, "-m", "shopsight.cli", "train", "--store", str(store_path),
           "--model", "bpr", "--set", "epochs=500", "--nproc", "2", "--out", str(tmp_path / "m")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    while not list(tmp.glob("shopsight-launch-*/shared/dataset-*/dataset.json")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    left = [p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor")]
    assert left == []  # snapshot, launcher folder and torchrun's log folder gone
    assert not (tmp_path / "m" / "config.json").exists()
