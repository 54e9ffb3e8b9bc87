"""The version's reference profile: the statistics serving computes, on the held-out split or
on the newest production samples (pipeline.reference_data).

The per-sample values come from the runner's own measuring functions (triton_runner.Measures)
on the ONNX model's outputs, so the profile and the live histograms are the same code on
the same numbers; the statistics, their edges and profile.json are modelship_api.profile's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from modelship_api.profile import Profile, StatisticDefinition
from modelship_trainer.data import FloatArray
from modelship_trainer.triton_runner import Measures


def build_profile(definitions: list[StatisticDefinition], images: FloatArray,
                  logits: FloatArray, data_time: datetime,
                  created_at: datetime | None = None,
                  weights: FloatArray | None = None) -> Profile:
    """Histograms of each statistic over `images` and their `logits`, each sample counting
    its weight (default 1); samples whose logits are not finite enter only the input
    statistics (serving counts them apart)."""
    flat = images.reshape(images.shape[0], -1)
    finite = np.isfinite(logits).all(axis=1)
    inputs, outputs = Measures(flat, logits[:0]), Measures(flat[:0], logits[finite])
    values = {d.name: (inputs if d.source == "input" else outputs).values(
        d.measure, d.feature).tolist() for d in definitions}
    per_statistic = None if weights is None else {
        d.name: (weights if d.source == "input" else weights[finite]).tolist()
        for d in definitions}
    return Profile.build(definitions, values, samples=len(images), data_time=data_time,
                         created_at=created_at or datetime.now(UTC), weights=per_statistic)


def dataset_time(files: list[Path]) -> datetime:
    """A dataset directory's data time: the newest modification time of its files."""
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in files), UTC)
