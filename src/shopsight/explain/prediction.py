"""Per-row feature contributions of a gradient-boosted behaviour predictor.

:func:`explain_prediction` takes a LightGBM model (a ``lightgbm.Booster`` or a scikit-learn
``LGBMClassifier`` / ``LGBMRegressor``; any tree model ``shap.TreeExplainer`` supports works)
and rows ``X``, and returns for each row the features that pushed its prediction up or down.

``method="shap"`` (default): exact TreeSHAP values from the ``shap`` package. They are in the
model's raw output space (log-odds for a classifier) and add up exactly:
``base_value + sum(contributions) == raw output`` of the row.

``method="permutation"`` (the fallback when ``shap`` is not importable, or when asked): a
per-row permutation importance, in prediction space (probabilities for a classifier). The
contribution of feature ``f`` to row ``x`` is ``f(x) - mean_b f(x with x_f := X[b, f])`` over
``n_background`` rows ``b`` of ``X`` (or of ``background``): how much the prediction drops, on
average, when this feature's value is replaced by a value drawn from the data. Values do not
add up to the prediction (no efficiency axiom), but rank features by their effect on the row.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shopsight.explain.items import ExplainError

PredMethod = Literal["auto", "shap", "permutation"]


def _as_matrix(X: Any) -> npt.NDArray[np.float64]:
    values = X.to_numpy() if hasattr(X, "to_numpy") else X
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ExplainError(f"X: expected a 2-D matrix, got shape {arr.shape}")
    return arr


def _predict(model: Any, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The model's prediction per row: P(positive) for a binary classifier, else the value."""
    if hasattr(model, "predict_proba"):
        p = np.asarray(model.predict_proba(X), np.float64)
        return p[:, -1] if p.ndim == 2 else p
    return np.asarray(model.predict(X), np.float64).reshape(len(X), -1)[:, -1]


def _shap_values(
    model: Any, X: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """TreeSHAP values ``(n, f)`` and base values ``(n,)`` of the positive class / the output."""
    with warnings.catch_warnings():
        # shap's notes on plotting colours and on LightGBM's output format, not problems here
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

        explainer = shap.TreeExplainer(model)
        values = explainer.shap_values(X)
    if isinstance(values, list):  # older shap: one array per class
        values = values[-1]
    sv = np.asarray(values, np.float64)
    if sv.ndim == 3:  # (n, f, classes)
        sv = sv[:, :, -1]
    base = np.asarray(explainer.expected_value, np.float64).ravel()
    return sv, np.full(len(X), base[-1])


def _permutation_values(
    model: Any,
    X: npt.NDArray[np.float64],
    background: npt.NDArray[np.float64],
    n_background: int,
    seed: int,
) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    bg = background[rng.choice(len(background), min(n_background, len(background)), False)]
    base = _predict(model, X)
    n, f = X.shape
    out = np.zeros((n, f))
    for j in range(f):
        # every row x every background value of feature j, predicted in one batch
        rep = np.repeat(X, len(bg), axis=0)
        rep[:, j] = np.tile(bg[:, j], n)
        out[:, j] = base - _predict(model, rep).reshape(n, len(bg)).mean(axis=1)
    return out


def explain_prediction(
    model: Any,
    X: Any,
    feature_names: Sequence[str],
    *,
    method: PredMethod = "auto",
    top: int | None = None,
    background: Any = None,
    n_background: int = 50,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per row of ``X``: ``{"prediction", "base_value", "contributions": [{"feature", "value",
    "contribution"}] (largest absolute first, at most ``top``), "method", "space"}``.

    ``space`` is ``"raw"`` for SHAP values (log-odds for classifiers; ``base_value`` plus the
    contributions is the raw output) and ``"prediction"`` for permutation values (``base_value``
    is then the mean prediction over the background rows).
    """
    x = _as_matrix(X)
    if len(feature_names) != x.shape[1]:
        raise ExplainError(f"feature_names: {len(feature_names)} names for {x.shape[1]} columns")
    if method not in ("auto", "shap", "permutation"):
        raise ExplainError(f"method={method!r}: expected auto, shap or permutation")
    used = method
    if method == "auto":
        import importlib.util

        used = "shap" if importlib.util.find_spec("shap") is not None else "permutation"
    prediction = _predict(model, x)
    if used == "shap":
        values, base = _shap_values(model, x)
        space = "raw"
    else:
        bg = x if background is None else _as_matrix(background)
        values = _permutation_values(model, x, bg, n_background, seed)
        rng = np.random.default_rng(seed)
        sample = bg[rng.choice(len(bg), min(n_background, len(bg)), False)]
        base = np.full(len(x), float(_predict(model, sample).mean()))
        space = "prediction"
    out: list[dict[str, Any]] = []
    k = x.shape[1] if top is None else max(1, top)
    for r in range(len(x)):
        order = np.argsort(-np.abs(values[r]), kind="stable")[:k]
        out.append(
            {
                "prediction": float(prediction[r]),
                "base_value": float(base[r]),
                "contributions": [
                    {
                        "feature": str(feature_names[j]),
                        "value": float(x[r, j]),
                        "contribution": float(values[r, j]),
                    }
                    for j in order.tolist()
                ],
                "method": used,
                "space": space,
            }
        )
    return out


__all__ = ["explain_prediction"]
