"""DP-SGD training: the epsilon spent is finite and at the target, per-example gradients are
clipped, noise is really added, and without privacy the same loop is plain training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from shopsight.cli import app
from shopsight.data.dataset import Dataset
from shopsight.data.store import Store
from shopsight.models.artifact import load_artifact, save_artifact
from shopsight.models.dp import DPBPR, DPConfig, train_dp_bpr
from shopsight.models.mf import BPRModule


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    m = sp.random(120, 80, density=0.08, random_state=rng, format="csr")
    m.data[:] = 1.0
    return m


def _params(module: BPRModule) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize(
    ("target", "accountant"),
    [(1.0, "rdp"), (8.0, "rdp"), pytest.param(4.0, "prv", marks=pytest.mark.slow)],
)
def test_epsilon_spent_is_close_to_target(
    matrix: sp.csr_matrix, target: float, accountant: str
) -> None:
    dp = DPConfig(epsilon=target, accountant=accountant)  # type: ignore[arg-type]
    _, res = train_dp_bpr(matrix, epochs=1, batch_size=128, dp=dp, seed=0)
    assert res.epsilon is not None and math.isfinite(res.epsilon)
    assert 0.9 * target <= res.epsilon <= target * 1.01
    assert res.noise_multiplier > 0 and res.steps == math.ceil(matrix.nnz / 128)
    assert res.delta == pytest.approx(1 / (10 * matrix.nnz))


def test_per_example_gradients_are_clipped(matrix: sp.csr_matrix) -> None:
    """One SGD step (lr 1, no noise): the update is the sum of clipped per-example gradients
    over the expected batch size, so its norm is at most C * batch / expected."""
    init = _params(BPRModule(*matrix.shape, 8, l2=0.0, seed=3))

    def one_step(c: float) -> tuple[float, float]:
        module, res = train_dp_bpr(
            matrix,
            factors=8,
            epochs=1,
            batch_size=64,
            lr=1.0,
            l2=0.0,
            optimizer="sgd",
            dp=DPConfig(epsilon=None, noise_multiplier=0.0, max_grad_norm=c),
            seed=3,
            max_steps=1,
        )
        assert res.steps == 1 and res.samples_seen > 0
        expected = int(matrix.nnz * res.sample_rate)
        return float((_params(module) - init).norm()), res.samples_seen / expected

    c = 1e-3
    clipped, batch_ratio = one_step(c)
    unclipped, _ = one_step(1e6)
    assert 0 < clipped <= c * batch_ratio * (1 + 1e-4)
    assert unclipped > 50 * clipped


def test_noise_is_secret_unless_a_noise_seed_is_given(matrix: sp.csr_matrix) -> None:
    def run(sigma: float, noise_seed: int | None) -> tuple[torch.Tensor, str | None]:
        dp = DPConfig(epsilon=None, noise_multiplier=sigma, max_grad_norm=1.0)
        module, res = train_dp_bpr(
            matrix, epochs=1, batch_size=128, dp=dp, seed=0, noise_seed=noise_seed
        )
        return _params(module), res.noise

    quiet, _ = run(0.0, 0)
    noisy, source = run(1.0, 0)
    assert (noisy - quiet).norm() > 0.1 * quiet.norm()
    assert source is not None and "reproducible" in source
    assert torch.equal(noisy, run(1.0, 0)[0])  # reproducible only under a given noise_seed
    assert not torch.allclose(noisy, run(1.0, 1)[0])
    # by default the same (public) seed does not give the same noise: nobody can redraw it
    a, source = run(1.0, None)
    b, _ = run(1.0, None)
    assert source is not None and source.startswith("secret")
    assert not torch.allclose(a, b)


def test_without_noise_or_clipping_it_is_plain_training(matrix: sp.csr_matrix) -> None:
    plain, res = train_dp_bpr(matrix, epochs=3, batch_size=128, dp=None, seed=5)
    wrapped, _ = train_dp_bpr(
        matrix,
        epochs=3,
        batch_size=128,
        dp=DPConfig(epsilon=None, noise_multiplier=0.0, max_grad_norm=1e9),
        seed=5,
        noise_seed=5,  # the same Poisson batches as the plain run
    )
    assert not res.private and res.epsilon is None
    torch.testing.assert_close(_params(plain), _params(wrapped), atol=1e-5, rtol=1e-5)
    assert res.losses[-1] < res.losses[0]  # it learns


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="epsilon or noise_multiplier"):
        DPConfig(epsilon=None)
    with pytest.raises(ValueError, match="delta"):
        DPConfig(delta=2.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        DPConfig(max_grad_norm=0)


def test_dpbpr_recommender_round_trip(raw_store: Path, tmp_path: Path) -> None:
    with Store(raw_store, read_only=True) as st:
        ds = Dataset.from_store(st)
    model = DPBPR.from_config(DPConfig(epsilon=4.0), factors=8, epochs=2, batch_size=256)
    model.fit(ds)
    assert model.privacy_["private"] and model.privacy_["epsilon"] <= 4.0 * 1.01
    save_artifact(model, ds, tmp_path / "m")
    art = load_artifact(tmp_path / "m")
    assert isinstance(art.model, DPBPR) and art.model.privacy_ == model.privacy_
    users = np.arange(5)
    np.testing.assert_array_equal(art.model.score(users), model.score(users))
    assert len(art.recommend(str(ds.user_ids[0]), 5)) == 5
    plain = DPBPR.from_config(None, factors=8, epochs=1, batch_size=256).fit(ds)
    assert plain.privacy_["private"] is False and plain.dp_config is None


def test_cli_dp_train(raw_store: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "dp-train",
            "--model",
            "dp_bpr",
            "--store",
            str(raw_store),
            "--out",
            str(tmp_path / "m"),
            "--dp-epsilon",
            "2",
            "--epochs",
            "1",
            "--factors",
            "4",
            "--batch-size",
            "512",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    privacy = json.loads(res.stdout)["privacy"]
    assert privacy["private"] and 1.8 <= privacy["epsilon"] <= 2.02
    assert (tmp_path / "m" / "config.json").exists()
