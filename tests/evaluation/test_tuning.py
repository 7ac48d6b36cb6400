"""Tuning: search spaces, improvement over defaults that holds on test, resume, grid, pruning."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import yaml

from shopsight.data.dataset import Dataset
from shopsight.evaluation.experiment import parse_model_spec
from shopsight.evaluation.tuning import (
    ParamSpec,
    Tuner,
    TuningError,
    load_space,
    model_defaults,
    nest_params,
    parse_space,
    run_tune,
)
from shopsight.models import registry
from shopsight.models.base import FloatArray, IntArray, Recommender
from shopsight.training.trainer import run_options

ALS_SPACE = {
    "factors": {"type": "int", "low": 8, "high": 64, "log": True},
    "l2": {"type": "float", "low": 1e-3, "high": 30.0, "log": True},
    "alpha": {"type": "float", "low": 0.05, "high": 50.0, "log": True},
}


def test_space_parsing_and_grid(tmp_path):
    space = parse_space(
        {
            "l2": {"type": "float", "low": 10, "high": 30, "step": 10},
            "k": {"type": "int", "low": 1, "high": 5, "step": 2},
            "feedback": {"choices": ["binary", "log"]},
        }
    )
    assert space["l2"].grid() == [10.0, 20.0, 30.0]
    assert space["k"].grid() == [1, 3, 5]
    assert space["feedback"] == ParamSpec("feedback", "categorical", choices=("binary", "log"))
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"space": ALS_SPACE}))
    assert load_space(path)["l2"].log is True
    for bad, msg in [
        ({"x": {"type": "float", "low": 2, "high": 1}}, "low <= high"),
        ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"x": {"type": "categorical", "choices": []}}, "choices"),
        ({"x": {"type": "bool"}}, "type must be"),
        ({"x": {"type": "int", "low": 1, "high": 2, "colour": 3}}, "unknown keys"),
    ]:
        with pytest.raises(TuningError, match=msg):
            parse_space(bad)
    with pytest.raises(TuningError, match="needs a step"):
        parse_space({"x": {"type": "float", "low": 0, "high": 1}})["x"].grid()
    with pytest.raises(TuningError, match="no parameters"):
        Tuner("ease", {"depth": {"type": "int", "low": 1, "high": 3}})
    assert model_defaults("ease")["l2"] == 200.0


def test_tuning_improves_over_the_starting_config_and_holds_on_test(small_shop, tmp_path):
    # Start from a deliberately poor ALS (tiny l2, huge alpha) so the test does not depend on
    # how good the model's documented defaults happen to be on this shop.
    summary = run_tune(
        small_shop.store,
        "als:factors=64,l2=0.001,alpha=50",
        ALS_SPACE,
        trials=6,
        sampler="tpe",
        protocol="random-811",
        study_path=tmp_path / "study.db",
        out_config=tmp_path / "best.yaml",
    )
    val, test = summary["validation"], summary["test"]
    assert val["best"] > val["default"] + 0.05
    assert test["best"] > test["default"] + 0.03  # the improvement holds on unseen data
    config = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert (
        config["model"] == "als"
        and config["params"]["factors"] == summary["best_params"]["factors"]
    )
    # the written config is a model spec evaluate/train can use
    spec = parse_model_spec(str(tmp_path / "best.yaml"))
    assert spec.name == "als" and spec.params["l2"] == pytest.approx(summary["best_params"]["l2"])


def test_study_resumes_from_its_file(small_shop, tmp_path):
    kw = dict(protocol="random-811", study_path=tmp_path / "s.db", sampler="random")
    first = run_tune(
        small_shop.store,
        "itemknn",
        {"neighbours": {"type": "int", "low": 5, "high": 80}},
        trials=2,
        test=False,
        **kw,
    )
    again = run_tune(
        small_shop.store,
        "itemknn",
        {"neighbours": {"type": "int", "low": 5, "high": 80}},
        trials=3,
        test=False,
        **kw,
    )
    assert first["trials"]["run_now"] == 2
    assert again["trials"]["run_now"] == 1 and again["trials"]["complete"] == 3
    assert again["validation"]["default"] == first["validation"]["default"]  # not re-evaluated
    with pytest.raises(TuningError, match="was made for"):
        run_tune(
            small_shop.store,
            "itemknn",
            {"shrinkage": {"type": "float", "low": 0, "high": 50}},
            trials=1,
            test=False,
            **kw,
        )


def test_the_starting_configuration_is_the_first_trial(small_shop, tmp_path):
    space = {"neighbours": {"type": "int", "low": 5, "high": 400}}
    tuner = Tuner(
        "itemknn",
        space,
        protocol="random-811",
        trials=2,
        sampler="random",
        study_path=tmp_path / "start.db",
    )
    out = tuner.run(small_shop.dataset, small_shop.lineage, test=False)
    study = optuna.load_study(
        study_name=tuner.study_name, storage=f"sqlite:///{tmp_path / 'start.db'}"
    )
    first = study.trials[0]
    assert first.params == {"neighbours": 100} and first.user_attrs["start"] is True
    assert first.value == pytest.approx(out["validation"]["default"])
    assert out["validation"]["best"] >= out["validation"]["default"]


def test_a_wrapped_models_parameters_are_searched_by_dotted_name(small_shop, monkeypatch):
    assert nest_params(
        {"model_params.factors": 16, "dtype": "int8", "model_params": None},
        {"model_params": {"l2": 0.5}},
    ) == {"model_params": {"l2": 0.5, "factors": 16}, "dtype": "int8"}
    from shopsight.models import quantize

    built: list[dict] = []
    real_fit = quantize.QuantizedRecommender._fit

    def spy(self, dataset, valid):
        built.append(dict(self.model_params or {}))
        return real_fit(self, dataset, valid)

    monkeypatch.setattr(quantize.QuantizedRecommender, "_fit", spy)
    space = {"model_params.factors": {"type": "int", "low": 4, "high": 16}}
    tuner = Tuner("quantized", space, protocol="random-811", trials=2, sampler="random")
    out = tuner.run(small_shop.dataset, small_shop.lineage, test=False)
    if not out["kept_defaults"]:
        want = out["best_params"]["model_params.factors"]
        assert out["params"]["model_params"]["factors"] == want
    assert len(built) == 3  # the defaults, then 2 trials
    assert all(4 <= b["factors"] <= 16 for b in built if b)
    assert sum(bool(b) for b in built) == 2
    with pytest.raises(TuningError, match="no parameters"):
        Tuner("als", {"l2.x": {"type": "float", "low": 0.1, "high": 1.0}})


def test_a_search_that_finds_nothing_better_keeps_the_defaults(small_shop):
    # ALS's defaults are "auto" (not a point of the space, so not a trial); a space of poor
    # settings only: the best trial is worse than the defaults, and tuning must say so
    space = {"factors": {"type": "int", "low": 1, "high": 2}}
    tuner = Tuner("als", space, protocol="random-811", trials=2, sampler="random", cv_folds=1)
    out = tuner.run(small_shop.dataset, small_shop.lineage, test=True)
    assert out["validation"]["best_trial_value"] < out["validation"]["default"]
    assert out["kept_defaults"] and out["best_params"] == {} and out["best_trial"] is None
    assert out["params"]["factors"] == "auto"  # the config it writes is the defaults
    assert out["validation"]["best"] == out["validation"]["default"]
    assert out["test"]["best"] == out["test"]["default"]


def test_grid_sampler_covers_the_grid(small_shop):
    space = {
        "neighbours": {"type": "int", "low": 10, "high": 30, "step": 20},
        "shrinkage": {"choices": [0.0, 50.0]},
    }
    tuner = Tuner("itemknn", space, protocol="random-811", trials=4, sampler="grid")
    out = tuner.run(small_shop.dataset, small_shop.lineage, test=False)
    assert out["trials"]["complete"] == 4


class _EpochToy(Recommender):
    """Trains 'in epochs' and reports its quality each epoch through the trainer's hook."""

    name = "test_epoch_toy"

    def __init__(self, quality: float = 0.5, seed: int = 0) -> None:
        self.quality = quality
        self.seed = seed

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self.epochs_run_ = 0
        hook = run_options().on_epoch
        for epoch in range(1, 6):
            self.epochs_run_ = epoch
            if hook is not None:
                hook(epoch, {"epoch": float(epoch), "loss": 1.0, "metric": float(self.quality)})

    def _score(self, users: IntArray) -> FloatArray:
        rng = np.random.default_rng(self.seed)
        noise = rng.random((len(users), self.n_items_)).astype(np.float32)
        return self.quality * self.item_popularity_[None, :] + noise


