"""The result a training Job reports: written by the trainer, parsed by the operator.

The trainer writes it as JSON to the pod's termination message; the kubelet keeps at most
4096 bytes of that file, so `to_termination_message` trims the least important parts until the
document fits (long texts first, then timings, gate check details, hyperparameters, the
profile's per-statistic summary, metrics)
and never produces invalid JSON. The operator copies it into TrainingRunStatus with
`status_fields`.

Only pydantic and modelship_api are imported here: the operator must not depend on torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from modelship_api.common import ApiModel
from modelship_api.profile import ProfileSummary
from modelship_api.trainingrun import Artifact, GateCheck, GateStatus, Lineage

# The contract between the trainer container and the operator that builds its Job.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE_BYTES = 4096
ENV_TRAINING_SPEC = "MODELSHIP_TRAINING_SPEC"  # TrainingRunSpec as JSON (camelCase)
ENV_REPOSITORY = "MODELSHIP_REPOSITORY"  # where the model repository volume is mounted
ENV_DATASET_DIR = "MODELSHIP_DATASET_DIR"  # mounted dataset directory (spec.dataset.volume)
# The mounted folder of spec.dataset.production.volume (holds production/<model>/).
ENV_PRODUCTION_DIR = "MODELSHIP_PRODUCTION_DIR"
ENV_TERMINATION_LOG = "MODELSHIP_TERMINATION_LOG"  # overrides TERMINATION_MESSAGE_PATH
ENV_PROGRESS_MARKER = "MODELSHIP_PROGRESS_MARKER"  # file touched when evaluation begins
DEFAULT_PROGRESS_MARKER = "/tmp/modelship/evaluating"
ENV_CODE_VERSION = "MODELSHIP_CODE_VERSION"  # e.g. the image's git commit, recorded in lineage
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID_SPEC = 2
EXIT_REJECTED = 3

Outcome = Literal["Succeeded", "Rejected", "Failed"]

_TEXT_LIMIT = 1024
_SHORT_TEXT_LIMIT = 160


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


class TrainingResult(ApiModel):
    """What one training run produced, as the operator records it in status."""

    outcome: Outcome = Field(description="Succeeded (published), Rejected (gate) or Failed.")
    reason: str = Field(description="CamelCase reason, e.g. Published, GateRejected, ParityFailed.")
    message: str = Field(default="", description="Human-readable summary.")
    model: str = Field(default="", description="Triton model name.")
    version: int | None = Field(default=None, description="Published version, when published.")
    key_metric: str | None = Field(default=None, description="e.g. accuracy=0.973.")
    metrics: dict[str, float] | None = Field(default=None, description="Held-out metrics.")
    gate: GateStatus | None = Field(default=None, description="Gate outcome.")
    artifact: Artifact | None = Field(default=None, description="Published files.")
    lineage: Lineage | None = Field(default=None, description="Provenance.")
    onnx_opset: int | None = Field(default=None, description="Opset of the exported ONNX model.")
    parity_max_abs_diff: float | None = Field(
        default=None, description="Largest |onnxruntime - PyTorch| on the held-out split."
    )
    timings: dict[str, float] | None = Field(default=None, description="Seconds per stage.")
    profile: ProfileSummary | None = Field(default=None,
                                           description="Summary of the published profile.json.")
    truncated: bool = Field(default=False, description="Parts were trimmed to fit 4 KiB.")

    def to_termination_message(self, limit: int = MAX_TERMINATION_MESSAGE_BYTES) -> str:
        """Compact JSON of at most `limit` bytes (UTF-8), trimmed as little as needed."""
        current = self.model_copy(deep=True)
        text = _dump(current)
        for trim in _TRIMS:
            if len(text.encode()) <= limit:
                return text
            current = trim(current)
            current.truncated = True
            text = _dump(current)
        if len(text.encode()) > limit:
            raise ValueError(f"result does not fit in {limit} bytes even when trimmed")
        return text

    @classmethod
    def parse(cls, text: str) -> TrainingResult:
        """Parse a termination message; raises pydantic.ValidationError on anything else."""
        return cls.model_validate_json(text)

    def status_fields(self) -> dict[str, Any]:
        """The TrainingRunStatus fields (camelCase, as in the CRD) this result sets."""
        fields: dict[str, Any] = {
            "phase": self.outcome,
            "message": self.message or self.reason,
            "version": self.version,
            "keyMetric": self.key_metric,
            "metrics": self.metrics,
            "gate": self.gate.to_api() if self.gate else None,
            "artifact": self.artifact.to_api() if self.artifact else None,
            "lineage": self.lineage.to_api() if self.lineage else None,
            "profile": self.profile.to_api() if self.profile else None,
        }
        return {k: v for k, v in fields.items() if v is not None}


def _dump(result: TrainingResult) -> str:
    data = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _trim_texts(r: TrainingResult) -> TrainingResult:
    r.message = _clip(r.message, _TEXT_LIMIT)
    if r.gate:
        r.gate.reason = _clip(r.gate.reason, _TEXT_LIMIT)
        for check in r.gate.checks or []:
            check.name = _clip(check.name, 63)
            check.message = _clip(check.message, _SHORT_TEXT_LIMIT)
    if r.artifact:
        r.artifact.tensorrt = _clip(r.artifact.tensorrt, _SHORT_TEXT_LIMIT)
        r.artifact.path = _clip(r.artifact.path, _SHORT_TEXT_LIMIT)
    return r


def _drop_timings(r: TrainingResult) -> TrainingResult:
    r.timings = None
    return r


def _shorten_gate(r: TrainingResult) -> TrainingResult:
    # The verdict and reason matter; each check's detail is secondary. Failed checks first.
    if r.gate and r.gate.checks:
        ordered = sorted(r.gate.checks, key=lambda c: c.passed)[:5]
        r.gate.checks = [GateCheck(name=c.name, passed=c.passed, value=c.value) for c in ordered]
        r.gate.reason = _clip(r.gate.reason, 400)
    return r


def _shorten_hyperparameters(r: TrainingResult) -> TrainingResult:
    if r.lineage and r.lineage.hyperparameters:
        items = sorted(r.lineage.hyperparameters.items())[:12]
        r.lineage.hyperparameters = {_clip(k, 40): _clip(v, 40) for k, v in items}
    return r


def _shorten_profile(r: TrainingResult) -> TrainingResult:
    # profile.json holds every statistic; status keeps its digest, samples and data time.
    if r.profile:
        r.profile.statistics = None
    return r


def _shorten_metrics(r: TrainingResult) -> TrainingResult:
    if r.metrics:
        kept = sorted(r.metrics.items())[:8]
        r.metrics = {_clip(k, 40): v for k, v in kept}
    r.message = _clip(r.message, 300)
    return r


def _minimal(r: TrainingResult) -> TrainingResult:
    # Last resort: what the operator needs to set phase, version and the reason.
    gate = GateStatus(verdict=r.gate.verdict, reason=_clip(r.gate.reason, 200)) if r.gate else None
    return TrainingResult(
        outcome=r.outcome, reason=_clip(r.reason, 63), message=_clip(r.message, 200),
        model=_clip(r.model, 63), version=r.version,
        key_metric=_clip(r.key_metric, 63) if r.key_metric else None, gate=gate,
        artifact=Artifact(digest=r.artifact.digest) if r.artifact else None,
        lineage=Lineage(dataset_digest=r.lineage.dataset_digest,
                        code_version=_clip(r.lineage.code_version, 63),
                        parent_version=r.lineage.parent_version,
                        production=r.lineage.production) if r.lineage else None,
        profile=ProfileSummary(digest=r.profile.digest, samples=r.profile.samples,
                               data_time=r.profile.data_time) if r.profile else None,
        truncated=True,
    )


_TRIMS: list[Callable[[TrainingResult], TrainingResult]] = [
    _trim_texts, _drop_timings, _shorten_gate, _shorten_hyperparameters, _shorten_profile,
    _shorten_metrics, _minimal,
]
