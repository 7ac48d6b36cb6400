"""A small, generic mini-batch PyTorch training loop shared by the torch models.

The loop knows nothing about recommendation. A model gives it:

- a ``torch.nn.Module`` whose ``forward(*batch)`` returns the (already scaled) training loss of
  one batch, so that ``DistributedDataParallel`` sees every forward;
- ``batches(epoch)``: this rank's batches of one epoch, a pure function of ``(seed, epoch)``
  (so a resumed run sees exactly the batches the interrupted one would have seen);
- optionally ``validate()``: a metric where higher is better (e.g. NDCG@10 on a validation
  split, :func:`ranking_ndcg`), used for early stopping and to keep the best weights.

The loop adds: seeding (``torch.manual_seed`` from ``(seed, epoch, rank)`` at each epoch),
deterministic algorithms while training, an optimiser (Adam, AdamW, SGD, Adagrad), a per-epoch
learning-rate schedule with warm-up, gradient clipping, early stopping with patience, restoring
the best weights, a ``rich`` progress bar, resumable checkpoints (safetensors + JSON, never
pickle), DDP when a process group is up (see :mod:`shopsight.distributed`), and a
history of loss / metric / learning rate / time per epoch for the run manifest.

Options that are about *a run* rather than the model (where to checkpoint, whether to show a
progress bar, per-step hooks) are set with the :func:`training_run` context manager, so model
hyper-parameters stay plain JSON-able values::

    with training_run(checkpoint_dir="ckpt/", progress=True):
        model.fit(train, valid)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from torch import nn

from shopsight import distributed as D
from shopsight.errors import StateError
from shopsight.training.report import training_line, training_summary

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

Batch = tuple[Any, ...]
Optimizer = Literal["adam", "adamw", "sgd", "adagrad"]
Schedule = Literal["constant", "cosine", "linear"]


class TrainingError(StateError):
    """Training cannot go on (diverged, bad configuration, incompatible checkpoint)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the loop itself (a model maps its own params onto these)."""

    epochs: int = 20
    lr: float = 1e-2
    optimizer: Optimizer = "adam"
    weight_decay: float = 0.0
    lr_schedule: Schedule = "constant"
    warmup_epochs: int = 0
    grad_clip: float | None = None
    patience: int | None = None  # evaluations without improvement before stopping
    min_delta: float = 0.0
    eval_every: int = 1
    seed: int = 0
    deterministic: bool = True
    # PyTorch's fused Adam/AdamW kernel: the same update in one pass, about 2.5x cheaper per
    # step on CPU. Off by default so recorded results of other models stay bit-reproducible.
    fused_optimizer: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> TrainConfig:
        """The loop settings among a model's parameters (``model.get_params()``: the ones
        named like a field here), then ``overrides``: how every trained model builds one."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in params.items() if k in names}, **overrides})

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> TrainingError:
            return TrainingError(f"TrainConfig.{name}={getattr(self, name)!r}: expected {expected}")

        if self.epochs < 0:
            raise bad("epochs", "an integer >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a positive finite number")
        if self.optimizer not in ("adam", "adamw", "sgd", "adagrad"):
            raise bad("optimizer", "one of adam, adamw, sgd, adagrad")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise bad("lr_schedule", "one of constant, cosine, linear")
        if self.warmup_epochs < 0:
            raise bad("warmup_epochs", "an integer >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "a positive number or None")
        if self.patience is not None and self.patience < 1:
            raise bad("patience", "an integer >= 1 or None")
        if self.eval_every < 1:
            raise bad("eval_every", "an integer >= 1")
        if self.weight_decay < 0:
            raise bad("weight_decay", "a number >= 0")


@dataclass
class TrainResult:
    """What happened: per-epoch history, the best evaluation, why training stopped.

    ``history``: one row per epoch run: ``epoch`` (1-based), ``loss`` (mean batch loss),
    ``lr``, ``metric`` (the validation metric, on epochs that validated), ``train_seconds``,
    ``valid_seconds`` (on epochs that validated) and ``seconds`` (the whole epoch).
    ``best_epoch`` / ``best_metric``: the evaluation whose weights were kept (None without
    validation). ``stop_reason``: one of :data:`STOP_REASONS`; ``stop_detail`` says it in words.
    Saved in the model's manifest (``config.json``, ``meta.training``).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    epochs_run: int = 0
    steps: int = 0
    resumed_from: int | None = None
    world_size: int = 1
    seconds: float = 0.0
    max_epochs: int = 0
    metric_name: str | None = None
    stop_reason: str | None = None
    stop_detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: epochs run, why training stopped, the best epoch."""
        return "trained " + training_line(self.to_dict())


#: Why a run stopped: no improvement for ``patience`` evaluations; all ``epochs`` run; the
#: run's time budget (:func:`training_run`) spent.
STOP_REASONS = ("early_stopping", "max_epochs", "time_budget")


# -- run options (context) ---------------------------------------------------------------------

StepHook = Callable[[int, nn.Module], None]
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class RunOptions:
    """Per-run options set by :func:`training_run` (not model hyper-parameters)."""

    checkpoint_dir: str | Path | None = None
    checkpoint_every: int = 1
    resume: bool = True
    progress: bool = False
    on_step: StepHook | None = None
    on_epoch: EpochHook | None = None
    # Seconds of training after which no new epoch starts (the running one finishes).
    time_budget: float | None = None


_RUN: ContextVar[RunOptions] = ContextVar("shopsight_training_run", default=RunOptions())  # noqa: B039


def run_options() -> RunOptions:
    return _RUN.get()


@contextlib.contextmanager
def training_run(
    *,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    progress: bool = False,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
    time_budget: float | None = None,
) -> Iterator[RunOptions]:
    """Set run options for every :class:`Trainer` started inside the ``with`` block.

    ``time_budget``: seconds of training (per :meth:`Trainer.fit`) after which no new epoch
    starts; the run then stops with ``stop_reason="time_budget"``, keeping its best weights.
    """
    if time_budget is not None and not time_budget > 0:
        raise TrainingError(f"time_budget={time_budget!r}: expected a positive number of seconds")
    opts = RunOptions(
        checkpoint_dir, checkpoint_every, resume, progress, on_step, on_epoch, time_budget
    )
    token = _RUN.set(opts)
    try:
        yield opts
    finally:
        _RUN.reset(token)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Use torch's deterministic kernels inside the block, then restore the previous setting.

    ``warn_only``: an op without a deterministic implementation warns instead of failing, so a
    model still trains on a backend that lacks one (all ops used on CPU here have one).
    """
    if not enabled:
        yield
        return
    import torch.utils.deterministic as tud

    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    before_fill = getattr(tud, "fill_uninitialized_memory", True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN (to expose reads of uninitialised
    # memory): a full write pass over each buffer, 8% of a SASRec epoch in the profile. Our ops
    # write their outputs completely, so the results are the same without it.
    tud.fill_uninitialized_memory = False  # type: ignore[attr-defined,unused-ignore]
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        tud.fill_uninitialized_memory = before_fill  # type: ignore[attr-defined,unused-ignore]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (independent streams per epoch / rank / purpose)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0]) & ((1 << 63) - 1)


# -- the loop ----------------------------------------------------------------------------------


def _make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    p = [q for q in params if q.requires_grad]
    fused = (
        cfg.fused_optimizer
        and bool(p)
        and all(q.is_floating_point() and q.device.type in ("cpu", "cuda") for q in p)
    )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(p, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(p, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(p, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adagrad(p, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier of a 0-based epoch: linear warm-up, then the schedule."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    t = (epoch - cfg.warmup_epochs) / span
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.lr_schedule == "linear":
        return max(1.0 - t, 0.0)
    return 1.0


class Trainer:
    """Train ``module`` with :class:`TrainConfig`; DDP-aware; see the module docstring."""

    def __init__(self, module: nn.Module, config: TrainConfig) -> None:
        self.module = module
        self.config = config
        self.ctx = D.current()
        self.opts = run_options()

    def fit(
        self,
        batches: Callable[[int], Iterable[Batch]],
        validate: Callable[[], float] | None = None,
    ) -> TrainResult:
        cfg, ctx, opts = self.config, self.ctx, self.opts
        metric_name = None if validate is None else getattr(validate, "metric_name", "valid")
        result = TrainResult(
            world_size=ctx.world_size, max_epochs=cfg.epochs, metric_name=metric_name
        )
        t0 = time.perf_counter()
        with deterministic_algorithms(cfg.deterministic):
            model = D.wrap(self.module, ctx)
            optimizer = _make_optimizer(self.module.parameters(), cfg)
            best_state: dict[str, torch.Tensor] | None = None
            bad_evals, start_epoch, step = 0, 0, 0
            ckpt = Path(opts.checkpoint_dir) if opts.checkpoint_dir else None
            if ckpt is not None and opts.resume and (ckpt / CHECKPOINT_JSON).exists():
                state = load_checkpoint(ckpt, self.module, optimizer)
                start_epoch, step = state["epoch"] + 1, state["step"]
                result.history = state["history"]
                result.best_epoch, result.best_metric = state["best_epoch"], state["best_metric"]
                bad_evals = state["bad_evals"]
                best_state = state["best_state"]
                result.resumed_from = state["epoch"]
            with epoch_display(ctx.is_main, cfg.epochs, start_epoch) as bar:
                for epoch in range(start_epoch, cfg.epochs):
                    e0 = time.perf_counter()
                    lr = cfg.lr * lr_factor(epoch, cfg)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    torch.manual_seed(derive_seed(cfg.seed, epoch, ctx.rank, 7))
                    model.train()
                    total, n_batches = 0.0, 0
                    for batch in batches(epoch):
                        optimizer.zero_grad(set_to_none=True)
                        loss = model(*batch)
                        loss.backward()
                        if cfg.grad_clip is not None:
                            nn.utils.clip_grad_norm_(
                                self.module.parameters(),
                                cfg.grad_clip,
                                foreach=True if cfg.fused_optimizer else None,
                            )
                        optimizer.step()
                        value = float(loss.detach())
                        if not math.isfinite(value):
                            raise TrainingError(
                                f"loss became {value} at epoch {epoch + 1}, step {step + 1}; "
                                "lower the learning rate or raise the regularisation"
                            )
                        total += value
                        n_batches += 1
                        step += 1
                        if opts.on_step is not None:
                            opts.on_step(step, self.module)
                    # Per-rank sums of scaled losses add up to the global mean batch loss.
                    mean_loss = D.all_reduce_sum(total, ctx) / max(n_batches, 1) / ctx.world_size
                    row: dict[str, float] = {
                        "epoch": float(epoch + 1),
                        "loss": mean_loss,
                        "lr": lr,
                        "train_seconds": time.perf_counter() - e0,
                    }
                    stop = False
                    if validate is not None and (
                        (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
                    ):
                        v0 = time.perf_counter()
                        model.eval()
                        with torch.no_grad():
                            metric = validate() if ctx.is_main else 0.0
                        metric = D.broadcast_float(metric, ctx)
                        row["metric"] = metric
                        row["valid_seconds"] = time.perf_counter() - v0
                        if (
                            result.best_metric is None
                            or metric > result.best_metric + cfg.min_delta
                        ):
                            result.best_metric, result.best_epoch = metric, epoch + 1
                            best_state = _copy_state(self.module)
                            bad_evals = 0
                        else:
                            bad_evals += 1
                            stop = cfg.patience is not None and bad_evals >= cfg.patience
                            if stop:
                                result.stop_reason = "early_stopping"
                                result.stop_detail = (
                                    f"early stopping: no {metric_name} improvement in "
                                    f"{bad_evals} evaluation{'s' if bad_evals != 1 else ''}"
                                )
                    row["seconds"] = time.perf_counter() - e0
                    result.history.append(row)
                    result.epochs_run = epoch + 1
                    spent = time.perf_counter() - t0
                    if (
                        not stop
                        and opts.time_budget is not None
                        and epoch + 1 < cfg.epochs
                        # every rank decides alike: rank 0's clock
                        and D.broadcast_float(float(spent >= opts.time_budget), ctx) > 0.5
                    ):
                        stop = True
                        result.stop_reason = "time_budget"
                        result.stop_detail = (
                            f"time budget of {opts.time_budget:g}s spent "
                            f"({spent:.1f}s after epoch {epoch + 1} of {cfg.epochs})"
                        )
                    if opts.on_epoch is not None:
                        opts.on_epoch(epoch + 1, row)
                    if (
                        ckpt is not None
                        and ctx.is_main
                        and (
                            (epoch + 1) % opts.checkpoint_every == 0
                            or stop
                            or epoch + 1 == cfg.epochs
                        )
                    ):
                        save_checkpoint(
                            ckpt,
                            self.module,
                            optimizer,
                            epoch=epoch,
                            step=step,
                            history=result.history,
                            best_epoch=result.best_epoch,
                            best_metric=result.best_metric,
                            bad_evals=bad_evals,
                            best_state=best_state,
                            config=asdict(cfg),
                        )
                    D.barrier(ctx)
                    bar(row, result)
                    if stop:
                        result.stopped_early = True
                        break
                if result.stop_reason is None:
                    result.stop_reason = "max_epochs"
                    result.stop_detail = f"all {cfg.epochs} epochs run (max_epochs)"
                result.seconds = time.perf_counter() - t0
                bar.done(result)
            if best_state is not None:
                # Keep the weights of the best evaluation, not of the last epoch.
                self.module.load_state_dict(best_state)
        result.steps = step
        result.seconds = time.perf_counter() - t0
        return result


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def epoch_line(row: Mapping[str, float], max_epochs: int, result: TrainResult) -> str:
    """One epoch as shown on the progress display: loss, validation metric, seconds."""
    text = f"epoch {int(row['epoch'])}/{max_epochs}  loss {row['loss']:.4f}"
    if "metric" in row:
        text += f"  {result.metric_name or 'valid'} {row['metric']:.4f}"
        if result.best_epoch is not None and result.best_metric is not None:
            text += f" (best {result.best_metric:.4f} @ {result.best_epoch})"
    text += f"  {row['seconds']:.1f}s"
    if "valid_seconds" in row:
        text += f" (valid {row['valid_seconds']:.1f}s)"
    return text


class EpochDisplay:
    """A training run on the progress display (stderr, terminal only; see
    :mod:`shopsight.progress`): the bar advances per epoch, each epoch's line (loss, validation
    metric, seconds) stays printed above it, and a last line says why training stopped."""

    def __init__(self, bar: Any, max_epochs: int) -> None:
        self._bar = bar
        self.max_epochs = max_epochs

    def __call__(self, row: Mapping[str, float], result: TrainResult) -> None:
        if self._bar is None:
            return
        line = epoch_line(row, self.max_epochs, result)
        self._bar.log(line)
        self._bar.advance(1, info=line)

    def done(self, result: TrainResult) -> None:
        if self._bar is not None:
            self._bar.log(result.summary())


@contextlib.contextmanager
def epoch_display(enabled: bool, max_epochs: int, start_epoch: int = 0) -> Iterator[EpochDisplay]:
    """One display per training run (nothing on ranks other than 0)."""
    if not enabled:
        yield EpochDisplay(None, max_epochs)
        return
    from shopsight.progress import task

    with task("training", total=max_epochs - start_epoch) as bar:
        yield EpochDisplay(bar, max_epochs)


# -- checkpoints (safetensors + JSON) ------------------------------------------------------------

CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_TENSORS = "checkpoint.safetensors"


def save_checkpoint(
    directory: str | Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    step: int,
    history: list[dict[str, float]],
    best_epoch: int | None,
    best_metric: float | None,
    bad_evals: int,
    best_state: dict[str, torch.Tensor] | None,
    config: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint atomically (tensors to safetensors, the rest to JSON)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in D.unwrap(module).state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    if best_state is not None:
        for k, v in best_state.items():
            tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = val.detach().cpu().contiguous()
            else:
                opt_scalars.setdefault(str(pid), {})[name] = val
    meta = {
        "epoch": epoch,
        "step": step,
        "history": history,
        "best_epoch": best_epoch,
        "best_metric": best_metric,
        "bad_evals": bad_evals,
        "has_best": best_state is not None,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": opt_scalars},
        "params": {k: list(v.shape) for k, v in D.unwrap(module).state_dict().items()},
        "config": config,
    }
    tmp_t, tmp_j = d / (CHECKPOINT_TENSORS + ".tmp"), d / (CHECKPOINT_JSON + ".tmp")
    save_file(tensors, str(tmp_t))
    tmp_j.write_text(json.dumps(meta, default=str))
    # tensors first, then the JSON that marks the checkpoint complete
    os.replace(tmp_t, d / CHECKPOINT_TENSORS)
    os.replace(tmp_j, d / CHECKPOINT_JSON)
    return d


def load_checkpoint(
    directory: str | Path, module: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Restore module (and optimizer) state in place; returns the loop state saved with it."""
    from safetensors.torch import load_file

    d = Path(directory)
    meta = json.loads((d / CHECKPOINT_JSON).read_text())
    tensors = load_file(str(d / CHECKPOINT_TENSORS))
    target = D.unwrap(module)
    expected = {k: list(v.shape) for k, v in target.state_dict().items()}
    if meta["params"] != expected:
        raise TrainingError(
            f"{d}: checkpoint was written for other parameters "
            f"({sorted(meta['params'])[:3]}... vs {sorted(expected)[:3]}...); "
            "use another checkpoint directory or delete this one"
        )
    target.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = (
        {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        if meta.get("has_best")
        else None
    )
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for key, val in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = val
        for pid, scalars in meta["optimizer"]["scalars"].items():
            state.setdefault(int(pid), {}).update(scalars)
        optimizer.load_state_dict(
            {"state": state, "param_groups": meta["optimizer"]["param_groups"]}
        )
    return {**meta, "best_state": best}


# -- validation metric for early stopping ------------------------------------------------------


def ranking_ndcg(
    score_fn: Callable[
        [npt.NDArray[np.int64]],
        npt.NDArray[np.float32] | torch.Tensor | tuple[torch.Tensor, npt.NDArray[np.int64]],
    ],
    seen: sp.csr_matrix,
    targets: sp.csr_matrix,
    *,
    k: int = 10,
    max_users: int | None = 2000,
    batch_size: int = 1024,
    seed: int = 0,
) -> float:
    """Mean NDCG@k over users with targets, ranking the full catalogue minus ``seen`` items.

    ``targets``: users x items, non-zero where an item is relevant (already-seen pairs are
    dropped, since the ranking excludes them). Scored in batches (bounded memory); at most
    ``max_users`` users, a seeded sample, keep early stopping cheap. A ``score_fn`` may return
    a CPU tensor it will not read again (it is then masked in place, not copied), or such a
    tensor and the order of its rows (row ``r`` scores ``users[order[r]]``).
    """
    t = targets.tocsr().astype(bool).astype(np.float32)
    t = (t - t.multiply(seen.astype(bool))).tocsr()
    t.eliminate_zeros()
    users = np.flatnonzero(np.diff(t.indptr) > 0).astype(np.int64)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    if not len(users):
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    n_targets = np.diff(t.indptr)
    # One target per user (leave-one-out): NDCG is 1 / log2(rank + 2) of that item, and its
    # rank is a count, several times cheaper than selecting each user's top k.
    single = bool((n_targets[users] == 1).all())
    total = 0.0
    for start in range(0, len(users), batch_size):
        ub = users[start : start + batch_size]
        got = score_fn(ub)
        if isinstance(got, tuple):  # rows in the scorer's order
            got, order = got
            ub = ub[order]
        seen_b = seen[ub].tocoo()
        # a tensor is the scorer's own (fresh) output: its numpy view is changed in place
        s = got.numpy() if isinstance(got, torch.Tensor) else np.array(got, dtype=np.float32)
        s[seen_b.row, seen_b.col] = -np.inf
        if single:
            target = t.indices[t.indptr[ub]]
            ts = s[np.arange(len(ub)), target][:, None]
            rank = np.count_nonzero(s > ts, axis=1)
            # ties rank by item index, as the top-k rule of Recommender.recommend; they are
            # rare, so only the rows with one (besides the target itself) are counted again
            tied = np.flatnonzero(np.count_nonzero(s == ts, axis=1) > 1)
            if len(tied):
                earlier = np.arange(s.shape[1]) < target[tied, None]
                rank[tied] += np.count_nonzero((s[tied] == ts[tied]) & earlier, axis=1)
            hit = rank < min(k, s.shape[1])
            total += float((np.where(hit, 1.0, 0.0) / np.log2(rank + 2.0)).sum())
            continue
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        rel = np.asarray(t[ub][np.arange(len(ub))[:, None], top].todense()) > 0
        dcg = (rel * discounts[:kk]).sum(axis=1)
        n_rel = np.minimum(np.diff(t.indptr)[ub], kk)
        idcg = np.cumsum(discounts[:kk])[n_rel - 1]
        total += float((dcg / idcg).sum())
    return total / len(users)


ScoreFn = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]


