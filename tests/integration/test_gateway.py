"""A real gateway routes the operator's GRPCRoute: Envoy Gateway (Envoy on the host) in front
of two Triton pods run by the node agent. Weighted backendRefs split real gRPC inference
requests, and a RequestMirror filter copies them to the candidate while clients only see the
stable version's answers; both are measured with Triton's own per-version counters."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelship import constants
from modelship.core.rollout import SetTraffic
from modelship.core.traffic import grpc_route
from modelship_api.modeldeployment import ModelDeployment
from modelship_dev.cluster import LocalCluster
from modelship_dev.gateway import LocalGateway
from modelship_dev.workload import NODE, NODE_TAINT, echo_repository, triton_pod
from tests.conftest import Kubectl, require_node_agent_host, wait_for

pytestmark = pytest.mark.integration

DEPLOYMENT = "defects"
MODEL = "m"

@pytest.fixture(scope="module")
def agent(cluster: LocalCluster) -> Iterator[Path]:
    require_node_agent_host()
    folder = cluster.start_node_agent(NODE, taints=[f"{NODE_TAINT}=true:NoSchedule"])
    try:
        yield folder
    finally:
        cluster.stop_node_agent(NODE)


@pytest.fixture(scope="module")
def gateway(cluster: LocalCluster,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    gw = LocalGateway(cluster, tmp_path_factory.mktemp("gateway"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
        assert gw.processes() == []


def _route(namespace: str, gw: LocalGateway, traffic: SetTraffic) -> dict[str, Any]:
    """The operator's own GRPCRoute for `traffic`, attached to the local gateway."""
    md = ModelDeployment.model_validate({
        "metadata": {"name": DEPLOYMENT, "namespace": namespace, "uid": "unused"},
        "spec": {"model": {"name": MODEL, "version": 2},
                 "repository": {"hostPath": {"path": "/unused"}},
                 "traffic": {"provider": "gateway",
                             "gateway": {"parentRefs": [gw.parent_ref]}}}})
    route = grpc_route(md, traffic)
    # There is no ModelDeployment object here: the garbage collector would delete an
    # object owned by a missing owner.
    route["metadata"].pop("ownerReferences")
    return route


def _successes(ip: str) -> float:
    """Triton's own count of successful inferences of the model (any version) in one pod."""
    text = httpx.get(f"http://{ip}:{constants.PORT_METRICS}/metrics", timeout=5,
                     trust_env=False).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("nv_inference_request_success{") and f'model="{MODEL}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _counts(ips: dict[int, str]) -> dict[int, float]:
    return {v: _successes(ip) for v, ip in ips.items()}


def _settled(ips: dict[int, str], expected_total: float | None = None) -> dict[int, float]:
    """Counters once they stop moving (mirrored requests finish after the clients' ones)."""
    def stable() -> dict[int, float] | None:
        first = _counts(ips)
        time.sleep(0.5)
        second = _counts(ips)
        if first != second:
            return None
        if expected_total is not None and sum(second.values()) < expected_total:
            return None
        return second
    result: dict[int, float] = wait_for("Triton counters to settle", stable, timeout=30)
    return result


def _infer(client: grpcclient.InferenceServerClient) -> int:
    data = grpcclient.InferInput("IN", [1], "FP32")
    data.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    result = client.infer(MODEL, [data], client_timeout=10)
    answer = result.as_numpy("VERSION")
    assert answer is not None
    return int(answer[0])


def _send(client: grpcclient.InferenceServerClient, n: int) -> Counter[int]:
    return Counter(_infer(client) for _ in range(n))


def _until(client: grpcclient.InferenceServerClient, what: str, answers: set[int],
           in_a_row: int, timeout: float = 60) -> None:
    """Send requests until `in_a_row` consecutive answers come from `answers` (the gateway has
    the new configuration); bounded in time."""
    deadline = time.monotonic() + timeout
    streak, seen, errors = 0, Counter[int](), Counter[str]()
    while time.monotonic() < deadline:
        try:
            version = _infer(client)
        except grpcclient.InferenceServerException as err:
            streak = 0
            errors[str(err.status())] += 1
            time.sleep(0.2)
            continue
        seen[version] += 1
        streak = streak + 1 if version in answers else 0
        if streak >= in_a_row:
            return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                         f"answers {dict(seen)}, errors {dict(errors)}")


def test_route_splits_by_weight_and_mirrors_to_the_candidate(
        kubectl: Kubectl, agent: Path, gateway: LocalGateway, tmp_path: Path) -> None:
    for version in (1, 2):
        repo = echo_repository(tmp_path / f"repo-v{version}", MODEL, version)
        for obj in triton_pod(f"{DEPLOYMENT}-v{version}", MODEL, version, repo):
            kubectl.apply(obj)

    def ready_ip(version: int) -> str | None:
        pod = kubectl.get("pod", f"{DEPLOYMENT}-v{version}")
        conditions = (pod or {}).get("status", {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return str(pod["status"]["podIP"]) if pod and ready else None

    ips: dict[int, str] = {}
    for version in (1, 2):
        ips[version] = wait_for(f"Triton v{version} Ready", partial(ready_ip, version),
                                timeout=180, interval=1)

    client = grpcclient.InferenceServerClient(
        gateway.url, channel_args=[("grpc.enable_http_proxy", 0)])
    try:
        # Canary: 80% stable (v1), 20% candidate (v2).
        kubectl.apply(_route(kubectl.namespace, gateway, SetTraffic(1, 2, 20, 0)))
        gateway.wait_route_accepted(kubectl.namespace, DEPLOYMENT)
        _until(client, "both versions answering through the gateway", {1, 2}, 20)
        before = _settled(ips)
        n = 300
        answers = _send(client, n)
        after = _settled(ips, sum(before.values()) + n)
        served = {v: after[v] - before[v] for v in (1, 2)}
        assert served == {1: answers[1], 2: answers[2]}, (served, answers)
        assert sum(served.values()) == n
        share = served[2] / n
        assert 0.12 <= share <= 0.28, f"candidate share {share:.2f} for weight 20: {served}"

        # Shadow: every client request goes to v1; half of them are copied to v2.
        kubectl.apply(_route(kubectl.namespace, gateway, SetTraffic(1, 2, 0, 50)))
        gateway.wait_route_accepted(kubectl.namespace, DEPLOYMENT)
        _until(client, "only the stable version answering", {1}, 40)
        before = _settled(ips)
        n = 200
        answers = _send(client, n)
        assert answers == Counter({1: n}), f"clients got other answers than v1's: {answers}"
        after = _settled(ips, sum(before.values()) + n)
        served = {v: after[v] - before[v] for v in (1, 2)}
        assert served[1] == n, served
        mirrored = served[2] / n
        assert 0.3 <= mirrored <= 0.7, f"mirrored share {mirrored:.2f} for percent 50: {served}"
    finally:
        client.close()
        for version in (1, 2):
            kubectl("delete", "pod", f"{DEPLOYMENT}-v{version}", "--wait=true",
                    "--timeout=60s", check=False)
