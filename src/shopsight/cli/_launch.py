"""``--nproc N`` and torchrun's multi-node options: start a command's workers with PyTorch's own
launcher (``python -m torch.distributed.run``) and return rank 0's result.

One machine: ``--nproc N`` runs ``torchrun --standalone --nproc-per-node N``. Several machines:
run the same command on each with ``--nnodes M --node-rank R --rdzv-endpoint HOST:PORT`` (HOST is
node 0's address); torchrun's static rendezvous makes node 0's first worker global rank 0, and
that node's command prints the result. Store, model and output paths must be on storage every
node sees. The workers themselves are :mod:`shopsight.app.parallel`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from shopsight.errors import InputError, StateError

NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        help="Worker processes on this machine (torch.distributed: gloo on CPU, NCCL on GPU).",
    ),
]
NnodesOpt = Annotated[int, typer.Option("--nnodes", help="Machines in the run (torchrun).")]
NodeRankOpt = Annotated[int, typer.Option("--node-rank", help="This machine's rank (torchrun).")]
RdzvOpt = Annotated[
    str | None,
    typer.Option("--rdzv-endpoint", help="HOST:PORT of node 0 for a multi-node run (torchrun)."),
]


@dataclass(frozen=True)
class Launch:
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.nproc < 1:
            raise InputError(f"--nproc {self.nproc}: expected at least 1")
        if self.nnodes < 1:
            raise InputError(f"--nnodes {self.nnodes}: expected at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise InputError(f"--node-rank {self.node_rank}: expected 0..{self.nnodes - 1}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise InputError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address)")
        if self.rdzv_endpoint and ":" not in self.rdzv_endpoint:
            raise InputError(f"--rdzv-endpoint {self.rdzv_endpoint!r}: expected HOST:PORT")

    @property
    def parallel(self) -> bool:
        return self.nproc > 1 or self.nnodes > 1

    def torchrun_args(self) -> list[str]:
        args = [f"--nproc-per-node={self.nproc}"]
        if self.nnodes == 1 and not self.rdzv_endpoint:
            return [*args, "--standalone"]
        return [
            *args,
            f"--nnodes={self.nnodes}",
            f"--node-rank={self.node_rank}",
            "--rdzv-backend=static",
            f"--rdzv-endpoint={self.rdzv_endpoint}",
        ]


def run_job(job: str, kwargs: dict[str, Any], launch: Launch) -> dict[str, Any]:
    """The job in this process, or in ``launch``'s torchrun workers; rank 0's result."""
    from shopsight.app import parallel

    if not launch.parallel:
        return parallel.run_single(job, kwargs)
    shared = _shared_folder(kwargs, launch)
    with tempfile.TemporaryDirectory(prefix="shopsight-launch-") as tmp:
        result = Path(tmp) / "result.json"
        spec = Path(tmp) / "spec.json"
        if shared is None:
            shared = Path(tmp) / "shared"
        spec.write_text(
            json.dumps({"job": job, "kwargs": kwargs, "result": str(result), "shared": str(shared)})
        )
        try:
            with _terminate_as_exit():
                return _launch(spec, result, Path(tmp), launch)
        finally:  # the workers remove it; this covers a run that failed or was stopped
            shutil.rmtree(shared, ignore_errors=True)


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's stop) as ``SystemExit``: ``subprocess.run`` then kills
    the workers and the ``finally`` blocks remove the snapshot and the temporary folder, which
    hold user data, instead of leaving them in ``/tmp``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _shared_folder(kwargs: dict[str, Any], launch: Launch) -> Path | None:
    """Where the workers' shared dataset snapshots go: this launcher's temporary folder on one
    machine; beside the store (storage every node sees) when the run spans machines."""
    if launch.nnodes == 1 or not kwargs.get("store"):
        return None
    store = Path(kwargs["store"]).resolve()
    return store.parent / f".{store.name}.run-{uuid.uuid4().hex[:12]}"


def _stop_group(proc: subprocess.Popen[str], grace_s: float = 10.0) -> None:
    """SIGTERM to torchrun (it stops its workers and removes its own temporary folder), then
    SIGKILL to whatever of the group is left after ``grace_s``."""
    proc.send_signal(signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# torchrun's own log lines (glog style: level letter, date, time, pid, path under
# .../torch/distributed/), e.g. "E1206 07:05:29.178000 31426 torch/distributed/elastic/..."
_TORCHRUN_LOG = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S*torch/distributed/")


def _launch(spec: Path, result: Path, tmp: Path, launch: Launch) -> dict[str, Any]:
    """Run torchrun on ``spec``; rank 0's result, or the first rank's error."""
    env = dict(os.environ)
    # torchrun would set 1 thread per worker (and say so); share this machine's cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // launch.nproc)))
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launch.torchrun_args(),
        f"--log-dir={tmp / 'torchrun'}",  # torchrun's own folder, else left in /tmp for good
        "-m",
        "shopsight.app.parallel",
        str(spec),
    ]
    # Workers' messages are passed to our stderr as they come (stdout stays for --json).
    # torchrun's own report of a failed worker (a log line, then its traceback) is held back:
    # when the worker left its one-line error, that line is what the user sees.
    held: list[str] = []
    # torchrun and its workers in their own process group, so that a stopped launch takes them
    # all down (killing torchrun alone would leave its workers running)
    with subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            failed = False  # after torchrun's error line comes its traceback: hold all
            for line in proc.stdout:
                ours = _TORCHRUN_LOG.match(line)
                failed = failed or bool(ours and line.startswith(("E", "F")))
                if ours or failed:
                    held.append(line)
                else:
                    sys.stderr.write(line)
                    sys.stderr.flush()
            proc.wait()
        except BaseException:
            _stop_group(proc)
            raise
    errors = sorted(tmp.glob("result.json.error-*"))
    if errors:
        first = json.loads(errors[0].read_text())
        msg = f"rank {first['rank']}: {first['message']}"
        if first["kind"] == "input":
            raise InputError(msg)
        if first["kind"] == "limit":  # out of disk or memory on a worker
            raise StateError(msg)
        raise RuntimeError(msg)
    sys.stderr.write("".join(held))  # no worker said why: torchrun's report is the reason
    if proc.returncode != 0:
        raise StateError(f"torchrun workers failed (exit {proc.returncode}); their output is above")
    if not result.exists():
        # Another node holds global rank 0 and prints the result there.
        return {"node_rank": launch.node_rank, "workers": launch.nproc, "result": "on node 0"}
    out: dict[str, Any] = json.loads(result.read_text())
    return out
