"""The gate: fixed thresholds, the comparison with production and slices, as a pure function;
slice selection on real images."""

from __future__ import annotations

import numpy as np
import pytest

from modelship_api.profile import image_statistics
from modelship_api.trainingrun import Baseline, Gate, GateSlice, GeneratedDataset, Threshold
from modelship_trainer import slices
from modelship_trainer.data import concat
from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.gate import Production, decide
from modelship_trainer.slices import SliceMetrics
from modelship_trainer.surface_defects import CLASSES, generate

METRICS = {"accuracy": 0.95, "loss": 0.2}


def test_no_gate_blesses() -> None:
    status = decide(None, METRICS, None)
    assert status.verdict == "Blessed" and status.reason == "no gate rules"


def test_thresholds_min_and_max() -> None:
    gate = Gate(thresholds=[Threshold(metric="accuracy", min=0.9),
                            Threshold(metric="loss", max=0.1)])
    status = decide(gate, METRICS, None)
    assert status.verdict == "Rejected"
    assert [c.passed for c in status.checks or []] == [True, False]
    assert status.reason == "loss 0.2000 is above the maximum 0.1"


def test_threshold_on_unmeasured_metric_rejects() -> None:
    status = decide(Gate(thresholds=[Threshold(metric="auc", min=0.5)]), METRICS, None)
    assert status.verdict == "Rejected" and "auc was not measured" in status.reason


def test_threshold_bound_is_inclusive_despite_float_noise() -> None:
    gate = Gate(thresholds=[Threshold(metric="accuracy", min=0.3)])
    assert decide(gate, {"accuracy": 0.1 + 0.2}, None).verdict == "Blessed"  # 0.30000000000000004
    assert decide(gate, {"accuracy": 0.3 - 1e-6}, None).verdict == "Rejected"


def test_first_model_has_nothing_to_compare() -> None:
    status = decide(Gate(baseline=Baseline(min_improvement=0.05)), METRICS, None)
    assert status.verdict == "Blessed"
    assert (status.checks or [])[0].message == "no version in production; nothing to compare"


def test_min_improvement() -> None:
    gate = Gate(baseline=Baseline(min_improvement=0.05))
    assert decide(gate, METRICS, Production(3, {"accuracy": 0.90})).verdict == "Blessed"
    rejected = decide(gate, METRICS, Production(3, {"accuracy": 0.91}))
    assert rejected.verdict == "Rejected"
    assert "vs production v3 0.9100 (change +0.0400, must improve by at least 0.05)" in (
        rejected.reason)


def test_negative_min_improvement_allows_a_small_loss() -> None:
    gate = Gate(baseline=Baseline(min_improvement=-0.02))
    assert decide(gate, METRICS, Production(1, {"accuracy": 0.96})).verdict == "Blessed"
    assert decide(gate, METRICS, Production(1, {"accuracy": 0.98})).verdict == "Rejected"


def test_max_regression_overrides_min_improvement() -> None:
    gate = Gate(baseline=Baseline(min_improvement=0.5, max_regression=0.01))
    assert decide(gate, METRICS, Production(2, {"accuracy": 0.955})).verdict == "Blessed"
    assert decide(gate, METRICS, Production(2, {"accuracy": 0.97})).verdict == "Rejected"


def test_lower_is_better() -> None:
    gate = Gate(baseline=Baseline(metric="loss", higher_is_better=False, min_improvement=0.05))
    assert decide(gate, METRICS, Production(1, {"loss": 0.3})).verdict == "Blessed"
    assert decide(gate, METRICS, Production(1, {"loss": 0.22})).verdict == "Rejected"


def test_all_failures_are_in_the_reason() -> None:
    gate = Gate(thresholds=[Threshold(metric="accuracy", min=0.99)],
                baseline=Baseline(min_improvement=0.1))
    status = decide(gate, METRICS, Production(4, {"accuracy": 0.94}))
    assert status.verdict == "Rejected"
    assert status.reason.count(";") == 1 and "below the minimum 0.99" in status.reason


DARK = GateSlice.model_validate({"name": "dark", "maxRegression": 0.02, "minSamples": 50,
                                 "inputStatistic": {"statistic": "input_brightness",
                                                    "max": 0.3}})


