"""Decide which Triton versions run and what the status says (pure).

`plan` is a function of (resource, observations, now): it returns the objects that must
exist, the versions to remove and the new status. The handler applies exactly that, so the
same inputs always give the same writes, and a converged resource gives none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelship import constants
from modelship.api.common import Condition
from modelship.api.modeldeployment import ModelDeployment, ModelDeploymentStatus, Weights
from modelship.core import triton_manifests
from modelship.core.conditions import remove_condition, set_condition
from modelship.core.observations import VersionObservation
from modelship.core.validation import model_deployment_errors


@dataclass(frozen=True)
class Resolution:
    """The version the spec resolves to, or why there is none yet."""

    version: int | None
    reason: str = ""


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete_versions: list[int] = field(default_factory=list)
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)


def _cond(type_: str, ok: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(type=type_, status="True" if ok else "False", reason=reason,
                     message=message, observed_generation=generation)


def _not_ready_message(obs: VersionObservation | None, version: int) -> str:
    if obs is None:
        return f"creating the Triton Deployment for version {version}"
    detail = "; ".join(dict.fromkeys(obs.problems))  # de-duplicated, order kept
    base = f"version {version}: {obs.ready_replicas}/{obs.replicas} Triton pods ready"
    return f"{base} ({detail})" if detail else base


def plan(md: ModelDeployment, resolution: Resolution,
         versions: dict[int, VersionObservation], now: str) -> Plan:
    old = md.status
    gen = md.metadata.generation
    status = old.model_copy(deep=True)
    status.observed_generation = gen
    out = Plan(status=status)

    errors = model_deployment_errors(md, resolution.version)
    if errors:
        message = "; ".join(str(e) for e in errors)
        status.phase = "Failed"
        status.message = message
        status.conditions = set_condition(
            status.conditions, _cond("InvalidSpec", True, "InvalidSpec", message, gen), now)
        status.conditions = set_condition(
            status.conditions, _cond("Ready", False, "InvalidSpec", message, gen), now)
        # Whatever served before keeps serving: nothing is applied or removed.
        return out
    status.conditions = remove_condition(status.conditions, "InvalidSpec")

    desired = resolution.version
    stable = old.stable_version
    status.desired_version = desired
    if desired is None:
        status.phase = "Pending" if stable is None else status.phase
        status.message = resolution.reason
        status.conditions = set_condition(
            status.conditions,
            _cond("Ready", stable is not None, "NoVersion" if stable is None else "Serving",
                  resolution.reason, gen), now)
        keep = {stable} if stable is not None else set()
        out.delete_versions = sorted(set(versions) - keep)
        if stable is not None:
            out.apply += _objects(md, stable)
        return out

    running = {desired} | ({stable} if stable is not None else set())
    for version in sorted(running):
        out.apply += _objects(md, version)
    out.apply.append(triton_manifests.stable_service(md))

    desired_obs = versions.get(desired)
    if desired_obs is not None and desired_obs.ready:
        # The new version is ready: it becomes stable and every other version goes.
        status.stable_version = desired
        status.candidate_version = None
        status.weights = Weights(stable=100, candidate=0)
        status.phase = "Ready"
        status.message = f"serving {md.spec.model.name} version {desired}"
        out.delete_versions = sorted(v for v in versions if v != desired)
        out.apply = [o for o in out.apply if _version_of(o) in (None, desired)]
        status.conditions = set_condition(
            status.conditions, _cond("Ready", True, "Serving", status.message, gen), now)
        status.conditions = set_condition(
            status.conditions, _cond("Progressing", False, "Idle", "", gen), now)
        return out

    waiting = _not_ready_message(desired_obs, desired)
    out.delete_versions = sorted(v for v in versions if v not in running)
    if stable is None or stable == desired:
        status.phase = "Pending"
        status.message = waiting
        status.conditions = set_condition(
            status.conditions, _cond("Ready", False, "WaitingForTriton", waiting, gen), now)
    else:
        status.phase = "Progressing"
        status.candidate_version = desired
        status.message = f"replacing version {stable}: {waiting}"
        status.conditions = set_condition(
            status.conditions, _cond("Progressing", True, "NewVersion", status.message, gen),
            now)
    return out


def _objects(md: ModelDeployment, version: int) -> list[dict[str, Any]]:
    replicas = md.spec.runtime.replicas
    return [triton_manifests.deployment(md, version, replicas),
            triton_manifests.version_service(md, version)]


def _version_of(obj: dict[str, Any]) -> int | None:
    value = obj["metadata"].get("labels", {}).get(constants.LABEL_MODEL_VERSION)
    return int(value) if value is not None else None
