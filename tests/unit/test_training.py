"""TrainingRun: the Job renderer and the status derived from a Job and its pods (pure)."""

from __future__ import annotations

import json
from typing import Any

from modelship.core import training_manifests
from modelship.core.training_status import plan
from modelship_api.training_result import TrainingResult
from modelship_api.trainingrun import GateStatus, TrainingRun

NOW = "2026-11-22T10:00:00Z"


def run(status: dict[str, Any] | None = None, **spec: Any) -> TrainingRun:
    base: dict[str, Any] = {
        "model": "defects",
        "dataset": {"volume": {"persistentVolumeClaim": "data", "path": "defects/v3"}},
        "publish": {"repository": {"persistentVolumeClaim": {"claimName": "repo"},
                                   "subPath": "triton"}},
        "gate": {"baseline": {"metric": "accuracy", "modelDeployment": "defects"}},
    }
    base.update(spec)
    return TrainingRun.model_validate({
        "metadata": {"name": "nightly", "namespace": "vision", "uid": "u", "generation": 1},
        "spec": base, "status": status or {}})


def env_of(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_job_mounts_repository_and_dataset_and_pins_production() -> None:
    job = training_manifests.job(run(), production_version=7)
    env = env_of(job)
    assert env["MODELSHIP_REPOSITORY"] == "/models/triton"
    assert env["MODELSHIP_DATASET_DIR"] == "/data/defects/v3"
    spec = json.loads(env["MODELSHIP_TRAINING_SPEC"])
    assert spec["gate"]["baseline"]["productionVersion"] == 7
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert volumes[1]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    assert job["metadata"]["name"] == "nightly-train"


def test_job_mounts_the_production_area_read_only() -> None:
    dataset = {"volume": {"persistentVolumeClaim": "data", "path": "defects/v3"},
               "production": {"volume": {"hostPath": "/srv/samples", "path": "line-1"}}}
    job = training_manifests.job(run(dataset=dataset))
    pod = job["spec"]["template"]["spec"]
    assert {"name": "production", "hostPath": {"path": "/srv/samples", "type": "Directory"}} in (
        pod["volumes"])
    assert {"name": "production", "mountPath": "/production", "readOnly": True} in (
        pod["containers"][0]["volumeMounts"])
    assert env_of(job)["MODELSHIP_PRODUCTION_DIR"] == "/production/line-1"
    assert "MODELSHIP_PRODUCTION_DIR" not in env_of(training_manifests.job(run()))


def test_pinned_production_version_wins() -> None:
    tr = run(gate={"baseline": {"productionVersion": 3, "modelDeployment": "defects"}})
    spec = json.loads(env_of(training_manifests.job(tr, 7))["MODELSHIP_TRAINING_SPEC"])
    assert spec["gate"]["baseline"]["productionVersion"] == 3


def _job(condition: str | None = None, reason: str = "") -> dict[str, Any]:
    conds = [{"type": condition, "status": "True", "reason": reason,
              "lastTransitionTime": NOW}] if condition else []
    return {"metadata": {"name": "nightly-train"}, "status": {"conditions": conds}}


def _pod(phase: str, exit_code: int | None = None, message: str = "",
         ready: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {
            "exitCode": exit_code, "message": message}}}]
    return {"metadata": {"name": "nightly-train-x", "creationTimestamp": NOW},
            "status": status}


def test_no_job_yet_creates_it() -> None:
    p = plan(run(), None, [], NOW)
    assert p.create_job and p.status.phase == "Pending"


def test_running_then_evaluating() -> None:
    assert plan(run(), _job(), [_pod("Running")], NOW).status.phase == "Running"
    assert plan(run(), _job(), [_pod("Running", ready=True)], NOW).status.phase == "Evaluating"


def test_evaluating_does_not_flap_back_when_the_same_pod_turns_not_ready() -> None:
    """The pod reached evaluation (its marker stays); a readiness probe failing under load,
    or the container exiting before the pod's phase says so, must not send the run back
    to Running and record Running and Evaluating events twice."""
    evaluating = plan(run(), _job(), [_pod("Running", ready=True)], NOW).status
    again = plan(run(evaluating.to_api()), _job(), [_pod("Running")], NOW)
    assert again.status.phase == "Evaluating"
    assert again.events == []
    retried = _pod("Running")
    retried["metadata"]["name"] = "nightly-train-y"  # the Job's next pod trains anew
    assert plan(run(evaluating.to_api()), _job(), [retried], NOW).status.phase == "Running"