def test_better_on_average_but_worse_on_the_dark_slice_is_vetoed_naming_it() -> None:
    gate = Gate(baseline=Baseline(), slices=[DARK])
    production = Production(3, {"accuracy": 0.90}, {"dark": SliceMetrics(80, {"accuracy": 0.85})})
    status = decide(gate, {"accuracy": 0.95}, production,
                    {"dark": SliceMetrics(80, {"accuracy": 0.70})})
    assert status.verdict == "Rejected"
    assert [(c.name, c.passed) for c in status.checks or []] == [
        ("accuracy vs v3", True), ("slice dark: accuracy vs v3", False)]
    assert status.reason == ("slice dark: accuracy 0.7000 vs production v3 0.8500 "
                             "(change -0.1500, may regress at most 0.02)")
    better = decide(gate, {"accuracy": 0.95}, production,
                    {"dark": SliceMetrics(80, {"accuracy": 0.84})})
    assert better.verdict == "Blessed"


def test_a_slice_too_small_to_judge_rejects() -> None:
    status = decide(Gate(slices=[DARK]), METRICS, None, {"dark": SliceMetrics(12, {})})
    assert status.verdict == "Rejected"
    assert status.reason == ("slice dark: 12 samples, fewer than minSamples 50; add (reviewed) "
                             "samples to the slice or lower minSamples")


def test_slice_minimum_and_first_model() -> None:
    reviewed = GateSlice.model_validate({"name": "reviewed", "reviewedProduction": True,
                                         "min": 0.8, "maxRegression": 0.0, "minSamples": 1})
    loss = GateSlice.model_validate({"name": "pits", "class": "pit", "metric": "loss",
                                     "higherIsBetter": False, "min": 0.5, "minSamples": 1})
    status = decide(Gate(slices=[reviewed, loss]), METRICS, None,
                    {"reviewed": SliceMetrics(5, {"accuracy": 0.6}),
                     "pits": SliceMetrics(5, {"loss": 0.4})})
    assert [(c.name, c.passed) for c in status.checks or []] == [
        ("slice reviewed: accuracy>=0.8", False), ("slice reviewed: accuracy vs production", True),
        ("slice pits: loss<=0.5", True)]
    assert status.reason == "slice reviewed: accuracy 0.6000 is below the minimum 0.8"


def test_slices_select_by_class_brightness_and_review() -> None:
    bright = generate(GeneratedDataset(samples=120, image_size=16, brightness=0.6))
    dark = generate(GeneratedDataset(samples=100, image_size=16, brightness=0.15, seed=1))
    evaluation = concat(bright, dark)
    reviewed = np.arange(len(evaluation)) >= 150
    pits = GateSlice.model_validate({"name": "pits", "class": "pit", "min": 0})
    by_index = GateSlice.model_validate({"name": "pits2", "class": 2, "min": 0})
    mine = GateSlice.model_validate({"name": "r", "reviewedProduction": True, "min": 0})
    definitions = image_statistics(CLASSES)
    masks = slices.masks([DARK, pits, by_index, mine], evaluation, reviewed, definitions)
    assert masks["dark"].tolist() == [False] * 120 + [True] * 100
    assert masks["pits"].tolist() == (evaluation.labels == 2).tolist() == masks["pits2"].tolist()
    assert masks["r"].tolist() == reviewed.tolist()
    logits = np.eye(3, dtype=np.float32)[evaluation.labels]
    logits[120:] = np.eye(3, dtype=np.float32)[(evaluation.labels[120:] + 1) % 3]
    found = slices.evaluate(masks, logits, evaluation)
    assert found["dark"] == SliceMetrics(100, found["dark"].metrics)
    assert found["dark"].metrics["accuracy"] == 0.0 and found["pits"].samples > 0


def test_a_slice_the_dataset_cannot_select_is_refused_naming_the_field() -> None:
    bad = [GateSlice.model_validate({"name": "x", "class": "dent", "min": 0})]
    with pytest.raises(InvalidSpecError, match=r"gate.slices\[0\].class: 'dent' is not a class"):
        slices.check(bad, CLASSES, image_statistics(CLASSES), has_production=False)
    out = [GateSlice.model_validate({"name": "x", "min": 0, "inputStatistic": {
        "statistic": "output_confidence", "max": 0.5}})]
    with pytest.raises(InvalidSpecError, match=r"inputStatistic.statistic: 'output_confidence' "
                       r"is not a numeric input statistic.*input_brightness"):
        slices.check(out, CLASSES, image_statistics(CLASSES), has_production=False)
