"""The working state of one tick: the status being built and what happened on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

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

    def take(self, action: str) -> bool:
        """Consume the pending command if it is `action`."""
        if self.command is not None and not self.command_used and self.command.action == action:
            self.command_used = True
            return True
        return False

    def emit(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def ready(self, version: int | None) -> bool:
        obs = self.obs.versions.get(version) if version is not None else None
        return obs is not None and obs.ready

    def record(self, version: int, outcome: Outcome, reason: str, strategy: str,
               started_at: str | None) -> HistoryEntry:
        """Prepend a finished rollout to the bounded history, newest first."""
        entry = HistoryEntry(version=version, previous_version=self.status.stable_version,
                             strategy=strategy, outcome=outcome, reason=reason,
                             started_at=started_at, finished_at=self.at)
        self.status.history = [entry, *(self.status.history or [])][:HISTORY_LIMIT]
        self.finished = entry
        return entry
