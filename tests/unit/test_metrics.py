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
