"""Per-check verdicts and the counters of a run."""

from __future__ import annotations

import math

import pytest

from modelship.core.analysis import Measurement, aggregate, record_run, threshold_text, verdict
from modelship_api.modeldeployment import AnalysisStatus, Check, CheckResult
from tests.unit.rollout.sim import analysis

ERRORS = Check(name="errors", builtin="errorRatio", max=0.01)
LATENCY = Check(name="latency", builtin="meanLatency", max=1.5, relative_to_stable=True)
BAND = Check(name="band", query="q", min=0.9, max=1.1)


@pytest.mark.parametrize(("measurement", "result", "value", "message"), [
    (Measurement(value=0.001), "Successful", 0.001, ""),
    (Measurement(value=0.01), "Successful", 0.01, ""),
    (Measurement(value=0.2), "Failed", 0.2, "0.2 is above max 0.01"),
    (Measurement(value=None), "Inconclusive", None, "candidate: no data"),
    (Measurement(value=math.nan), "Inconclusive", None,
     "candidate: NaN (no requests in the window?)"),
    (Measurement(value=math.inf), "Inconclusive", None, "candidate: inf"),
    (Measurement(error="timeout after 2s"), "Inconclusive", None,
     "query failed: timeout after 2s"),
])
def test_absolute_check(measurement: Measurement, result: str, value: float | None,
                        message: str) -> None:
    got = verdict(ERRORS, measurement, "2025-01-01T00:00:00Z")
    assert (got.result, got.value, got.message) == (result, value, message)
    assert got.threshold == "max 0.01"
    assert got.at == "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(("candidate", "stable", "result", "value"), [
    (10.0, 10.0, "Successful", 1.0),
    (15.0, 10.0, "Successful", 1.5),
    (16.0, 10.0, "Failed", 1.6),
    (0.0, 0.0, "Successful", 1.0),  # both idle-fast: equal
    (3.0, 0.0, "Failed", None),  # unbounded ratio
    (10.0, None, "Inconclusive", None),
    (10.0, math.nan, "Inconclusive", None),
    (10.0, -1.0, "Inconclusive", None),
])
def test_relative_check(candidate: float, stable: float | None, result: str,
                        value: float | None) -> None:
    got = verdict(LATENCY, Measurement(value=candidate, stable=stable))
    assert (got.result, got.value) == (result, value)
    assert got.threshold == "max 1.5x stable"


def test_relative_stored_values_are_json_safe() -> None:
    got = verdict(LATENCY, Measurement(value=12.0, stable=10.0))
    assert got.stable_value == 10.0
    assert verdict(LATENCY, Measurement(value=1.0, stable=math.nan)).stable_value is None


def test_min_and_max() -> None:
    assert verdict(BAND, Measurement(value=0.8)).message == "0.8 is below min 0.9"
    assert verdict(BAND, Measurement(value=1.0)).result == "Successful"
    assert verdict(BAND, Measurement(value=1.2)).result == "Failed"
    assert threshold_text(BAND) == "min 0.9, max 1.1"


def _result(kind: str, name: str = "c") -> CheckResult:
    return CheckResult(name=name, result=kind, value=1.0, threshold="max 0.5",
                       message="why")


@pytest.mark.parametrize(("kinds", "overall"), [
    (["Successful", "Successful"], "Successful"),
    (["Successful", "Inconclusive"], "Inconclusive"),
    (["Inconclusive", "Failed"], "Failed"),
    ([], "Inconclusive"),
])
def test_aggregate(kinds: list[str], overall: str) -> None:
    assert aggregate([_result(k) for k in kinds]) == overall


def test_consecutive_failures_reach_the_limit() -> None:
    spec = analysis(failure_limit=3)
    status = AnalysisStatus()
    for expected in ("continue", "continue", "rollback"):
        status, outcome = record_run(spec, status, [_result("Failed", "errors")], "t")
        assert outcome.action == expected
    assert status.consecutive_failures == 3
    assert outcome.reason == "errors=1 (max 0.5): why (3 failed runs in a row, limit 3)"


def test_success_resets_failures_and_inconclusive_keeps_them() -> None:
    spec = analysis(failure_limit=2)
    status, _ = record_run(spec, AnalysisStatus(), [_result("Failed")], "t1")
    status, outcome = record_run(spec, status, [_result("Inconclusive")], "t2")
    assert (status.consecutive_failures, outcome.action) == (1, "continue")
    status, outcome = record_run(spec, status, [_result("Failed")], "t3")
    assert outcome.action == "rollback"
    status, _ = record_run(spec, AnalysisStatus(consecutive_failures=1), [_result("Successful")],
                           "t4")
    assert (status.consecutive_failures, status.successful_runs, status.last_result) == (
        0, 1, "Successful")
    assert status.last_run_at == "t4"


@pytest.mark.parametrize(("policy", "action"), [("Hold", "hold"), ("Rollback", "rollback")])
def test_inconclusive_limit_applies_the_policy(policy: str, action: str) -> None:
    spec = analysis(inconclusive_limit=2, inconclusive_policy=policy)
    status, outcome = record_run(spec, AnalysisStatus(), [_result("Inconclusive")], "t")
    assert outcome.action == "continue"
    status, outcome = record_run(spec, status, [_result("Inconclusive")], "t")
    assert outcome.action == action
    assert "2 inconclusive runs in a row, limit 2" in outcome.reason


def test_failure_breaks_a_run_of_inconclusive_results() -> None:
    spec = analysis(inconclusive_limit=2, failure_limit=5)
    status, _ = record_run(spec, AnalysisStatus(), [_result("Inconclusive")], "t")
    status, _ = record_run(spec, status, [_result("Failed")], "t")
    status, outcome = record_run(spec, status, [_result("Inconclusive")], "t")
    assert (status.consecutive_inconclusive, outcome.action) == (1, "continue")
