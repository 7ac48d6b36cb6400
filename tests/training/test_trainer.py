"""The generic training loop: early stopping, best weights, schedules, clipping, checkpoints."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from shopsight.models.mf import BPRModule, PairSampler, fit_pairwise
from shopsight.training.trainer import (
    TrainConfig,
    Trainer,
    TrainingError,
    deterministic_algorithms,
    lr_factor,
    ranking_ndcg,
    training_run,
)


class Quadratic(nn.Module):
    """loss = |w - target|^2 per batch; a batch is (scale,)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.target = torch.tensor([1.0, -2.0, 3.0])

    def forward(self, scale: float) -> torch.Tensor:
        return scale * (self.w - self.target).pow(2).sum()


def one_batch(epoch: int) -> Iterator[tuple[float]]:
    yield (1.0,)


def test_early_stopping_restores_the_best_weights() -> None:
    module = Quadratic()
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.9, 0.9])
    snapshots: dict[int, torch.Tensor] = {}

    def record(epoch: int, row: dict[str, float]) -> None:
        snapshots[epoch] = module.w.detach().clone()

    cfg = TrainConfig(epochs=6, lr=0.1, optimizer="sgd", patience=2)
    with training_run(on_epoch=record):
        result = Trainer(module, cfg).fit(one_batch, validate=lambda: next(scripted))
    assert result.stopped_early and result.epochs_run == 4
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(0.5)
    assert torch.equal(module.w.detach(), snapshots[2])
    assert [row["metric"] for row in result.history] == pytest.approx([0.1, 0.5, 0.4, 0.3])


def test_without_validation_all_epochs_run_and_loss_falls() -> None:
    module = Quadratic()
    result = Trainer(module, TrainConfig(epochs=30, lr=0.1, optimizer="sgd")).fit(one_batch)
    assert result.epochs_run == 30 and not result.stopped_early and result.best_epoch is None
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 1e-3 < losses[0]


def test_learning_rate_schedules() -> None:
    cos = TrainConfig(epochs=10, lr_schedule="cosine")
    assert lr_factor(0, cos) == pytest.approx(1.0)
    assert lr_factor(5, cos) == pytest.approx(0.5)
    lin = TrainConfig(epochs=10, lr_schedule="linear", warmup_epochs=2)
    assert [round(lr_factor(e, lin), 4) for e in range(3)] == [
        round(1 / 3, 4),
        round(2 / 3, 4),
        1.0,
    ]
    assert lr_factor(6, lin) == pytest.approx(0.5)
    module = Quadratic()
    result = Trainer(module, TrainConfig(epochs=4, lr=0.2, lr_schedule="cosine")).fit(one_batch)
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] == pytest.approx(0.2) and all(a > b for a, b in itertools.pairwise(lrs))


def test_gradient_clipping_bounds_the_step() -> None:
    module = Quadratic()
    module.target = torch.tensor([100.0, 100.0, 100.0])
    Trainer(module, TrainConfig(epochs=1, lr=1.0, optimizer="sgd", grad_clip=0.5)).fit(one_batch)
    assert float(module.w.detach().norm()) == pytest.approx(0.5, rel=1e-5)


def test_divergence_is_a_clear_error() -> None:
    class Diverging(Quadratic):
        def forward(self, scale: float) -> torch.Tensor:
            return super().forward(scale) * float("nan")

    with pytest.raises(TrainingError, match="lower the learning rate"):
        Trainer(Diverging(), TrainConfig(epochs=2)).fit(one_batch)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", -1), ("lr", 0.0), ("optimizer", "lbfgs"), ("patience", 0), ("grad_clip", -1.0)],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(TrainingError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def _bpr_run(matrix: sp.csr_matrix, checkpoint: Path | None, stop_after: int | None) -> BPRModule:
    module = BPRModule(matrix.shape[0], matrix.shape[1], 8, seed=3)
    sampler = PairSampler(matrix, seed=3, weighting="log")
    cfg = TrainConfig(epochs=5, lr=0.05, seed=3)

    def maybe_crash(epoch: int, row: dict[str, float]) -> None:
        if stop_after is not None and epoch == stop_after:
            raise KeyboardInterrupt  # a crash right after the checkpoint of that epoch

    with training_run(checkpoint_dir=checkpoint, on_epoch=maybe_crash):
        fit_pairwise(module, sampler, cfg, batch_size=64)
    return module


def test_resumed_training_equals_uninterrupted_training(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    m = sp.random(40, 30, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    m.data = rng.integers(1, 9, m.nnz).astype(np.float32)
    reference = _bpr_run(m, None, None)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        _bpr_run(m, ckpt, stop_after=2)
    # the on_epoch hook fires before the checkpoint write: the last complete one is epoch 1
    resumed = _bpr_run(m, ckpt, None)
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_ranking_ndcg_by_hand() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    targets = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32))
    got = ranking_ndcg(lambda u: scores[u], seen, targets, k=2)
    # user 0: item 0 is seen (dropped from targets and ranking): ranking [1, 3], target {3}
    u0 = (1 / math.log2(3)) / 1.0
    # user 1: ranking [3, 2], target {1}: no hit
    assert got == pytest.approx((u0 + 0.0) / 2)


