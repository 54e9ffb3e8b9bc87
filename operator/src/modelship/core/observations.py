"""What the operator observed in the cluster, reduced to plain values for the pure core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelship.core.releases import Release


@dataclass(frozen=True)
class VersionObservation:
    """The Deployment of one model version, as last seen."""

    version: int
    replicas: int
    ready_replicas: int
    available: bool
    problems: tuple[str, ...] = field(default=())  # e.g. "ImagePullBackOff: ...", init errors
    # Being deleted (its pods may still run): never ready, and not deleted again.
    terminating: bool = False
    revision: int = 0  # the pod-template revision (core.releases)

    @property
    def release(self) -> Release:
        return Release(self.version, self.revision)

    @property
    def ready(self) -> bool:
        return (self.available and not self.terminating
                and self.ready_replicas >= self.replicas > 0)


def observe_deployment(version: int, obj: dict[str, Any],
                       problems: tuple[str, ...] = (), revision: int = 0) -> VersionObservation:
    """Reduce a Deployment to whether all its pods of the current template are available."""
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {})
    status = obj.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    progress_problems = tuple(
        f"{c.get('reason')}: {c.get('message')}"
        for c in status.get("conditions") or []
        if c.get("type") == "Progressing" and c.get("status") == "False"
    )
    return VersionObservation(
        version=version,
        replicas=replicas,
        ready_replicas=int(status.get("readyReplicas", 0)),
        available=current and updated >= replicas and available >= replicas,
        problems=progress_problems + problems,
        terminating=bool(meta.get("deletionTimestamp")),
        revision=revision,
    )


def pod_problems(pod: dict[str, Any]) -> list[str]:
    """Why a pod is not ready, in the words Kubernetes used (scheduler, kubelet, container)."""
    out: list[str] = []
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            out.append(f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}")
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for cs in statuses:
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        if waiting.get("reason") and waiting["reason"] not in ("PodInitializing",
                                                               "ContainerCreating"):
            detail = last.get("message") or waiting.get("message") or ""
            out.append(f"{cs.get('name')}: {waiting['reason']} {detail}".strip())
        elif terminated and terminated.get("exitCode", 0) != 0:
            out.append(f"{cs.get('name')}: exited {terminated.get('exitCode')} "
                       f"{terminated.get('message', '')}".strip())
    return out
