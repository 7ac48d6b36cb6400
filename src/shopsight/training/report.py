"""How a training run reports itself, without importing torch: the record of a fitted model
(:class:`~shopsight.training.trainer.TrainResult` as JSON) and its one-line summary.

Every epoch-based model keeps ``train_result_`` after ``fit``; ``shopsight train`` saves it in
the model's manifest (``config.json``, ``meta.training``) and returns it under ``training``;
``shopsight evaluate`` returns it in each run's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def training_summary(model: Any) -> dict[str, Any] | None:
    """A fitted model's training record (epochs run, best epoch, why it stopped, per-epoch
    history) as JSON, or None for a model without an epoch loop."""
    result = getattr(model, "train_result_", None)
    to_dict = getattr(result, "to_dict", None)
    if to_dict is None:
        return None
    out: dict[str, Any] = to_dict()
    return out


def training_line(record: Mapping[str, Any]) -> str:
    """One line: epochs run, why training stopped, the best epoch and its validation metric."""
    n = int(record.get("epochs_run") or 0)
    text = f"{n} epoch{'s' if n != 1 else ''}"
    if record.get("seconds"):
        text += f" in {float(record['seconds']):.1f}s"
    if record.get("stop_detail"):
        text += f", {record['stop_detail']}"
    if record.get("best_epoch") is not None and record.get("best_metric") is not None:
        text += (
            f"; best epoch {record['best_epoch']}"
            f" ({record.get('metric_name') or 'valid'} {float(record['best_metric']):.4f})"
        )
    return text


__all__ = ["training_line", "training_summary"]
