"""Rollback speed and false rollbacks, on the real control plane, Triton and Prometheus.

For each run a fresh model gets a good stable version 1 and a candidate 2 behind a canary
(one step at 50%, held long): with a failing candidate we time the first failed request to
the GRPCRoute's candidate weight reaching 0; with a healthy candidate we count rollbacks
(there should be none) under the error-ratio and the relative mean-latency checks of the
e2e tests. Scrape interval 1 s, analysis interval 1 s, failureLimit 2.

    .venv/bin/python hack/bench/rollback.py [--runs 10] [--healthy 10] [--data-plane full]

`--data-plane simulated` (default): one Triton process serves both versions and the traffic
generator plays the gateway's part (modelship_dev.traffic). `--data-plane full`: the
whole local loop (modelship_dev.stack): Triton pods run by the node agent, clients going through
Envoy Gateway, the Prometheus Operator's Prometheus scraping them as the chart's PodMonitor
says; needs root. hack/bench/alerting.py times the page that follows a rollback.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
import yaml

from modelship_dev import polling, tools
from modelship_dev.background import Background
from modelship_dev.cluster import SIMULATED_TOLERATION, LocalCluster
from modelship_dev.demo import install_crds
from modelship_dev.simulated_plane import SimulatedPlane, simulated_plane
from modelship_dev.stack import LocalStack
from modelship_dev.traffic import Behaviour, TrafficGenerator, read_route, write_model
from modelship_dev.triton import TritonServer
from modelship_dev.workload import PLACEMENT, TRITON_IMAGE

NAMESPACE = "bench"


def deployment(model: str, version: int, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "md", "namespace": NAMESPACE},
        "spec": {
            "model": {"name": model, "version": version},
            "repository": {"hostPath": {"path": "/models"}},
            "runtime": {"backend": "python", "tolerations": [SIMULATED_TOLERATION]},
            "traffic": {"provider": "gateway",
                        "gateway": {"parentRefs": [{"name": "inference-gateway"}]}},
            "rollout": {
                "canary": {"steps": [{"weight": 50, "pause": "20s"}]},
                "analysis": {"prometheus": {"address": prometheus}, "interval": "1s",
                             "window": "5s", "failureLimit": 2,
                             # The e2e tests' checks: a healthy candidate must pass
                             # the relative latency check too (a cold start or a
                             # stalled core once rolled one back).
                             "checks": [{"name": "errors", "builtin": "errorRatio",
                                         "max": 0.05},
                                        {"name": "latency", "builtin": "meanLatency",
                                         "relativeToStable": True, "max": 5}]},
            },
        },
    }


def phase(cluster: LocalCluster) -> dict[str, Any]:
    out = cluster.kubectl("-n", NAMESPACE, "get", "md", "md", "-o", "yaml", check=False)
    return dict((yaml.safe_load(out.stdout) or {}).get("status") or {}) if out.returncode == 0 \
        else {}


wait = polling.wait


def finished(status: dict[str, Any]) -> bool:
    return status.get("phase") == "RolledBack" or (
        status.get("phase") == "Ready" and status.get("stableVersion") == 2)


def outcome(cluster: LocalCluster, candidate: Behaviour,
            first_failure_at: Callable[[], float | None], failure_timeout: float,
            finish_timeout: float) -> tuple[float | None, str]:
    """(seconds from the first failed request to candidate weight 0, final phase) for a
    failing candidate; (None, final phase) for a healthy one, once its canary finished."""
    took: float | None = None
    if candidate == "failing":
        wait("a failed request", lambda: first_failure_at() is not None, failure_timeout)
        wait("weight 0", lambda: (r := read_route(cluster, NAMESPACE, "md"))
             is not None and r.weights.get(2, 0) == 0, 60, 0.05)
        failed_at = first_failure_at()
        assert failed_at is not None
        took = time.monotonic() - failed_at
    else:
        try:
            wait("finished", lambda: finished(phase(cluster)), finish_timeout, 0.3)
        except TimeoutError:
            raise TimeoutError(f"healthy canary did not finish: {phase(cluster)}") from None
    return took, str(phase(cluster).get("phase"))


@contextlib.contextmanager
def simulated_canary(cluster: LocalCluster, triton: TritonServer, repo: Path, prom: str,
                     candidate: Behaviour) -> Iterator[TrafficGenerator]:
    """A fresh model: good v1 Ready, then `candidate` v2 applied behind the canary while the
    traffic generator runs; the model and the ModelDeployment are removed on exit."""
    model = f"b{uuid.uuid4().hex[:8]}"
    write_model(repo, model, {1: "good", 2: candidate})
    httpx.post(f"http://127.0.0.1:{triton.http_port}/v2/repository/models/{model}/load",
               timeout=120).raise_for_status()
    try:
        cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(
            deployment(model, 1, prom)))
        wait("v1 Ready", lambda: phase(cluster).get("stableVersion") == 1, 60, 0.3)
        with TrafficGenerator(cluster, NAMESPACE, "md", model, triton.grpc_url,
                              rate=50) as gen:
            cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(
                deployment(model, 2, prom)))
            yield gen
    finally:
        cluster.kubectl("-n", NAMESPACE, "delete", "md", "md", "--wait=true", check=False)
        httpx.post(f"http://127.0.0.1:{triton.http_port}/v2/repository/models/"
                   f"{model}/unload", timeout=60)


def one_run(plane: SimulatedPlane, candidate: Behaviour) -> tuple[float | None, str]:
    """(seconds from first failed request to weight 0, final phase)."""
    with simulated_canary(plane.cluster, plane.triton, plane.repo, plane.prometheus.url,
                          candidate) as gen:
        return outcome(plane.cluster, candidate, lambda: gen.stats.first_failure_at.get(2),
                       60, 90)


class GatewayClient(Background):
    """Requests at `rate` per second through the gateway (bounded in time); records when the
    first one failed (only a failing candidate can fail them)."""

    def __init__(self, target: str, model: str, rate: float = 50, max_seconds: float = 120
                 ) -> None:
        super().__init__("gateway-client")
        self.client = grpcclient.InferenceServerClient(
            target, channel_args=[("grpc.enable_http_proxy", 0)])
        self.model, self.rate, self.max_seconds = model, rate, max_seconds
        self.first_failure_at: float | None = None
        self.failed = self.ok = 0

    def _stopped(self) -> None:
        self.client.close()

    def _run(self) -> None:
        x = grpcclient.InferInput("x", [4], "FP32")
        x.set_data_from_numpy(np.ones(4, dtype=np.float32))
        started = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
            try:
                self.client.infer(self.model, [x], client_timeout=10)
                self.ok += 1
            except grpcclient.InferenceServerException:
                self.failed += 1
                if self.first_failure_at is None:
                    self.first_failure_at = time.monotonic()
            self._stop.wait(1.0 / self.rate)


def full_deployment(model: str, version: int, prom: str, repo: Path,
                    parent_ref: dict[str, str]) -> dict[str, Any]:
    md = deployment(model, version, prom)
    md["spec"]["repository"] = {"hostPath": {"path": str(repo)}}
    md["spec"]["runtime"] = {"image": TRITON_IMAGE, "backend": "python", **PLACEMENT}
    md["spec"]["traffic"]["gateway"] = {"parentRefs": [parent_ref]}
    return md


@contextlib.contextmanager
def gateway_canary(stack: LocalStack, repo: Path, candidate: Behaviour
                   ) -> Iterator[GatewayClient]:
    """As simulated_canary, with Triton pods and clients going through the real gateway."""
    cluster = stack.cluster
    model = f"b{uuid.uuid4().hex[:8]}"
    write_model(repo, model, {1: "good", 2: candidate})

    def apply(version: int) -> None:
        cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(full_deployment(
            model, version, stack.prometheus.url, repo, stack.gateway.parent_ref)))
    try:
        apply(1)
        wait("v1 Ready", lambda: phase(cluster).get("stableVersion") == 1, 180, 0.3)
        with GatewayClient(stack.gateway.url, model) as client:
            wait("answers through the gateway", lambda: client.ok >= 50, 60)
            # Requests sent before the gateway had the route may have failed: start counting
            # from here, where only v1 answers.
            client.failed, client.first_failure_at = 0, None
            apply(2)
            yield client
    finally:
        cluster.kubectl("-n", NAMESPACE, "delete", "md", "md", "--wait=true", check=False)


def one_full_run(stack: LocalStack, repo: Path, candidate: Behaviour
                 ) -> tuple[float | None, str]:
    """As one_run, with Triton pods and the real gateway: a fresh model whose v1 is good."""
    with gateway_canary(stack, repo, candidate) as client:
        return outcome(stack.cluster, candidate, lambda: client.first_failure_at, 180, 180)


def report(times: list[float], false: int, healthy: int, plane: str) -> None:
    # quantiles needs two points; one run's p95 is that run.
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 \
        else times[0]
    print(f"\n{plane} data plane: first failing request -> candidate weight 0 "
          f"({len(times)} runs, 1 s scrape, 1 s interval, failureLimit 2): "
          f"p50 {statistics.median(times):.2f}s, p95 {p95:.2f}s, max {max(times):.2f}s")
    print(f"false rollbacks: {false} of {healthy} healthy canaries")


def main_full(runs: int, healthy: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    repo = work / "repo"
    repo.mkdir()
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    try:
        cluster.up()
        install_crds(cluster)
        with LocalStack(cluster, work, NAMESPACE) as stack:
            times = []
            for i in range(runs):
                took, final = one_full_run(stack, repo, "failing")
                assert took is not None and final == "RolledBack", final
                times.append(took)
                print(f"failing candidate {i + 1}: weight 0 after {took:.2f}s")
            false = 0
            for i in range(healthy):
                _, final = one_full_run(stack, repo, "good")
                false += final == "RolledBack"
                print(f"healthy candidate {i + 1}: {final}")
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    report(times, false, healthy, "full")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--healthy", type=int, default=10)
    parser.add_argument("--data-plane", choices=["simulated", "full"], default="simulated")
    args = parser.parse_args()
    tools.build_all(log=lambda _line: None)
    if args.data_plane == "full":
        main_full(args.runs, args.healthy)
        return
    with simulated_plane(NAMESPACE) as plane:
        times = []
        for i in range(args.runs):
            took, final = one_run(plane, "failing")
            assert took is not None and final == "RolledBack", final
            times.append(took)
            print(f"failing candidate {i + 1}: weight 0 after {took:.2f}s")
        false = 0
        for i in range(args.healthy):
            _, final = one_run(plane, "good")
            false += final == "RolledBack"
            print(f"healthy candidate {i + 1}: {final}")
    report(times, false, args.healthy, "simulated")


if __name__ == "__main__":
    main()
