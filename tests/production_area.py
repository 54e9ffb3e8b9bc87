"""Production areas for tests, written as the serving runner writes them (samples.py): each
part's images.npy and samples.jsonl in a hidden folder, then renamed into place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from modelship_api import samples as s

BASE_RATE = 0.01


@dataclass(frozen=True)
class Sample:
    prediction: int
    confidence: float
    reason: s.SampleReason = "random"
    oversampling: float = 1.0


def write_part(area: Path, version: int, served: datetime, images: np.ndarray,
               batch: Sequence[Sample], writer: str = "pod-a") -> list[str]:
    """One part of len(batch) samples served at `served`; returns their ids."""
    assert len(images) == len(batch)
    hour, part = s.hour_folder(served), s.part_name(version, served, writer)
    final = area / s.SAMPLES_FOLDER / hour / part
    hidden = final.parent / f".{part}"
    hidden.mkdir(parents=True)
    np.save(hidden / s.IMAGES_FILE, images)
    ids = [s.sample_id(hour, part, i) for i in range(len(batch))]
    lines = [s.SampleRecord(
        id=sid, version=version, time=served.isoformat(), prediction=b.prediction,
        confidence=b.confidence, reason=b.reason, oversampling=b.oversampling,
        probability=min(1.0, BASE_RATE * b.oversampling)).model_dump_json(by_alias=True)
        for sid, b in zip(ids, batch, strict=True)]
    (hidden / s.RECORDS_FILE).write_text("".join(line + "\n" for line in lines))
    hidden.rename(final)
    return ids
