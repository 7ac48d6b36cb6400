"""Experiments: several models, one protocol, the same splits, mean +- std, significance.

``Experiment(protocol, models, metrics, ks, seeds).run(dataset)`` reads like the sentence it
means (after Cornac's ``Experiment``). For every seed (and every fold of a k-fold protocol) the
protocol's split is made once and every model is fitted on its training part and evaluated on
its test part with the same candidates, exclusions and users, so per-user values pair up across
models. The result holds, per model and metric, the mean and sample standard deviation over
the runs (seeds x folds) and, against a baseline model, a paired t-test and a Wilcoxon
signed-rank test (scipy) on the per-user values of all runs (per test pair for rating metrics:
squared errors for RMSE and R2, absolute errors for MAE). Global list metrics (coverage, Gini)
have one value per run and no per-user test.

Models are given by registry name (``"ease"``), with parameters (``"ease:l2=300"`` or a dict
``{"model": "ease", "params": {...}, "label": ...}``), or as the path of a config written by
``shopsight tune`` (YAML/JSON with ``model`` and ``params``). A model that accepts ``seed`` gets
the run's seed unless its parameters fix one. A model that fails to fit or evaluate is reported
with its error (the others still run).

:func:`run_evaluate` is the function behind ``shopsight evaluate``; :func:`render_table`,
:func:`to_markdown` and :func:`to_csv` format a result.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy import stats

from shopsight.config import parse_overrides, parse_value, read_mapping
from shopsight.errors import InputError
from shopsight.evaluation import metrics as M
from shopsight.evaluation.protocols import Lineage, Protocol, ProtocolError, load_protocol
from shopsight.evaluation.ranking import evaluate_ranking, standard_slices
from shopsight.training.report import training_line, training_summary

if TYPE_CHECKING:
    from rich.console import RenderableType

    from shopsight.data.dataset import Dataset
    from shopsight.data.split import Split
    from shopsight.evaluation.published import DatasetIdentity
    from shopsight.models.base import Recommender

FloatArray = npt.NDArray[np.float64]


class ExperimentError(InputError):
    """An experiment cannot run as asked (one-line message)."""


# -- model specs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model by registry name, its parameters and the label it is reported under."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if not self.params:
            return self.name
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def build(self, seed: int | None = None) -> Recommender:
        klass = model_class(self.name)
        params = dict(self.params)
        if seed is not None and "seed" in klass._param_names() and "seed" not in params:
            params["seed"] = int(seed)
        try:
            return klass(**params)
        except TypeError as exc:
            raise ExperimentError(f"model {self.name!r}: {exc}") from None


def model_class(name: str) -> type[Recommender]:
    """A model class by name (the model registry)."""
    from shopsight.models.registry import get_model_class

    return get_model_class(name)


def read_model_config(path: str | Path) -> ModelSpec:
    """A model config file (``{model: NAME, params: {...}}``, as written by ``tune``)."""
    p = Path(path)
    data = read_mapping(p, "model config", ExperimentError)
    if not isinstance(data.get("model"), str):
        raise ExperimentError(
            f"{p}: expected a mapping with 'model' (a registry name) and 'params'"
        )
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise ExperimentError(f"{p}: 'params' must be a mapping")
    return ModelSpec(
        data["model"], dict(params), str(data.get("label") or f"{data['model']}[{p.stem}]")
    )


def parse_model_spec(spec: str | Mapping[str, Any] | ModelSpec) -> ModelSpec:
    """``"ease"``, ``"ease:l2=300,feedback=binary"``, a config path, or a dict."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, Mapping):
        name = spec.get("model") or spec.get("name")
        if not isinstance(name, str):
            raise ExperimentError(f"model spec {dict(spec)!r}: needs 'model' (a registry name)")
        return ModelSpec(name, dict(spec.get("params") or {}), str(spec.get("label") or ""))
    text = str(spec).strip()
    if text.lower().endswith((".yaml", ".yml", ".json")):
        return read_model_config(text)
    name, _, rest = text.partition(":")
    params = parse_overrides(rest.split(","), f"model spec {text!r}:", error=ExperimentError)
    if not name:
        raise ExperimentError(f"model spec {text!r}: empty model name")
    return ModelSpec(name.strip(), params)


def _override_value(text: str) -> Any:
    value = parse_value(text)
    if isinstance(value, str):  # YAML 1.1 reads 1e-6 as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(
    specs: Sequence[str | Mapping[str, Any] | ModelSpec], sets: Sequence[str] | None
) -> list[ModelSpec]:
    """``--set MODEL.KEY=VALUE`` (value parsed as YAML) onto every spec of that model.

    ``MODEL`` is a registry name (every spec of it) or a spec's label; ``KEY`` must be one of
    the model's parameters. One-line :class:`ExperimentError` otherwise.
    """
    out = [parse_model_spec(s) for s in specs]
    for text in sets or []:
        target, eq, value = text.partition("=")
        model, dot, key = target.strip().rpartition(".")
        if not eq or not dot or not model or not key:
            raise ExperimentError(f"--set {text!r}: expected MODEL.KEY=VALUE, e.g. dp.epsilon=8")
        hits = [i for i, s in enumerate(out) if model in (s.name, s.display)]
        if not hits:
            names = sorted({s.name for s in out})
            raise ExperimentError(f"--set {text!r}: no model {model!r} among {names}")
        for i in hits:
            spec = out[i]
            accepted = model_class(spec.name)._param_names()
            if key not in accepted:
                raise ExperimentError(
                    f"--set {text!r}: {spec.name} has no parameter {key!r} "
                    f"(expected one of {', '.join(accepted)})"
                )
            params = {**spec.params, key: _override_value(value.strip())}
            out[i] = ModelSpec(spec.name, params, spec.label)
    return out


