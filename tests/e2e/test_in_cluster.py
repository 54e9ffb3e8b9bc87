"""The path a platform team takes, end to end: the chart installed with `helm install` into a
bare cluster, the operator running as the chart's pod from its image (the node agent runs it
as a kubelet would: the chart's restricted security context, the ServiceAccount's token and
in-cluster config), a TrainingRun trained in the trainer image and a ModelDeployment served
from the Triton image, promoted by a canary over the gateway that Prometheus judges.

Nothing here runs the operator on the host: every request it makes comes from its pod.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Kubectl, require_node_agent_host, wait_for, wait_for_status
from tests.e2e.test_whole_loop import CANARY, MD, MODEL, Loop

from modelship_dev import gateway_api, images, tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.helm import ChartOperator
from modelship_dev.stack import LocalStack
from modelship_dev.workload import NODE, node_folder

pytestmark = pytest.mark.e2e

OPERATOR_UID = 65532  # the chart's runAsUser (and the image's USER)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A bare control plane (the chart brings the CRDs; the Gateway API's are the
    gateway's), the node agent, the gateway, Prometheus, and the chart installed."""
    require_node_agent_host()
    tools.build_all()
    work = tmp_path_factory.mktemp("in-cluster")
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    try:
        cluster.up()
        gateway_api.install(cluster)
        with LocalStack(cluster, work, f"ic-{uuid.uuid4().hex[:6]}", in_cluster=True) as st:
            assert isinstance(st.operator, ChartOperator)
            print(f"\nhelm install {st.operator.install_s:.1f}s; operator pod Ready "
                  f"{st.operator.ready_s:.1f}s after helm install began")
            yield st
        assert st.gateway.processes() == []
    finally:
        cluster.down(quiet=True)


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> ChartOperator:
    assert isinstance(stack.operator, ChartOperator)
    return stack.operator


@pytest.fixture(scope="module")
def loop(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Loop:
    repository = node_folder(tmp_path_factory.mktemp("repo") / "model-repository")
    return Loop(Kubectl(stack.cluster, stack.namespace), stack.gateway, stack.prometheus,
                stack.operator, stack.monitoring, repository)


def _process_of(pod: str) -> int:
    """The pid of the operator container's main process: the one whose HOSTNAME is the pod's
    name and whose command is `modelship operator`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"operator" in argv and any(a.endswith(b"modelship") for a in argv[:2]) \
                and f"HOSTNAME={pod}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no process of pod {pod}")


def _in_root(pid: int, path: str) -> Path:
    """`path` as the process sees it, through /proc/<pid>/root: absolute symlinks (the
    image's /var/run -> /run) resolved against its root, not this process's."""
    root = Path(f"/proc/{pid}/root")
    here = root
    for part in Path(path).parts[1:]:
        here = here / part
        for _ in range(8):
            if not here.is_symlink():
                break
            target = here.readlink()
            here = root / target.relative_to("/") if target.is_absolute() \
                else here.parent / target
    return here


def test_the_operator_runs_as_the_charts_pod_from_its_image(
        stack: LocalStack, operator: ChartOperator) -> None:
    (pod,) = operator.pods()
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == NODE
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] and "running" in status["state"], status
    assert status["restartCount"] == 0
    repository = images.ref("operator").rsplit(":", 1)[0]
    assert status["imageID"].startswith(f"{repository}@sha256:"), status
    # The chart's restricted profile, and the process it produced.
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    pid = _process_of(name)
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert uids and {int(uids[1]), int(uids[2])} == {OPERATOR_UID}
    # The root as the process sees it (the last mount on "/" is the one in effect).
    root = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text()
            .splitlines() if line.split()[4] == "/"][-1]
    assert "ro" in root[5].split(","), root
    # No kubeconfig: the ServiceAccount's token and the in-cluster address.
    env = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes()
               .split(b"\0") if b"=" in e)
    assert b"KUBECONFIG" not in env
    assert env[b"KUBERNETES_SERVICE_HOST"] == b"10.251.0.1"
    token = _in_root(pid, "/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert token.read_text().count(".") == 2  # a JWT the kubelet's projection wrote
    # It leads: the chart's Lease is held by its pod.
    lease = Kubectl(stack.cluster, operator.namespace).get("lease", "modelship-operator")
    assert str((lease or {})["spec"]["holderIdentity"]).startswith(name), lease


def test_trained_in_the_trainer_image_and_promoted_by_a_canary_prometheus_judged(
        loop: Loop, operator: ChartOperator) -> None:
    st = loop.train("defects-1", seed=1)
    assert st["phase"] == "Succeeded", st
    assert (loop.repository / MODEL / "1" / "model.onnx").is_file()
    (job_pod,) = loop.kubectl.list("pods", "job-name=defects-1-train")
    assert job_pod["status"]["containerStatuses"][0]["imageID"].startswith(
        images.ref("trainer").rsplit(":", 1)[0] + "@sha256:")

    loop.deploy(CANARY)
    loop.wait("Ready", stable=1)
    with loop.load() as load:
        wait_for("answers through the gateway", lambda: load.answered().get(1, 0) >= 20,
                 timeout=60)
        st = loop.train("defects-2", seed=2, hyperparameters={"epochs": "4"},
                        baseline_deployment=MD, max_regression=0.05)
        assert st["phase"] == "Succeeded", st
        judged: list[dict[str, Any]] = []

        def promoted(status: dict[str, Any]) -> bool:
            # The checks the operator ran against Prometheus from its pod, with values.
            judged.extend(c for c in (status.get("analysis") or {}).get("checks") or []
                          if c.get("result") == "Successful" and c.get("value") is not None)
            return status.get("phase") == "Ready" and status.get("stableVersion") == 2
        wait_for_status("v2 promoted", loop.status, promoted, timeout=240,
                        context=lambda: "operator:\n" + operator.log_tail())
        assert load.failed() == 0, dict(load.errors)
        assert load.answered().get(2, 0) > 0
    assert judged, "no analysis check judged from Prometheus during the canary"
    history = loop.status()["history"][0]
    assert (history["version"], history["outcome"], history["strategy"]) == \
        (2, "Promoted", "canary"), history
    assert loop.route_weights() == {f"{MD}-v2": 100}
    assert not any(d in operator.log_tail(200_000) for d in ("Forbidden", " 403"))
