"""The local monitoring path on the real API server: the built Prometheus Operator turns the
chart's PodMonitor, ServiceMonitor and PrometheusRule into the configuration a host
Prometheus runs; the operator's metrics are found through the chart's Service; a change to
the rules reaches the running Prometheus; its alerts reach a real Alertmanager."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelship_dev.cluster import LocalCluster, free_port
from modelship_dev.monitoring import LocalMonitoring, chart_monitors
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import Kubectl, wait_for

pytestmark = pytest.mark.integration

JOB = "modelship-operator-metrics"  # the chart's metrics Service of release `modelship`


@pytest.fixture
def monitoring(cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path
               ) -> Iterator[LocalMonitoring]:
    if os.geteuid() != 0:
        pytest.fail("the operator's endpoint is the node agent's bridge address: needs root")
    mon = LocalMonitoring(cluster, tmp_path / "monitoring", kubectl.namespace,
                          chart_values={"monitoring.prometheusRule.operatorDownFor": "2s"})
    mon.start()
    try:
        yield mon
    finally:
        mon.close()
    assert not mon.prometheus.alive() and not mon.alertmanager.alive()


@pytest.fixture
def host_operator(cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path,
                  monitoring: LocalMonitoring) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster.kubeconfig, tmp_path / "operator", kubectl.namespace,
                         metrics_port=free_port())
    op.start()
    monitoring.register_operator(op.metrics_port)
    try:
        yield op
    finally:
        op.stop()


def alert_rules(mon: LocalMonitoring) -> dict[str, dict[str, Any]]:
    groups = httpx.get(f"{mon.prometheus.url}/api/v1/rules", params={"type": "alert"},
                       timeout=5).json()["data"]["groups"]
    return {r["name"]: r for g in groups for r in g["rules"]}


def test_prometheus_runs_what_the_operator_generated_from_the_chart(
        monitoring: LocalMonitoring, host_operator: OperatorProcess, kubectl: Kubectl) -> None:
    ns = kubectl.namespace
    # The ServiceMonitor selected the chart's Service: the operator is scraped under the
    # job the ModelshipOperatorDown rule names.
    target = wait_for("the operator scraped through the ServiceMonitor", lambda: [
        t for t in monitoring.prometheus.active_targets()
        if t["labels"].get("job") == JOB and t["health"] == "up"], timeout=60)
    assert target[0]["labels"]["namespace"] == ns
    assert target[0]["scrapeUrl"].endswith(f":{host_operator.metrics_port}/metrics")
    # The PodMonitor's job is there too (no Triton pod runs in this test).
    pools = httpx.get(f"{monitoring.prometheus.url}/api/v1/scrape_pools",
                      timeout=5).json()["data"]["scrapePools"]
    assert f"podMonitor/{ns}/modelship-triton/0" in pools
    # The chart's rules, with the chart values' `for:`, evaluated every second.
    rules = alert_rules(monitoring)
    assert {n: r["duration"] for n, r in rules.items()} == {
        "ModelRolledBack": 0, "ModelDeploymentNotReady": 600, "ModelshipOperatorDown": 2,
        # The model alerts follow the operator's conditions, whose hysteresis is the delay.
        "ModelDataDrift": 0, "ModelPredictionDrift": 0, "ModelStale": 0,
        "ModelNonFiniteOutputs": 0, "ModelSamplingStopped": 300}
    wait_for("ModelshipOperatorDown inactive", lambda: alert_rules(monitoring)[
        "ModelshipOperatorDown"]["state"] == "inactive", timeout=30)
    assert not [a for a in monitoring.alertmanager.alerts()
                if a["labels"]["alertname"] == "ModelshipOperatorDown"]

    # A changed PrometheusRule reaches the running Prometheus without a restart.
    pid = monitoring.prometheus.proc.pid if monitoring.prometheus.proc else None
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": chart_monitors(
        ns, {"monitoring.prometheusRule.operatorDownFor": "2s",
             "monitoring.prometheusRule.notReadyFor": "7s",
             "monitoring.podMonitor.interval": "1s",
             "monitoring.serviceMonitor.interval": "1s"})})
    wait_for("the new for: loaded", lambda: alert_rules(monitoring)[
        "ModelDeploymentNotReady"]["duration"] == 7, timeout=30)
    assert monitoring.prometheus.proc is not None and monitoring.prometheus.proc.pid == pid

    # The operator stops: the alert reaches Alertmanager, labelled as the rule says.
    host_operator.stop()
    alert = monitoring.wait_alert("ModelshipOperatorDown",
                                  lambda labels: labels.get("namespace") == ns, timeout=30)
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["job"] == JOB
    assert alert["annotations"]["summary"].startswith("The modelship operator is not running")
