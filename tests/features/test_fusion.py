"""Fusion modules: masking, re-weighting, projections, gated attention (synthetic data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopsight.features.fusion import (
    ConcatFusion,
    GatedAttentionFusion,
    ProjectionFusion,
    loo_knn_balanced_accuracy,
)


def _planted(
    n: int = 300, seed: int = 0, noise_a: float = 0.5, noise_b: float = 3.0
) -> tuple[dict, np.ndarray]:
    """Two modalities about 4 classes: 'a' informative, 'b' nearly pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    ca, cb = rng.normal(size=(4, 16)), rng.normal(size=(4, 24))
    a = ca[y] + noise_a * rng.normal(size=(n, 16)) + 5.0  # offset: centring must remove it
    b = 0.2 * cb[y] + noise_b * rng.normal(size=(n, 24))
    return {"a": (a, None), "b": (b, None)}, y


def test_concat_rows_are_unit_and_dot_is_weighted_cosine() -> None:
    mods, _ = _planted()
    f = ConcatFusion(weights={"a": 3.0, "b": 1.0}).fit(mods)
    assert f.weights_ == pytest.approx({"a": 0.75, "b": 0.25})
    z = f.transform(mods).vectors
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)

    def unit(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        c = x - mean
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    ua = unit(mods["a"][0], mods["a"][0].mean(0))
    ub = unit(mods["b"][0], mods["b"][0].mean(0))
    expected = 0.75 * (ua[:5] @ ua[5:10].T) + 0.25 * (ub[:5] @ ub[5:10].T)
    assert np.allclose(z[:5] @ z[5:10].T, expected, atol=1e-4)


def test_concat_missing_modality_is_masked_and_reweighted() -> None:
    mods, _ = _planted(n=50)
    mask_b = np.ones(50, bool)
    mask_b[:10] = False
    b = mods["b"][0].copy()
    b[:10] = np.nan  # whatever sits in a masked row is never read
    f = ConcatFusion().fit({"a": mods["a"], "b": (b, mask_b)})
    out = f.transform({"a": mods["a"], "b": (b, mask_b)})
    assert out.modalities == ["a", "b"]
    assert out.modality_mask[:10].tolist() == [[True, False]] * 10
    assert out.mask.all()
    z = out.vectors
    da = mods["a"][0].shape[1]
    assert np.allclose(z[:10, da:], 0.0)  # the missing block...
    assert np.allclose(np.linalg.norm(z[:10], axis=1), 1.0, atol=1e-5)  # ...is re-weighted away
    # A row with no modality at all is flagged, not passed off as data.
    none = f.transform(
        {"a": (mods["a"][0][:3], np.zeros(3, bool)), "b": (b[:3], np.zeros(3, bool))}
    )
    assert not none.mask.any() and np.allclose(none.vectors, 0.0)


def test_concat_auto_weights_prefer_informative_modality() -> None:
    mods, y = _planted(n=400, noise_a=1.5)  # noisy enough that weighting matters
    f = ConcatFusion(weights="auto", k=5, grid_step=0.1).fit(mods, y)
    assert f.weights_["a"] >= 0.8
    equal = ConcatFusion().fit(mods).transform(mods).vectors
    z = f.transform(mods).vectors
    fused = loo_knn_balanced_accuracy(z @ z.T, y, 5)
    assert fused > loo_knn_balanced_accuracy(equal @ equal.T, y, 5) + 0.02
    only_b = ConcatFusion().fit({"b": mods["b"]}).transform({"b": mods["b"]}).vectors
    assert fused > loo_knn_balanced_accuracy(only_b @ only_b.T, y, 5) + 0.3
    with pytest.raises(ValueError, match="needs labels"):
        ConcatFusion(weights="auto").fit(mods)


def test_centring_is_learned_on_fit_data() -> None:
    mods, y = _planted(n=200)
    raw = ConcatFusion(center=False).fit({"a": mods["a"]}).transform({"a": mods["a"]}).vectors
    cen = ConcatFusion(center=True).fit({"a": mods["a"]}).transform({"a": mods["a"]}).vectors
    # The +5 offset makes every raw cosine ~1; centring recovers the class structure.
    assert (raw @ raw.T).min() > 0.8
    assert loo_knn_balanced_accuracy(cen @ cen.T, y, 5) > 0.9


def test_projection_pca_init_and_supervised_training() -> None:
    mods, y = _planted(n=300)
    p = ProjectionFusion(dim=8, seed=0).fit(mods)
    z = p.transform(mods).vectors
    assert z.shape == (300, 8)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    w = p.proj.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-4)  # orthonormal principal directions
    unsup = loo_knn_balanced_accuracy(z @ z.T, y, 5)
    sup = ProjectionFusion(dim=8, epochs=40, seed=0, num_threads=1).fit(mods, y)
    zs = sup.transform(mods).vectors
    assert sup.history_[-1] < sup.history_[0]
    assert loo_knn_balanced_accuracy(zs @ zs.T, y, 5) >= unsup - 0.02
    assert loo_knn_balanced_accuracy(zs @ zs.T, y, 5) > 0.9


