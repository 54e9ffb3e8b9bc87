"""The real operator's /metrics against the real API server: a resource's series appear
while it exists and leave with it; modelship_info names the version and revision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import Kubectl, wait_for
from tests.integration.test_modeldeployment import sample
from tests.integration.test_trainingrun import training_run

pytestmark = pytest.mark.integration


@pytest.fixture
def revision_operator(cluster: LocalCluster, kubectl: Kubectl,
                      tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster.kubeconfig, tmp_path, kubectl.namespace,
                         env={"MODELSHIP_REVISION": "0123abc"})
    op.start()
    try:
        yield op
    finally:
        op.stop()


def series(op: OperatorProcess) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(op.metrics())
            for s in family.samples]


def of(op: OperatorProcess, namespace: str, name: str) -> set[str]:
    """Names of the series that carry this resource's namespace and name."""
    return {n for n, labels, _ in series(op)
            if labels.get("namespace") == namespace and labels.get("name") == name}


def test_series_of_deleted_resources_leave_metrics(
        kubectl: Kubectl, revision_operator: OperatorProcess) -> None:
    op, ns = revision_operator, kubectl.namespace
    info = [labels for n, labels, value in series(op) if n == "modelship_info" and value == 1]
    assert info == [{"version": "0.1.0", "revision": "0123abc"}]

    kubectl.apply(sample(version=1))
    kubectl.apply(training_run("defects-v1"))
    wait_for("ModelDeployment Ready in /metrics", lambda: any(
        n == "modelship_modeldeployment_phase" and labels.get("namespace") == ns
        and labels["name"] == "defects-dev" and labels["phase"] == "Ready"
        and labels["model"] == "surface-defects" and value == 1
        for n, labels, value in series(op)))
    assert "modelship_candidate_weight_percent" in of(op, ns, "defects-dev")
    wait_for("TrainingRun phase in /metrics", lambda: any(
        n == "modelship_trainingrun_phase" and labels.get("namespace") == ns
        and labels["name"] == "defects-v1" and value == 1
        for n, labels, value in series(op)))

    kubectl("delete", "md", "defects-dev", "--wait=true")
    wait_for("the ModelDeployment's series gone", lambda: not of(op, ns, "defects-dev"),
             timeout=30)
    assert of(op, ns, "defects-v1")  # the TrainingRun still exists: its series stay
    kubectl("delete", "tr", "defects-v1", "--wait=true")
    wait_for("the TrainingRun's series gone", lambda: not of(op, ns, "defects-v1"),
             timeout=30)
    assert not [labels for _, labels, _ in series(op) if labels.get("name") in (
        "defects-dev", "defects-v1")]


def test_a_spec_the_cluster_cannot_use_shows_as_failed_in_metrics(
        kubectl: Kubectl, revision_operator: OperatorProcess) -> None:
    """What ModelDeploymentNotReady alerts on: the phase series say Failed."""
    doc = sample(version=123456789012)  # the derived name exceeds 63 characters
    doc["metadata"]["name"] = "d" * 50
    kubectl.apply(doc)
    wait_for("phase Failed in /metrics", lambda: {
        labels["phase"]: value for n, labels, value in series(revision_operator)
        if n == "modelship_modeldeployment_phase" and labels.get("name") == "d" * 50
        and labels["model"] == "surface-defects"}.get("Failed") == 1)