# -- results -----------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """Per-run records, per-model summaries, significance tests, slices; see :meth:`to_dict`."""

    protocol: Protocol
    dataset: dict[str, Any]
    models: list[str]
    metrics: list[str]
    runs: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, Any]]]
    slices: dict[str, dict[str, dict[str, float]]]
    baseline: str | None
    mode: str = "full"
    seconds: float = 0.0
    # the protocol's published figures and whether they compare (see evaluation.published)
    published: dict[str, Any] = field(default_factory=dict)
    significance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "protocol": self.protocol.to_dict(),
                "dataset": self.dataset,
                "mode": self.mode,
                "models": self.models,
                "metrics": self.metrics,
                "baseline": self.baseline,
                "summary": self.summary,
                "slices": self.slices,
                "published": self.published or _published_of(self),
                "significance": self.significance,
                "runs": self.runs,
                "seconds": self.seconds,
            }
        )

    def value(self, model: str, metric: str) -> float:
        """Mean of ``metric`` for ``model`` (NaN when missing)."""
        return float(self.summary.get(model, {}).get(metric, {}).get("mean", float("nan")))


def _published_of(result: ExperimentResult) -> dict[str, Any]:
    from shopsight.evaluation.published import DatasetIdentity, published_block

    d = result.dataset
    ident = DatasetIdentity(d.get("name"), str(d.get("recognised_by") or "none"), "")
    return published_block(result.protocol, ident)


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating | float):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


# -- the experiment ----------------------------------------------------------------------------


def category_features(dataset: Dataset) -> sp.csr_matrix | None:
    """Multi-hot item content features from the catalogue's ``category`` (tokens split on
    ``|``, ``>``, ``/`` and ``,``) and ``brand``; ``None`` when the catalogue has neither."""
    cols = []
    for name in ("category", "brand"):
        if name in dataset.items.column_names:
            cols.append((name, dataset.items.column(name).to_pylist()))
    rows: list[int] = []
    data_cols: list[int] = []
    vocab_idx: dict[str, int] = {}
    for name, values in cols:
        for r, v in enumerate(values):
            if not v:
                continue
            text = str(v)
            for sep in (">", "/", ","):
                text = text.replace(sep, "|")
            for tok in {t.strip().lower() for t in text.split("|") if t.strip()}:
                key = f"{name}:{tok}"
                rows.append(r)
                data_cols.append(vocab_idx.setdefault(key, len(vocab_idx)))
    if not vocab_idx:
        return None
    return sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, data_cols)), shape=(dataset.n_items, len(vocab_idx))
    )


