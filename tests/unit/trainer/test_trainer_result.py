"""The termination-message schema: real trainer output parses, and it always fits in 4 KiB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from trainer_harness import TrainerRun

from modelship_api.training_result import MAX_TERMINATION_MESSAGE_BYTES, TrainingResult
from modelship_api.trainingrun import (
    Artifact,
    GateCheck,
    GateStatus,
    Lineage,
    ProductionDataUsed,
    TrainingRunStatus,
)


def test_real_trainer_output_parses_into_status(published_run: tuple[Path, TrainerRun]) -> None:
    repo, run = published_run
    assert len(run.termination_message.encode()) <= MAX_TERMINATION_MESSAGE_BYTES
    assert run.stdout.strip().splitlines()[-1] == run.termination_message
    result = TrainingResult.parse(run.termination_message)
    assert (result.outcome, result.reason, result.version) == ("Succeeded", "Published", 1)
    assert result.truncated is False
    status = TrainingRunStatus.model_validate(result.status_fields())
    assert status.phase == "Succeeded" and status.version == 1
    assert status.gate is not None and status.gate.verdict == "Blessed"
    assert status.artifact is not None and status.artifact.path == "defects/1"
    assert status.artifact.tensorrt.startswith("skipped") or status.artifact.formats == [
        "onnx", "tensorrt"]
    assert status.lineage is not None and status.lineage.dataset_digest.startswith("sha256:")
    assert status.lineage.hyperparameters is not None
    assert status.lineage.hyperparameters["epochs"] == "2"
    assert status.metrics is not None and 0.0 <= status.metrics["accuracy"] <= 1.0
    assert status.key_metric == f"accuracy={status.metrics['accuracy']:.4f}"
    # What the status says is what the repository holds.
    version_dir = repo / "defects" / "1"
    lineage = json.loads((version_dir / "lineage.json").read_text())
    assert lineage["datasetDigest"] == status.lineage.dataset_digest
    # The data time, which dates the version where its profile.json does not travel.
    assert status.profile is not None and lineage["dataTime"] == status.profile.data_time
    metrics = json.loads((version_dir / "metrics.json").read_text())
    assert metrics["heldOut"] == status.metrics
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff < 1e-4


def huge_result() -> TrainingResult:
    checks = [GateCheck(name=f"metric_{i}>=0.5", passed=i % 2 == 0, value=0.1 * i,
                        message="x" * 300) for i in range(20)]
    return TrainingResult(
        outcome="Rejected", reason="GateRejected", message="why " * 2000, model="m" * 63,
        key_metric="accuracy=0.1234",
        metrics={f"metric_{i}": i / 7 for i in range(200)},
        gate=GateStatus(verdict="Rejected", reason="; ".join(c.message for c in checks),
                        checks=checks),
        artifact=Artifact(digest="sha256:" + "a" * 64, path="p" * 500, tensorrt="t" * 900),
        lineage=Lineage(dataset_digest="sha256:" + "b" * 64, code_version="c" * 300,
                        hyperparameters={f"hp_{i}": "v" * 256 for i in range(100)},
                        parent_version=3,
                        production=ProductionDataUsed(
                            parts=40, corrupt_parts=2, bad_label_lines=1, train=700,
                            held_out=300, parts_digest="sha256:" + "d" * 64,
                            labels_digest="sha256:" + "e" * 64)),
        timings={f"stage_{i}": float(i) for i in range(100)},
    )


def test_oversized_result_is_trimmed_below_the_limit() -> None:
    text = huge_result().to_termination_message()
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE_BYTES
    parsed = TrainingResult.parse(text)
    assert parsed.truncated is True
    # What the operator must never lose.
    assert (parsed.outcome, parsed.reason, parsed.key_metric) == (
        "Rejected", "GateRejected", "accuracy=0.1234")
    assert parsed.gate is not None and parsed.gate.verdict == "Rejected"
    assert parsed.lineage is not None and parsed.lineage.parent_version == 3
    # What was skipped as corrupt stays visible in status.
    original = huge_result().lineage
    assert original is not None and parsed.lineage.production == original.production


def test_multibyte_text_counts_bytes_not_characters() -> None:
    result = TrainingResult(outcome="Failed", reason="TrainingFailed", message="é" * 4000)
    text = result.to_termination_message()
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE_BYTES
    assert TrainingResult.parse(text).message.startswith("éé")


def test_small_result_is_not_trimmed() -> None:
    result = TrainingResult(outcome="Failed", reason="ParityFailed", message="differs by 0.1")
    assert TrainingResult.parse(result.to_termination_message()) == result


def test_garbage_is_refused() -> None:
    with pytest.raises(ValidationError):
        TrainingResult.parse('{"outcome": "Maybe", "reason": "x"}')
