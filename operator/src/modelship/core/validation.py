"""Checks the API server cannot make at admission (they depend on derived values).

Each error names the field and the fix; the operator reports them in an InvalidSpec
condition and waits for the spec to change, instead of failing or retrying hot.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelship.core import names
from modelship.core.durations import parse_duration
from modelship_api.modeldeployment import ModelDeployment

# A pod-template change serves the same version as `<name>-v<version>-r<revision>`; the
# name is refused up front rather than at the first such change, mid-way through a life.
REVISION_ROOM = "-r99"


@dataclass(frozen=True)
class SpecError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def model_deployment_errors(md: ModelDeployment, version: int | None) -> list[SpecError]:
    errors: list[SpecError] = []
    name = md.metadata.name
    if not names.is_dns_1035(name):
        errors.append(SpecError(
            "metadata.name",
            f"{name!r} cannot name a Service: use lowercase letters, digits and '-', "
            "starting with a letter, at most 50 characters",
        ))
    elif version is not None and not names.is_dns_1035(
            names.version_name(name, version) + REVISION_ROOM):
        errors.append(SpecError(
            "spec.model.version",
            f"the derived name {names.version_name(name, version)!r}, with room for the "
            f"'{REVISION_ROOM}' a pod-template change adds, exceeds {names.MAX_NAME} "
            "characters: shorten metadata.name or use a smaller version",
        ))
    durations = {"spec.runtime.startupTimeout": md.spec.runtime.startup_timeout}
    rollout = md.spec.rollout
    if rollout is not None:
        durations["spec.rollout.progressDeadline"] = rollout.progress_deadline
        durations["spec.rollout.scaleDownDelay"] = rollout.scale_down_delay
    for field, value in durations.items():
        try:
            parse_duration(value)
        except ValueError as err:
            errors.append(SpecError(field, str(err)))
    return errors
