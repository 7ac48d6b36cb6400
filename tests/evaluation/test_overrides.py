"""``evaluate --set MODEL.KEY=VALUE``: overrides reach the right model, bad ones are named."""

from __future__ import annotations

import pytest

from shopsight.evaluation.experiment import ExperimentError, ModelSpec, apply_overrides


def test_override_sets_a_parameter_of_every_spec_of_that_model() -> None:
    specs = apply_overrides(
        ["ease:l2=300", "popularity", "ease"], ["ease.l2=50", "ease.feedback=log"]
    )
    assert specs[0] == ModelSpec("ease", {"l2": 50, "feedback": "log"})
    assert specs[1] == ModelSpec("popularity", {})
    assert specs[2] == ModelSpec("ease", {"l2": 50, "feedback": "log"})
    assert specs[0].display == "ease(l2=50,feedback=log)"  # the table shows what ran


def test_values_are_parsed_as_yaml_and_a_label_selects_one_spec() -> None:
    specs = apply_overrides(
        [{"model": "dp", "params": {}, "label": "private"}, "dp"],
        ["dp.epsilon=8", "private.delta=1e-6", "private.unit=interaction", "dp.epsilon=null"],
    )
    assert specs[0].params == {"epsilon": None, "delta": 1e-6, "unit": "interaction"}
    assert specs[0].display == "private"
    assert specs[1].params == {"epsilon": None}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["dp.epsilon"], "expected MODEL.KEY=VALUE"),
        (["epsilon=8"], "expected MODEL.KEY=VALUE"),
        (["als.factors=8"], "no model 'als' among"),
        (["dp.epsilonn=8"], "dp has no parameter 'epsilonn'"),
    ],
)
def test_bad_overrides_fail_in_one_line(sets: list[str], message: str) -> None:
    with pytest.raises(ExperimentError, match=message) as info:
        apply_overrides(["dp", "popularity"], sets)
    assert "\n" not in str(info.value)
