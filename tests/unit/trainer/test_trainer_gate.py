"""The gate: fixed thresholds and the comparison with production, as a pure function."""

from __future__ import annotations

from modelship_api.trainingrun import Baseline, Gate, Threshold
from modelship_trainer.gate import Production, decide

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
