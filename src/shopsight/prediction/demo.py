"""The prediction step of ``shopsight demo``: a small funnel predictor saved beside the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopsight.data.store import Store
from shopsight.errors import DataError


def demo_step(
    store: Store, out_dir: Path, *, max_examples: int = 30_000, epochs: int = 2
) -> dict[str, Any]:
    """Fit a small ESMM predictor on the latest impressions; test AUC per task; save it.

    The predictor trains on the first 80% (by time) of the latest ``max_examples`` impressions,
    calibrates on the next 10% and is scored on the last 10%; it is saved to
    ``out_dir/predictor``.
    """
    import numpy as np

    from shopsight.prediction.calibration import task_metrics
    from shopsight.prediction.content import item_content
    from shopsight.prediction.examples import build_examples, temporal_split
    from shopsight.prediction.predictor import PREDICTOR_SUBDIR, FunnelPredictor

    ex, vocab = build_examples(store)
    if len(ex) < 50:
        raise DataError(f"{store.path}: only {len(ex)} impressions (view events) to learn from")
    if len(ex) > max_examples:
        ex = ex.take(np.arange(len(ex) - max_examples, len(ex)))
    content, source = item_content(store, vocab)
    tr, va, te = temporal_split(ex.ts)
    pred = FunnelPredictor("esmm", epochs=epochs, content=source)
    pred.content_source_ = source
    pred.fit_examples(ex.take(tr), ex.take(va), vocab, content)
    test = ex.take(te)
    probs = pred.predict_examples(test)
    metrics = {t: task_metrics(test.labels[t], probs[t], test.users) for t in probs}
    path = pred.save(Path(out_dir) / PREDICTOR_SUBDIR)
    return {
        "predictor": str(path),
        "arch": "esmm",
        "n_train": len(tr),
        "n_test": len(te),
        "content": source,
        "auc": {t: round(m["auc"], 4) for t, m in metrics.items()},
        "gauc": {t: round(m["gauc"], 4) for t, m in metrics.items()},
        "ece": {t: round(m["ece"], 4) for t, m in metrics.items()},
        "train_seconds": round(pred.info_["train_seconds"], 2),
    }
