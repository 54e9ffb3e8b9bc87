"""The simulated data plane hack/bench's rollout benchmarks share: a local control plane, the
operator, one Triton process serving every model version (explicit model control) and a bare
Prometheus scraping it every second. No node agent and no gateway: the benchmarks' traffic
generator plays the gateway's part (modelship_dev.traffic)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelship_dev import gateway_api
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo import install_crds
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.triton import TritonServer


@dataclass(frozen=True)
class SimulatedPlane:
    work: Path
    repo: Path  # Triton's model repository: write models here, then load them
    cluster: LocalCluster
    operator: OperatorProcess  # running; a benchmark may kill and restart it
    triton: TritonServer
    prometheus: PrometheusProcess


@contextmanager
def simulated_plane(namespace: str) -> Iterator[SimulatedPlane]:
    """Everything started, `namespace` created; all of it stopped and deleted on exit."""
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    repo = work / "repo"
    repo.mkdir()
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        stack.callback(cluster.down)
        cluster.up()
        install_crds(cluster)
        gateway_api.install(cluster)
        cluster.kubectl("create", "namespace", namespace)
        # Resync 1 s as in the tests; a restarted operator acts at once (no leader election).
        operator = OperatorProcess(cluster.kubeconfig, work / "logs", namespace,
                                   env={"MODELSHIP_ANALYSIS_NAMESPACE_LABEL": ""})
        stack.callback(operator.stop)
        operator.start()
        triton = stack.enter_context(
            TritonServer(repo, work, extra_args=["--model-control-mode=explicit"]))
        prometheus = stack.enter_context(PrometheusProcess(
            work / "prometheus", scrape_interval="1s",
            static_targets=[f"127.0.0.1:{triton.metrics_port}"]))
        yield SimulatedPlane(work, repo, cluster, operator, triton, prometheus)
