"""Failures that end a run, each with the CamelCase reason the operator records."""

from __future__ import annotations


class TrainerError(Exception):
    """A run failed; `reason` becomes the TrainingRun's reason, the message its detail."""

    reason = "TrainingFailed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidSpecError(TrainerError):
    """The run's spec, hyperparameters or dataset cannot be used; retrying will not help."""

    reason = "InvalidSpec"


class ParityError(TrainerError):
    """onnxruntime's outputs differ from PyTorch's beyond the tolerance."""

    reason = "ParityFailed"


class PublishError(TrainerError):
    reason = "PublishFailed"


class TerminatedError(TrainerError):
    """SIGTERM (Job deadline, pod deletion): unwind so temporary files are removed."""

    reason = "Terminated"
