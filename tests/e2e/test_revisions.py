"""A change of the Triton pod template is a new revision of the same model version, rolled
out like a new version: real Triton pods (node agent), the real gateway, Prometheus finding
the pods through the API server, the real operator.

Changing `runtime.args` of a serving ModelDeployment starts revision 1 of version 1 beside
the stable, walks the canary steps judged by analysis of the revision's own pods, and
promotes it; the stable ran its old template until then. A template Triton cannot start
with (an unknown flag) never gets ready and rolls back, the stable untouched. A changed
serving config (maxBatchSize, dynamicBatching) is a revision too, and what Triton reports
as the served model's config once it is promoted.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Kubectl, require_node_agent_host, wait_for, wait_for_status

from modelship_dev.cluster import LocalCluster
from modelship_dev.stack import LocalStack
from modelship_dev.workload import IMAGE_SIZE, PLACEMENT, TRITON_IMAGE, InferenceLoad

pytestmark = pytest.mark.e2e

MODEL = "revisions"
MD = "rev"
# A Python-backend model, published with batching, that takes the images InferenceLoad
# sends (a batch of BATCH) and answers one number per image.
MODEL_PY = textwrap.dedent('''
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "images").as_numpy()
                n = np.ones((x.shape[0], 1), dtype=np.float32)
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("n", n)]))
            return out
''')
PUBLISHED_BATCH = 8
CONFIG = textwrap.dedent(f'''
    name: "{MODEL}"
    backend: "python"
    max_batch_size: {PUBLISHED_BATCH}
    input [ {{ name: "images" data_type: TYPE_FP32 dims: [ 1, {IMAGE_SIZE}, {IMAGE_SIZE} ] }} ]
    output [ {{ name: "n" data_type: TYPE_FP32 dims: [ 1 ] }} ]
''')
STEPS = [{"weight": 20, "pause": "6s"}, {"weight": 50, "pause": "6s"}]


@dataclass
class Env:
    kubectl: Kubectl
    stack: LocalStack
    repository: Path

    def apply(self, args: list[str] | None, **serving: Any) -> None:
        runtime: dict[str, Any] = {"image": TRITON_IMAGE, "backend": "python", "replicas": 1,
                                   "startupTimeout": "3m", **PLACEMENT, **serving}
        if args is not None:
            runtime["args"] = args
        self.kubectl.apply({
            "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": MD},
            "spec": {
                "model": {"name": MODEL, "version": 1},
                "repository": {"hostPath": {"path": str(self.repository)}},
                "runtime": runtime,
                "traffic": {"provider": "gateway",
                            "gateway": {"parentRefs": [self.stack.gateway.parent_ref]}},
                "rollout": {
                    "canary": {"steps": STEPS},
                    "analysis": {
                        "prometheus": {"address": self.stack.prometheus.url, "timeout": "2s"},
                        "interval": "1s", "window": "6s", "initialDelay": "2s",
                        "failureLimit": 2, "inconclusiveLimit": 60, "minRequests": 3,
                        "checks": [{"name": "errors", "builtin": "errorRatio", "max": 0.05}],
                    },
                    "progressDeadline": "90s", "scaleDownDelay": "0s",
                    "abortScaleDownDelay": "2s",
                },
            },
        })

    def status(self) -> dict[str, Any]:
        return dict((self.kubectl.get("md", MD) or {}).get("status") or {})

    def wait(self, what: str, reached: Any, timeout: float = 240) -> dict[str, Any]:
        return wait_for_status(what, self.status, reached, timeout, interval=0.5,
                               context=lambda: "operator:\n" + self.stack.operator.log_tail())

    def route(self) -> dict[str, int]:
        rule = (self.kubectl.get("grpcroute", MD) or {})["spec"]["rules"][0]
        return {ref["name"]: int(ref.get("weight", 1)) for ref in rule["backendRefs"]}

    def triton_args(self, deployment: str) -> list[str]:
        dep = self.kubectl.get("deployment", deployment) or {}
        args: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        return args

    def served_config(self, release: str) -> dict[str, Any]:
        """The model config Triton reports (its model config endpoint) in a pod of `release`."""
        (pod,) = [p for p in self.kubectl.list(
            "pod", f"modelship.io/modeldeployment={MD},modelship.io/model-version={release}")
            if not p["metadata"].get("deletionTimestamp")]
        url = f"http://{pod['status']['podIP']}:8000/v2/models/{MODEL}/config"
        config: dict[str, Any] = httpx.get(url, timeout=10).json()
        return config

    def pods(self, release: str) -> dict[str, str]:
        """Name -> uid of the running pods of one release (`1`, `1-r1`)."""
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in self.kubectl.list(
            "pod", f"modelship.io/modeldeployment={MD},modelship.io/model-version={release}")
            if not p["metadata"].get("deletionTimestamp")}


@pytest.fixture(scope="module")
def env(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_node_agent_host()
    work = tmp_path_factory.mktemp("revisions")
    repository = work / "model-repository"
    (repository / MODEL / "1").mkdir(parents=True)
    (repository / MODEL / "1" / "model.py").write_text(MODEL_PY)
    (repository / MODEL / "config.pbtxt").write_text(CONFIG)
    with LocalStack(cluster, work, f"rev-{uuid.uuid4().hex[:6]}") as stack:
        yield Env(Kubectl(cluster, stack.namespace), stack, repository)
    assert stack.gateway.processes() == []


def test_a_new_template_goes_through_the_canary_and_a_bad_one_rolls_back(env: Env) -> None:
    env.apply(None)
    env.wait("version 1 serving", lambda st: st.get("phase") == "Ready"
             and st.get("stableVersion") == 1)
    stable_pods = env.pods("1")
    assert len(stable_pods) == 1
    assert "--log-verbose=1" not in env.triton_args(f"{MD}-v1")
    config = env.served_config("1")
    assert config["max_batch_size"] == PUBLISHED_BATCH and "dynamic_batching" not in config

    with InferenceLoad(env.stack.gateway.url, MODEL, rate=15, max_seconds=400) as load:
        wait_for("answers through the gateway", lambda: load.answered().get(1, 0) >= 15,
                 timeout=60)
        # A new template: revision 1 of the same version, rolled out step by step.
        env.apply(["--log-verbose=1"])
        st = env.wait("revision 1 started", lambda st: st.get("candidateRevision") == 1)
        assert st["candidateVersion"] == 1 and st["stableVersion"] == 1
        assert st["candidateTemplate"] != st["stableTemplate"]
        weights: list[int] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            route = env.route()
            share = route.get(f"{MD}-v1-r1", 0)
            if not weights or weights[-1] != share:
                weights.append(share)
            st = env.status()
            if st.get("candidateVersion") is not None:
                # The stable keeps its template and its pod while the new revision is out.
                assert "--log-verbose=1" not in env.triton_args(f"{MD}-v1")
                assert env.pods("1") == stable_pods
            if st.get("phase") == "Ready" and st.get("stableRevision") == 1:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"revision 1 not promoted: {env.status()}")
        assert 20 in weights and 50 in weights, weights
        assert "--log-verbose=1" in env.triton_args(f"{MD}-v1-r1")
        history = st["history"][0]
        assert (history["outcome"], history["version"], history["revision"]) == (
            "Promoted", 1, 1)
        assert st["analysis"]["checks"][0]["requests"] >= 3  # judged on the revision's pods
        wait_for("the old revision removed", lambda: env.kubectl.get(
            "deployment", f"{MD}-v1") is None, timeout=60)
        assert env.route() == {f"{MD}-v1-r1": 100}
        promoted_pods = env.pods("1-r1")
        served_before_bad = load.answered().get(1, 0)

        # A template Triton cannot start with: it never gets ready and rolls back.
        env.apply(["--log-verbose=1", "--no-such-flag=1"])
        st = env.wait("revision 2 started", lambda st: st.get("candidateRevision") == 2)
        assert env.kubectl.get("deployment", f"{MD}-v1-r2") is not None
        st = env.wait("revision 2 rolled back", lambda st: st.get("phase") == "RolledBack",
                      timeout=180)
        assert (st["stableVersion"], st["stableRevision"]) == (1, 1)
        assert (st["rolledBackVersion"], st["rolledBackRevision"]) == (1, 2)
        assert "ProgressDeadlineExceeded" in st["history"][0]["reason"]
        assert "spec.runtime" in st["message"]
        wait_for("the bad revision removed", lambda: env.kubectl.get(
            "deployment", f"{MD}-v1-r2") is None, timeout=60)
        # The stable was never touched: same pod, same template, all traffic.
        assert env.pods("1-r1") == promoted_pods
        assert "--no-such-flag=1" not in env.triton_args(f"{MD}-v1-r1")
        assert env.route() == {f"{MD}-v1-r1": 100}
        wait_for("answers after the rollback",
                 lambda: load.answered().get(1, 0) >= served_before_bad + 15, timeout=30)

        # The serving config is the ModelDeployment's: a new revision, and what Triton serves.
        env.apply(["--log-verbose=1"], maxBatchSize=16,
                  dynamicBatching={"maxQueueDelayMicroseconds": 500,
                                   "preferredBatchSizes": [8]})
        st = env.wait("revision 3 started", lambda st: st.get("candidateRevision") == 3)
        st = env.wait("revision 3 promoted", lambda st: st.get("phase") == "Ready"
                      and st.get("stableRevision") == 3)
        config = env.served_config("1-r3")
        assert config["max_batch_size"] == 16, config
        assert config["dynamic_batching"]["preferred_batch_size"] == [8], config
        assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 500, config
        assert config["backend"] == "python"
    assert load.failed() == 0, dict(load.errors)
