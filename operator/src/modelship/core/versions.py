"""Resolve which model version a ModelDeployment asks for (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelship_api.modeldeployment import ModelRef


@dataclass(frozen=True)
class Resolution:
    """The version the spec resolves to, or why there is none yet."""

    version: int | None
    reason: str = ""


def _blessed_version(run: dict[str, Any], model: str) -> int | None:
    status = run.get("status") or {}
    spec = run.get("spec") or {}
    if spec.get("model") != model or status.get("phase") != "Succeeded":
        return None
    if (status.get("gate") or {}).get("verdict", "Blessed") != "Blessed":
        return None
    version = status.get("version")
    return int(version) if isinstance(version, int) else None


def resolve(ref: ModelRef, training_runs: Iterable[dict[str, Any]]) -> Resolution:
    """A pinned version as is; otherwise the newest Blessed TrainingRun's published version
    (newest by completion time, then by version)."""
    if ref.version is not None:
        return Resolution(ref.version)
    assert ref.from_training_runs is not None  # the CRD's CEL rule guarantees one of the two
    candidates = []
    for run in training_runs:
        version = _blessed_version(run, ref.name)
        if version is not None:
            finished = (run.get("status") or {}).get("completionTime") or ""
            candidates.append((finished, version))
    if not candidates:
        labels = ",".join(f"{k}={v}" for k, v in ref.from_training_runs.match_labels.items())
        return Resolution(None, f"no Succeeded, Blessed TrainingRun of model {ref.name!r} "
                                f"matches labels {labels} yet")
    return Resolution(max(candidates)[1])