def test_projection_trains_with_any_objective() -> None:
    mods, _ = _planted(n=120)
    p = ProjectionFusion(dim=4, normalize_output=False, epochs=5, num_threads=1).fit(mods)
    # A reachable target: a fixed random linear map of the (normalised) concatenation.
    joint = torch.from_numpy(ConcatFusion().fit(mods).transform(mods).vectors)
    target = joint @ torch.randn(joint.shape[1], 4, generator=torch.Generator().manual_seed(0))

    def loss(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return ((z - target[idx]) ** 2).mean()

    hist = p.train_objective(mods, loss, epochs=30)
    assert hist[-1] < 0.5 * hist[0]


def test_gated_attention_weights_are_masked_and_learned() -> None:
    mods, y = _planted(n=400, noise_b=3.0)
    g = GatedAttentionFusion(dim=8, hidden=8, seed=0).fit(mods)
    a0 = g.attention_weights(mods)
    assert np.allclose(a0, 0.5, atol=1e-6)  # untrained gate is uniform
    mask_a = np.ones(400, bool)
    mask_a[:7] = False
    a_masked = g.attention_weights({"a": (mods["a"][0], mask_a), "b": mods["b"]})
    assert np.allclose(a_masked[:7], [[0.0, 1.0]] * 7)
    none = {"a": (mods["a"][0][:2], np.zeros(2, bool)), "b": (mods["b"][0][:2], np.zeros(2, bool))}
    assert np.allclose(g.attention_weights(none), 0.0)
    out = g.transform(none)
    assert not out.mask.any() and np.isfinite(out.vectors).all()

    trained = GatedAttentionFusion(dim=8, hidden=8, epochs=60, seed=0, num_threads=1)
    trained.fit(mods, y)
    a = trained.attention_weights(mods)
    assert np.allclose(a.sum(axis=1), 1.0, atol=1e-5)
    ia, ib = trained.modalities_.index("a"), trained.modalities_.index("b")
    assert a[:, ia].mean() > 0.6  # learns to trust 'a', not the noise in 'b'
    assert (a[:, ia] > a[:, ib]).mean() > 0.8
    z = trained.transform(mods).vectors
    assert loo_knn_balanced_accuracy(z @ z.T, y, 5) > 0.9
    assert trained.last_attention_ is not None


def test_modules_round_trip_state_dict_and_gradients() -> None:
    mods, y = _planted(n=100)
    dims = {"a": 16, "b": 24}
    fitted_modules = [
        ConcatFusion(seed=1).fit(mods),
        ProjectionFusion(seed=1, epochs=5, num_threads=1).fit(mods, y),
        GatedAttentionFusion(seed=1, epochs=5, num_threads=1).fit(mods, y),
    ]
    for fitted in fitted_modules:
        fresh = type(fitted)(dims=dims)
        fresh.load_state_dict(fitted.state_dict())
        assert np.allclose(fresh.transform(mods).vectors, fitted.transform(mods).vectors, atol=1e-6)
    g = GatedAttentionFusion(dims=dims)
    xs = {
        k: torch.tensor(v[0][:8], dtype=torch.float32, requires_grad=True) for k, v in mods.items()
    }
    ms = {k: torch.ones(8, dtype=torch.bool) for k in mods}
    g(xs, ms).sum().backward()
    assert xs["a"].grad is not None and torch.isfinite(xs["a"].grad).all()


def test_input_validation() -> None:
    mods, _ = _planted(n=20)
    with pytest.raises(ValueError, match="rows"):
        ConcatFusion().fit({"a": mods["a"], "b": (mods["b"][0][:5], None)})
    with pytest.raises(ValueError, match="non-finite"):
        bad = mods["a"][0].copy()
        bad[3, 0] = np.inf
        ConcatFusion().fit({"a": (bad, None)})
    with pytest.raises(ValueError, match="not given"):
        ConcatFusion().fit(mods).transform({"a": mods["a"]})
    with pytest.raises(RuntimeError, match="not fitted"):
        ConcatFusion().transform(mods)
    with pytest.raises(ValueError, match="weights"):
        ConcatFusion(weights={"a": -1.0}).fit(mods)
