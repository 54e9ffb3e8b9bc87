"""The pure serving planner: which versions run and what the status says."""

from __future__ import annotations

from typing import Any

from modelship.api.modeldeployment import ModelDeployment
from modelship.core.observations import VersionObservation, observe_deployment, pod_problems
from modelship.core.serving import Resolution, plan

NOW = "2026-11-22T10:00:00Z"


def md(status: dict[str, Any] | None = None, name: str = "defects") -> ModelDeployment:
    return ModelDeployment.model_validate({
        "metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}},
        "status": status or {},
    })


def ready(version: int) -> VersionObservation:
    return VersionObservation(version, replicas=1, ready_replicas=1, available=True)


def waiting(version: int, *problems: str) -> VersionObservation:
    return VersionObservation(version, 1, 0, False, problems)


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]


def test_first_version_is_created_and_pending_until_ready() -> None:
    p = plan(md(), Resolution(2), {}, NOW)
    assert names(p.apply) == ["Deployment/defects-v2", "Service/defects-v2", "Service/defects"]
    assert p.status.phase == "Pending"
    ready_cond = next(c for c in p.status.conditions or [] if c.type == "Ready")
    assert ready_cond.status == "False" and ready_cond.reason == "WaitingForTriton"


def test_ready_version_becomes_stable() -> None:
    p = plan(md(), Resolution(2), {2: ready(2)}, NOW)
    assert p.status.phase == "Ready" and p.status.stable_version == 2
    assert p.status.observed_generation == 2
    assert p.delete_versions == []


def test_old_version_serves_until_the_new_one_is_ready() -> None:
    p = plan(md({"stableVersion": 1, "phase": "Ready"}), Resolution(2),
             {1: ready(1), 2: waiting(2, "triton: CrashLoopBackOff")}, NOW)
    assert "Deployment/defects-v1" in names(p.apply)
    assert p.status.phase == "Progressing" and p.status.candidate_version == 2
    assert "CrashLoopBackOff" in p.status.message
    assert p.delete_versions == []
    done = plan(md(p.status.to_api()), Resolution(2), {1: ready(1), 2: ready(2)}, NOW)
    assert done.delete_versions == [1]
    assert done.status.stable_version == 2 and done.status.candidate_version is None


def test_steady_state_plan_is_a_fixed_point() -> None:
    first = plan(md(), Resolution(2), {2: ready(2)}, NOW)
    again = plan(md(first.status.to_api()), Resolution(2), {2: ready(2)}, "2026-11-22T11:00:00Z")
    assert again.status == first.status  # no new transition times: nothing to write


def test_invalid_spec_touches_nothing() -> None:
    p = plan(md({"stableVersion": 1}, name="d" * 50), Resolution(10**12), {1: ready(1)}, NOW)
    assert p.apply == [] and p.delete_versions == []
    assert p.status.phase == "Failed"
    invalid = next(c for c in p.status.conditions or [] if c.type == "InvalidSpec")
    assert invalid.status == "True" and "spec.model.version" in invalid.message


def test_no_version_yet_keeps_serving_stable() -> None:
    p = plan(md({"stableVersion": 1, "phase": "Ready"}), Resolution(None, "no run yet"),
             {1: ready(1)}, NOW)
    assert names(p.apply) == ["Deployment/defects-v1", "Service/defects-v1"]
    assert p.status.message == "no run yet"


def test_observe_deployment_needs_current_generation_and_all_replicas() -> None:
    dep = {"metadata": {"generation": 3}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2,
                      "readyReplicas": 2}}
    assert observe_deployment(1, dep).ready
    stale = {**dep, "status": {**dep["status"], "observedGeneration": 2}}
    assert not observe_deployment(1, stale).ready
    short = {**dep, "status": {**dep["status"], "availableReplicas": 1}}
    assert not observe_deployment(1, short).ready


def test_pod_problems_use_kubernetes_words() -> None:
    pod = {"status": {
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/2 nodes are available: 1 Insufficient nvidia.com/gpu."}],
        "initContainerStatuses": [{"name": "select-version", "state": {"terminated": {
            "exitCode": 1, "message": "model repository has no version 9"}}}],
        "containerStatuses": [{"name": "triton", "state": {"waiting": {
            "reason": "PodInitializing"}}}],
    }}
    problems = pod_problems(pod)
    assert problems[0].startswith("Unschedulable: 0/2 nodes are available")
    assert problems[1] == "select-version: exited 1 model repository has no version 9"
    assert len(problems) == 2
