"""Calibration of predicted probabilities, expected calibration error and reliability data.

:class:`Calibrator` maps raw probabilities to calibrated ones, fitted on held-out data:
``temperature`` divides the logit by one fitted scalar (keeps the ranking, hence AUC, exactly;
robust with few positives), ``isotonic`` fits a monotone step function (scikit-learn's
``IsotonicRegression``; more flexible, needs more positives), ``none`` is the identity. The
fitted state is plain numbers, saved as JSON.

:func:`ece` is the expected calibration error over equal-width bins (Guo et al., 2017):
``sum_b n_b / n * |mean(y in b) - mean(p in b)|``; :func:`reliability` gives the per-bin data of
a reliability diagram. :func:`task_metrics` bundles AUC, GAUC, LogLoss (from
:mod:`shopsight.evaluation.metrics`) and ECE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from shopsight.errors import InputError
from shopsight.evaluation.metrics import auc_score, gauc, log_loss

EPS = 1e-7
METHODS = ("temperature", "isotonic", "none")


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


def ece(labels: npt.ArrayLike, probs: npt.ArrayLike, bins: int = 15) -> float:
    """Expected calibration error over ``bins`` equal-width probability bins."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    if not len(y):
        return float("nan")
    b = np.minimum((np.clip(p, 0, 1) * bins).astype(np.int64), bins - 1)
    sy = np.bincount(b, weights=y, minlength=bins)
    sp = np.bincount(b, weights=p, minlength=bins)
    return float(np.abs(sy - sp).sum() / len(y))


def reliability(labels: npt.ArrayLike, probs: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Per-bin mean prediction, observed rate and count (the reliability diagram)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    b = np.minimum((np.clip(p, 0, 1) * bins).astype(np.int64), bins - 1)
    n = np.bincount(b, minlength=bins)
    sy = np.bincount(b, weights=y, minlength=bins)
    sp = np.bincount(b, weights=p, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(n > 0, sp / np.maximum(n, 1), np.nan)
        rate = np.where(n > 0, sy / np.maximum(n, 1), np.nan)
    edges = np.linspace(0, 1, bins + 1)
    return {
        "bin_lower": edges[:-1].round(4).tolist(),
        "bin_upper": edges[1:].round(4).tolist(),
        "mean_predicted": [None if np.isnan(v) else round(float(v), 6) for v in mean_p],
        "observed_rate": [None if np.isnan(v) else round(float(v), 6) for v in rate],
        "count": n.astype(int).tolist(),
    }


def task_metrics(
    labels: npt.ArrayLike, probs: npt.ArrayLike, groups: npt.ArrayLike | None = None
) -> dict[str, float]:
    """AUC, GAUC (grouped by ``groups``, usually users), LogLoss and ECE of one task."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    out = {
        "auc": auc_score(y, p),
        "logloss": log_loss(y, p),
        "ece": ece(y, p),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_predicted": float(p.mean()) if len(p) else float("nan"),
    }
    if groups is not None:
        out["gauc"] = gauc(y, p, np.asarray(groups).ravel())
    return out


class Calibrator:
    """Maps raw probabilities to calibrated ones (``temperature``, ``isotonic`` or ``none``)."""

    def __init__(self, method: str = "temperature") -> None:
        if method not in METHODS:
            raise InputError(f"calibration must be one of {METHODS}, got {method!r}")
        self.method = method
        self.temperature_: float = 1.0
        self.x_: list[float] = []
        self.y_: list[float] = []

    def fit(self, probs: npt.ArrayLike, labels: npt.ArrayLike) -> Calibrator:
        p = np.asarray(probs, dtype=np.float64).ravel()
        y = np.asarray(labels, dtype=np.float64).ravel()
        if self.method == "none" or len(y) == 0 or y.min() == y.max():
            return self
        if self.method == "temperature":
            from scipy.optimize import minimize_scalar

            z = _logit(p)

            def nll(log_t: float) -> float:
                q = 1.0 / (1.0 + np.exp(-z / np.exp(log_t)))
                return log_loss(y, q)

            res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
            self.temperature_ = float(np.exp(res.x))
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
            self.x_ = [float(v) for v in iso.X_thresholds_]
            self.y_ = [float(v) for v in iso.y_thresholds_]
        return self

    def transform(self, probs: npt.ArrayLike) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64).ravel()
        if self.method == "temperature" and self.temperature_ != 1.0:
            out: np.ndarray = 1.0 / (1.0 + np.exp(-_logit(p) / self.temperature_))
            return out
        if self.method == "isotonic" and self.x_:
            return np.clip(np.interp(p, self.x_, self.y_), EPS, 1 - EPS)
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "temperature": self.temperature_, "x": self.x_, "y": self.y_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        c = cls(d["method"])
        c.temperature_ = float(d.get("temperature", 1.0))
        c.x_ = [float(v) for v in d.get("x", [])]
        c.y_ = [float(v) for v in d.get("y", [])]
        return c
