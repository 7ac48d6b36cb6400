"""Data-parallel training with ``torch.distributed`` (DDP), started by ``torchrun``.

The same code runs in one process or in N: :func:`init_distributed` reads the environment that
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and
starts a process group (``gloo`` on CPU, ``nccl`` where each rank has a GPU); without those
variables it returns a single-process context and nothing is initialised. The
:class:`~shopsight.training.trainer.Trainer` asks :func:`current` for the context, wraps the
module in ``DistributedDataParallel`` when the world has more than one process, and trains on
this rank's shard of every global batch (:func:`shard`).

Sharding is what makes N processes train *the same model* as one process with the same total
batch: the sampler draws each epoch's samples from ``(seed, epoch)`` alone (identically on every
rank), cuts them into global batches, and rank ``r`` takes rows ``r::world_size`` of each. Each
rank's loss is ``world_size * sum(its per-sample losses) / global_batch_size`` (:func:`shard`
returns that scale); DDP averages gradients over ranks, so every step applies exactly the
gradient of the global batch mean, and the parameters after each step equal those of the
single-process run up to floating-point summation order.

Launch (2 processes on this machine)::

    python -m torch.distributed.run --nproc_per_node=2 -m shopsight.app.torchrun \\
        --store shop.duckdb --model bpr --out model_dir --set epochs=10

Rank 0 writes the model (and checkpoints); every rank can write a per-step checksum log of its
parameters (``--checksums DIR``), which the DDP test compares across ranks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn

from shopsight.errors import InputError, StateError

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the (possibly one-process) training world."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (single process)
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def current() -> DistContext:
    """The context of an already initialised process group, or the single-process one."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    backend = str(dist.get_backend())
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = f"cuda:{local}" if backend == "nccl" else "cpu"
    return DistContext(rank, world, local, backend, device)


def pick_backend(gpus: int, local_rank: int, local_world: int) -> str:
    """``nccl`` when every local rank has a GPU of its own, else ``gloo`` (CPU). Every rank of a
    machine sees the same GPUs and local world size, so all of them pick the same backend."""
    return "nccl" if gpus >= max(local_world, local_rank + 1) else "gloo"


def init_distributed(backend: str | None = None, timeout_s: float = 300.0) -> DistContext:
    """Start the process group described by torchrun's environment (no-op without it).

    ``backend`` defaults to ``nccl`` when CUDA is available with a device per local rank, else
    ``gloo`` (CPU). Calling it again in an initialised process just returns the context.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise StateError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise StateError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set; start with torchrun "
            "(python -m torch.distributed.run --nproc_per_node=N ...)"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(local + 1)))
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        backend = pick_backend(gpus, local, local_world)
    if backend == "nccl":
        torch.cuda.set_device(local)
    from datetime import timedelta

    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return current()


def cleanup() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext | None = None) -> None:
    ctx = ctx or current()
    if ctx.distributed:
        dist.barrier()


def broadcast_float(value: float, ctx: DistContext | None = None, src: int = 0) -> float:
    """Rank ``src``'s value on every rank (e.g. a validation metric computed on rank 0)."""
    ctx = ctx or current()
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, src=src)
    return float(t.item())


def all_reduce_sum(value: float, ctx: DistContext | None = None) -> float:
    ctx = ctx or current()
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def shard(rows: IntArray, ctx: DistContext | None = None) -> tuple[IntArray, float]:
    """This rank's rows of one *global* batch, and the scale of its summed per-sample loss.

    Rank ``r`` takes ``rows[r::world_size]``; the scale is ``world_size / len(rows)`` (see
    :func:`loss_scale`), so that DDP's average over ranks is the global batch mean.
    """
    ctx = ctx or current()
    local = rows[ctx.rank :: ctx.world_size]
    return local, loss_scale(len(rows), ctx)


def loss_scale(global_batch: int, ctx: DistContext | None = None) -> float:
    """Multiplier of a rank's summed per-sample loss (see :func:`shard`)."""
    ctx = ctx or current()
    return ctx.world_size / max(global_batch, 1)


def global_batches(n: int, batch_size: int) -> Iterator[IntArray]:
    """Consecutive index ranges ``[start, start + batch_size)`` covering ``range(n)``."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n), dtype=np.int64)


def wrap(module: nn.Module, ctx: DistContext | None = None) -> nn.Module:
    """``module`` inside ``DistributedDataParallel`` when training with several processes.

    DDP broadcasts rank 0's parameters at construction, so every rank starts from the same
    model even if a rank's initialisation differed.
    """
    ctx = ctx or current()
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if ctx.backend == "nccl":
        return DistributedDataParallel(module, device_ids=[ctx.local_rank])
    return DistributedDataParallel(module)


def unwrap(module: nn.Module) -> nn.Module:
    inner = getattr(module, "module", None)
    return inner if isinstance(inner, nn.Module) else module


def param_checksum(module: nn.Module) -> str:
    """SHA-256 over every parameter's name, shape and float32 bytes (rank comparison)."""
    h = hashlib.sha256()
    for name, p in sorted(unwrap(module).named_parameters()):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@contextmanager
def process_group(backend: str | None = None) -> Iterator[DistContext]:
    """``with process_group() as ctx:`` initialise from torchrun's environment, clean up after."""
    started = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(backend)
    try:
        yield ctx
    finally:
        if started:
            cleanup()
