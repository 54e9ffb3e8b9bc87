"""gate.slices: which rows of the evaluation set each slice selects, and its metrics there.

The evaluation set is the original held-out split followed by the reviewed held-out
production samples. An inputStatistic slice measures each sample exactly as the profile and
serving do (the recipe's StatisticDefinition, the runner's Measures), so "input_brightness
<= 0.3" in the gate means the same as in the drift histograms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelship_api.profile import StatisticDefinition
from modelship_api.trainingrun import GateSlice
from modelship_trainer.data import ArrayDataset, FloatArray
from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.evaluate import classification_metrics
from modelship_trainer.triton_runner import Measures

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SliceMetrics:
    """One slice on one model: how many samples it holds and the metrics over them."""

    samples: int
    metrics: Mapping[str, float]


def class_index(ref: int | str, classes: Sequence[str], where: str) -> int:
    """A slice's class by name or index; refuses one the dataset does not have."""
    if isinstance(ref, str) and ref in classes:
        return list(classes).index(ref)
    if isinstance(ref, int) or ref.isdigit():
        index = int(ref)
        if 0 <= index < len(classes):
            return index
    raise InvalidSpecError(f"{where}: {ref!r} is not a class of the dataset; use a name of "
                           f"{list(classes)} or an index 0..{len(classes) - 1}")


def input_statistic(name: str, definitions: Sequence[StatisticDefinition],
                    where: str) -> StatisticDefinition:
    inputs = [d for d in definitions if d.source == "input" and d.kind == "numeric"]
    for d in inputs:
        if d.name == name:
            return d
    raise InvalidSpecError(f"{where}: {name!r} is not a numeric input statistic of the "
                           f"recipe; use one of {[d.name for d in inputs]}")


def check(slices: Sequence[GateSlice], classes: Sequence[str],
          definitions: Sequence[StatisticDefinition], has_production: bool) -> None:
    """Refuse, before training, a slice this dataset and recipe cannot select."""
    for i, s in enumerate(slices):
        where = f"gate.slices[{i}]"
        if s.class_ is not None:
            class_index(s.class_, classes, f"{where}.class")
        elif s.input_statistic is not None:
            input_statistic(s.input_statistic.statistic, definitions,
                            f"{where}.inputStatistic.statistic")
        elif not has_production:
            raise InvalidSpecError(f"{where}.reviewedProduction needs dataset.production")


def masks(slices: Sequence[GateSlice], evaluation: ArrayDataset, reviewed: Mask,
          definitions: Sequence[StatisticDefinition]) -> dict[str, Mask]:
    """Each slice's rows of the evaluation set; `reviewed` marks the production rows."""
    flat = evaluation.images.reshape(len(evaluation), -1)
    measures = Measures(flat, np.empty((0, 0), dtype=np.float32))
    out: dict[str, Mask] = {}
    for i, s in enumerate(slices):
        where = f"gate.slices[{i}]"
        if s.class_ is not None:
            out[s.name] = evaluation.labels == class_index(s.class_, evaluation.classes,
                                                           f"{where}.class")
        elif s.input_statistic is not None:
            r = s.input_statistic
            d = input_statistic(r.statistic, definitions, f"{where}.inputStatistic.statistic")
            values = np.asarray(measures.values(d.measure, d.feature), dtype=np.float64)
            mask = np.ones(len(evaluation), dtype=bool)
            if r.min is not None:
                mask &= values >= r.min
            if r.max is not None:
                mask &= values <= r.max
            out[s.name] = mask
        else:
            out[s.name] = reviewed.copy()
    return out


def evaluate(masks_: Mapping[str, Mask], logits: FloatArray,
             evaluation: ArrayDataset) -> dict[str, SliceMetrics]:
    """One model's metrics on each slice (none for an empty slice)."""
    out: dict[str, SliceMetrics] = {}
    for name, mask in masks_.items():
        n = int(mask.sum())
        metrics = classification_metrics(logits[mask], evaluation.labels[mask],
                                         len(evaluation.classes)) if n else {}
        out[name] = SliceMetrics(n, metrics)
    return out
