"""Hyper-parameter tuning with Optuna, on validation data only, resumable, with pruning.

The objective never sees the protocol's test part. With a protocol that has a validation part
(``leave-one-out``, ``random-811``, ...) a trial fits on the training part (the validation part
is also given to the model for early stopping, as in RecBole) and is scored on the validation
part. Without one (``stratified-item-75-25``, ``kfold-5``, ...) the protocol's own recipe is
applied again to the training part of its first split (:meth:`Protocol.inner_splits`), and the
trial's value is the mean over those inner splits (k-fold for ``kfold-5``, capped by
``cv_folds``).

Pruning (Optuna's ``MedianPruner``): a model trained in epochs that reports a validation metric
through the trainer's ``on_epoch`` hook has that metric reported as the trial's intermediate
value per epoch, so a trial far below the median of earlier trials at the same epoch stops
early; otherwise the running mean over inner folds is reported after each fold and hopeless
trials stop between folds.

Search space (YAML or dict), one entry per hyper-parameter::

    l2:      {type: float, low: 10, high: 2000, log: true}
    factors: {type: int, low: 16, high: 256, step: 16}
    feedback: {type: categorical, choices: [binary, log]}

The baseline a study is compared against is the model's documented defaults, overridden by any
parameters given with the model (``"als:l2=0.001"``): tuning from a given starting point.

The study lives in an SQLite file (``--study study.db``) or any Optuna storage URL (``--study
sqlite:///study.db``, used as given): running the same command again
resumes it and only runs the trials still missing. The model's defaults are evaluated once on
the same validation data (stored in the study) so the improvement is explicit, and with
``test=True`` both the defaults and the best configuration are then fitted on the training part
and scored on the test part, which shows whether the improvement holds on unseen data. The best
configuration is written as YAML or JSON (``{model, params, tuning}``) that ``shopsight train``
and ``shopsight evaluate`` read.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shopsight.config import read_mapping
from shopsight.errors import InputError
from shopsight.evaluation import metrics as M
from shopsight.evaluation.experiment import (
    ModelSpec,
    evaluate_rating,
    model_class,
    parse_model_spec,
    scorer_for_test_part,
)
from shopsight.evaluation.protocols import Lineage, Protocol, load_protocol
from shopsight.evaluation.ranking import evaluate_ranking

if TYPE_CHECKING:
    import optuna

    from shopsight.data.dataset import Dataset
    from shopsight.data.split import Split

Sampler = Literal["tpe", "random", "grid"]
MAX_GRID = 10_000


class TuningError(InputError):
    """A search space, sampler or tuning setting is invalid (one-line message)."""


# -- search space --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One hyper-parameter's range: ``float``/``int`` (``low``, ``high``, ``log``, ``step``) or
    ``categorical`` (``choices``)."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def grid(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise TuningError(
                f"grid search: float parameter {self.name!r} needs a step (or use choices)"
            )
        n = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [float(self.low + i * self.step) for i in range(n)]

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= v <= self.high


def parse_space(data: Mapping[str, Any], source: str = "space") -> dict[str, ParamSpec]:
    """Validate a search space mapping (see the module docstring)."""
    if "space" in data and isinstance(data["space"], Mapping):
        data = data["space"]
    if not data:
        raise TuningError(f"{source}: empty search space")
    out: dict[str, ParamSpec] = {}
    for name, spec in data.items():
        where = f"{source}: {name}"
        if not isinstance(spec, Mapping):
            raise TuningError(f"{where}: expected a mapping like {{type: float, low: 0, high: 1}}")
        unknown = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices"})
        if unknown:
            raise TuningError(f"{where}: unknown keys {unknown}")
        kind = spec.get("type", "categorical" if "choices" in spec else None)
        if kind not in ("float", "int", "categorical"):
            raise TuningError(f"{where}: type must be float, int or categorical, got {kind!r}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                raise TuningError(f"{where}: categorical needs a non-empty list of choices")
            out[name] = ParamSpec(name, "categorical", choices=tuple(choices))
            continue
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, int | float) or not isinstance(high, int | float) or low > high:
            raise TuningError(f"{where}: needs numbers low <= high, got low={low!r} high={high!r}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise TuningError(f"{where}: log scale needs low > 0")
        step = spec.get("step")
        if step is not None and (not isinstance(step, int | float) or step <= 0):
            raise TuningError(f"{where}: step must be a positive number")
        if log and step is not None:
            raise TuningError(f"{where}: step and log cannot be combined (Optuna)")
        out[name] = ParamSpec(name, kind, float(low), float(high), log, step)
    return out


def load_space(spec: str | Path | Mapping[str, Any]) -> dict[str, ParamSpec]:
    """A search space from a YAML/JSON file or a mapping."""
    if isinstance(spec, Mapping):
        return parse_space(spec)
    path = Path(spec)
    return parse_space(read_mapping(path, "search-space", TuningError), str(path))


def model_defaults(name: str) -> dict[str, Any]:
    """The documented defaults of a model (its ``__init__`` signature)."""
    klass = model_class(name)
    sig = inspect.signature(klass.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self" and p.default is not inspect.Parameter.empty
    }


def nest_params(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model_params.factors": 64}`` -> ``{"model_params": {**default, "factors": 64}}``.

    A wrapper (``quantized``) takes its inner model's parameters as one dict; a dotted name
    searches one key of it, the rest keep their defaults."""
    out = {k: v for k, v in params.items() if "." not in k}
    for key, value in params.items():
        head, dot, tail = key.partition(".")
        if not dot:
            continue
        inner = out.get(head)
        if not isinstance(inner, dict):
            inner = dict(defaults.get(head) or {})
            out[head] = inner
        inner[tail] = value
    return out


