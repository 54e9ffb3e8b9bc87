"""README's "by hand" path, as a newcomer follows it: `modelship dev up`, `modelship
operator`, `kubectl apply -f` of the samples. Every sample is admitted, and the CPU
TrainingRun runs for real on the node agent's node (never on kwok's simulated nodes, which
would fake its end) and publishes a version that the local ModelDeployment sample serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev import workload
from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import REPO, wait_for_status

pytestmark = pytest.mark.integration
SAMPLES = REPO / "crds" / "samples"
NODE = "local-0"


def modelship(*args: str) -> subprocess.CompletedProcess[str]:
    """The `modelship` command of this environment."""
    return subprocess.run([str(Path(sys.executable).parent / "modelship"), *args],
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if os.geteuid() != 0:
        pytest.fail("`modelship dev up` starts the node agent, which needs root")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.fail("the node agent needs `ip` (iproute2) and `nsenter` (util-linux)")
    state = tmp_path_factory.mktemp("dev", numbered=True) / "state"
    up = modelship("dev", "up", f"--state-dir={state}")
    cluster = LocalCluster(state, log=lambda _m: None)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"node {NODE} Ready" in up.stdout, up.stdout
        yield cluster
    finally:
        down = modelship("dev", "down", f"--state-dir={state}")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not state.exists()


def _docs() -> list[dict[str, Any]]:
    return [yaml.safe_load(f.read_text()) for f in sorted(SAMPLES.glob("*.yaml"))]


def _status(cluster: LocalCluster, kind: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", kind, name, "-o", "json", check=False)
    return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def test_every_sample_is_admitted_as_readme_applies_it(dev: LocalCluster) -> None:
    docs = _docs()
    assert len(docs) == 7
    # Namespace-free: they go where kubectl points (`-n` picks another namespace).
    assert all("namespace" not in d["metadata"] for d in docs)
    out = dev.kubectl("apply", "--server-side", "-f", str(SAMPLES), check=False)
    try:
        assert out.returncode == 0, out.stderr
        stored = json.loads(dev.kubectl("get", "modeldeployments,trainingruns", "-n",
                                        "default", "-o", "json").stdout)["items"]
        assert sorted((o["kind"], o["metadata"]["name"]) for o in stored) == \
            sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    finally:
        dev.kubectl("delete", "-f", str(SAMPLES), "--wait=true", "--timeout=60s",
                    check=False)


def _local(doc: dict[str, Any], repository: Path) -> dict[str, Any]:
    """A local sample with its node directory moved to the test's own folder (the sample's
    /var/lib/modelship/model-repository is the newcomer's)."""
    text = json.dumps(doc).replace("/var/lib/modelship/model-repository", str(repository))
    assert str(repository) in text
    out: dict[str, Any] = json.loads(text)
    return out


def test_cpu_training_sample_succeeds_on_the_node_agent_and_the_local_sample_serves_it(
        dev: LocalCluster, tmp_path: Path) -> None:
    repository = workload.node_folder(tmp_path / "model-repository")
    operator = OperatorProcess(dev.kubeconfig, tmp_path / "operator")  # cluster-wide
    operator.start()
    training = _local(yaml.safe_load((SAMPLES / "trainingrun-cpu.yaml").read_text()),
                      repository)
    serving = _local(yaml.safe_load((SAMPLES / "modeldeployment-local.yaml").read_text()),
                     repository)
    try:
        dev.kubectl("apply", "-f", "-", input_text=json.dumps(training))
        done = wait_for_status(
            "the CPU TrainingRun sample finished",
            lambda: _status(dev, "tr", "defects-v1"),
            lambda s: s.get("phase") in ("Succeeded", "Failed", "Rejected"), timeout=400,
            interval=1, context=operator.log_tail)
        pods = json.loads(dev.kubectl("get", "pods", "-l", "modelship.io/trainingrun="
                                      "defects-v1", "-o", "json").stdout)["items"]
        assert [p["spec"]["nodeName"] for p in pods] == [NODE]
        assert done["phase"] == "Succeeded", done
        assert done["version"] == 1 and done["gate"]["verdict"] == "Blessed"
        assert (repository / "surface-defects" / "1" / "model.onnx").is_file()
        events = json.loads(dev.kubectl(
            "get", "events", "--field-selector", "involvedObject.kind=TrainingRun",
            "-o", "json").stdout)["items"]
        reasons = [e["reason"] for e in events]
        lifecycle = ["Pending", "Running", "Evaluating", "Succeeded"]
        assert reasons == sorted(reasons, key=lifecycle.index) and reasons[-1] == "Succeeded"

        dev.kubectl("apply", "-f", "-", input_text=json.dumps(serving))
        ready = wait_for_status(
            "the local ModelDeployment sample Ready",
            lambda: _status(dev, "md", "defects-dev"),
            lambda s: any(c["type"] == "Ready" and c["status"] == "True"
                          for c in s.get("conditions") or []), timeout=300, interval=1,
            context=operator.log_tail)
        assert ready["stableVersion"] == 1
        pods = json.loads(dev.kubectl("get", "pods", "-l", "modelship.io/modeldeployment="
                                      "defects-dev", "-o", "json").stdout)["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {NODE}
    finally:
        dev.kubectl("delete", "md,tr", "--all", "--wait=true", "--timeout=90s", check=False)
        operator.stop()