def test_epoch_models_are_pruned_by_their_intermediate_metric(small_shop, tmp_path, monkeypatch):
    # registered for this test only (the contract suite runs every *registered* model)
    monkeypatch.setitem(registry._MODELS, _EpochToy.name, _EpochToy)
    tuner = Tuner(
        "test_epoch_toy",
        {"quality": {"type": "float", "low": 0.0, "high": 1.0}},
        protocol="random-811",
        trials=12,
        sampler="random",
        study_path=tmp_path / "p.db",
    )
    out = tuner.run(small_shop.dataset, small_shop.lineage, test=False)
    assert out["trials"]["pruned"] > 0
    study = optuna.load_study(study_name=tuner.study_name, storage=f"sqlite:///{tmp_path / 'p.db'}")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # pruned trials were below the median of the others at the same epoch
    assert max(t.params["quality"] for t in pruned) < max(t.params["quality"] for t in complete)


def test_test_part_of_leave_one_out_gives_sequential_models_the_validation_item(next_of_last):
    """As ``evaluate`` does: on the test part the history is train + valid, so next-of-last is
    always right; scored from the training sequences alone it would never be."""
    space = {"boost": {"type": "float", "low": 0.5, "high": 2.0}}
    summary = Tuner("test_next_of_last", space, protocol="leave-one-out", trials=2).run(
        next_of_last
    )
    assert summary["validation"]["default"] == 1.0  # valid: the history is train
    assert summary["test"] == {"default": 1.0, "best": 1.0, "improvement": 0.0}
