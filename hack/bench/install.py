"""Time from `helm install` of charts/modelship to the operator at work, on the real
control plane.

Each round installs the chart (README's command, default values) into a fresh release
namespace, then starts the operator as its pod would run (modelship_dev.helm: the
Deployment's arguments and environment, a token of the chart's ServiceAccount) and
measures from the start of `helm install` to (a) its return, (b) the operator's /healthz
answering, (c) its holding the chart's Lease and (d) the sample ModelDeployment's first
status write (the first round also creates the CRDs). The chart's own pods stay Pending
(kwok's nodes are tainted), so the process here stands in for them: pulling and starting
an image are not counted. Then it uninstalls.

With `--pod` (root: it starts the node agent, untainted as `modelship dev up` does) the
operator is the chart's own pod, run from the local operator image (`make images`): (b) is
then the pod Ready (its readiness probe passed), image unpacking and container start
included.

    .venv/bin/python hack/bench/install.py [--rounds 5] [--pod]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from modelship_dev import polling, tools
from modelship_dev.cluster import SIMULATED_TOLERATION, LocalCluster
from modelship_dev.helm import ChartOperator, Helm, operator_deployment, operator_like_the_pod

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "modeldeployment-local.yaml"
STAGES = ("helm install", "operator live", "leader", "first reconcile")
POD_STAGES = ("helm install", "operator pod Ready", "leader", "first reconcile")


def sample_on_kwok() -> str:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["runtime"]["tolerations"] = [SIMULATED_TOLERATION]
    return yaml.safe_dump(doc)


def status_written(cluster: LocalCluster, namespace: str) -> bool:
    out = cluster.kubectl("-n", namespace, "get", "md", "defects-dev", "-o", "json",
                          check=False)
    return out.returncode == 0 and bool(
        (json.loads(out.stdout).get("status") or {}).get("observedGeneration"))


def lease_held(cluster: LocalCluster, namespace: str, name: str, holder: str) -> bool:
    out = cluster.kubectl("-n", namespace, "get", "lease", name, "-o", "json", check=False)
    return out.returncode == 0 and str(
        (json.loads(out.stdout).get("spec") or {}).get("holderIdentity") or "").startswith(holder)


def lead_and_reconcile(cluster: LocalCluster, namespace: str, lease: str, holder: str,
                       workload: str, started: float) -> dict[str, float]:
    """Seconds from `started` until `holder` leads and until a ModelDeployment applied then
    gets its first status write."""
    polling.wait("the Lease", lambda: lease_held(cluster, namespace, lease, holder),
                 timeout=60, interval=0.05)
    times = {"leader": time.monotonic() - started}
    cluster.kubectl("-n", workload, "apply", "-f", "-", input_text=sample_on_kwok())
    polling.wait("the first status write", lambda: status_written(cluster, workload),
                 timeout=60, interval=0.05)
    times["first reconcile"] = time.monotonic() - started
    cluster.kubectl("-n", workload, "delete", "md", "--all", "--timeout=60s")
    return times


def one_round(cluster: LocalCluster, helm: Helm, work: Path, n: int) -> dict[str, float]:
    release = namespace = f"modelship-{n}"
    workload = f"bench-{n}"
    cluster.kubectl("create", "namespace", workload)
    started = time.monotonic()
    helm.install(release, namespace)
    times = {"helm install": time.monotonic() - started}
    dep = operator_deployment(cluster, release, namespace)
    op = operator_like_the_pod(cluster, dep, work / f"round-{n}", "bench")
    try:
        op.start(timeout=60)
        times["operator live"] = time.monotonic() - started
        times |= lead_and_reconcile(cluster, namespace, dep["metadata"]["name"], "bench",
                                    workload, started)
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", workload, "--wait=false", check=False)
        helm.uninstall(release, namespace)
    return times


def pod_round(cluster: LocalCluster, work: Path, n: int) -> dict[str, float]:
    release = namespace = f"modelship-{n}"
    workload = f"bench-{n}"
    cluster.kubectl("create", "namespace", workload)
    op = ChartOperator(cluster, work / f"round-{n}", release=release, namespace=namespace)
    try:
        op.start(timeout=180)
        started = time.monotonic() - op.ready_s
        times = {"helm install": op.install_s, "operator pod Ready": op.ready_s}
        (pod,) = op.pods()
        dep = operator_deployment(cluster, release, namespace)
        times |= lead_and_reconcile(cluster, namespace, dep["metadata"]["name"],
                                    pod["metadata"]["name"], workload, started)
    finally:
        cluster.kubectl("delete", "namespace", workload, "--wait=false", check=False)
        op.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pod", action="store_true",
                        help="the chart's operator pod on the node agent (root)")
    opts = parser.parse_args()
    tools.build_all(log=lambda _line: None)
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-install-"))
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    helm = Helm(cluster, work / "helm")
    rounds = []
    try:
        cluster.up()
        if opts.pod:
            cluster.start_node_agent("local-0")
        for n in range(opts.rounds):
            times = pod_round(cluster, work, n) if opts.pod else one_round(
                cluster, helm, work, n)
            rounds.append(times)
            print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()),
                  flush=True)
    finally:
        cluster.down(quiet=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nseconds from the start of `helm install` ({len(rounds)} rounds, " + (
        "the chart's operator pod):" if opts.pod else
        "operator process standing in for the pod):"))
    for stage in POD_STAGES if opts.pod else STAGES:
        values = [r[stage] for r in rounds]
        print(f"  {stage:18} median {statistics.median(values):6.2f}  "
              f"min {min(values):6.2f}  max {max(values):6.2f}")


if __name__ == "__main__":
    main()