class Experiment:
    """Run several models on the same split(s) of one protocol (see the module docstring).

    ``metrics`` / ``ks`` override the protocol's; ``seeds`` are the runs (with a k-fold
    protocol, every fold of every seed); ``baseline`` is the label (or registry name) of the
    model the others are tested against (default: the first model). ``sampled``: rank against
    this many sampled negatives instead of the whole catalogue (labelled in the output).
    ``item_features``: content rows for intra-list diversity (default: the catalogue's category
    and brand). ``segments``: a segment label per user index, or a mapping user id -> label.
    """

    def __init__(
        self,
        protocol: Protocol | str | Path | Mapping[str, Any],
        models: Sequence[str | Mapping[str, Any] | ModelSpec],
        *,
        metrics: Sequence[str] | None = None,
        ks: Sequence[int] | None = None,
        seeds: Sequence[int] = (0,),
        baseline: str | None = None,
        sampled: int | None = None,
        memory_budget_mb: float = 512,
        item_features: npt.ArrayLike | sp.spmatrix | None = None,
        segments: npt.ArrayLike | Mapping[str, Any] | None = None,
        slices: bool = True,
        progress: Callable[[str], None] | None = None,
        dataset_name: str | None = None,
        alpha: float = 0.05,
    ) -> None:
        self.protocol = load_protocol(protocol)
        self.dataset_name = dataset_name
        self.alpha = float(alpha)
        self.specs = [parse_model_spec(m) for m in models]
        if not self.specs:
            raise ExperimentError("no models to evaluate")
        labels = [s.display for s in self.specs]
        if len(set(labels)) != len(labels):
            raise ExperimentError(f"two models have the same label: {labels}")
        try:
            if metrics:
                names, cut = M.parse_metrics(list(metrics), list(ks or self.protocol.ks))
                self.protocol = self.protocol.with_(metrics=tuple(names), ks=tuple(cut))
            elif ks:
                self.protocol = self.protocol.with_(ks=tuple(int(k) for k in ks))
        except (M.MetricError, ProtocolError) as exc:
            raise ExperimentError(str(exc)) from None
        self.seeds = [int(s) for s in seeds] or [0]
        self.baseline = self._resolve_baseline(baseline, labels)
        self.sampled = sampled
        self.memory_budget_mb = memory_budget_mb
        self.item_features = item_features
        self.segments = segments
        self.slices = slices
        self.progress = progress

    @staticmethod
    def _resolve_baseline(baseline: str | None, labels: list[str]) -> str | None:
        if baseline is None:
            return labels[0] if len(labels) > 1 else None
        if baseline in labels:
            return baseline
        matches = [lab for lab in labels if lab.split("(")[0].split("[")[0] == baseline]
        if len(matches) == 1:
            return matches[0]
        raise ExperimentError(f"baseline {baseline!r} is not one of the models {labels}")

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    def run(
        self,
        dataset: Dataset,
        lineage: Lineage | None = None,
        identity: DatasetIdentity | None = None,
    ) -> ExperimentResult:
        """Every model on every run; ``identity`` says which dataset this is (recognised from
        the store by :func:`run_evaluate`; else the declared ``dataset_name``, else none)."""
        from shopsight.evaluation.published import DatasetIdentity, identify_declared

        if identity is None:
            identity = (
                identify_declared(self.dataset_name)
                if self.dataset_name
                else DatasetIdentity(None, "none", "no store and no --dataset-name")
            )
        t0 = time.perf_counter()
        p = self.protocol
        labels = [s.display for s in self.specs]
        runs: list[dict[str, Any]] = []
        paired: dict[str, dict[str, list[FloatArray]]] = {lab: {} for lab in labels}
        slice_acc: dict[str, dict[str, dict[str, list[float]]]] = {lab: {} for lab in labels}
        feats = self.item_features
        if feats is None and any(m == "diversity" for m in p.metrics):
            feats = category_features(dataset)
        segments = self._segments(dataset)
        from shopsight.progress import task

        with task(f"evaluate {p.name}", total=len(self.seeds) * len(labels)) as bar:
            for seed in self.seeds:
                # (a protocol that pins its split seed gives the same split for every seed: then
                # only the models' seeds vary between runs)
                splits = p.make_splits(dataset, seed, lineage)
                if len(splits) > 1 and seed == self.seeds[0]:
                    bar.update(total=len(self.seeds) * len(splits) * len(labels))
                # by index: enumerate's reused result tuple would keep the replaced split's
                # rows (a gigabyte and more per rank) alive through the fits
                for f in range(len(splits)):
                    run_id = f"seed={seed}" + (f"/fold={f + 1}" if len(splits) > 1 else "")
                    self._say(f"{p.name} {run_id}: split {splits[f].sizes()}")
                    train, valid, test = dataset.split(splits[f])
                    splits[f] = _mapped_rows(splits[f], train, valid, test)
                    split = splits[f]
                    for spec, label in zip(self.specs, labels, strict=True):
                        rec = self._run_one(
                            spec,
                            label,
                            run_id,
                            seed,
                            split,
                            dataset,
                            train,
                            valid,
                            test,
                            feats,
                            segments,
                            paired[label],
                            slice_acc[label],
                        )
                        runs.append(rec)
                        bar.advance(1, info=f"{label} {run_id}")
                        self._say(
                            f"  {label}: "
                            + ", ".join(
                                f"{k}={v:.4f}"
                                for k, v in rec.get("metrics", {}).items()
                                if isinstance(v, float)
                            )
                            + (f"  ({training_line(rec['training'])})" if "training" in rec else "")
                            if "metrics" in rec
                            else f"  {label}: error: {rec.get('error')}"
                        )
        metric_names = _ordered_metrics(runs)
        summary = self._summarize(labels, metric_names, runs, paired)
        slices = {
            lab: {s: {m: float(np.mean(v)) for m, v in d.items()} for s, d in acc.items()}
            for lab, acc in slice_acc.items()
        }
        from shopsight.evaluation.published import published_block

        return ExperimentResult(
            protocol=p,
            published=published_block(p, identity),
            significance=self._significance_info(),
            dataset={
                **identity.to_dict(),
                "fingerprint": dataset.fingerprint,
                "users": dataset.n_users,
                "items": dataset.n_items,
                "interactions": len(dataset),
                "file_order": bool(lineage is not None and lineage.order is not None),
                "sources": list(lineage.sources) if lineage is not None else [],
            },
            models=labels,
            metrics=metric_names,
            runs=runs,
            summary=summary,
            slices=slices,
            baseline=self.baseline,
            mode="sampled" if self.sampled else "full",
            seconds=time.perf_counter() - t0,
        )

    def _segments(self, dataset: Dataset) -> npt.NDArray[np.object_] | None:
        if self.segments is None:
            return None
        if isinstance(self.segments, Mapping):
            out = np.full(dataset.n_users, None, dtype=object)
            for uid, label in self.segments.items():
                idx = dataset.user_index.get(str(uid))
                if idx is not None:
                    out[idx] = label
            return out
        arr = np.asarray(self.segments, dtype=object)
        if len(arr) != dataset.n_users:
            raise ExperimentError(f"segments has {len(arr)} entries for {dataset.n_users} users")
        return arr

    def _run_one(
        self,
        spec: ModelSpec,
        label: str,
        run_id: str,
        seed: int,
        split: Split,
        dataset: Dataset,
        train: Dataset,
        valid: Dataset | None,
        test: Dataset,
        feats: Any,
        segments: Any,
        paired: dict[str, list[FloatArray]],
        slice_acc: dict[str, dict[str, list[float]]],
    ) -> dict[str, Any]:
        p = self.protocol
        rec: dict[str, Any] = {
            "model": label,
            "run": run_id,
            "seed": seed,
            "split": split.to_dict(),
        }
        try:
            model = spec.build(seed)
            t1 = time.perf_counter()
            model.fit(train, valid)
            rec["fit_seconds"] = time.perf_counter() - t1
            for part in (train, valid):  # what the fit built is the model's now, or garbage
                if part is not None:
                    part.release_caches()
            training = training_summary(model)
            if training is not None:  # epochs, best epoch, why it stopped, per-epoch history
                rec["training"] = training
            privacy = getattr(model, "privacy_", None)
            if isinstance(privacy, Mapping):  # a private model: the budget it spent
                rec["privacy"] = {
                    k: privacy.get(k) for k in ("private", "unit", "epsilon", "delta")
                }
            t2 = time.perf_counter()
            if p.task == "rating":
                values, per_pair = evaluate_rating(model, test, p.metrics)
                rec["metrics"] = values
                for k, v in per_pair.items():
                    paired.setdefault(k, []).append(v)
                r = test.ratings
                # a rating pair is the unit: the same pair tested in several runs is one pair
                paired.setdefault("_units", []).append(
                    (r.user * np.int64(test.n_items) + r.item).astype(np.float64)
                )
            else:
                res = self._evaluate_ranking(
                    model, split, dataset, train, valid, test, seed, feats, segments
                )
                rec["metrics"] = res.metrics
                rec["info"] = res.info
                for k, v in res.per_user.items():
                    paired.setdefault(k, []).append(v)
                paired.setdefault("_units", []).append(np.asarray(res.users, np.float64))
                for sname, vals in res.slices.items():
                    for m, v in vals.items():
                        slice_acc.setdefault(sname, {}).setdefault(m, []).append(v)
            rec["eval_seconds"] = time.perf_counter() - t2
        except Exception as exc:  # one failing model must not hide the others' results
            rec["error"] = (
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            )
        return rec

    def _evaluate_ranking(
        self,
        model: Recommender,
        split: Split,
        dataset: Dataset,
        train: Dataset,
        valid: Dataset | None,
        test: Dataset,
        seed: int,
        feats: Any,
        segments: Any,
    ) -> Any:
        p = self.protocol
        truth = p.truth(test)
        # the training pairs, built once for the counts, the slices and the exclusion (which
        # may be them): one matrix the size of the log, not three
        train_seen = p.pairs(train)
        item_counts = np.bincount(train_seen.indices, minlength=train.n_items).astype(np.float64)
        n_train_users = int(np.count_nonzero(np.diff(train_seen.indptr)))
        islices, uslices = standard_slices(train_seen) if self.slices else ({}, {})
        exclude = p.exclusion(train, valid, train_pairs=train_seen)
        del train_seen
        users = p.eval_users(train, truth)
        scorer = scorer_for_test_part(model, p, dataset, split.train, split.valid)
        return evaluate_ranking(
            scorer,
            truth,
            exclude=exclude,
            ks=p.ks,
            metrics=p.metrics,
            users=users,
            candidates=p.candidate_mask(train, test),
            mask_value=p.mask_value,
            tie_break=p.tie_break,
            seed=seed,
            memory_budget_mb=self.memory_budget_mb,
            sampled=self.sampled,
            item_counts=item_counts,
            n_train_users=max(n_train_users, 1),
            item_features=feats,
            item_slices=islices,
            user_slices=uslices,
            segments=segments,
        )

    def _significance_info(self) -> dict[str, Any]:
        rating = self.protocol.task == "rating"
        return {
            "baseline": self.baseline,
            "test": "wilcoxon signed-rank (two-sided); paired t-test also reported",
            "unit": "test (user, item) rating" if rating else "user",
            "aggregation": (
                "each unit's values averaged over the runs it appears in (a split fixed across "
                "seeds or folds repeats units), so pairs never exceed the distinct units"
            ),
            "correction": "holm",
            "family": "the models compared with the baseline, per metric",
            "alpha": self.alpha,
            "markers": {"▲": "significantly better", "▼": "significantly worse"},
        }

    def _summarize(
        self,
        labels: list[str],
        metric_names: list[str],
        runs: list[dict[str, Any]],
        paired: dict[str, dict[str, list[FloatArray]]],
    ) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        base = self.baseline
        for lab in labels:
            recs = [r for r in runs if r["model"] == lab]
            errors = [r["error"] for r in recs if "error" in r]
            entry: dict[str, dict[str, Any]] = {}
            for m in metric_names:
                vals = [r["metrics"][m] for r in recs if "metrics" in r and m in r["metrics"]]
                vals = [v for v in vals if v is not None and math.isfinite(v)]
                if not vals:
                    continue
                cell: dict[str, Any] = {
                    "mean": float(np.mean(vals)),
                    "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                    "runs": len(vals),
                }
                if base is not None and lab != base and not errors:
                    cell.update(self._significance(m, paired.get(lab, {}), paired.get(base, {})))
                entry[m] = cell
            if errors:
                entry["error"] = {"message": errors[0], "runs": len(errors)}
            out[lab] = entry
        if base is not None:
            for lab in labels:
                for m, cell in out[lab].items():
                    base_cell = out.get(base, {}).get(m)
                    if lab != base and m != "error" and base_cell and "mean" in base_cell:
                        cell["delta"] = cell["mean"] - base_cell["mean"]
            self._correct(out, metric_names)
        return out

    def _correct(self, out: dict[str, dict[str, dict[str, Any]]], metric_names: list[str]) -> None:
        """Holm across the compared models per metric; the verdict's direction from the delta."""
        for m in metric_names:
            cells = [
                out[lab][m]
                for lab in out
                if lab != self.baseline and m in out[lab] and "p_wilcoxon" in out[lab][m]
            ]
            for key in ("p_ttest", "p_wilcoxon"):
                adj = holm([float(c[key]) for c in cells])
                for c, a in zip(cells, adj, strict=True):
                    c[key + "_holm"] = a
            for c in cells:
                p_adj = c.get("p_wilcoxon_holm")
                delta = c.get("delta")
                verdict = None
                if p_adj is not None and math.isfinite(p_adj) and p_adj < self.alpha and delta:
                    better = delta < 0 if M.lower_is_better(m) else delta > 0
                    verdict = "better" if better else "worse"
                c["significant"] = verdict

    @staticmethod
    def _significance(
        metric: str, mine: dict[str, list[FloatArray]], theirs: dict[str, list[FloatArray]]
    ) -> dict[str, Any]:
        key = {"rmse": "_sq_err", "r2": "_sq_err", "mae": "_abs_err"}.get(metric, metric)
        if key not in mine or key not in theirs or len(mine[key]) != len(theirs[key]):
            return {}
        units_a, units_b = mine.get("_units"), theirs.get("_units")
        if units_a is None or units_b is None or len(units_a) != len(mine[key]):
            return {}
        ua, a = unit_means(units_a, mine[key])
        ub, b = unit_means(units_b, theirs[key])
        _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
        a, b = a[ia], b[ib]
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        if len(a) < 2:
            return {"pairs": len(a)}
        diff = a - b
        if np.allclose(diff, 0.0):
            return {"pairs": len(a), "p_ttest": 1.0, "p_wilcoxon": 1.0}
        t = stats.ttest_rel(a, b)
        try:
            w = stats.wilcoxon(diff, zero_method="wilcox")
            p_w = float(w.pvalue)
        except ValueError:
            p_w = float("nan")
        return {"pairs": len(a), "p_ttest": float(t.pvalue), "p_wilcoxon": p_w}


