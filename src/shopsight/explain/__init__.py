"""Explanations: why an item was recommended, and why the behaviour predictor predicted a value.

- :func:`explain_items`: for each recommended item, the past items that contributed (leave-one-out
  on the model's fold-in, any Recommender; gradient x input for SASRec), the modalities that
  contributed (text, image, behaviour) and a one-line reason (see :mod:`shopsight.explain.items`).
- :func:`explain_prediction`: per-row feature contributions of a LightGBM predictor (TreeSHAP via
  ``shap``, per-row permutation importance as the fallback; :mod:`shopsight.explain.prediction`).
"""

from shopsight.explain.items import (
    DEFAULT_REASON,
    MODALITY_KEYS,
    ExplainError,
    event_from_weight,
    explain_items,
    gradient_x_input,
    leave_one_out,
    reason_line,
)
from shopsight.explain.prediction import explain_prediction

__all__ = [
    "DEFAULT_REASON",
    "MODALITY_KEYS",
    "ExplainError",
    "event_from_weight",
    "explain_items",
    "explain_prediction",
    "gradient_x_input",
    "leave_one_out",
    "reason_line",
]
