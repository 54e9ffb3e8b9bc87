"""The operator reads from watch caches: a converged ModelDeployment costs no API request at
all (counted by the kube-apiserver itself and by the operator's client), and a child deleted
behind the operator's back is seen through the cache and recreated."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelship_dev import apiserver_metrics, gateway_api
from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import REPO, Kubectl, wait_for
from tests.integration.test_modeldeployment import ready, sample

pytestmark = pytest.mark.integration


def _counter(operator: OperatorProcess, name: str,
             keep: Callable[[str], bool] = lambda _: True) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith(name + "{") and keep(line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _passes(operator: OperatorProcess) -> float:
    return _counter(operator, "modelship_reconciles_total",
                    lambda line: 'kind="ModelDeployment"' in line and 'result="ok"' in line)


def _requests(operator: OperatorProcess) -> float:
    """Requests the operator's client sent, watches left out."""
    return _counter(operator, "modelship_kube_requests_total",
                    lambda line: 'watch="False"' in line)


def _after_passes(operator: OperatorProcess, passes: int) -> None:
    start = _passes(operator)
    wait_for(f"{passes} reconcile passes", lambda: _passes(operator) >= start + passes,
             timeout=10 * passes)


@contextlib.contextmanager
def own_cluster(tmp_path: Path, gateway: bool) -> Iterator[tuple[LocalCluster, Kubectl]]:
    """A control plane of the test's own, with the CRDs (and the Gateway API's when
    `gateway`) and one namespace: nothing another test left behind (a namespace still
    terminating, say) sends requests the kube-apiserver would count."""
    local = LocalCluster(tmp_path / "cluster", log=lambda _line: None)
    try:
        local.up()
        local.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        if gateway:
            gateway_api.install(local)
        local.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        local.kubectl("create", "namespace", "own")
        kubectl = Kubectl(local, "own")
        wait_for("default service account",
                 lambda: kubectl("get", "sa", "default", check=False).returncode == 0)
        yield local, kubectl
    finally:
        local.down(quiet=True)


def test_converged_model_deployment_sends_no_api_request(tmp_path: Path) -> None:
    with own_cluster(tmp_path, gateway=True) as (cluster, kubectl):
        operator = OperatorProcess(cluster.kubeconfig, tmp_path / "operator", kubectl.namespace)
        operator.start()
        try:
            _no_request_once_converged(cluster, kubectl, operator)
        finally:
            operator.stop()


def _no_request_once_converged(cluster: LocalCluster, kubectl: Kubectl,
                               operator: OperatorProcess) -> None:
    before = apiserver_metrics.scrape(cluster)
    kubectl.apply(sample(version=1))
    wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
    # The apiserver's counters do see this operator: its applies and status writes.
    converging = apiserver_metrics.delta(before, apiserver_metrics.scrape(cluster))
    assert converging.get("APPLY deployments", 0) >= 1, converging
    assert converging.get("PATCH modeldeployments/status", 0) >= 1, converging

    # Settled: the passes that follow readiness (woken by the last events) send nothing.
    def quiet() -> bool:
        sent = _requests(operator)
        _after_passes(operator, 2)
        return _requests(operator) == sent
    wait_for("the operator to stop sending requests", quiet, timeout=60, interval=0)

    idle_before, sent_before = apiserver_metrics.scrape(cluster), _requests(operator)
    passes_before = _passes(operator)
    _after_passes(operator, 5)  # the resync is 1 s: five full passes, several periods
    idle = apiserver_metrics.delta(idle_before, apiserver_metrics.scrape(cluster))
    assert _passes(operator) >= passes_before + 5
    assert _requests(operator) == sent_before, operator.metrics()
    assert idle == {}, f"requests while converged (nothing else in this cluster makes " \
                       f"them): {idle}\n{operator.log_tail()}"
    assert ready(kubectl, "defects-dev", 1)


def test_deployment_deleted_behind_the_operator_is_recreated(
        cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path) -> None:
    """Cluster-wide this time (the other test runs namespaced)."""
    operator = OperatorProcess(cluster.kubeconfig, tmp_path)
    operator.start()
    try:
        kubectl.apply(sample(version=1))
        wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
        first = kubectl.get("deployment", "defects-dev-v1")
        assert first is not None
        kubectl("delete", "deployment", "defects-dev-v1", "--wait=true")

        def recreated() -> bool:
            dep = kubectl.get("deployment", "defects-dev-v1")
            return dep is not None and dep["metadata"]["uid"] != first["metadata"]["uid"]
        wait_for("the Deployment recreated", recreated, timeout=30)
        wait_for("Ready again", lambda: ready(kubectl, "defects-dev", 1))
        assert _counter(operator, "modelship_cache_events_total",
                        lambda line: 'kind="Deployment"' in line
                        and 'type="DELETED"' in line) >= 1
    finally:
        operator.stop()


def test_a_cluster_without_the_gateway_api_does_not_stop_the_operator(tmp_path: Path) -> None:
    """No GRPCRoute CRD: its cache says so and stays out of the way; a ModelDeployment
    with the replicas provider becomes Ready and is read from the other caches."""
    with own_cluster(tmp_path, gateway=False) as (local, kubectl):
        assert local.kubectl("get", "crd", "grpcroutes.gateway.networking.k8s.io",
                             check=False).returncode != 0
        operator = OperatorProcess(local.kubeconfig, tmp_path / "operator")
        operator.start()
        try:
            kubectl.apply(sample(version=1))
            wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
            log = (tmp_path / "operator" / "operator-1.log").read_text()
            assert "cache GRPCRoute: not served by this cluster" in log
        finally:
            operator.stop()