def _mapped_rows(split: Split, train: Dataset, valid: Dataset | None, test: Dataset) -> Split:
    """``split`` with its row arrays replaced by the parts' memory-mapped ones when the parts
    are shared snapshots (under ``--nproc``): each rank's own copy of the training rows is a
    gigabyte and more on a log of 10^8 rows."""
    tr, te = train.rows_in_parent(), test.rows_in_parent()
    va = valid.rows_in_parent() if valid is not None else None
    if tr is None or te is None or (valid is not None and va is None):
        return split
    return dataclasses.replace(split, train=tr, test=te, valid=va)


def unit_means(
    units: Sequence[npt.NDArray[Any]], values: Sequence[FloatArray]
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Each unit's mean value over the runs it appears in (NaNs ignored), units sorted."""
    u = np.concatenate([np.asarray(x, np.int64) for x in units])
    v = np.concatenate([np.asarray(x, np.float64) for x in values])
    if len(u) != len(v):
        return np.zeros(0, np.int64), np.zeros(0)
    ok = np.isfinite(v)
    uniq, inv = np.unique(u, return_inverse=True)
    sums = np.bincount(inv[ok], weights=v[ok], minlength=len(uniq))
    counts = np.bincount(inv[ok], minlength=len(uniq))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return uniq, means


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1; NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) for x in out]


