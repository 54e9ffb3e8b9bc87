"""TrainingRuns against the real API server and the real operator.

kwok plays the kubelet (the runs tolerate its nodes' taint): it runs nothing, so the tests
run the REAL trainer (`modelship-train`) with exactly the environment the operator put into
the Job's pod, then finish the pod with the trainer's real exit code and termination message
(kwok stage `pod-finish-annotated`). The operator's parser therefore reads real trainer
output. The last test runs a TrainingRun on the node agent's node instead, for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelship_api import samples
from modelship_api.profile import PROFILE_FILE, Profile, rfc3339
from modelship_api.trainingrun import GeneratedDataset
from modelship_dev import workload
from modelship_dev.cluster import SIMULATED_TOLERATION, LocalCluster
from modelship_dev.operator_process import OperatorProcess
from modelship_trainer.surface_defects import generate
from tests.conftest import Kubectl, wait_for, wait_for_status

pytestmark = pytest.mark.integration
MANUAL = {"kwok.modelship.io/manual": "true"}


def training_run(name: str = "defects-v1", gate: dict[str, Any] | None = None,
                 **trainer: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "surface-defects",
        "trainer": {"hyperparameters": {"epochs": "1"}, "podAnnotations": MANUAL, **trainer,
                    "tolerations": [*trainer.get("tolerations", []), SIMULATED_TOLERATION]},
        "dataset": {"generated": {"seed": 3, "samples": 400}},
        "publish": {"backend": "python",
                    "repository": {"hostPath": {"path": "/var/lib/modelship/repo"}}},
    }
    if gate is not None:
        spec["gate"] = gate
    return {"apiVersion": "modelship.io/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "labels": {"pipeline": "defects-dev"}}, "spec": spec}


def status(kubectl: Kubectl, name: str = "defects-v1") -> dict[str, Any]:
    tr = kubectl.get("tr", name) or {}
    return dict(tr.get("status") or {})


def wait_phase(kubectl: Kubectl, phase: str, name: str = "defects-v1",
               timeout: float = 60) -> dict[str, Any]:
    return dict(wait_for(f"TrainingRun {phase}", lambda: (
        st if (st := status(kubectl, name)).get("phase") == phase else None), timeout=timeout))


def running_pod(kubectl: Kubectl, name: str = "defects-v1") -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        pods = kubectl.list("pod", f"modelship.io/trainingrun={name}")
        live = [p for p in pods if p["status"].get("phase") == "Running"]
        return live[0] if live else None
    return dict(wait_for("running training pod", find))


def run_trainer_like_the_pod(pod: dict[str, Any], repository: Path,
                             tmp_path: Path) -> tuple[int, str]:
    """Run the real trainer with the pod's own command and environment (paths remapped to
    this machine), and return its exit code and termination message."""
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    log = tmp_path / "termination-log"
    env.update(MODELSHIP_REPOSITORY=str(repository), MODELSHIP_TERMINATION_LOG=str(log),
               MODELSHIP_PROGRESS_MARKER=str(tmp_path / "evaluating"))
    command = container["command"]
    assert command == ["modelship-train"]
    proc = subprocess.run([str(Path(sys.executable).parent / command[0])],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, log.read_text()


def finish_pod(kubectl: Kubectl, pod: dict[str, Any], code: int, message: str) -> None:
    kubectl("annotate", "pod", pod["metadata"]["name"], f"kwok.modelship.io/exit-code={code}",
            f"kwok.modelship.io/termination-message={message}")


def test_training_run_becomes_a_job_and_real_trainer_output_becomes_status(
        kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    kubectl.apply(training_run(gate={"thresholds": [{"metric": "accuracy", "min": 0.3}]}))
    job = wait_for("Job", lambda: kubectl.get("job", "defects-v1-train"))
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingRun"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3]
    template = job["spec"]["template"]["spec"]
    assert template["restartPolicy"] == "Never"
    container = template["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["MODELSHIP_TRAINING_SPEC"])["model"] == "surface-defects"
    assert env["MODELSHIP_REPOSITORY"] == "/models"
    assert template["volumes"][0]["hostPath"]["path"] == "/var/lib/modelship/repo"

    pod = running_pod(kubectl)
    # kwok reports the pod Ready at once, which the trainer's probe means as Evaluating.
    wait_phase(kubectl, "Evaluating")
    repository = tmp_path / "repo"
    code, message = run_trainer_like_the_pod(pod, repository, tmp_path)
    assert code == 0, message
    finish_pod(kubectl, pod, code, message)
    st = wait_phase(kubectl, "Succeeded")
    assert st["version"] == 1
    assert st["keyMetric"].startswith("accuracy=")
    assert st["metrics"]["accuracy"] >= 0.3
    assert st["gate"]["verdict"] == "Blessed"
    assert st["artifact"]["digest"].startswith("sha256:")
    assert st["lineage"]["datasetDigest"]
    assert st["lineage"]["hyperparameters"]["epochs"] == "1"
    assert (repository / "surface-defects" / "1" / "model.onnx").is_file()
    # The version's reference profile was published with it; status summarises it.
    profile = Profile.load(repository / "surface-defects" / "1" / PROFILE_FILE)
    assert st["profile"]["digest"] == profile.digest()
    assert st["profile"]["samples"] == profile.samples == 80  # 20 % of 400 held out
    assert st["profile"]["dataTime"] == rfc3339(profile.data_time)
    summary = st["profile"]["statistics"]
    assert set(summary) == {"input_brightness", "input_contrast", "input_saturated_fraction",
                            "output_confidence", "output_entropy", "predicted_class"}
    assert 0.45 < summary["input_brightness"]["mean"] < 0.55  # the generator's default 0.5
    assert summary["predicted_class"]["top"] in ("ok", "scratch", "pit")
    assert next(c for c in st["conditions"] if c["type"] == "Complete")["status"] == "True"
    printed = kubectl("get", "tr", "defects-v1").stdout
    assert "Succeeded" in printed and "accuracy=" in printed
    events = kubectl("get", "events", "--field-selector",
                     "involvedObject.kind=TrainingRun", "-o", "json").stdout
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "Pending" in reasons or "Running" in reasons or "Evaluating" in reasons
    # Listed (and so shown by kubectl) in the order they happened, even within one second.
    lifecycle = ["Pending", "Running", "Evaluating", "Succeeded"]
    assert reasons == sorted(reasons, key=lifecycle.index), reasons
    assert reasons[-1] == "Succeeded"

    # Deleting the run removes its Job and pod, never the published model.
    kubectl("delete", "tr", "defects-v1", "--wait=true", "--timeout=60s")
    wait_for("Job gone", lambda: kubectl.get("job", "defects-v1-train") is None)
    wait_for("pods gone", lambda: not kubectl.list("pod", "modelship.io/trainingrun=defects-v1"))
    assert (repository / "surface-defects" / "1" / "model.onnx").is_file()


def write_production_area(volume: Path) -> None:
    """Two reviewed parts as the serving runner and the review page write them, one corrupt
    part and a half-written label line."""
    area = samples.production_area(volume, "surface-defects")
    data = generate(GeneratedDataset(samples=100, brightness=0.2, seed=9))
    start = datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
    for n, rows in enumerate((slice(0, 50), slice(50, 100), slice(0, 3))):
        at = start + timedelta(minutes=n)
        hour, name = samples.hour_folder(at), samples.part_name(1, at, "pod-a")
        folder = area / samples.SAMPLES_FOLDER / hour / name
        folder.mkdir(parents=True)
        images = data.images[rows]
        np.save(folder / samples.IMAGES_FILE, images if n < 2 else images[:2])
        records = [samples.SampleRecord(
            id=samples.sample_id(hour, name, i), version=1, time=at.isoformat(),
            prediction=0, confidence=0.9, probability=0.05) for i in range(len(images))]
        (folder / samples.RECORDS_FILE).write_text(
            "".join(r.model_dump_json(by_alias=True) + "\n" for r in records))
        for r, truth in zip(records, data.labels[rows].tolist(), strict=True):
            samples.append_label(area, samples.LabelRecord(
                sample=r.id, label=int(truth), reviewer="truth", at=at.isoformat(),
                label_set="default", source="automated"))
    with (area / samples.LABELS_FOLDER / "default" / "truth.jsonl").open("a") as f:
        f.write('{"sample": "2026-12')


def test_production_data_is_mounted_read_only_and_its_counts_reach_status(
        kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    run = training_run(gate={"slices": [{"name": "reviewed", "reviewedProduction": True,
                                         "min": 0.0, "minSamples": 5}]})
    run["spec"]["dataset"]["production"] = {
        "volume": {"hostPath": "/var/lib/modelship/samples", "path": "line-1"}}
    kubectl.apply(run)
    pod = running_pod(kubectl)
    container = pod["spec"]["containers"][0]
    assert {"name": "production", "mountPath": "/production", "readOnly": True} in (
        container["volumeMounts"])
    assert {"name": "production", "hostPath": {"path": "/var/lib/modelship/samples",
                                               "type": "Directory"}} in pod["spec"]["volumes"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELSHIP_PRODUCTION_DIR"] == "/production/line-1"
    volume = tmp_path / "samples" / "line-1"
    write_production_area(volume)
    pod["spec"]["containers"][0]["env"] = [
        e if e["name"] != "MODELSHIP_PRODUCTION_DIR" else {**e, "value": str(volume)}
        for e in container["env"]]
    code, message = run_trainer_like_the_pod(pod, tmp_path / "repo", tmp_path)
    assert code == 0, message
    finish_pod(kubectl, pod, code, message)
    st = wait_phase(kubectl, "Succeeded")
    used = st["lineage"]["production"]
    assert (used["parts"], used["corruptParts"], used["badLabelLines"]) == (2, 1, 1)
    assert used["train"] + used["heldOut"] == 100
    assert used["partsDigest"].startswith("sha256:")
    assert "1 corrupt parts, 1 bad label lines" in st["message"]
    check = next(c for c in st["gate"]["checks"] if c["name"].startswith("slice reviewed"))
    assert check["passed"] and check["name"] == "slice reviewed: accuracy>=0"
    # The reference profile covers the evaluation set: the held-out split and reviewed samples.
    assert st["profile"]["samples"] == 80 + used["heldOut"]


def test_gate_rejection_is_rejected_not_retried(
        kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    kubectl.apply(training_run(gate={"thresholds": [{"metric": "accuracy", "min": 0.9999}]},
                               **{}))
    pod = running_pod(kubectl)
    repository = tmp_path / "repo"
    code, message = run_trainer_like_the_pod(pod, repository, tmp_path)
    assert code == 3
    finish_pod(kubectl, pod, code, message)
    st = wait_phase(kubectl, "Rejected")
    assert st["gate"]["verdict"] == "Rejected"
    assert "accuracy" in st["gate"]["reason"]
    assert "version" not in st
    assert not (repository / "surface-defects" / "1").exists()
    job = kubectl.get("job", "defects-v1-train")
    assert job is not None
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["reason"] == "PodFailurePolicy"
    assert len(kubectl.list("pod", "modelship.io/trainingrun=defects-v1")) == 1


def test_trainer_failure_maps_to_failed_with_its_reason(
        kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    kubectl.apply(training_run(hyperparameters={"epochs": "many"}))
    pod = running_pod(kubectl)
    code, message = run_trainer_like_the_pod(pod, tmp_path / "repo", tmp_path)
    assert code == 2
    finish_pod(kubectl, pod, code, message)
    st = wait_phase(kubectl, "Failed")
    assert "epochs" in st["message"]


def test_deadline_maps_to_failed_deadline_exceeded(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    doc = training_run()
    doc["spec"]["job"] = {"activeDeadlineSeconds": 10}
    kubectl.apply(doc)
    running_pod(kubectl)
    st = wait_phase(kubectl, "Failed", timeout=60)
    assert "DeadlineExceeded" in st["message"]


def test_gpu_run_waits_for_a_free_gpu_with_the_schedulers_reason(
        kubectl: Kubectl, operator: OperatorProcess) -> None:
    gpu = {"resources": {"limits": {"nvidia.com/gpu": 1}},
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
    kubectl.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-hog"},
                   "spec": {"containers": [{"name": "c", "image": "busybox",
                                            "resources": gpu["resources"]}],
                            "tolerations": [*gpu["tolerations"], SIMULATED_TOLERATION]}})
    wait_for("gpu-hog running", lambda: (kubectl.get("pod", "gpu-hog") or {}).get(
        "status", {}).get("phase") == "Running")
    kubectl.apply(training_run(**gpu))
    st = wait_for("Pending with reason", lambda: (
        s if "Insufficient nvidia.com/gpu" in (s := status(kubectl)).get("message", "")
        else None))
    assert st["phase"] == "Pending"
    time.sleep(2)
    assert status(kubectl)["phase"] == "Pending"
    kubectl("delete", "pod", "gpu-hog", "--wait=true", "--timeout=60s")
    st = wait_for("started", lambda: (
        s if (s := status(kubectl)).get("phase") in ("Running", "Evaluating") else None),
        timeout=90)
    pod = running_pod(kubectl)
    assert pod["spec"]["nodeName"] == "gpu-0"


def test_spec_is_immutable(kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(training_run())
    doc = training_run()
    doc["spec"]["trainer"]["hyperparameters"] = {"epochs": "5"}
    out = kubectl.apply(doc, check=False)
    assert out.returncode != 0
    assert "spec is immutable" in out.stderr


@pytest.fixture
def local_node(cluster: LocalCluster) -> Iterator[Path]:
    """The node agent's node, where pods placed with `workload.PLACEMENT` run for real."""
    if os.geteuid() != 0:
        pytest.fail("the node agent needs root (network and mount namespaces)")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.fail("the node agent needs `ip` (iproute2) and `nsenter` (util-linux)")
    folder = cluster.start_node_agent(workload.NODE,
                                      taints=[f"{workload.NODE_TAINT}=true:NoSchedule"])
    try:
        yield folder
    finally:
        cluster.stop_node_agent(workload.NODE)


