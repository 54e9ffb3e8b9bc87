"""What the state machine asks the operator to do: the new status and ordered actions.

The operator applies actions in order. Level-based: every decision lists every version that
must run and the route as it must be, so applying a decision twice, or after a crash halfway,
converges; versions that are observed but no longer wanted are removed only after the route
update that takes their traffic away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modelship.core.releases import Release
from modelship_api.modeldeployment import CheckResult, HistoryEntry, ModelDeploymentStatus


@dataclass(frozen=True)
class EnsureVersion:
    """The Deployment and Service of `version` (pod-template `revision`) exist with
    `replicas` Triton pods. `template`: the hash of the pod template that revision was
    started with; a Deployment whose template the spec no longer describes is only scaled,
    never re-rendered (a stable keeps its template until a new revision is promoted)."""

    version: int
    replicas: int
    revision: int = 0
    template: str | None = None

    @property
    def release(self) -> Release:
        return Release(self.version, self.revision)


@dataclass(frozen=True)
class SetTraffic:
    """The route: `candidate_weight` percent to the candidate, the rest to stable, and
    `mirror_percent` of requests mirrored to the candidate (shadow)."""

    stable_version: int
    candidate_version: int | None
    candidate_weight: int
    mirror_percent: int
    stable_revision: int = 0
    candidate_revision: int = 0

    @property
    def stable(self) -> Release:
        return Release(self.stable_version, self.stable_revision)

    @property
    def candidate(self) -> Release | None:
        return (None if self.candidate_version is None
                else Release(self.candidate_version, self.candidate_revision))


@dataclass(frozen=True)
class RemoveVersion:
    """Delete the Deployment and Service of `version` (it serves no traffic any more)."""

    version: int
    revision: int = 0

    @property
    def release(self) -> Release:
        return Release(self.version, self.revision)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the ModelDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = EnsureVersion | SetTraffic | RemoveVersion | Event


@dataclass(frozen=True)
class Decision:
    """The result of one tick.

    `requeue_after`: seconds until the state machine must run again even if nothing is
    observed to change (next analysis run, end of a pause, a deadline, a warm version's
    expiry); None when only a change can move it. `finished`: the history entry of a rollout
    that ended this tick; `analysis_run`: the check results of a run made this tick (both
    for the operator's metrics)."""

    status: ModelDeploymentStatus
    actions: tuple[Action, ...] = field(default=())
    requeue_after: float | None = None
    finished: HistoryEntry | None = None
    analysis_run: tuple[CheckResult, ...] | None = None