def scorer_for_test_part(
    model: Any,
    protocol: Any,
    dataset: Dataset,
    train_rows: npt.NDArray[np.int64],
    valid_rows: npt.NDArray[np.int64] | None,
) -> Any:
    """What scores the test part: ``model`` itself, or, for a sequential model under a protocol
    whose test-time history is train + valid, a :func:`sequence_scorer` over those rows."""
    if (
        protocol.history == "train+valid"
        and valid_rows is not None
        and len(valid_rows)
        and hasattr(model, "score_sequences")
    ):
        return sequence_scorer(model, dataset.subset(np.concatenate([train_rows, valid_rows])))
    return model


def sequence_scorer(model: Any, history: Dataset) -> Callable[[npt.NDArray[np.int64]], np.ndarray]:
    """Scores from each user's sequence in ``history`` (for models with ``score_sequences``)."""
    seqs = history.sequences()
    events = history.event_sequences()

    def score(users: npt.NDArray[np.int64]) -> np.ndarray:
        out: np.ndarray = model.score_sequences(
            [seqs[u] for u in users], [events[u].astype(np.int64) for u in users]
        )
        return out

    return score


def evaluate_rating(
    model: Recommender, test: Dataset, metrics: Sequence[str]
) -> tuple[dict[str, float], dict[str, FloatArray]]:
    """RMSE / MAE / R2 of ``model.predict`` on the test part's ratings, plus per-pair errors."""
    if not hasattr(model, "predict"):
        raise ExperimentError(
            f"{type(model).__name__} cannot predict ratings (no predict()); rating protocols need "
            "a rating model such as bayesmf or biasedmf"
        )
    r = test.ratings
    if len(r) == 0:
        raise ExperimentError("the test part has no ratings")
    pred = np.asarray(model.predict(r.user, r.item), dtype=np.float64)
    truth = r.rating.astype(np.float64)
    fns = {"rmse": M.rmse, "mae": M.mae, "r2": M.r2}
    values = {m: fns[m](truth, pred) for m in metrics}
    return values, {"_sq_err": (truth - pred) ** 2, "_abs_err": np.abs(truth - pred)}


