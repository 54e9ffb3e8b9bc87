"""Reviewed accuracy per model version: the figures `modelship review` exports.

Per version and source (the labels of people, of automated stand-ins such as the demo's
ground truth, and all together, each resolved on its own by the label set's rule): over the
newest `window` samples of that version (by served time) whose labels resolve, the fraction
of those resolved to a class that equal the model's prediction, and how many that is
(unclear samples use a place in the window but count neither way). Served time, not label
time: the figure says how the version does on its newest traffic, whatever order people
review in."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelship.core.review.queue import when
from modelship_api.samples import (
    UNCLEAR,
    LabelRecord,
    LabelSetSettings,
    Resolved,
    SampleRecord,
    resolve,
)

SOURCES = ("human", "automated")
ALL = "all"


@dataclass(frozen=True)
class Accuracy:
    version: int
    source: str  # human, automated or all
    accuracy: float
    samples: int


def newest_first(records: Iterable[SampleRecord]) -> list[SampleRecord]:
    return sorted(records, key=lambda r: (when(r), r.id), reverse=True)


def reviewed_accuracy(newest: Sequence[SampleRecord], labels: Sequence[LabelRecord],
                      settings: LabelSetSettings, window: int) -> list[Accuracy]:
    """One figure per version and source that has at least one sample resolved to a class;
    `newest`: the samples in newest_first's order (a caller keeps it while parts stay)."""
    out: list[Accuracy] = []
    for source in (*SOURCES, ALL):
        chosen = labels if source == ALL else [r for r in labels if r.source == source]
        resolved = resolve(chosen, settings)
        per_version: dict[int, list[tuple[SampleRecord, Resolved]]] = {}
        for record in newest:
            r = resolved.get(record.id)
            if r is None or r.label is None:
                continue
            kept = per_version.setdefault(record.version, [])
            if len(kept) < window:
                kept.append((record, r))
        for version, kept in sorted(per_version.items()):
            classed = [(rec, r) for rec, r in kept if r.label != UNCLEAR]
            if classed:
                right = sum(1 for rec, r in classed if r.label == rec.prediction)
                out.append(Accuracy(version, source, right / len(classed), len(classed)))
    return out


def labels_total(records: Iterable[SampleRecord], resolved: dict[str, Resolved]) -> int:
    """Samples of the area whose labels resolve to a class: what a training run can use
    (unclear and unresolved ones it leaves out); it grows when the reviewed data changes."""
    return sum(1 for r in records
               if (x := resolved.get(r.id)) is not None and isinstance(x.label, int))