def _default_of(name: str, defaults: Mapping[str, Any]) -> Any:
    """A parameter's default; a dotted name's is its inner model's (``model_name``'s) unless
    the wrapper's dict sets it."""
    head, dot, tail = name.partition(".")
    if not dot:
        return defaults[name]
    inner = defaults.get(head) or {}
    if tail in inner:
        return inner[tail]
    model = defaults.get("model_name")
    return model_defaults(model).get(tail) if isinstance(model, str) else None


# -- the tuner ---------------------------------------------------------------------------------------


@dataclass
class _Fold:
    train: np.ndarray
    valid: np.ndarray
    early_stop: np.ndarray | None  # rows given to fit() as its validation set


def _direction(metric: str) -> Literal["minimize", "maximize"]:
    return "minimize" if metric.split("@")[0] in ("rmse", "mae", "logloss") else "maximize"


class Tuner:
    """Optuna search of one model's hyper-parameters under a protocol (see module docstring)."""

    def __init__(
        self,
        model: str | ModelSpec | Mapping[str, Any],
        space: Mapping[str, ParamSpec] | Mapping[str, Any] | str | Path,
        *,
        protocol: Protocol | str | Path | Mapping[str, Any] = "random-811",
        trials: int = 20,
        sampler: Sampler = "tpe",
        seed: int = 0,
        metric: str | None = None,
        study_path: str | Path | None = None,
        study_name: str | None = None,
        cv_folds: int | None = 3,
        prune: bool = True,
        timeout: float | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = parse_model_spec(model) if not isinstance(model, ModelSpec) else model
        first = next(iter(space.values()), None) if isinstance(space, Mapping) else None
        self.space = dict(space) if isinstance(first, ParamSpec) else load_space(space)  # type: ignore[arg-type]
        self.protocol = load_protocol(protocol)
        if trials < 1:
            raise TuningError(f"trials must be >= 1, got {trials}")
        if sampler not in ("tpe", "random", "grid"):
            raise TuningError(f"sampler must be tpe, random or grid, got {sampler!r}")
        self.trials = int(trials)
        self.sampler_name = sampler
        self.seed = int(seed)
        self.metric = metric or self.protocol.primary_metric
        try:
            name, cut = M.parse_metrics([self.metric])
        except M.MetricError as exc:
            raise TuningError(str(exc)) from None
        if self.protocol.task == "ranking" and (not cut or name[0] in M.RATING_METRICS):
            raise TuningError(f"metric {self.metric!r}: a ranking protocol needs NAME@K")
        self.direction = _direction(self.metric)
        # a database URL (``sqlite:///x.db``, ``postgresql://...``) is Optuna's storage as is;
        # anything else is the path of an SQLite file
        self.study_url = str(study_path) if study_path and "://" in str(study_path) else None
        self.study_path = Path(study_path) if study_path and self.study_url is None else None
        self.study_name = study_name or f"{self.spec.name}-{self.protocol.name}"
        self.cv_folds = cv_folds
        self.prune = prune
        self.timeout = timeout
        self.progress = progress
        defaults = model_defaults(self.spec.name)
        unknown = sorted(
            k
            for k in self.space
            if k.partition(".")[0] not in defaults
            or ("." in k and not isinstance(defaults[k.partition(".")[0]], dict | None))
        )
        if unknown:
            raise TuningError(
                f"{self.spec.name} has no parameters {unknown} (tunable: {sorted(defaults)})"
            )
        self.defaults = {**defaults, **dict(self.spec.params)}

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    # -- data --------------------------------------------------------------------------------
    def _folds(self, dataset: Dataset, lineage: Lineage | None) -> tuple[list[_Fold], Split]:
        outer = self.protocol.make_splits(dataset, self.seed, lineage)[0]
        if outer.valid is not None and len(outer.valid):
            return [_Fold(outer.train, outer.valid, outer.valid)], outer
        inner = self.protocol.inner_splits(dataset, outer.train, self.seed, lineage)
        if self.cv_folds:
            inner = inner[: int(self.cv_folds)]
        folds = []
        for s in inner:
            if s.valid is not None and len(s.valid):
                folds.append(_Fold(s.train, s.valid, s.valid))
            else:
                folds.append(_Fold(s.train, s.test, None))
        return folds, outer

    def _score(
        self,
        params: Mapping[str, Any],
        dataset: Dataset,
        train_rows: np.ndarray,
        eval_rows: np.ndarray,
        early_rows: np.ndarray | None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        test_valid_rows: np.ndarray | None = None,
    ) -> float:
        """Fit on ``train_rows`` and return the metric on ``eval_rows``. Scoring a test part,
        ``test_valid_rows`` is its validation part: a sequential model then reads it as
        history, as ``evaluate`` does (:func:`scorer_for_test_part`), and its items are
        excluded too."""
        from shopsight.training.trainer import training_run

        p = self.protocol
        train = dataset.subset(train_rows)
        target = dataset.subset(eval_rows)
        early = dataset.subset(early_rows) if early_rows is not None else None
        model = ModelSpec(self.spec.name, nest_params(params, self.defaults)).build(self.seed)
        with training_run(on_epoch=on_epoch):
            model.fit(train, early)
        if p.task == "rating":
            values, _ = evaluate_rating(model, target, [self.metric])
            return float(values[self.metric])
        truth = p.truth(target)
        names, cut = M.parse_metrics([self.metric])
        scorer = scorer_for_test_part(model, p, dataset, train_rows, test_valid_rows)
        seen_valid = early if scorer is not model else None
        res = evaluate_ranking(
            scorer,
            truth,
            exclude=p.exclusion(train, seen_valid),
            ks=cut,
            metrics=names,
            users=p.eval_users(train, truth),
            candidates=p.candidate_mask(train, target),
            mask_value=p.mask_value,
            tie_break=p.tie_break,
            seed=self.seed,
        )
        return float(res.metrics.get(self.metric, float("nan")))

    # -- optuna ------------------------------------------------------------------------------
    def _sampler(self) -> optuna.samplers.BaseSampler:
        import optuna

        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        if self.sampler_name == "grid":
            grid = {name: spec.grid() for name, spec in self.space.items()}
            size = int(np.prod([len(v) for v in grid.values()]))
            if size > MAX_GRID:
                raise TuningError(f"grid of {size} points is too large (max {MAX_GRID})")
            return optuna.samplers.GridSampler(grid, seed=self.seed)
        return optuna.samplers.TPESampler(
            seed=self.seed, n_startup_trials=min(10, max(2, self.trials // 3))
        )

    def _study(self) -> optuna.Study:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = self.study_url
        if self.study_path is not None:
            self.study_path.parent.mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{self.study_path.resolve()}"
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
            if self.prune
            else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self._sampler(),
            pruner=pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        saved = study.user_attrs.get("setup")
        setup = {
            "model": self.spec.name,
            "protocol": self.protocol.name,
            "metric": self.metric,
            "space": sorted(self.space),
        }
        if saved is not None and saved != setup:
            raise TuningError(
                f"study {self.study_name!r} in {self.study_url or self.study_path} was made for "
                f"{saved}, not {setup}; "
                "use another --study file or name"
            )
        study.set_user_attr("setup", setup)
        return study

    def run(
        self, dataset: Dataset, lineage: Lineage | None = None, *, test: bool = True
    ) -> dict[str, Any]:
        """Run (or resume) the study; returns a JSON-friendly summary with the best config."""
        import optuna

        t0 = time.perf_counter()
        folds, outer = self._folds(dataset, lineage)
        study = self._study()

        if "default_value" not in study.user_attrs:
            self._say("evaluating the defaults")
            vals = [
                self._score(self.defaults, dataset, f.train, f.valid, f.early_stop) for f in folds
            ]
            study.set_user_attr("default_value", float(np.mean(vals)))
        default_value = float(study.user_attrs["default_value"])

        def objective(trial: optuna.Trial) -> float:
            params = {**self.defaults, **{n: s.suggest(trial) for n, s in self.space.items()}}
            single = len(folds) == 1

            def on_epoch(epoch: int, row: dict[str, float]) -> None:
                # An epoch-trained model's own validation metric: prune hopeless trials early.
                # (the trainer's metric is higher-is-better, so only for maximised objectives)
                if (
                    single
                    and self.direction == "maximize"
                    and math.isfinite(row.get("metric", math.nan))
                ):
                    trial.report(float(row["metric"]), epoch)
                    if self.prune and trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            values = []
            for j, f in enumerate(folds):
                values.append(
                    self._score(params, dataset, f.train, f.valid, f.early_stop, on_epoch)
                )
                if not single:
                    trial.report(float(np.mean(values)), j)
                    if self.prune and trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after fold {j + 1}")
            value = float(np.mean(values))
            if not math.isfinite(value):
                raise TuningError(f"trial {trial.number}: metric {self.metric} is not finite")
            self._say(f"trial {trial.number}: {self.metric}={value:.4f} {trial.params}")
            return value

        start = {n: _default_of(n, self.defaults) for n in self.space}
        if (
            not study.trials
            and self.sampler_name != "grid"
            and all(spec.contains(start[n]) for n, spec in self.space.items())
        ):
            # The starting configuration is the first trial, so the study's best is never
            # worse than where it started (with defaults already optimal, tuning says so).
            study.enqueue_trial(_plain(start), user_attrs={"start": True})
        done = [
            t
            for t in study.trials
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ]
        remaining = max(0, self.trials - len(done))
        if remaining:
            from shopsight.progress import task

            with task(f"tune {self.spec.name}", total=remaining) as bar:

                def tick(st: Any, trial: Any) -> None:
                    best = (
                        f"best {self.metric}={st.best_value:.4f}"
                        if any(t.state == optuna.trial.TrialState.COMPLETE for t in st.trials)
                        else ""
                    )
                    bar.advance(1, info=f"trial {trial.number} {trial.state.name.lower()} {best}")

                study.optimize(
                    objective,
                    n_trials=remaining,
                    timeout=self.timeout,
                    catch=(ValueError, RuntimeError, ArithmeticError),
                    callbacks=[tick],
                )
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise TuningError("no trial completed (every trial failed or was pruned)")
        best = study.best_trial
        trial_value = float(best.value)  # type: ignore[arg-type]
        beats = (
            trial_value > default_value
            if self.direction == "maximize"
            else trial_value < default_value
        )
        # Where the defaults could not be a trial ("auto" values), the search may find nothing
        # better: then tuning's answer is the defaults, not the least bad trial.
        best_params = {**self.defaults, **best.params} if beats else dict(self.defaults)
        if not beats:
            self._say(
                f"no trial beat the defaults on validation ({self.metric} {trial_value:.4f} "
                f"against {default_value:.4f}): the defaults are kept"
            )
        out: dict[str, Any] = {
            "model": self.spec.name,
            "protocol": self.protocol.name,
            "metric": self.metric,
            "direction": self.direction,
            "sampler": self.sampler_name,
            "study": self.study_name,
            "storage": self.study_url or (str(self.study_path) if self.study_path else None),
            "trials": {
                "complete": len(complete),
                "pruned": len(
                    [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
                ),
                "failed": len([t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]),
                "run_now": remaining,
            },
            "validation": {
                "folds": len(folds),
                "default": default_value,
                "best": trial_value if beats else default_value,
                "improvement": (trial_value - default_value) if beats else 0.0,
                "best_trial_value": trial_value,
            },
            "kept_defaults": not beats,
            "best_trial": best.number if beats else None,
            "best_params": dict(best.params) if beats else {},
            "params": _plain(nest_params(best_params, self.defaults)),
        }
        if test:
            self._say("fitting defaults and best on the training part, scoring the test part")
            early = outer.valid if outer.valid is not None and len(outer.valid) else None
            d_test = self._score(
                self.defaults, dataset, outer.train, outer.test, early, None, early
            )
            b_test = (
                self._score(best_params, dataset, outer.train, outer.test, early, None, early)
                if beats
                else d_test
            )
            out["test"] = {"default": d_test, "best": b_test, "improvement": b_test - d_test}
        out["seconds"] = time.perf_counter() - t0
        return out


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """JSON/YAML-safe parameter values (tuples as lists, numpy scalars as Python)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def write_config(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``{model, params, tuning}`` as YAML (``.yaml``/``.yml``) or JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "model": summary["model"],
        "params": summary["params"],
        "tuning": {k: v for k, v in summary.items() if k not in ("model", "params")},
    }
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        p.write_text(
            yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False),
            encoding="utf-8",
        )
    else:
        p.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
    return p


def run_tune(
    store_path: str | Path,
    model: str,
    space_file: str | Path | Mapping[str, Any],
    trials: int = 20,
    sampler: Sampler = "tpe",
    protocol: str | Path | Mapping[str, Any] = "random-811",
    study_path: str | Path | None = None,
    out_config: str | Path | None = None,
    *,
    metric: str | None = None,
    seed: int = 0,
    cv_folds: int | None = 3,
    test: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``shopsight tune``: tune ``model`` on the store's dataset; write the best config.

    Returns the summary of :meth:`Tuner.run` plus ``"written"`` (the config path) when
    ``out_config`` is given.
    """
    from shopsight.data.dataset import Dataset
    from shopsight.data.store import Store
    from shopsight.evaluation.protocols import lineage_from_store

    tuner = Tuner(
        model,
        space_file,
        protocol=protocol,
        trials=trials,
        sampler=sampler,
        seed=seed,
        metric=metric,
        study_path=study_path,
        cv_folds=cv_folds,
        progress=progress,
    )
    path = Path(store_path)
    with Store(path, read_only=True) as store:
        dataset = Dataset.from_store(store)
        from shopsight.data.support import require_interactions

        require_interactions(store, len(dataset), "tune")
        lineage = lineage_from_store(store, dataset) if tuner.protocol.needs_lineage else None
    summary = tuner.run(dataset, lineage, test=test)
    if out_config is not None:
        summary["written"] = str(write_config(summary, out_config))
    return summary


__all__ = [
    "ParamSpec",
    "Tuner",
    "TuningError",
    "load_space",
    "model_defaults",
    "parse_space",
    "run_tune",
    "write_config",
]