class TrainedModel(Protocol):
    """What the loop's helpers need of a model (a ``Recommender``; models sit above training)."""

    name: ClassVar[str]
    seen_: Any

    def get_params(self) -> dict[str, Any]: ...


def validation_fn(
    model: TrainedModel,
    score_fn: ScoreFn | None,
    valid: Dataset | None,
    *,
    k: int = 10,
    seed: int = 0,
    scorer: Callable[[], ScoreFn] | None = None,
) -> Callable[[], float] | None:
    """Early-stopping metric of a model being fitted: NDCG@k of ``valid``'s items.

    ``score_fn(users)`` scores a batch of users. Alternatively ``scorer()`` is called once per
    evaluation and returns such a function, so a model can prepare what all batches share
    (e.g. LightGCN's graph propagation). ``None`` when there is nothing to validate on.
    """
    if valid is None or len(valid) == 0:
        return None
    if (score_fn is None) == (scorer is None):
        raise ValueError("validation_fn needs exactly one of score_fn or scorer")
    targets = valid.implicit
    seen = model.seen_

    def metric() -> float:
        fn = scorer() if scorer is not None else score_fn
        assert fn is not None
        return ranking_ndcg(fn, seen, targets, k=k, seed=seed)

    metric.metric_name = f"NDCG@{k}"  # type: ignore[attr-defined]
    return metric


# -- run manifest --------------------------------------------------------------------------------


def run_manifest(
    model: TrainedModel,
    dataset: Dataset | None = None,
    *,
    result: TrainResult | None = None,
    metrics: dict[str, float] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What to save beside a trained model so the run can be redone exactly."""
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {
        "model": model.name,
        "params": model.get_params(),
        "seed": model.get_params().get("seed"),
        "data_fingerprint": None if dataset is None else dataset.fingerprint,
        "data": None
        if dataset is None
        else {"users": dataset.n_users, "items": dataset.n_items, "interactions": len(dataset)},
        "training": None if result is None else result.to_dict(),
        "metrics": metrics or {},
        "config": config or {},
        "versions": {
            "python": platform.python_version(),
            **{p: version(p) for p in ("shopsight", "torch", "numpy", "scipy", "implicit")},
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


__all__ = [
    "STOP_REASONS",
    "EpochDisplay",
    "RunOptions",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "derive_seed",
    "deterministic_algorithms",
    "epoch_display",
    "epoch_line",
    "load_checkpoint",
    "lr_factor",
    "ranking_ndcg",
    "run_manifest",
    "save_checkpoint",
    "training_run",
    "training_summary",
    "validation_fn",
]
