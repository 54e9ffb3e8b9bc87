"""The smoke load (pure): when the operator sends the user's sample request to a candidate
that gets no client traffic, how fast, until when, and the request it sends.

A candidate at weight 0 (blueGreen's Preview, a shadow stage, a canary step of weight 0)
serves no client, so its analysis runs find no sample and stay Inconclusive: it can never
promote on its own. With `spec.rollout.smokeLoad` the operator sends the sample at `rate`
requests a second from the moment such a stage begins, for at most `maxDuration` from the
stage's start. Everything the plan depends on is in spec and status (`stageStartedAt`), so
an operator restarted mid-stage sends again at once and stops at the same moment; the
sending itself holds nothing that matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship.core.rollout.clock import parse_time
from modelship.core.rollout.stages import STARTING
from modelship_api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus, SmokeLoad

_INTEGERS = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}


@dataclass(frozen=True)
class SmokePlan:
    """Send the sample to the pods of release (`version`, `revision`) at `rate` requests a
    second until `until` (each request given `timeout` seconds)."""

    version: int
    rate: int
    until: datetime
    timeout: float
    revision: int = 0

    @property
    def release(self) -> Release:
        return Release(self.version, self.revision)


def smoke_plan(spec: ModelDeploymentSpec, status: ModelDeploymentStatus,
               now: datetime) -> SmokePlan | None:
    """The load due now, or None: no smokeLoad in spec, no rollout under way, a stage that
    has not begun (the candidate is not ready) or that gives the candidate client traffic
    (unless `during: EveryStage`), or `maxDuration` past since the stage began."""
    load = spec.rollout.smoke_load if spec.rollout is not None else None
    rollout = status.rollout
    candidate = status.candidate_version
    if load is None or candidate is None or rollout is None:
        return None
    if rollout.stage in ("", STARTING) or rollout.stage_started_at is None:
        return None
    zero_weight = status.weights is not None and status.weights.candidate == 0
    if load.during == "ZeroWeight" and not zero_weight:
        return None
    until = parse_time(rollout.stage_started_at) + timedelta(
        seconds=parse_duration(load.max_duration))
    if now >= until:
        return None
    return SmokePlan(version=candidate, rate=load.rate, until=until,
                     timeout=parse_duration(load.timeout),
                     revision=status.candidate_revision or 0)


def _value(datatype: str, value: float) -> float | int | bool:
    if datatype == "BOOL":
        return value != 0
    if datatype in _INTEGERS:
        return int(value)
    return value


def infer_body(load: SmokeLoad) -> dict[str, Any]:
    """The KServe v2 inference request (JSON, as Triton's HTTP endpoint takes it)."""
    return {"inputs": [{"name": i.name, "datatype": i.datatype, "shape": list(i.shape),
                        "data": [_value(i.datatype, v) for v in i.data]}
                       for i in load.inputs]}


def infer_path(model: str, version: int) -> str:
    return f"/v2/models/{model}/versions/{version}/infer"


def ready_addresses(pods: list[dict[str, Any]]) -> tuple[str, ...]:
    """The IPs of the pods that are Ready and not being deleted, sorted (a stable order, so an
    unchanged set of pods does not restart the load)."""
    out = []
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            out.append(str(status["podIP"]))
    return tuple(sorted(out))
