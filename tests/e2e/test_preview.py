"""A blue-green preview nobody sends traffic to, on the whole local loop: Triton pods run by
the node agent, Envoy Gateway reading the operator's GRPCRoute, Prometheus discovering the
pods. The preview route (`x-modelship-preview: true`) reaches the candidate through the
real gateway while clients without the header stay on stable; with `smokeLoad` the operator
feeds the preview's analysis itself, so a good version promotes and a failing one rolls
back with no client at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
from tests.conftest import Kubectl, require_node_agent_host, wait_for, wait_for_status

from modelship import constants
from modelship_dev.cluster import LocalCluster
from modelship_dev.stack import LocalStack
from modelship_dev.traffic import write_model
from modelship_dev.workload import PLACEMENT, TRITON_IMAGE

pytestmark = pytest.mark.e2e

MD = "preview"
SAMPLE = [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 1, 1, 1]}]


@dataclass
class Preview:
    kubectl: Kubectl
    stack: LocalStack
    repository: Path
    model: str

    def apply(self, version: int) -> None:
        self.kubectl.apply({
            "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": MD},
            "spec": {
                "model": {"name": self.model, "version": version},
                "repository": {"hostPath": {"path": str(self.repository)}},
                "runtime": {"image": TRITON_IMAGE, "backend": "python", "startupTimeout": "3m",
                            **PLACEMENT},
                "traffic": {"provider": "gateway",
                            "gateway": {"parentRefs": [self.stack.gateway.parent_ref]}},
                "rollout": {
                    "blueGreen": {"previewDuration": "15s", "postSwitchDuration": "4s"},
                    "analysis": {
                        "prometheus": {"address": self.stack.prometheus.url, "timeout": "2s"},
                        "interval": "1s", "window": "4s", "failureLimit": 2,
                        "minRequests": 10, "inconclusiveLimit": 5,
                        "checks": [{"name": "errors", "builtin": "errorRatio", "max": 0.05}],
                    },
                    # No client at all, so the switched version needs the sample too.
                    "smokeLoad": {"rate": 10, "maxDuration": "5m", "during": "EveryStage",
                                  "inputs": SAMPLE},
                    "scaleDownDelay": "0s", "abortScaleDownDelay": "2s",
                },
            },
        })

    def status(self) -> dict[str, Any]:
        return dict((self.kubectl.get("md", MD) or {}).get("status") or {})

    def wait(self, what: str, done: Any, timeout: float = 240) -> dict[str, Any]:
        return wait_for_status(what, self.status, done, timeout, interval=0.5,
                               context=lambda: "operator:\n" + self.stack.operator.log_tail())

    def answered_by(self, preview: bool) -> str | None:
        """The version that answered one request through the gateway (None: it failed)."""
        client = grpcclient.InferenceServerClient(
            self.stack.gateway.url, channel_args=[("grpc.enable_http_proxy", 0)])
        x = grpcclient.InferInput("x", [4], "FP32")
        x.set_data_from_numpy(np.ones(4, dtype=np.float32))
        headers = {constants.PREVIEW_HEADER: constants.PREVIEW_HEADER_VALUE} if preview else None
        try:
            result = client.infer(self.model, [x], headers=headers, client_timeout=10)
            return str(result.get_response().model_version)
        except grpcclient.InferenceServerException:
            return None
        finally:
            client.close()

    def smoke_sent(self, result: str) -> float:
        prefix = f'modelship_smoke_requests_total{{name="{MD}",'
        return sum(float(line.rsplit(" ", 1)[1])
                   for line in self.stack.operator.metrics().splitlines()
                   if line.startswith(prefix) and f'result="{result}"' in line)


@pytest.fixture(scope="module")
def preview(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Preview]:
    require_node_agent_host()
    work = tmp_path_factory.mktemp("preview")
    repository = work / "model-repository"
    model = f"p{uuid.uuid4().hex[:8]}"
    write_model(repository, model, {1: "good", 2: "good", 3: "failing"})
    with LocalStack(cluster, work, f"preview-{uuid.uuid4().hex[:6]}") as stack:
        yield Preview(Kubectl(cluster, stack.namespace), stack, repository, model)
    assert stack.gateway.processes() == []


def test_a_preview_without_clients_promotes_on_the_smoke_load(preview: Preview) -> None:
    preview.apply(1)
    preview.wait("v1 Ready", lambda st: st.get("phase") == "Ready"
                 and st.get("stableVersion") == 1)
    wait_for("v1 answers through the gateway", lambda: preview.answered_by(False) == "1",
             timeout=60, interval=0.5)

    preview.apply(2)
    preview.wait("the preview of v2", lambda st: (st.get("rollout") or {}).get("stage")
                 == "Preview", timeout=240)
    # The gateway programs the preview rule: the header reaches v2, everyone else v1.
    wait_for("the preview header answered by v2", lambda: preview.answered_by(True) == "2",
             timeout=60, interval=0.5)
    assert preview.answered_by(False) == "1"
    assert preview.status()["stableVersion"] == 1

    st = preview.wait("v2 promoted", lambda st: st.get("phase") == "Ready"
                      and st.get("stableVersion") == 2)
    assert st["history"][0]["outcome"] == "Promoted", st["history"]
    assert st["history"][0]["strategy"] == "blueGreen"
    assert preview.smoke_sent("ok") >= 10
    wait_for("v2 answers through the gateway without the header",
             lambda: preview.answered_by(False) == "2", timeout=60, interval=0.5)


def test_a_failing_preview_fed_by_the_smoke_load_rolls_back(preview: Preview) -> None:
    assert preview.status().get("stableVersion") == 2
    failed_before = preview.smoke_sent("failed")
    preview.apply(3)
    st = preview.wait("v3 rolled back", lambda st: st.get("phase") == "RolledBack")
    assert st["stableVersion"] == 2 and st.get("candidateVersion") is None
    assert "errors" in st["history"][0]["reason"], st["history"][0]
    assert preview.smoke_sent("failed") - failed_before >= 10
    # The preview rule left with the candidate: the header now reaches stable.
    wait_for("the header answered by v2 again", lambda: preview.answered_by(True) == "2",
             timeout=60, interval=0.5)