def test_a_finished_pod_before_the_job_completes_keeps_the_phase() -> None:
    evaluating = run({"phase": "Evaluating"})
    p = plan(evaluating, _job(), [_pod("Succeeded", 0)], NOW)
    assert p.status.phase == "Evaluating"
    assert p.events == []
    assert plan(run(), _job(), [_pod("Succeeded", 0)], NOW).status.phase == "Running"
    assert plan(run(), _job(), [], NOW).status.phase == "Pending"


def test_succeeded_result_becomes_status() -> None:
    result = TrainingResult(outcome="Succeeded", reason="Published", model="defects",
                            version=4, key_metric="accuracy=0.950",
                            metrics={"accuracy": 0.95},
                            gate=GateStatus(verdict="Blessed", reason="ok"))
    p = plan(run(), _job("Complete"), [_pod("Succeeded", 0,
                                            result.to_termination_message())], NOW)
    st = p.status
    assert (st.phase, st.version, st.key_metric) == ("Succeeded", 4, "accuracy=0.950")
    assert st.gate is not None and st.gate.verdict == "Blessed"
    assert ("Normal", "Succeeded", "Published") in p.events


def test_failed_job_without_result_says_why() -> None:
    p = plan(run(), _job("Failed", "DeadlineExceeded"), [_pod("Failed", 137, "")], NOW)
    assert p.status.phase == "Failed"
    assert p.status.message.startswith("DeadlineExceeded")
    garbage = plan(run(), _job("Failed", "BackoffLimitExceeded"),
                   [_pod("Failed", 1, "Traceback: boom")], NOW)
    assert "not a modelship result: Traceback: boom" in garbage.status.message


def test_finished_runs_never_change_or_recreate_the_job() -> None:
    done = run(status={"phase": "Succeeded", "version": 4})
    p = plan(done, None, [], NOW)  # the Job was removed by its TTL
    assert not p.create_job and p.status.phase == "Succeeded" and p.events == []


def _deleting(pod: dict[str, Any]) -> dict[str, Any]:
    pod["metadata"]["deletionTimestamp"] = NOW
    return pod


def test_a_deleted_training_pod_is_reported_while_it_stops_and_as_the_failure() -> None:
    running = plan(run(), _job(), [_pod("Running")], NOW).status
    stopping = plan(TrainingRun.model_validate({**run().to_api(), "status": running.to_api()}),
                    _job(), [_deleting(_pod("Running"))], NOW)
    assert stopping.status.phase == "Running"
    assert "nightly-train-x was deleted" in stopping.status.message
    assert "training in pod" not in stopping.status.message
    assert stopping.events == [("Warning", "PodDeleted", stopping.status.message)]
    remembered = TrainingRun.model_validate({**run().to_api(),
                                             "status": stopping.status.to_api()})
    # Gone before the Job is marked failed: no flap back to Pending, no new event.
    gone = plan(remembered, _job(), [], NOW)
    assert gone.status.message == stopping.status.message and gone.events == []
    # The trainer caught SIGTERM and said so; the deletion is still the reason.
    terminated = TrainingResult(outcome="Failed", reason="Terminated", model="defects",
                                message="received SIGTERM (deadline or pod deletion)")
    for pods in ([], [_deleting(_pod("Failed", 1, terminated.to_termination_message()))]):
        failed = plan(remembered, _job("Failed", "BackoffLimitExceeded"), pods, NOW)
        assert failed.status.phase == "Failed"
        complete = next(c for c in failed.status.conditions or [] if c.type == "Complete")
        assert complete.reason == "PodDeleted"
        assert failed.status.message.startswith("the training pod was deleted before it "
                                                "finished")
        assert "BackoffLimitExceeded" in failed.status.message
        assert failed.events == [("Warning", "Failed", failed.status.message)]


def test_a_pod_gone_unseen_still_reads_as_deleted_but_a_deadline_stays_a_deadline() -> None:
    unseen = plan(run({"phase": "Running"}), _job("Failed", "BackoffLimitExceeded"), [], NOW)
    assert unseen.status.message.startswith("the training pod was deleted")
    deadline = plan(run({"phase": "Running"}), _job("Failed", "DeadlineExceeded"), [], NOW)
    assert deadline.status.message.startswith("DeadlineExceeded")
    # A pod that failed by itself stays with the Job: its own result is the reason.
    crashed = plan(run({"phase": "Running"}), _job("Failed", "BackoffLimitExceeded"),
                   [_pod("Failed", 1, "Traceback: boom")], NOW)
    assert "not a modelship result" in crashed.status.message
