"""How fast a rollback pages: the whole local loop (hack/bench/rollback.py --data-plane full:
Triton pods, Envoy Gateway, the Prometheus Operator's Prometheus with the chart's PodMonitor,
ServiceMonitor and PrometheusRule, Alertmanager), 1 s scrape and 1 s rule evaluation.

For each run a fresh model gets a good v1, then a failing v2 behind a canary; printed per
run and as p50/max: first failed request -> status RolledBack -> ModelRolledBack for that
model in Alertmanager's v2 API. Needs root (node agent, gateway).

    flock /tmp/modelship-gateway.lock .venv/bin/python hack/bench/alerting.py [--runs 5]

`--data-plane simulated`: no node agent and no gateway (one Triton process serves both
versions, the traffic generator plays the gateway, a bare Prometheus scrapes it for the
analysis, as in rollback.py); the alert path is the same: the Prometheus Operator's
Prometheus scrapes the operator through the chart's ServiceMonitor, evaluates the chart's
PrometheusRule and sends to Alertmanager. Needs root for the operator's endpoint address.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rollback import NAMESPACE, gateway_canary, phase, simulated_canary, wait

from modelship_dev import gateway_api, tools
from modelship_dev.cluster import LocalCluster, free_port
from modelship_dev.demo import install_crds
from modelship_dev.monitoring import AlertmanagerProcess, LocalMonitoring
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.stack import LocalStack
from modelship_dev.triton import TritonServer


def paged(am: AlertmanagerProcess, model: str) -> bool:
    return any(a["labels"].get("alertname") == "ModelRolledBack"
               and a["labels"].get("model") == model for a in am.alerts())


def one_simulated_run(cluster: LocalCluster, triton: TritonServer, repo: Path, prom: str,
                      am: AlertmanagerProcess) -> tuple[float, float]:
    with simulated_canary(cluster, triton, repo, prom, "failing") as gen:
        wait("RolledBack", lambda: phase(cluster).get("phase") == "RolledBack", 90, 0.05)
        rolled_back = time.monotonic()
        failed_at = gen.stats.first_failure_at.get(2)
        assert failed_at is not None, "RolledBack without a failed request"
        wait("ModelRolledBack in Alertmanager", lambda: paged(am, gen.model), 60, 0.05)
        return rolled_back - failed_at, time.monotonic() - rolled_back


def simulated(cluster: LocalCluster, work: Path, repo: Path, runs: int
              ) -> list[tuple[float, float]]:
    gateway_api.install(cluster)
    cluster.kubectl("create", "namespace", NAMESPACE)
    found: list[tuple[float, float]] = []
    with contextlib.ExitStack() as stack:
        monitoring = LocalMonitoring(cluster, work / "monitoring", NAMESPACE)
        monitoring.start()
        stack.callback(monitoring.close)
        operator = OperatorProcess(cluster.kubeconfig, work / "logs", NAMESPACE,
                                   env={"MODELSHIP_ANALYSIS_NAMESPACE_LABEL": ""},
                                   metrics_port=free_port())
        operator.start()
        stack.callback(operator.stop)
        monitoring.register_operator(operator.metrics_port)
        triton = stack.enter_context(
            TritonServer(repo, work, extra_args=["--model-control-mode=explicit"]))
        analysis = stack.enter_context(PrometheusProcess(
            work / "analysis-prometheus", scrape_interval="1s",
            static_targets=[f"127.0.0.1:{triton.metrics_port}"]))
        for i in range(runs):
            found.append(one_simulated_run(cluster, triton, repo, analysis.url,
                                           monitoring.alertmanager))
            print_run(i, *found[-1])
    return found


def print_run(i: int, to_status: float, to_alert: float) -> None:
    print(f"run {i + 1}: first failure -> RolledBack {to_status:.2f}s, "
          f"-> ModelRolledBack in Alertmanager {to_alert:.2f}s later "
          f"({to_status + to_alert:.2f}s in all)", flush=True)


def one_run(stack: LocalStack, repo: Path) -> tuple[float, float]:
    """(first failed request -> status RolledBack, status RolledBack -> alert in
    Alertmanager), in seconds."""
    cluster, am = stack.cluster, stack.monitoring.alertmanager
    with gateway_canary(stack, repo, "failing") as client:
        wait("RolledBack", lambda: phase(cluster).get("phase") == "RolledBack", 180, 0.05)
        rolled_back = time.monotonic()
        failed_at = client.first_failure_at
        assert failed_at is not None, "RolledBack without a failed request"
        wait("ModelRolledBack in Alertmanager", lambda: paged(am, client.model), 60, 0.05)
        return rolled_back - failed_at, time.monotonic() - rolled_back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-plane", choices=["full", "simulated"], default="full")
    args = parser.parse_args()
    tools.build_all(log=lambda _line: None)
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    repo = work / "repo"
    repo.mkdir()
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    runs: list[tuple[float, float]] = []
    try:
        cluster.up()
        install_crds(cluster)
        if args.data_plane == "simulated":
            runs = simulated(cluster, work, repo, args.runs)
        else:
            with LocalStack(cluster, work, NAMESPACE) as stack:
                for i in range(args.runs):
                    runs.append(one_run(stack, repo))
                    print_run(i, *runs[-1])
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    for what, values in (("status RolledBack -> alert in Alertmanager", [b for _, b in runs]),
                         ("first failed request -> alert in Alertmanager",
                          [a + b for a, b in runs])):
        print(f"{args.data_plane} data plane, {what} ({len(values)} runs, 1 s scrape, "
              "1 s evaluation): "
              f"p50 {statistics.median(values):.2f}s, max {max(values):.2f}s")


if __name__ == "__main__":
    main()
