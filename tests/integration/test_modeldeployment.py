"""The real operator against the real API server: children, readiness, idempotence,
garbage collection, restarts and specs the API server cannot judge."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev.cluster import SIMULATED_TOLERATION
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import Kubectl, wait_for

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "modeldeployment-local.yaml"


def sample(version: int = 1, **runtime: Any) -> dict[str, Any]:
    """The local sample, placed on kwok's simulated nodes (which tolerate nothing else): the
    pods' readiness is kwok's, the operator's objects are real."""
    doc: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["model"]["version"] = version
    doc["spec"]["runtime"].update(runtime)
    doc["spec"]["runtime"]["tolerations"] = [*runtime.get("tolerations", []),
                                             SIMULATED_TOLERATION]
    return doc


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def ready(kubectl: Kubectl, name: str, version: int) -> dict[str, Any] | None:
    md = kubectl.get("md", name)
    status = (md or {}).get("status") or {}
    if status.get("stableVersion") == version and condition(md, "Ready").get("status") == "True":
        return md
    return None


def children(kubectl: Kubectl, name: str) -> dict[str, str]:
    """name -> resourceVersion of every object the operator made for `name`."""
    out = {}
    for kind in ("deployment", "service"):
        for obj in kubectl.list(kind, f"modelship.io/modeldeployment={name}"):
            out[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return out


def test_model_deployment_gets_triton_deployment_and_service_and_becomes_ready(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(version=1))
    md = wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
    assert md["status"]["phase"] == "Ready"
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]

    dep = kubectl.get("deployment", "defects-dev-v1")
    assert dep is not None
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "ModelDeployment", "defects-dev", True)
    pod = dep["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {
        "http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["readinessProbe"]["httpGet"]["path"] == \
        "/v2/models/surface-defects/versions/1/ready"
    startup = triton["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 600  # default 10m budget
    assert triton["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert pod["volumes"][0]["hostPath"]["path"] == "/var/lib/modelship/model-repository"
    assert any(m["mountPath"] == "/models" for m in triton["volumeMounts"])

    svc = kubectl.get("service", "defects-dev-v1")
    assert svc is not None
    assert svc["spec"]["selector"] == {"modelship.io/modeldeployment": "defects-dev",
                                       "modelship.io/model-version": "1"}
    grpc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["appProtocol"] == "kubernetes.io/h2c"
    assert svc["spec"]["clusterIP"] == "None"  # headless: a route backend, a DNS name
    stable = kubectl.get("service", "defects-dev")  # the stable address
    assert stable is not None and stable["spec"]["clusterIP"] not in ("", "None")

    events = kubectl("get", "events", "--field-selector",
                     "involvedObject.kind=ModelDeployment", "-o", "yaml").stdout
    assert "reason: Serving" in events and "serving version 1" in events


def assert_converged_writes_nothing(kubectl: Kubectl, operator: OperatorProcess,
                                    name: str) -> None:
    """Several full reconcile passes of a Ready resource change nothing and write nothing."""
    time.sleep(1.5)  # let the event-driven passes that follow readiness settle
    before = children(kubectl, name)
    md_before = kubectl.get("md", name)
    assert md_before is not None
    writes_before = _writes(operator)
    time.sleep(4)  # the timer runs every second: several full reconcile passes
    assert children(kubectl, name) == before
    md_after = kubectl.get("md", name)
    assert md_after is not None
    assert md_after["metadata"]["resourceVersion"] == md_before["metadata"]["resourceVersion"]
    assert _writes(operator) == writes_before, operator.metrics()
    assert "modelship_reconciles_total" in operator.metrics()


def test_converged_reconcile_writes_nothing(kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(version=1))
    wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
    assert_converged_writes_nothing(kubectl, operator, "defects-dev")


def _writes(operator: OperatorProcess) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("modelship_kube_writes_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_gpu_resources_pass_through_and_schedule_on_the_gpu_node(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(
        version=1,
        # Quantities the API server stores in another form: 1 reads back as "1",
        # "1000m" as "1" and "2048Mi" as "2Gi".
        resources={"limits": {"nvidia.com/gpu": 1, "memory": "2048Mi"},
                   "requests": {"cpu": "1000m", "memory": "2Gi"}},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        nodeSelector={"nvidia.com/gpu.present": "true"},
    ))
    wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
    dep = kubectl.get("deployment", "defects-dev-v1")
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] == "1"
    pods = kubectl.list("pod", "modelship.io/modeldeployment=defects-dev")
    assert [p["spec"]["nodeName"] for p in pods] == ["gpu-0"]
    # A converged GPU deployment is not re-applied on every pass.
    assert_converged_writes_nothing(kubectl, operator, "defects-dev")


def test_unschedulable_gpu_request_reports_the_scheduler_reason(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(version=1, resources={"limits": {"nvidia.com/gpu": 4}},
                         tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]))

    def waiting_with_reason() -> dict[str, Any] | None:
        md = kubectl.get("md", "defects-dev")
        message = condition(md, "Ready").get("message", "")
        return md if "Insufficient nvidia.com/gpu" in message else None

    md = wait_for("scheduler reason in Ready", waiting_with_reason, timeout=60)
    assert md["status"]["phase"] == "Pending"
    assert condition(md, "Ready")["status"] == "False"


