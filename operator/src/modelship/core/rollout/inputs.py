"""What the state machine is told each tick: the cluster as observed, analysis measurements,
and manual commands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from modelship.core.analysis import Measurement
from modelship.core.observations import VersionObservation
from modelship.core.releases import Release
from modelship.core.route_status import RouteObservation

CommandAction = Literal["abort", "promote", "promote-full", "pause", "resume", "retry"]
COMMAND_ACTIONS: tuple[str, ...] = get_args(CommandAction)


@dataclass(frozen=True)
class Command:
    """A manual command, read from an annotation (never from spec, so a GitOps sync cannot
    undo it). `raw` is the annotation value `<action>@<id>`; the id (e.g. the time the CLI
    wrote it) makes each command distinct, and status records the last `raw` handled so a
    command acts once even if the annotation stays."""

    action: CommandAction
    raw: str


def parse_command(value: str) -> Command:
    """`promote@2024-05-01T10:00:00.123Z` -> Command("promote", ...); ValueError otherwise."""
    action, sep, ident = value.strip().partition("@")
    if not sep or not ident:
        raise ValueError(f"command {value!r}: expected <action>@<id>, e.g. "
                         "promote@2024-05-01T10:00:00Z")
    if action not in COMMAND_ACTIONS:
        raise ValueError(f"command {value!r}: unknown action {action!r}; use one of "
                         + ", ".join(COMMAND_ACTIONS))
    return Command(action=cast(CommandAction, action), raw=value.strip())


@dataclass(frozen=True)
class Observations:
    """Everything the operator read this tick, reduced to plain values.

    `measurements` holds one Measurement per check name for an analysis run made this tick,
    or None when no run was due (see `due_queries`); measurements given when no run is due
    are ignored.

    `route`: the GRPCRoute as last read (provider gateway), before this tick's actions.
    None for a provider whose route takes effect when written (replicas: the Service).

    `versions`: the observed Deployments, indexed by their release (version, revision)
    whatever the keys given. `template`: the hash of the pod template the spec describes
    (core.triton_manifests.template_hash); None when templates are not tracked, i.e. every
    version is served with the stable's template."""

    desired_version: int | None
    versions: Mapping[Release, VersionObservation] = field(default_factory=dict)
    generation: int = 0
    measurements: Mapping[str, Measurement] | None = None
    command: Command | None = None
    mirroring_supported: bool = True
    pending_reason: str = ""  # why desired_version is None (e.g. no blessed TrainingRun yet)
    route: RouteObservation | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions",
                           {o.release: o for o in self.versions.values()})
