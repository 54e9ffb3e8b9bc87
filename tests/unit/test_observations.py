"""Reducing Deployments and pods to what the pure core needs."""

from __future__ import annotations

from modelship.core.observations import observe_deployment, pod_problems


def test_observe_deployment_needs_current_generation_and_all_replicas() -> None:
    dep = {"metadata": {"generation": 3}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2,
                      "readyReplicas": 2}}
    assert observe_deployment(1, dep).ready
    stale = {**dep, "status": {**dep["status"], "observedGeneration": 2}}
    assert not observe_deployment(1, stale).ready
    short = {**dep, "status": {**dep["status"], "availableReplicas": 1}}
    assert not observe_deployment(1, short).ready
    deleting = {**dep, "metadata": {**dep["metadata"], "deletionTimestamp": "2025-01-01T0:0:0Z"}}
    seen = observe_deployment(1, deleting)
    assert seen.terminating and not seen.ready


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
