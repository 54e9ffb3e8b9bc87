"""The operator's metrics: docs/metrics.md matches the code; series bookkeeping."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Gauge

from modelship.adapters import metrics
from modelship.core.rollout import Decision
from modelship_api.modeldeployment import CheckResult, HistoryEntry, ModelDeploymentStatus

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_docs_metrics_md_is_generated_from_the_code() -> None:
    assert DOC.read_text() == metrics.markdown(), (
        "docs/metrics.md differs from the metrics in the code: run "
        "`python -m modelship.adapters.metrics > docs/metrics.md`")


def test_the_doc_names_every_metric_with_type_and_labels() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in DOC.read_text().splitlines()
            if line.startswith("| `modelship_")}
    assert set(rows) >= {"modelship_info", "modelship_rollbacks_total",
                         "modelship_modeldeployment_phase", "modelship_trainingrun_phase"}
    assert "| counter | `namespace`, `name`, `model`, `check` |" in \
        rows["modelship_rollbacks_total"]


def _labelsets(metric: Gauge) -> set[tuple[str, ...]]:
    return set(metric._metrics)


def test_forget_removes_every_series_of_one_resource_only() -> None:
    metrics.set_phase(metrics.PHASE, "ns", "a", "m", "Ready", ("Ready", "Failed"))
    metrics.set_phase(metrics.PHASE, "ns", "b", "m", "Failed", ("Ready", "Failed"))
    metrics.ANALYSIS_VALUE.labels(namespace="ns", name="a", check="errors").set(0.1)
    metrics.forget_model_deployment("ns", "a")
    assert {s[:2] for s in _labelsets(metrics.PHASE) if s[0] == "ns"} == {("ns", "b")}
    assert not [s for s in metrics.ANALYSIS_VALUE._metrics if s[:2] == ("ns", "a")]
    metrics.forget_model_deployment("ns", "b")


def test_a_changed_model_drops_the_old_models_phase_series() -> None:
    metrics.set_phase(metrics.PHASE, "ns2", "a", "old", "Ready", ("Ready", "Failed"))
    metrics.set_phase(metrics.PHASE, "ns2", "a", "new", "Failed", ("Ready", "Failed"))
    assert {s for s in _labelsets(metrics.PHASE) if s[0] == "ns2"} == {
        ("ns2", "a", "new", "Ready"), ("ns2", "a", "new", "Failed")}
    metrics.forget_model_deployment("ns2", "a")


def _decision(reason: str, *results: tuple[str, str]) -> Decision:
    run = tuple(CheckResult(name=n, result=r, at="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
                for n, r in results)
    return Decision(status=ModelDeploymentStatus(), actions=(),
                    finished=HistoryEntry(version=2, outcome="RolledBack", reason=reason),
                    analysis_run=run or None)


def test_rollback_cause_names_the_failing_checks_or_a_bounded_word() -> None:
    assert metrics.rollback_cause(_decision(
        "errors failed", ("latency", "Failed"), ("errors", "Failed"), ("x", "Successful"))
    ) == "errors,latency"
    assert metrics.rollback_cause(_decision(
        "ProgressDeadlineExceeded: version 2 not ready within 600s")) == \
        "ProgressDeadlineExceeded"
    assert metrics.rollback_cause(_decision(
        "version 2 not ready for longer than the progress deadline")) == "NotReady"
    assert metrics.rollback_cause(_decision(
        "the traffic provider cannot mirror requests")) == "MirrorUnsupported"


def test_monitoring_series_follow_status_and_leave_with_the_resource() -> None:
    from modelship_api.common import Condition
    from modelship_api.monitoring import MonitoringStatus, StatisticStatus
    status = MonitoringStatus(
        version=3, model_age_seconds=86400.0, age_source="PublishTime", statistics=[
            StatisticStatus(name="input_brightness", source="input", result="Drift", psi=0.7),
            StatisticStatus(name="predicted_class", source="output", result="Inconclusive")])
    conditions = [Condition(type="DataDrift", status="True"),
                  Condition(type="Stale", status="Unknown"),
                  Condition(type="Ready", status="True")]
    metrics.set_monitoring("ns3", "a", status, conditions)
    metrics.set_monitoring("ns3", "b", status, conditions)
    assert metrics.DRIFT_SCORE.labels(namespace="ns3", name="a",
                                      statistic="input_brightness")._value.get() == 0.7
    # No score while Inconclusive; one series per monitoring condition only.
    assert {s[2] for s in _labelsets(metrics.DRIFT_SCORE) if s[:2] == ("ns3", "a")} == \
        {"input_brightness"}
    assert {(s[2], metrics.MONITORING_CONDITION.labels(*s)._value.get())
            for s in _labelsets(metrics.MONITORING_CONDITION) if s[:2] == ("ns3", "a")} == \
        {("DataDrift", 1.0), ("Stale", 0.0)}
    # The age says where it counts from: here a lower bound from the publish time.
    assert [s for s in _labelsets(metrics.MODEL_AGE) if s[:2] == ("ns3", "a")] == [
        ("ns3", "a", "PublishTime")]
    assert metrics.MODEL_AGE.labels("ns3", "a", "PublishTime")._value.get() == 86400.0
    metrics.forget_model_deployment("ns3", "a")
    for metric in (metrics.DRIFT_SCORE, metrics.MODEL_AGE, metrics.MONITORING_CONDITION):
        assert not [s for s in _labelsets(metric) if s[:2] == ("ns3", "a")]
        assert [s for s in _labelsets(metric) if s[:2] == ("ns3", "b")]
    metrics.set_monitoring("ns3", "b", None, [])  # monitoring turned off: no series
    for metric in (metrics.DRIFT_SCORE, metrics.MODEL_AGE, metrics.MONITORING_CONDITION):
        assert not [s for s in _labelsets(metric) if s[:2] == ("ns3", "b")]


def test_each_resources_series_are_indexed_by_namespace_and_name() -> None:
    # A pass finds its own resource's series through the index, never by scanning every
    # resource's (what made an idle operator of 1,000 resources busy).
    for metric in (*metrics._PER_MODEL_DEPLOYMENT, *metrics._PER_TRAINING_RUN):
        assert isinstance(metric, metrics._PerResource)
        assert tuple(metric._labelnames[:2]) == ("namespace", "name")
    metrics.set_phase(metrics.PHASE, "ns4", "a", "m", "Ready", ("Ready", "Failed"))
    metrics.ANALYSIS_VALUE.labels("ns4", "a", "errors").set(0.1)
    metrics.ANALYSIS_VALUE.labels(namespace="ns4", name="b", check="errors").set(0.2)
    assert set(metrics.PHASE.series_of("ns4", "a")) == {
        ("ns4", "a", "m", "Ready"), ("ns4", "a", "m", "Failed")}
    assert metrics.ANALYSIS_VALUE.series_of("ns4", "a") == [("ns4", "a", "errors")]
    metrics.forget_model_deployment("ns4", "a")
    assert metrics.PHASE.series_of("ns4", "a") == []
    assert metrics.ANALYSIS_VALUE.series_of("ns4", "a") == []
    assert metrics.ANALYSIS_VALUE.series_of("ns4", "b") == [("ns4", "b", "errors")]
    metrics.forget_model_deployment("ns4", "b")
    assert not [s for s in metrics.ANALYSIS_VALUE._metrics if s[0] == "ns4"]