def test_training_pod_deleted_mid_run_fails_the_run_and_publishes_nothing(
        kubectl: Kubectl, operator: OperatorProcess, local_node: Path,
        tmp_path: Path) -> None:
    """The real trainer on the node agent; its pod deleted while it trains. The node agent
    stops it the kubelet's way, so the Job counts the pod as failed (backoffLimit 0: the Job
    fails) and lets it go; the run says the pod was deleted; the repository stays clean."""
    repository = workload.node_folder(tmp_path / "repo")
    kubectl.apply(workload.training_run(
        "defects-v1", "surface-defects", repository, labels={"pipeline": "defects-dev"},
        seed=5, samples=4000, hyperparameters={"epochs": "50"}))
    st = wait_for_status("training in a pod", lambda: status(kubectl), lambda s: (
        s.get("phase") == "Running" and s.get("message", "").startswith("training in pod")),
        timeout=120, context=operator.log_tail)
    pod = kubectl.list("pod", "modelship.io/trainingrun=defects-v1")[0]
    assert pod["spec"]["nodeName"] == workload.NODE
    assert st["message"] == f"training in pod {pod['metadata']['name']}"
    # Training has begun once the data set is generated (the trainer logs each stage).
    meta = pod["metadata"]
    log = (local_node / "logs" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
           / "trainer.log")
    wait_for("the trainer training", lambda: log.exists()
             and "modelship-train: generate" in log.read_text(), timeout=180, interval=0.5)
    kubectl("delete", "pod", meta["name"], "--wait=false")

    st = wait_for_status("the run Failed", lambda: status(kubectl),
                         lambda s: s.get("phase") in ("Failed", "Succeeded", "Rejected"),
                         timeout=120, context=operator.log_tail)
    assert st["phase"] == "Failed", st
    complete = next(c for c in st["conditions"] if c["type"] == "Complete")
    assert complete["status"] == "False" and complete["reason"] == "PodDeleted"
    assert st["message"].startswith("the training pod was deleted before it finished")
    assert "BackoffLimitExceeded" in st["message"]
    # The Job counted the pod as failed and let it go (no pod left Terminating).
    job = kubectl.get("job", "defects-v1-train")
    assert job is not None and job["status"]["failed"] == 1
    assert any(c["type"] == "Failed" and c["status"] == "True"
               for c in job["status"]["conditions"])
    wait_for("the deleted pod gone", lambda: not kubectl.list(
        "pod", "modelship.io/trainingrun=defects-v1"), timeout=60)
    events = json.loads(kubectl("get", "events", "--field-selector",
                                "involvedObject.kind=TrainingRun", "-o", "json").stdout)
    reasons = [e["reason"] for e in events["items"]]
    assert reasons[-1] == "Failed" and "Running" in reasons, reasons
    # Nothing was published, nothing half-written is left.
    assert [p for p in repository.rglob("*") if p != repository / "surface-defects"] == []
