"""Gradient-boosted baseline: one LightGBM classifier per funnel task on the same features.

The deep model must beat this to earn its place. The matrix is the dense point-in-time
features, the item's category and brand (LightGBM categorical splits), its content vector and
one hand-made interaction the trees cannot build from ids: the cosine between the candidate's
content and the mean content of the user's recent items (the GBDT counterpart of attention).

One thread by default: LightGBM's OpenMP workers spin-wait, and on a shared, oversubscribed
machine two threads ran ~15x slower than one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shopsight.prediction.examples import TASKS, Examples


def gbdt_matrix(ex: Examples, content: np.ndarray) -> np.ndarray:
    """``[dense, category, brand, content[item], cos(content[item], mean content[history])]``."""
    item = ex.cats[:, 0]
    c_item = content[item]
    hist = content[ex.hist]  # (n, L, d); padding rows are zero
    n_hist = np.maximum((ex.hist > 0).sum(axis=1, keepdims=True), 1)
    mean_hist = hist.sum(axis=1) / n_hist
    num = (c_item * mean_hist).sum(axis=1)
    den = np.linalg.norm(c_item, axis=1) * np.linalg.norm(mean_hist, axis=1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return np.column_stack(
        [ex.dense, ex.cats[:, 1:].astype(np.float32), c_item, cos[:, None]]
    ).astype(np.float32)


def gbdt_feature_names(ex: Examples, content: np.ndarray) -> list[str]:
    """Column names of :func:`gbdt_matrix` (for explanations of the per-task models)."""
    return [
        *ex.dense_names,
        "category",
        "brand",
        *(f"content_{k}" for k in range(content.shape[1])),
        "hist_content_cos",
    ]


class GBDTPredictor:
    """One ``lightgbm.LGBMClassifier`` per task (early stopping on the validation rows)."""

    def __init__(
        self,
        tasks: Sequence[str] = TASKS,
        *,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.tasks = tuple(tasks)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.threads = threads
        self.seed = seed
        self.models_: dict[str, Any] = {}

    def fit_examples(self, train: Examples, valid: Examples, content: np.ndarray) -> GBDTPredictor:
        import lightgbm as lgb

        x_tr, x_va = gbdt_matrix(train, content), gbdt_matrix(valid, content)
        d = train.dense.shape[1]
        cat_cols = [d, d + 1]
        for t in self.tasks:
            m = lgb.LGBMClassifier(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                n_jobs=self.threads,
                random_state=self.seed,
                verbose=-1,
            )
            y_va = valid.labels[t]
            has_val = len(valid) > 0 and 0 < y_va.sum() < len(y_va)
            m.fit(
                x_tr,
                train.labels[t],
                eval_X=(x_va,) if has_val else None,
                eval_y=(y_va,) if has_val else None,
                categorical_feature=cat_cols,
                callbacks=[lgb.early_stopping(30, verbose=False)] if has_val else None,
            )
            self.models_[t] = m
        return self

    def predict_examples(self, ex: Examples, content: np.ndarray) -> dict[str, np.ndarray]:
        x = gbdt_matrix(ex, content)
        return {t: m.predict_proba(x)[:, 1].astype(np.float64) for t, m in self.models_.items()}
