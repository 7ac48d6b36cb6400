"""DDP for real: 2 processes on localhost (gloo, CPU) started by torchrun.

For BPR and LightGCN: both ranks finish, their parameters are identical after *every* step
(per-step checksums written by each rank), rank 0 saves the model and a resumable checkpoint
(which loads back into a fresh module with its optimizer state),
and the 2-process model equals the single-process model trained with the same total batch
(the sharding scheme makes them the same computation up to floating-point summation order),
so its quality on a hold-out is the same too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shopsight import distributed as D
from shopsight.data.dataset import Dataset
from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.models.base import Recommender
from shopsight.models.mf import BPR, BPRModule
from shopsight.models.registry import create_model
from shopsight.training.trainer import CHECKPOINT_JSON, load_checkpoint

PARAMS = {
    "bpr": {"factors": 16, "epochs": 3, "batch_size": 512, "seed": 5},
    "lightgcn": {"dim": 16, "epochs": 2, "batch_size": 1024, "n_layers": 2, "seed": 5},
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    files = generate_shop(
        root / "files", ShopConfig.small(n_users=150, n_items=80, days=30, images=False, seed=1)
    )
    path = root / "shop.duckdb"
    with Store(path) as store:
        ingest_files(store, files.data_files())
    return path


@pytest.fixture(scope="module")
def dataset(store_path: Path) -> Dataset:
    with Store(store_path, read_only=True) as store:
        return Dataset.from_store(store)


# Two shared cores: torch's and BLAS's thread pools only spin against other processes.
pytestmark = pytest.mark.usefixtures("one_thread")


def launch(store: Path, model: str, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "shopsight.app.torchrun",
        "--store",
        str(store),
        "--model",
        model,
        "--out",
        str(out / "model"),
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--checksums",
        str(out / "sums"),
        "--backend",
        "gloo",
    ]
    for key, value in PARAMS[model].items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


def ndcg_at_10(model: Recommender, dataset: Dataset) -> float:
    """NDCG@10 of each user's last interacted item, ranked with everything else (seen kept)."""
    users = np.flatnonzero(np.diff(dataset.seq_indptr) > 0)
    last = dataset.item[dataset.seq_indptr[users + 1] - 1]
    ids, _ = model.recommend(users, k=10, exclude_seen=False)
    hit = ids == last[:, None]
    return float((hit / np.log2(np.arange(2, 12))).sum(axis=1).mean())


@pytest.mark.parametrize("model_name", ["bpr", "lightgcn"])
def test_two_processes_train_the_single_process_model(
    model_name: str, store_path: Path, dataset: Dataset, tmp_path: Path
) -> None:
    proc = launch(store_path, model_name, tmp_path)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    # both ranks finished and agreed on the parameters after every single step
    sums = [json.loads((tmp_path / "sums" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in sums] == [2, 2]
    steps = sums[0]["steps"]
    batches_per_epoch = -(-dataset.implicit.nnz // PARAMS[model_name]["batch_size"])
    assert len(steps) == PARAMS[model_name]["epochs"] * batches_per_epoch
    assert steps == sums[1]["steps"]
    assert len(set(steps)) == len(steps)  # the model really changed at each step

    ddp = Recommender.load(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["world_size"] == 2

    # rank 0 wrote a resumable checkpoint of the final epoch (module + optimizer moments)
    meta = json.loads((tmp_path / "ckpt" / CHECKPOINT_JSON).read_text())
    assert meta["epoch"] + 1 == PARAMS[model_name]["epochs"]
    if model_name == "bpr":
        module = BPRModule(ddp.n_users_, ddp.n_items_, PARAMS["bpr"]["factors"])
        optim = torch.optim.Adam(module.parameters())
        state = load_checkpoint(tmp_path / "ckpt", module, optim)
        assert state["step"] == len(steps)
        assert isinstance(ddp, BPR)
        assert np.array_equal(module.user.weight.detach().numpy(), ddp.user_factors_)
        assert optim.state_dict()["state"], "optimizer moments are restored too"

    # one process, same total batch: the same model up to summation order
    single = create_model(model_name, **PARAMS[model_name]).fit(dataset)
    users = np.arange(dataset.n_users)
    a, b = ddp.score(users), single.score(users)
    assert np.allclose(a, b, atol=1e-4), f"max |diff| {np.abs(a - b).max():.2e}"
    q_ddp, q_single = ndcg_at_10(ddp, dataset), ndcg_at_10(single, dataset)
    print(f"\n{model_name}: NDCG@10 (last item) DDP x2 {q_ddp:.4f}, single {q_single:.4f}")
    assert abs(q_ddp - q_single) <= 0.01


def test_sharding_covers_each_global_batch_once() -> None:
    rows = np.arange(11, dtype=np.int64)
    parts = [D.shard(rows, D.DistContext(rank=r, world_size=3))[0] for r in range(3)]
    assert np.array_equal(np.sort(np.concatenate(parts)), rows)
    scale = D.shard(rows, D.DistContext(rank=0, world_size=3))[1]
    assert scale == pytest.approx(3 / 11)
    assert D.shard(rows)[1] == pytest.approx(1 / 11)  # single process: plain mean


def test_single_process_context_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = D.init_distributed()
    assert ctx.world_size == 1 and ctx.is_main and not ctx.distributed
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        D.init_distributed()


@pytest.mark.parametrize(
    ("gpus", "local_rank", "local_world", "backend"),
    [
        (0, 0, 2, "gloo"),  # CPU machine
        (1, 0, 2, "gloo"),  # one GPU for two workers: NCCL cannot share it, gloo on CPU
        (2, 1, 2, "nccl"),  # a GPU per worker
        (8, 3, 4, "nccl"),
        (4, 0, 8, "gloo"),
    ],
)
def test_backend_follows_the_devices(gpus, local_rank, local_world, backend):
    assert D.pick_backend(gpus, local_rank, local_world) == backend
