"""Side-by-side evaluation of funnel predictors on one temporal split.

Examples are built once; every model trains on the earliest 80% of impressions (by time),
early-stops and calibrates on the next 10%, and is scored on the last 10%. Models:

- ``esmm``, ``mmoe``, ``shared_bottom``: the multi-task networks (DIN attention on);
- ``single_task``: one shared-bottom network per task;
- ``lightgbm``: one gradient-boosted classifier per task;
- ``purchase_on_clicks``: a purchase-only network trained on clicked impressions (the classic
  conversion model), scored on all impressions, as ESMM's calibration foil;
- ``item_rate``: the trivial baseline, the item's smoothed historical rate of each task as of t.

Metrics per task: AUC, GAUC (by user), LogLoss, ECE; for ESMM and the conversion model also the
ECE before and after calibration and the reliability-diagram data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from shopsight.errors import InputError
from shopsight.prediction.calibration import reliability, task_metrics
from shopsight.prediction.examples import TASKS, Examples, Vocab, temporal_split

ALL_MODELS = (
    "esmm",
    "mmoe",
    "shared_bottom",
    "single_task",
    "lightgbm",
    "purchase_on_clicks",
    "item_rate",
)


def item_rate_baseline(ex: Examples) -> dict[str, np.ndarray]:
    """The item's smoothed rate of each task among its earlier views (features as of t)."""
    col = {n: j for j, n in enumerate(ex.dense_names)}
    views = np.expm1(ex.dense[:, col["log_i_views"]])
    out: dict[str, np.ndarray] = {}
    for t, k, prior in (
        ("click", "log_i_clicks", 0.3),
        ("add_to_cart", "log_i_carts", 0.08),
        ("purchase", "log_i_purchases", 0.04),
    ):
        out[t] = (np.expm1(ex.dense[:, col[k]]) + 5 * prior) / (views + 5)
    return out


def _score(ex: Examples, probs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {t: task_metrics(ex.labels[t], probs[t], ex.users) for t in TASKS if t in probs}


def compare_models(
    ex: Examples,
    vocab: Vocab,
    content: np.ndarray,
    *,
    models: Sequence[str] = ALL_MODELS,
    epochs: int = 6,
    seed: int = 0,
    threads: int | None = None,
    split: tuple[float, float] = (0.8, 0.9),
    nn_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and score the named models on one temporal split; a JSON-ready report."""
    from shopsight.prediction.gbdt import GBDTPredictor
    from shopsight.prediction.predictor import FunnelPredictor

    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        raise InputError(f"unknown models {unknown} (known: {list(ALL_MODELS)})")
    tr_i, va_i, te_i = temporal_split(ex.ts, split)
    train, valid, test = ex.take(tr_i), ex.take(va_i), ex.take(te_i)
    kw: dict[str, Any] = {"epochs": epochs, "seed": seed, "threads": threads, **(nn_params or {})}
    report: dict[str, Any] = {
        "n_train": len(train),
        "n_valid": len(valid),
        "n_test": len(test),
        "positive_rate_test": {t: float(test.labels[t].mean()) for t in TASKS},
        "models": {},
        "fit_seconds": {},
        "predict_per_s": {},
    }

    def run(name: str, fit: Any, predict: Any) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        fit()
        report["fit_seconds"][name] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        probs: dict[str, np.ndarray] = predict()
        report["predict_per_s"][name] = round(len(test) / max(time.perf_counter() - t0, 1e-9))
        report["models"][name] = _score(test, probs)
        return probs

    for arch in ("esmm", "mmoe", "shared_bottom"):
        if arch in models:
            m = FunnelPredictor(arch, **kw)
            run(
                arch,
                lambda m=m: m.fit_examples(train, valid, vocab, content),
                lambda m=m: m.predict_examples(test),
            )
            if arch == "esmm":
                raw = m.predict_examples(test, calibrated=False)
                report["esmm_purchase_raw"] = task_metrics(test.labels["purchase"], raw["purchase"])
                report["reliability_esmm_purchase"] = reliability(
                    test.labels["purchase"], raw["purchase"]
                )
    if "single_task" in models:
        singles = {t: FunnelPredictor("shared_bottom", (t,), **kw) for t in TASKS}

        def fit_singles() -> None:
            for m in singles.values():
                m.fit_examples(train, valid, vocab, content)

        def pred_singles() -> dict[str, np.ndarray]:
            return {t: m.predict_examples(test)[t] for t, m in singles.items()}

        run("single_task", fit_singles, pred_singles)
    if "lightgbm" in models:
        g = GBDTPredictor(seed=seed)
        run(
            "lightgbm",
            lambda: g.fit_examples(train, valid, content),
            lambda: g.predict_examples(test, content),
        )
    if "purchase_on_clicks" in models:
        pc = FunnelPredictor("shared_bottom", ("purchase",), train_on="click", **kw)
        run(
            "purchase_on_clicks",
            lambda: pc.fit_examples(train, valid, vocab, content),
            lambda: pc.predict_examples(test, calibrated=False),
        )
        raw_pc = pc.predict_examples(test, calibrated=False)["purchase"]
        report["purchase_on_clicks_raw"] = task_metrics(test.labels["purchase"], raw_pc)
        report["reliability_purchase_on_clicks"] = reliability(test.labels["purchase"], raw_pc)
    if "item_rate" in models:
        run("item_rate", lambda: None, lambda: item_rate_baseline(test))
    return report