def test_deterministic_algorithms_context_restores_the_setting() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_fused_optimizer_only_when_asked() -> None:
    from shopsight.training.trainer import _make_optimizer

    params = list(nn.Linear(3, 2).parameters())
    plain = _make_optimizer(params, TrainConfig(optimizer="adam"))
    fused = _make_optimizer(params, TrainConfig(optimizer="adamw", fused_optimizer=True))
    assert not plain.defaults.get("fused")
    assert fused.defaults.get("fused") is True


# -- training that reports itself ----------------------------------------------------------------


def test_stop_reason_early_stopping_and_best_epoch_is_the_argmax() -> None:
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.9, 0.9])
    cfg = TrainConfig(epochs=6, lr=0.1, optimizer="sgd", patience=2)
    result = Trainer(Quadratic(), cfg).fit(one_batch, validate=lambda: next(scripted))
    assert result.stop_reason == "early_stopping" and result.stopped_early
    assert "2 evaluations" in result.stop_detail
    assert len(result.history) == result.epochs_run == 4 and result.max_epochs == 6
    metrics = [row["metric"] for row in result.history]
    assert result.best_epoch == int(np.argmax(metrics)) + 1
    for row in result.history:
        assert row["seconds"] >= row["train_seconds"] >= 0 and row["valid_seconds"] >= 0
        assert row["seconds"] >= row["train_seconds"] + row["valid_seconds"] - 1e-9


def test_stop_reason_max_epochs() -> None:
    scripted = iter([0.1, 0.2, 0.15, 0.3])
    cfg = TrainConfig(epochs=4, lr=0.1, optimizer="sgd", patience=2)
    result = Trainer(Quadratic(), cfg).fit(one_batch, validate=lambda: next(scripted))
    assert result.stop_reason == "max_epochs" and not result.stopped_early
    assert len(result.history) == result.epochs_run == 4 and result.best_epoch == 4
    no_valid = Trainer(Quadratic(), TrainConfig(epochs=3)).fit(one_batch)
    assert no_valid.stop_reason == "max_epochs" and no_valid.best_epoch is None
    assert no_valid.metric_name is None and "valid_seconds" not in no_valid.history[0]


def test_time_budget_stops_after_the_running_epoch_and_keeps_the_best() -> None:
    scripted = iter([0.3, 0.2])
    module = Quadratic()
    with training_run(time_budget=1e-9):
        result = Trainer(module, TrainConfig(epochs=50, lr=0.1, optimizer="sgd")).fit(
            one_batch, validate=lambda: next(scripted)
        )
    assert result.stop_reason == "time_budget" and result.epochs_run == 1
    assert "time budget" in result.stop_detail and result.best_epoch == 1
    with pytest.raises(TrainingError, match="time_budget"), training_run(time_budget=0):
        pass


def test_each_epoch_and_the_stop_are_shown_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from shopsight import progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.delenv("SHOPSIGHT_QUIET", raising=False)
    progress.set_quiet(None)
    scripted = iter([0.1, 0.5, 0.4, 0.3])
    cfg = TrainConfig(epochs=6, lr=0.1, optimizer="sgd", patience=2)

    def metric() -> float:
        return next(scripted)

    metric.metric_name = "NDCG@10"  # type: ignore[attr-defined]
    Trainer(Quadratic(), cfg).fit(one_batch, validate=metric)
    shown = tty.getvalue()
    for epoch in range(1, 5):
        assert f"epoch {epoch}/6  loss " in shown
    assert "NDCG@10 0.5000 (best 0.5000 @ 2)" in shown and "(valid " in shown
    assert "trained 4 epochs" in shown and "early stopping" in shown
    assert "best epoch 2 (NDCG@10 0.5000)" in shown
    assert capsys.readouterr().out == ""
    # --quiet: nothing at all
    tty.seek(0)
    tty.truncate()
    progress.set_quiet(True)
    try:
        Trainer(Quadratic(), TrainConfig(epochs=2)).fit(one_batch)
    finally:
        progress.set_quiet(None)
    assert tty.getvalue() == ""


def test_single_target_ndcg_equals_the_top_k_computation() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 200, 40
    seen = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    dense_t = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        dense_t[u, rng.choice(np.flatnonzero(seen[u].toarray()[0] == 0))] = 1
    targets = sp.csr_matrix(dense_t)
    # integer scores: many ties, which rank by item index
    scores = rng.integers(0, 6, (n_users, n_items)).astype(np.float32)
    got = ranking_ndcg(lambda u: scores[u], seen, targets, k=5)
    want = 0.0
    for u in range(n_users):
        s = scores[u].copy()
        s[seen[u].indices] = -np.inf
        order = np.lexsort((np.arange(n_items), -s))  # score desc, then index
        rank = int(np.flatnonzero(order == targets[u].indices[0])[0])
        want += 1 / math.log2(rank + 2) if rank < 5 else 0.0
    assert got == pytest.approx(want / n_users)
    # a scorer returning tensors is ranked in torch: the same figure, ties included, in
    # batches of any size
    for batch in (1024, 7):
        in_torch = ranking_ndcg(
            lambda u: torch.from_numpy(scores[u].copy()), seen, targets, k=5, batch_size=batch
        )
        assert in_torch == pytest.approx(want / n_users)
