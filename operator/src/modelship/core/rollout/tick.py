"""The working state of one tick: the status being built and what happened on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from modelship.core.releases import Release
from modelship.core.rollout.decisions import Event
from modelship.core.rollout.inputs import Command, Observations
from modelship_api.modeldeployment import (
    CheckResult,
    HistoryEntry,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

HISTORY_LIMIT = 10

Outcome = Literal["Promoted", "RolledBack", "Aborted", "Superseded"]


@dataclass
class Tick:
    spec: ModelDeploymentSpec
    obs: Observations
    now: datetime
    at: str  # `now` as status stores it
    status: ModelDeploymentStatus
    command: Command | None
    command_used: bool = False
    events: list[Event] = field(default_factory=list)
    finished: HistoryEntry | None = None
    run: tuple[CheckResult, ...] | None = None
    blocked_reason: str = ""  # set when a rollout cannot start: phase Failed
    blocked_message: str = ""
    waiting_for: str = ""  # why the current stage cannot advance yet (shown in the message)
    # Releases whose Deployment this tick's actions create, with their pod counts.
    creating: dict[Release, int] = field(default_factory=dict)

    def take(self, action: str) -> bool:
        """Consume the pending command if it is `action`."""
        if self.command is not None and not self.command_used and self.command.action == action:
            self.command_used = True
            return True
        return False

    def emit(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def ready(self, release: Release | None) -> bool:
        obs = self.obs.versions.get(release) if release is not None else None
        return obs is not None and obs.ready

    @property
    def stable(self) -> Release | None:
        return release_of(self.status.stable_version, self.status.stable_revision)

    @property
    def candidate(self) -> Release | None:
        return release_of(self.status.candidate_version, self.status.candidate_revision)

    @property
    def rolled_back(self) -> Release | None:
        return release_of(self.status.rolled_back_version, self.status.rolled_back_revision)

    def set_stable(self, release: Release | None, template: str | None) -> None:
        st = self.status
        st.stable_version = release.version if release is not None else None
        st.stable_revision = release.revision or None if release is not None else None
        st.stable_template = template

    def set_candidate(self, release: Release | None, template: str | None) -> None:
        st = self.status
        st.candidate_version = release.version if release is not None else None
        st.candidate_revision = release.revision or None if release is not None else None
        st.candidate_template = template

    def set_rolled_back(self, release: Release | None, template: str | None) -> None:
        st = self.status
        st.rolled_back_version = release.version if release is not None else None
        st.rolled_back_revision = release.revision or None if release is not None else None
        st.rolled_back_template = template

    def record(self, release: Release, outcome: Outcome, reason: str, strategy: str,
               started_at: str | None) -> HistoryEntry:
        """Prepend a finished rollout to the bounded history, newest first."""
        stable = self.stable
        entry = HistoryEntry(version=release.version, revision=release.revision or None,
                             previous_version=stable.version if stable else None,
                             previous_revision=stable.revision or None if stable else None,
                             strategy=strategy, outcome=outcome, reason=reason,
                             started_at=started_at, finished_at=self.at)
        self.status.history = [entry, *(self.status.history or [])][:HISTORY_LIMIT]
        self.finished = entry
        return entry


def release_of(version: int | None, revision: int | None) -> Release | None:
    """The release a pair of status fields names (an absent revision is 0)."""
    return None if version is None else Release(version, revision or 0)