def test_new_version_replaces_old_and_old_children_go(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(version=1))
    wait_for("v1 Ready", lambda: ready(kubectl, "defects-dev", 1))
    kubectl.apply(sample(version=2))
    md = wait_for("v2 Ready", lambda: ready(kubectl, "defects-dev", 2))
    assert md["status"].get("candidateVersion") is None
    # v1 drains first: abortScaleDownDelay (30s by default) after the Service switched.
    wait_for("v1 removed", lambda: set(children(kubectl, "defects-dev")) == {
        "deployment/defects-dev-v2", "service/defects-dev-v2", "service/defects-dev"},
        timeout=120)


def test_a_version_service_from_before_headless_ones_keeps_its_address(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    """An upgrade: a version Service that an earlier modelship made holds a ClusterIP, which
    Kubernetes never changes. The operator keeps that Service as it is (no failing apply,
    no recreation under a serving version) and the next version's Service is headless."""
    operator.stop()
    kubectl.apply(sample(version=1))
    md = wait_for("created", lambda: kubectl.get("md", "defects-dev"))
    earlier = {  # as modelship applied it before: no clusterIP field, so one is allocated
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "defects-dev-v1", "labels": {
            "app.kubernetes.io/managed-by": "modelship",
            "modelship.io/modeldeployment": "defects-dev", "modelship.io/model-version": "1"},
            "ownerReferences": [{"apiVersion": "modelship.io/v1alpha1",
                                 "kind": "ModelDeployment", "name": "defects-dev",
                                 "uid": md["metadata"]["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]},
        "spec": {"selector": {"modelship.io/modeldeployment": "defects-dev",
                              "modelship.io/model-version": "1"},
                 "ports": [{"name": "grpc", "port": 8001, "targetPort": "grpc"}]},
    }
    kubectl.apply(earlier, "--server-side", "--field-manager=modelship-operator")
    before = kubectl.get("service", "defects-dev-v1")
    assert before is not None and before["spec"]["clusterIP"] not in ("", "None")
    operator.start()

    md = wait_for("v1 Ready", lambda: ready(kubectl, "defects-dev", 1))
    assert not condition(md, "ReconcileError")
    after = kubectl.get("service", "defects-dev-v1")
    assert after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"]["clusterIP"] == before["spec"]["clusterIP"]
    assert {p["name"] for p in after["spec"]["ports"]} == {"http", "grpc", "metrics"}

    kubectl.apply(sample(version=2))
    wait_for("v2 Ready", lambda: ready(kubectl, "defects-dev", 2))
    v2 = kubectl.get("service", "defects-dev-v2")
    assert v2 is not None and v2["spec"]["clusterIP"] == "None"


def test_deleting_the_resource_garbage_collects_children(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(version=1))
    wait_for("Ready", lambda: ready(kubectl, "defects-dev", 1))
    assert children(kubectl, "defects-dev")
    kubectl("delete", "md", "defects-dev", "--wait=true", "--timeout=60s")
    wait_for("children collected", lambda: not children(kubectl, "defects-dev"), timeout=60)
    assert not kubectl.list("pod", "modelship.io/modeldeployment=defects-dev") or wait_for(
        "pods gone", lambda: not kubectl.list("pod", "modelship.io/modeldeployment=defects-dev"))


def test_operator_killed_midway_converges_to_the_same_objects(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(sample(version=1))
    wait_for("v1 Ready", lambda: ready(kubectl, "defects-dev", 1))
    reference = _shape(kubectl)

    kubectl.apply(sample(version=2))
    wait_for("v2 Deployment created", lambda: kubectl.get("deployment", "defects-dev-v2"),
             interval=0.05)
    operator.kill()  # mid-change: v2 exists, v1 not yet removed, status not yet updated
    kubectl.apply(sample(version=3))  # the spec moves on while nobody is watching
    operator.start()
    wait_for("v3 Ready", lambda: ready(kubectl, "defects-dev", 3))
    wait_for("only v3 left", lambda: set(children(kubectl, "defects-dev")) == {
        "deployment/defects-dev-v3", "service/defects-dev-v3", "service/defects-dev"},
        timeout=120)
    assert _shape(kubectl) == {k.replace("v1", "v3"): v for k, v in reference.items()}


def _shape(kubectl: Kubectl) -> dict[str, Any]:
    """The parts of the children that the operator decides (names, selectors, ports)."""
    out: dict[str, Any] = {}
    for dep in kubectl.list("deployment", "modelship.io/modeldeployment=defects-dev"):
        out[f"deployment/{dep['metadata']['name']}"] = (
            dep["spec"]["replicas"], sorted(dep["spec"]["selector"]["matchLabels"]))
    for svc in kubectl.list("service", "modelship.io/modeldeployment=defects-dev"):
        out[f"service/{svc['metadata']['name']}"] = sorted(
            p["name"] for p in svc["spec"]["ports"])
    return out


def test_spec_the_cluster_cannot_use_gets_invalid_spec_without_hot_loop(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    doc = sample(version=123456789012)  # the derived name exceeds 63 characters
    doc["metadata"]["name"] = "d" * 50
    kubectl.apply(doc)

    def invalid() -> dict[str, Any] | None:
        md = kubectl.get("md", "d" * 50)
        return md if condition(md, "InvalidSpec").get("status") == "True" else None

    md = wait_for("InvalidSpec", invalid)
    message = condition(md, "InvalidSpec")["message"]
    assert "spec.model.version" in message and "exceeds 63 characters" in message
    assert md["status"]["phase"] == "Failed"
    version_before = md["metadata"]["resourceVersion"]
    time.sleep(3)
    after = kubectl.get("md", "d" * 50)
    assert after is not None and after["metadata"]["resourceVersion"] == version_before
    assert not kubectl.list("deployment", f"modelship.io/modeldeployment={'d' * 50}")
    assert operator.alive()

    doc["spec"]["model"]["version"] = 3  # fixing the spec clears the condition
    kubectl.apply(doc)
    md = wait_for("Ready after fix", lambda: ready(kubectl, "d" * 50, 3))
    assert condition(md, "InvalidSpec") == {}


def test_replica_provider_canary_splits_by_pod_count_and_switches_the_service(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    rollout = {"canary": {"steps": [{"weight": 50, "pause": "4s"}]}}
    doc = sample(version=1, replicas=2)
    doc["spec"]["rollout"] = rollout
    kubectl.apply(doc)
    wait_for("v1 Ready", lambda: ready(kubectl, "defects-dev", 1))
    stable_svc = kubectl.get("service", "defects-dev")
    assert stable_svc is not None
    assert stable_svc["spec"]["selector"]["modelship.io/model-version"] == "1"

    doc = sample(version=2, replicas=2)
    doc["spec"]["rollout"] = rollout
    kubectl.apply(doc)

    def split() -> dict[str, Any] | None:
        svc = kubectl.get("service", "defects-dev") or {}
        selector = svc.get("spec", {}).get("selector", {})
        return svc if "modelship.io/model-version" not in selector else None

    wait_for("Service across both versions", split)
    candidate = kubectl.get("deployment", "defects-dev-v2")
    assert candidate is not None and candidate["spec"]["replicas"] == 2  # 2 of 4 pods: 50%
    md = kubectl.get("md", "defects-dev")
    assert md is not None and md["status"]["weights"]["candidate"] == 50
    wait_for("v2 promoted", lambda: ready(kubectl, "defects-dev", 2), timeout=60)
    svc = kubectl.get("service", "defects-dev")
    assert svc is not None
    assert svc["spec"]["selector"]["modelship.io/model-version"] == "2"