def _ordered_metrics(runs: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for r in runs:
        for k in r.get("metrics", {}):
            if k not in out:
                out.append(k)
    return out


# -- formatting --------------------------------------------------------------------------------


MARK: Final[dict[str, str]] = {"better": "▲", "worse": "▼"}


def _cell(summary: Mapping[str, Any]) -> str:
    text = f"{summary['mean']:.4f}"
    if summary.get("runs", 1) > 1:
        text += f" ± {summary['std']:.4f}"
    verdict = summary.get("significant")
    if verdict in MARK:
        text += " " + MARK[verdict]
    return text


def dataset_label(result: ExperimentResult) -> str:
    """The evaluated dataset's name as the table shows it."""
    d = result.dataset
    name = d.get("name")
    if name:
        return str(name) + (" (declared)" if d.get("recognised_by") == "declared" else "")
    fp = str(d.get("fingerprint") or "")[:12]
    return f"unnamed dataset {fp}" if fp else "unnamed dataset"


def _published(result: ExperimentResult) -> dict[str, Any]:
    return result.published or _published_of(result)


def _caption(result: ExperimentResult) -> str:
    p = result.protocol
    n_runs = max(
        (len([r for r in result.runs if r["model"] == m]) for m in result.models), default=0
    )
    parts = [
        f"protocol {p.name} ({p.description})" if p.description else f"protocol {p.name}",
        f"{result.mode} ranking" if p.task == "ranking" else "rating prediction",
        f"mean ± std over {n_runs} run(s)",
    ]
    if result.baseline:
        sig = result.significance or {}
        unit = sig.get("unit", "user")
        parts.append(
            f"▲/▼ = significantly better/worse than {result.baseline} (Wilcoxon on per-{unit} "
            f"means, Holm-corrected across models, p < {sig.get('alpha', 0.05)})"
        )
    return "; ".join(parts)


def _privacy_note(result: ExperimentResult, model: str) -> str:
    """`` [DP user-level eps 7.99, delta 1.1e-04]`` for a private model (worst run)."""
    ps = [r["privacy"] for r in result.runs if r["model"] == model and r.get("privacy")]
    if not ps:
        return ""
    if not all(p.get("private") for p in ps):
        return " [not private]"
    eps = max(float(p["epsilon"]) for p in ps)
    delta = max(float(p["delta"]) for p in ps)
    unit = ps[0].get("unit") or "interaction"
    return f" [DP {unit}-level eps {eps:.2f}, delta {delta:.1e}]"


def _published_rows(result: ExperimentResult, pub: Mapping[str, Any]) -> list[list[str]]:
    on = pub.get("on") or "another dataset"
    rows = []
    for name, vals in (pub.get("rows") or {}).items():
        row = (
            [f"{name} [published on {on}]"]
            + [f"{vals[k]:.4f}" if k in vals else "" for k in result.metrics]
            + [""]
        )
        if any(x for x in row[1:]):
            rows.append(row)
    return rows


def _table_rows(result: ExperimentResult) -> tuple[list[str], list[list[str]]]:
    header = ["model", *result.metrics, "fit s"]
    rows = []
    for m in result.models:
        s = result.summary.get(m, {})
        fit = [
            float(r["fit_seconds"]) for r in result.runs if r["model"] == m and "fit_seconds" in r
        ]
        row = [m + (" (baseline)" if m == result.baseline else "") + _privacy_note(result, m)]
        row += [_cell(s[k]) if k in s else "" for k in result.metrics]
        row.append(f"{np.mean(fit):.1f}" if fit else "")
        if "error" in s:
            row[1 if len(row) > 1 else 0] = f"error: {s['error']['message']}"
        rows.append(row)
    pub = _published(result)
    if pub.get("comparable"):
        rows += _published_rows(result, pub)
    return header, rows


def _filled(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Only the columns some row fills (published rows often give one metric of many)."""
    keep = [j for j, h in enumerate(header) if h == "model" or any(r[j] for r in rows)]
    return [header[j] for j in keep], [[r[j] for j in keep] for r in rows]


def _apart(result: ExperimentResult) -> tuple[str, list[list[str]]]:
    """Published rows that do not compare with this run, and the line that says why."""
    pub = _published(result)
    if pub.get("comparable"):
        return "", []
    rows = _published_rows(result, pub)
    if not rows:
        return "", []
    return f"published on {pub.get('on')}, not comparable: {pub.get('reason')}", rows


def render_table(result: ExperimentResult | Mapping[str, Any]) -> RenderableType:
    """A rich table: one row per model (mean ± std, ▲/▼ when significantly better/worse),
    comparable published rows below ours; published rows on another dataset in a table apart."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    res = _as_result(result)
    header, rows = _table_rows(res)
    table = Table(
        title=f"{res.protocol.name} on {dataset_label(res)}: "
        f"{res.dataset.get('interactions', '?')} interactions",
        caption=_caption(res),
    )
    for h in header:
        table.add_column(h, justify="left" if h == "model" else "right")
    for row in rows:
        table.add_row(*row, style="dim" if "[published" in row[0] else None)
    why, apart = _apart(res)
    if not apart:
        return table
    # the reason on its own line: a narrow table would wrap it as a title
    other = Table()
    apart_header, apart = _filled(header[:-1], [row[:-1] for row in apart])
    for h in apart_header:
        other.add_column(h, justify="left" if h == "model" else "right", style="dim")
    for row in apart:
        other.add_row(*row)
    return Group(table, Text(why, style="dim"), other)


def to_markdown(result: ExperimentResult | Mapping[str, Any]) -> str:
    """The table in Markdown, then the p-values against the baseline."""
    res = _as_result(result)
    header, rows = _table_rows(res)
    lines = [
        f"**{res.protocol.name} on {dataset_label(res)}**: {_caption(res)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    why, apart = _apart(res)
    if apart:
        apart_header, apart = _filled(header[:-1], [r[:-1] for r in apart])
        lines += ["", f"{why[0].upper()}{why[1:]}:", ""]
        lines += [
            "| " + " | ".join(apart_header) + " |",
            "|" + "|".join("---" for _ in apart_header) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in apart]
    tests = [
        (m, k, c)
        for m in res.models
        for k, c in res.summary.get(m, {}).items()
        if isinstance(c, Mapping) and "p_ttest" in c
    ]
    if tests:
        unit = (res.significance or {}).get(
            "unit", "test (user, item) rating" if res.protocol.task == "rating" else "user"
        )
        lines += [
            "",
            f"Paired tests against {res.baseline} (per-{unit} means over the runs; "
            "Holm-corrected across the compared models):",
            "",
            "| model | metric | delta | p (t-test) | p (Wilcoxon) | p Holm (Wilcoxon) | verdict | pairs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m, k, c in tests:
            verdict = c.get("significant")
            lines.append(
                f"| {m} | {k} | {c.get('delta', float('nan')):+.4f} | {c['p_ttest']:.3g} | "
                f"{c.get('p_wilcoxon', float('nan')):.3g} | "
                f"{c.get('p_wilcoxon_holm', float('nan')):.3g} | "
                f"{(MARK[verdict] + ' ' + verdict) if verdict in MARK else 'n.s.'} | "
                f"{c.get('pairs', '')} |"
            )
    return "\n".join(lines) + "\n"


def to_csv(result: ExperimentResult | Mapping[str, Any]) -> str:
    """Long format: one line per (model, metric), ours and published."""
    res = _as_result(result)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "protocol",
            "model",
            "source",
            "metric",
            "mean",
            "std",
            "runs",
            "delta",
            "p_ttest",
            "p_wilcoxon",
            "pairs",
            "dataset",
            "comparable",
        ]
    )
    for m in res.models:
        for k, c in res.summary.get(m, {}).items():
            if k == "error":
                continue
            w.writerow(
                [
                    res.protocol.name,
                    m,
                    "ours",
                    k,
                    c["mean"],
                    c["std"],
                    c["runs"],
                    c.get("delta", ""),
                    c.get("p_ttest", ""),
                    c.get("p_wilcoxon", ""),
                    c.get("pairs", ""),
                    dataset_label(res),
                    "",
                ]
            )
    pub = _published(res)
    for name, vals in (pub.get("rows") or {}).items():
        for k, v in vals.items():
            w.writerow(
                [
                    *(res.protocol.name, name, "published", k, v, "", "", "", "", "", ""),
                    *(pub.get("on") or "", bool(pub.get("comparable"))),
                ]
            )
    return buf.getvalue()


def _as_result(result: ExperimentResult | Mapping[str, Any]) -> ExperimentResult:
    if isinstance(result, ExperimentResult):
        return result
    d = dict(result)
    proto = Protocol.from_dict(dict(d["protocol"]))
    return ExperimentResult(
        protocol=proto,
        dataset=dict(d.get("dataset", {})),
        models=list(d["models"]),
        metrics=list(d["metrics"]),
        runs=list(d.get("runs", [])),
        summary={m: {k: dict(v) for k, v in s.items()} for m, s in d["summary"].items()},
        slices=dict(d.get("slices", {})),
        baseline=d.get("baseline"),
        mode=str(d.get("mode", "full")),
        seconds=float(d.get("seconds") or 0.0),
        published=dict(d.get("published") or {}) if "rows" in (d.get("published") or {}) else {},
        significance=dict(d.get("significance") or {}),
    )


def write_result(result: ExperimentResult, out: str | Path) -> Path:
    """Write the result as Markdown (.md), CSV (.csv) or JSON (anything else)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        path.write_text(to_markdown(result), encoding="utf-8")
    elif suffix == ".csv":
        path.write_text(to_csv(result), encoding="utf-8")
    else:
        path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def run_evaluate(
    store_path: str | Path,
    protocol: str | Path | Mapping[str, Any],
    models: Sequence[str | Mapping[str, Any]] | str,
    seeds: Sequence[int] = (0,),
    metrics: Sequence[str] | str | None = None,
    ks: Sequence[int] | str | None = None,
    baseline: str | None = None,
    out: str | Path | None = None,
    *,
    sampled: int | None = None,
    memory_budget_mb: float = 512,
    progress: Callable[[str], None] | None = None,
    dataset_name: str | None = None,
    sets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``shopsight evaluate``: build the dataset from the store, run, optionally write ``out``.

    The store's dataset is recognised by its files' fingerprints (or named by
    ``dataset_name``) so that published figures are shown beside ours only when they compare.

    ``models``, ``metrics`` and ``ks`` may be comma-separated strings; ``sets`` are
    ``MODEL.KEY=VALUE`` overrides (:func:`apply_overrides`). Returns the JSON-friendly
    result (:meth:`ExperimentResult.to_dict`) with ``"written"`` set when a file was written.
    """
    from shopsight.data.dataset import Dataset
    from shopsight.data.store import Store
    from shopsight.evaluation.protocols import lineage_from_store
    from shopsight.evaluation.published import identify_store

    model_list: list[Any] = split_models(models) if isinstance(models, str) else list(models)
    if sets:
        model_list = apply_overrides(model_list, sets)
    metric_list = (
        _split_list(metrics) if isinstance(metrics, str) else (list(metrics) if metrics else None)
    )
    k_list = (
        [int(k) for k in _split_list(ks)] if isinstance(ks, str) else (list(ks) if ks else None)
    )
    exp = Experiment(
        protocol,
        model_list,
        metrics=metric_list,
        ks=k_list,
        seeds=seeds,
        baseline=baseline,
        sampled=sampled,
        memory_budget_mb=memory_budget_mb,
        progress=progress,
        dataset_name=dataset_name,
    )
    path = Path(store_path)
    with Store(path, read_only=True) as store:
        dataset = Dataset.from_store(store)
        from shopsight.data.support import require_interactions

        require_interactions(store, len(dataset), "evaluate")
        # (reading every event's source line costs memory on a big store: only when needed)
        lineage = lineage_from_store(store, dataset) if exp.protocol.needs_lineage else None
        identity = identify_store(store, len(dataset), dataset_name)
    result = exp.run(dataset, lineage, identity)
    d = result.to_dict()
    if out is not None:
        d["written"] = str(write_result(result, out))
    return d


def split_models(text: str) -> list[str]:
    """``"ease:l2=300,feedback=binary,als"`` -> ``["ease:l2=300,feedback=binary", "als"]``.

    A comma-separated piece with ``=`` and no ``:`` is a parameter of the model before it
    (model names never contain ``=``)."""
    out: list[str] = []
    for piece in (t.strip() for t in text.split(",")):
        if not piece:
            continue
        if "=" in piece and ":" not in piece and out:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def _split_list(text: str | Sequence[Any] | None) -> list[str]:
    if text is None:
        return []
    if isinstance(text, str):
        return [t.strip() for t in text.split(",") if t.strip()]
    return [str(t) for t in text]


__all__ = [
    "Experiment",
    "ExperimentError",
    "ExperimentResult",
    "ModelSpec",
    "apply_overrides",
    "category_features",
    "evaluate_rating",
    "model_class",
    "parse_model_spec",
    "read_model_config",
    "render_table",
    "run_evaluate",
    "sequence_scorer",
    "split_models",
    "to_csv",
    "to_markdown",
    "write_result",
]
