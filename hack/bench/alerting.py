"""How fast a rollback pages: the whole local loop (hack/bench/rollback.py --data-plane full:
Triton pods, Envoy Gateway, the Prometheus Operator's Prometheus with the chart's PodMonitor,
ServiceMonitor and PrometheusRule, Alertmanager), 1 s scrape and 1 s rule evaluation.

For each run a fresh model gets a good v1, then a failing v2 behind a canary; printed per
run and as p50/max: first failed request -> status RolledBack -> ModelRolledBack for that
model in Alertmanager's v2 API. Needs root (node agent, gateway).

    flock /tmp/modelship-gateway.lock .venv/bin/python hack/bench/alerting.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from rollback import NAMESPACE, GatewayClient, full_deployment, phase, wait

from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo import install_crds
from modelship_dev.stack import LocalStack
from modelship_dev.traffic import write_model


def one_run(stack: LocalStack, repo: Path) -> tuple[float, float]:
    """(first failed request -> status RolledBack, status RolledBack -> alert in
    Alertmanager), in seconds."""
    cluster, am = stack.cluster, stack.monitoring.alertmanager
    model = f"b{uuid.uuid4().hex[:8]}"
    write_model(repo, model, {1: "good", 2: "failing"})

    def apply(version: int) -> None:
        cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(full_deployment(
            model, version, stack.prometheus.url, repo, stack.gateway.parent_ref)))

    def paged() -> bool:
        return any(a["labels"].get("alertname") == "ModelRolledBack"
                   and a["labels"].get("model") == model for a in am.alerts())
    try:
        apply(1)
        wait("v1 Ready", lambda: phase(cluster).get("stableVersion") == 1, 180, 0.3)
        with GatewayClient(stack.gateway.url, model) as client:
            wait("answers through the gateway", lambda: client.ok >= 50, 60)
            client.failed, client.first_failure_at = 0, None
            apply(2)
            wait("RolledBack", lambda: phase(cluster).get("phase") == "RolledBack", 180, 0.05)
            rolled_back = time.monotonic()
            failed_at = client.first_failure_at
            assert failed_at is not None, "RolledBack without a failed request"
        wait("ModelRolledBack in Alertmanager", paged, 60, 0.05)
        return rolled_back - failed_at, time.monotonic() - rolled_back
    finally:
        cluster.kubectl("-n", NAMESPACE, "delete", "md", "md", "--wait=true", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
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
        with LocalStack(cluster, work, NAMESPACE) as stack:
            for i in range(args.runs):
                to_status, to_alert = one_run(stack, repo)
                runs.append((to_status, to_alert))
                print(f"run {i + 1}: first failure -> RolledBack {to_status:.2f}s, "
                      f"-> ModelRolledBack in Alertmanager {to_alert:.2f}s later "
                      f"({to_status + to_alert:.2f}s in all)")
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    for what, values in (("status RolledBack -> alert in Alertmanager", [b for _, b in runs]),
                         ("first failed request -> alert in Alertmanager",
                          [a + b for a, b in runs])):
        print(f"{what} ({len(values)} runs, 1 s scrape, 1 s evaluation): "
              f"p50 {statistics.median(values):.2f}s, max {max(values):.2f}s")


if __name__ == "__main__":
    main()
