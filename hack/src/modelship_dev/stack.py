"""The data plane and control loop on top of a running local cluster, brought up and torn
down together: a node agent whose pods are real processes, the local gateway, a Prometheus
that discovers the namespace's pods through the API server, and the operator.

The operator is either a process on this machine watching the namespace (the tests' default:
fast to restart, kill or read) or, with `in_cluster`, the chart installed with `helm install`
as a platform team would: its pod runs from the operator image on the node agent, untainted
as `modelship dev up` starts it, and Prometheus listens on the bridge address that pods reach.

Everything started is stopped by `close()`, in reverse order, even when a later start failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from modelship_dev.cluster import LocalCluster
from modelship_dev.gateway import LocalGateway
from modelship_dev.helm import ChartOperator
from modelship_dev.nodeagent.hostnet import GATEWAY
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import HOST, KubernetesPods, PrometheusProcess
from modelship_dev.workload import NODE, NODE_TAINT


class LocalStack:
    def __init__(self, cluster: LocalCluster, workdir: Path, namespace: str,
                 log: Callable[[str], None] = lambda _m: None, in_cluster: bool = False
                 ) -> None:
        self.cluster, self.workdir, self.namespace, self.log = cluster, workdir, namespace, log
        self.in_cluster = in_cluster
        self.gateway = LocalGateway(cluster, workdir / "gateway", log=log)
        self.prometheus = PrometheusProcess(
            workdir / "prometheus", scrape_interval="1s",
            kubernetes=KubernetesPods(cluster.kubeconfig, [namespace]),
            host=str(GATEWAY.ip) if in_cluster else HOST)
        self.operator: OperatorProcess | ChartOperator = (
            ChartOperator(cluster, workdir / "operator", node=NODE) if in_cluster
            else OperatorProcess(cluster.kubeconfig, workdir / "operator", namespace))
        self._cleanup = contextlib.ExitStack()

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        ns = self.namespace
        if self.cluster.kubectl("get", "namespace", ns, check=False).returncode != 0:
            self.cluster.kubectl("create", "namespace", ns)
        # Workload pods tolerate the taint; the chart's operator pod, as a user installs
        # it, does not: in-cluster the node is left untainted.
        self.cluster.start_node_agent(
            NODE, taints=[] if self.in_cluster else [f"{NODE_TAINT}=true:NoSchedule"])
        self._cleanup.callback(self.cluster.stop_node_agent, NODE)
        self.log(f"node agent up: pods on node {NODE} run from their images")
        self._cleanup.callback(self.gateway.stop)
        self.gateway.start()
        self._cleanup.callback(self.prometheus.stop)
        self.prometheus.start()
        self.log(f"Prometheus up at {self.prometheus.url}, discovering pods in {ns}")
        self._cleanup.callback(self.operator.stop)
        self.operator.start()
        if isinstance(self.operator, ChartOperator):
            self.log(f"operator installed with helm install ({self.operator.release} in "
                     f"{self.operator.namespace}): its pod Ready "
                     f"{self.operator.ready_s:.1f}s after helm install began")
        else:
            self.log(f"operator running (watching namespace {ns})")
        # On close, first the namespace, while the agent still kills the pods' processes;
        # before it, the resources, while the operator still releases its finalizers: a
        # namespace-scoped Kopf operator stops watching a namespace as soon as its deletion
        # reports only False conditions, which it does before it lists what remains.
        self._cleanup.callback(self.cluster.kubectl, "delete", "namespace", ns,
                               "--timeout=120s", check=False)
        self._cleanup.callback(self.cluster.kubectl, "-n", ns, "delete",
                               "modeldeployments,trainingruns", "--all", "--timeout=60s",
                               check=False)

    def close(self) -> None:
        self._cleanup.close()
