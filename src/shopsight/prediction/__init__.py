"""shopsight.prediction: what will this user do with this item (click, add to cart, buy, rate).

Point-in-time impressions (:mod:`.examples`), multi-task funnel networks (:mod:`.model`: shared-
bottom, MMoE, ESMM with DIN attention) behind :class:`FunnelPredictor` (:mod:`.predictor`), a
LightGBM baseline (:mod:`.gbdt`), calibration and ECE (:mod:`.calibration`), the comparison
harness (:mod:`.evaluate`) and text-aware rating prediction (:mod:`.rating`). Names are loaded
lazily so importing the CLI stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FunnelPredictor": "shopsight.prediction.predictor",
    "PredictorError": "shopsight.prediction.predictor",
    "ExampleConfig": "shopsight.prediction.examples",
    "Examples": "shopsight.prediction.examples",
    "Vocab": "shopsight.prediction.examples",
    "build_examples": "shopsight.prediction.examples",
    "compute_features": "shopsight.prediction.examples",
    "GBDTPredictor": "shopsight.prediction.gbdt",
    "Calibrator": "shopsight.prediction.calibration",
    "ece": "shopsight.prediction.calibration",
    "compare_models": "shopsight.prediction.evaluate",
    "TextRatingModel": "shopsight.prediction.rating",
    "evaluate_rating": "shopsight.prediction.rating",
    "demo_step": "shopsight.prediction.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'shopsight.prediction' has no attribute {name!r}")
