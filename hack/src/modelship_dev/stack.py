"""The data plane and control loop on top of a running local cluster, brought up and torn
down together: a node agent whose pods are real processes, the local gateway, the monitoring
(Prometheus Operator, the Prometheus it configures from the chart's monitors and rules, and
Alertmanager; see monitoring.py), and the operator, whose metrics the chart's ServiceMonitor
finds through a Service and EndpointSlice naming the host process.

Everything started is stopped by `close()`, in reverse order, even when a later start failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from modelship_dev.cluster import LocalCluster, free_port
from modelship_dev.gateway import LocalGateway
from modelship_dev.monitoring import LocalMonitoring
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.workload import NODE, NODE_TAINT


class LocalStack:
    def __init__(self, cluster: LocalCluster, workdir: Path, namespace: str,
                 log: Callable[[str], None] = lambda _m: None,
                 chart_values: dict[str, str] | None = None) -> None:
        """`chart_values`: `--set`s for the chart's monitoring objects (e.g. an alert's
        `for:`), on top of 1 s scrape intervals."""
        self.cluster, self.workdir, self.namespace, self.log = cluster, workdir, namespace, log
        self.gateway = LocalGateway(cluster, workdir / "gateway", log=log)
        self.monitoring = LocalMonitoring(cluster, workdir / "monitoring", namespace,
                                          interval="1s", chart_values=chart_values, log=log)
        self.operator = OperatorProcess(cluster.kubeconfig, workdir / "operator", namespace,
                                        metrics_port=free_port())
        self._cleanup = contextlib.ExitStack()

    @property
    def prometheus(self) -> PrometheusProcess:
        return self.monitoring.prometheus

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
        self.cluster.start_node_agent(NODE, taints=[f"{NODE_TAINT}=true:NoSchedule"])
        self._cleanup.callback(self.cluster.stop_node_agent, NODE)
        self.log(f"node agent up: pods on node {NODE} run as local processes")
        self._cleanup.callback(self.gateway.stop)
        self.gateway.start()
        self._cleanup.callback(self.monitoring.close)
        self.monitoring.start()
        self._cleanup.callback(self.operator.stop)
        self.operator.start()
        self.monitoring.register_operator(self.operator.metrics_port)
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
