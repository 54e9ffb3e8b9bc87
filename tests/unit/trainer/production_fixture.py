"""Writes a production area exactly as the serving runner and the review page do
(modelship_api.samples' layout), for the trainer tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from modelship_api import samples as s
from modelship_trainer.data import ArrayDataset

START = datetime(2026, 12, 2, 19, 0, tzinfo=UTC)


def write_part(area: Path, images: np.ndarray, *, at: datetime = START, version: int = 1,
               writer: str = "pod-a", probabilities: list[float] | None = None) -> list[str]:
    """One complete part of `images`; returns its sample ids."""
    hour = s.hour_folder(at)
    name = s.part_name(version, at, writer)
    folder = area / s.SAMPLES_FOLDER / hour / name
    folder.mkdir(parents=True)
    np.save(folder / s.IMAGES_FILE, images.astype(np.float32))
    ids, lines = [], []
    for i in range(len(images)):
        p = probabilities[i] if probabilities else 0.1
        record = s.SampleRecord(
            id=s.sample_id(hour, name, i), version=version,
            time=(at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            prediction=0, confidence=0.9, probability=p, oversampling=max(1.0, p / 0.1),
            reason="random" if p <= 0.1 else "lowConfidence")
        ids.append(record.id)
        lines.append(record.model_dump_json(by_alias=True) + "\n")
    (folder / s.RECORDS_FILE).write_text("".join(lines))
    return ids


def label(area: Path, sample: str, value: int | str, reviewer: str = "truth",
          label_set: str = s.DEFAULT_LABEL_SET) -> None:
    s.append_label(area, s.LabelRecord.model_validate({
        "sample": sample, "label": value, "reviewer": reviewer, "at": START.isoformat(),
        "labelSet": label_set, "source": "automated"}))


def write_reviewed(area: Path, data: ArrayDataset, *, at: datetime = START,
                   writer: str = "pod-a") -> list[str]:
    """A part of `data` labelled with its ground truth by an automated reviewer."""
    ids = write_part(area, data.images, at=at, writer=writer)
    for sample, truth in zip(ids, data.labels.tolist(), strict=True):
        label(area, sample, int(truth))
    return ids
