"""Sampled production data and its review labels on a dataset volume.

The contract between the serving runner (writes samples), `modelship review` (writes
labels), and the trainer (trains and gates on them). Stdlib and pydantic only; the Triton
runner cannot import it and repeats the few names it needs.

Layout of a production area, `<volume path>/production/<model>/`:

    samples/<YYYY-MM-DD>/<HH>/<part>/       one part per flush of one served version (UTC)
        images.npy                           (N, C, H, W) float32: the model input as served
        samples.jsonl                        N lines, one SampleRecord each, images.npy's order
    labels/<labelSet>/settings.json          LabelSetSettings: how disagreements resolve
    labels/<labelSet>/<reviewer>.jsonl       LabelRecords, append-only

A part is written under a name starting with "." in its hour folder and renamed into place
when both files are complete, so a reader never takes a half-written part for a whole one;
readers ignore names starting with ".". Parts are never rewritten. A part whose files do not
parse or disagree in length is corrupt: readers skip it and count it, never train on it.

A label file only grows. A reviewer's later label for a sample replaces their earlier one
(a correction); every line stays, so who said what and when is kept. A label line that does
not parse (a crash mid-append) is skipped and counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from modelship_api.common import ApiModel

PRODUCTION_FOLDER = "production"
SAMPLES_FOLDER = "samples"
LABELS_FOLDER = "labels"
IMAGES_FILE = "images.npy"
RECORDS_FILE = "samples.jsonl"
SETTINGS_FILE = "settings.json"
DEFAULT_LABEL_SET = "default"
UNCLEAR: Literal["unclear"] = "unclear"  # a label: the reviewer cannot tell
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # label sets, reviewers, writers

SampleReason = Literal["random", "lowConfidence", "driftedSlice"]


class SampleRecord(ApiModel):
    """One sampled production request; its input is the same row of images.npy."""

    id: str = Field(description="<date>/<hour>/<part>/<index>: unique in the area.")
    request_id: str = Field(default="", description="The request's id, if the client set one.")
    version: int = Field(ge=1, description="The model version that served it.")
    time: str = Field(description="When it was served, RFC 3339.")
    prediction: int = Field(ge=0, description="Predicted class index.")
    confidence: float = Field(ge=0.0, le=1.0, description="Top-1 softmax probability.")
    reason: SampleReason = Field(default="random", description="Why it was kept.")
    probability: float = Field(
        gt=0.0, le=1.0, description="The chance it had to be kept; weight it 1/probability "
        "to undo over-sampling.")
    oversampling: float = Field(
        default=1.0, ge=1.0, description="probability / the base sampling rate.")


class LabelRecord(ApiModel):
    """One reviewer's label for one sample."""

    sample: str = Field(description="SampleRecord.id.")
    label: int | Literal["unclear"] = Field(description="Class index, or unclear.")
    reviewer: str = Field(pattern=NAME.pattern, description="Who labelled it.")
    at: str = Field(description="When, RFC 3339.")
    label_set: str = Field(pattern=NAME.pattern, description="Which label set.")
    source: Literal["human", "automated"] = Field(
        default="human", description="automated: a stand-in for people, e.g. ground truth.")


class LabelSetSettings(ApiModel):
    """How the labels of several reviewers for one sample become one."""

    resolution: Literal["consensus", "unclear"] = Field(
        default="consensus",
        description="consensus: the strict majority of reviewers' labels, a sample without "
        "one is unresolved; unclear: any disagreement makes the sample unclear.")


@dataclass(frozen=True)
class Resolved:
    """A sample's label after resolution. label None: unresolved (no majority)."""

    label: int | Literal["unclear"] | None
    reviewers: int
    disagreement: bool


@dataclass(frozen=True)
class Part:
    """A complete part: its folder and its records."""

    path: Path
    records: tuple[SampleRecord, ...]


def production_area(volume_path: Path, model: str) -> Path:
    return volume_path / PRODUCTION_FOLDER / model


def hour_folder(t: datetime) -> str:
    """The partition a sample served at t goes to, relative to samples/."""
    u = t.astimezone(UTC)
    return f"{u:%Y-%m-%d}/{u:%H}"


def part_name(version: int, t: datetime, writer: str) -> str:
    """Unique per writer: one writer (a pod's runner) flushes at most once a millisecond."""
    ms = int(t.timestamp() * 1000)
    return f"v{version}-{ms}-{writer}"


def sample_id(hour: str, part: str, index: int) -> str:
    return f"{hour}/{part}/{index}"


def read_parts(area: Path) -> tuple[list[Part], int]:
    """Every complete part of an area, oldest partition first, and how many were corrupt.

    Only records are checked here (stdlib): a reader that loads images.npy must also skip a
    part whose array does not hold len(records) rows."""
    parts: list[Part] = []
    corrupt = 0
    root = area / SAMPLES_FOLDER
    for folder in _visible(root, depth=3):
        records = _read_records(folder)
        if records is None:
            corrupt += 1
        else:
            parts.append(Part(folder, records))
    return parts, corrupt


def _visible(root: Path, depth: int) -> Iterator[Path]:
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if depth == 1:
            yield child
        else:
            yield from _visible(child, depth - 1)


def _read_records(folder: Path) -> tuple[SampleRecord, ...] | None:
    if not (folder / IMAGES_FILE).is_file():
        return None
    try:
        lines = (folder / RECORDS_FILE).read_text().splitlines()
        return tuple(SampleRecord.model_validate_json(line) for line in lines)
    except (OSError, ValueError):
        return None  # ValidationError is a ValueError


def label_set_folder(area: Path, label_set: str) -> Path:
    if not NAME.match(label_set):
        raise ValueError(f"label set {label_set!r}: use letters, digits, '_', '.' or '-'")
    return area / LABELS_FOLDER / label_set


def read_settings(area: Path, label_set: str) -> LabelSetSettings:
    path = label_set_folder(area, label_set) / SETTINGS_FILE
    if not path.is_file():
        return LabelSetSettings()
    return LabelSetSettings.model_validate_json(path.read_text())


def read_labels(area: Path, label_set: str) -> tuple[list[LabelRecord], int]:
    """Every label line of a label set, each file in order, and how many did not parse."""
    records: list[LabelRecord] = []
    bad = 0
    folder = label_set_folder(area, label_set)
    if not folder.is_dir():
        return records, 0
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                records.append(LabelRecord.model_validate_json(line))
            except ValidationError:
                bad += 1
    return records, bad


def append_label(area: Path, record: LabelRecord) -> None:
    """One line, one write: an interrupted append leaves at most one bad last line."""
    folder = label_set_folder(area, record.label_set)
    folder.mkdir(parents=True, exist_ok=True)
    line = record.model_dump_json(by_alias=True) + "\n"
    with (folder / f"{record.reviewer}.jsonl").open("a", encoding="utf-8") as f:
        f.write(line)


def latest_per_reviewer(records: Iterable[LabelRecord]) -> dict[str, dict[str, LabelRecord]]:
    """sample -> reviewer -> that reviewer's last label (file order is time order)."""
    out: dict[str, dict[str, LabelRecord]] = {}
    for r in records:
        out.setdefault(r.sample, {})[r.reviewer] = r
    return out


def resolve(records: Iterable[LabelRecord], settings: LabelSetSettings) -> dict[str, Resolved]:
    """Each labelled sample's label under the set's resolution rule."""
    out: dict[str, Resolved] = {}
    for sample, by_reviewer in latest_per_reviewer(records).items():
        votes = Counter(r.label for r in by_reviewer.values())
        n = len(by_reviewer)
        disagreement = len(votes) > 1
        label: int | Literal["unclear"] | None
        if disagreement and settings.resolution == "unclear":
            label = UNCLEAR
        else:
            top, count = votes.most_common(1)[0]
            label = top if count * 2 > n else None
        out[sample] = Resolved(label=label, reviewers=n, disagreement=disagreement)
    return out


def write_settings(area: Path, label_set: str, settings: LabelSetSettings) -> None:
    folder = label_set_folder(area, label_set)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps(settings.to_api(), indent=2) + "\n")
    tmp.replace(folder / SETTINGS_FILE)


def part_folders(area: Path) -> list[Path]:
    """The visible part folders of an area, oldest partition first, complete or corrupt."""
    return list(_visible(area / SAMPLES_FOLDER, depth=3))


def read_part(folder: Path) -> Part | None:
    """One part as read_parts reads it, None when corrupt. Parts never change once visible,
    so a long-running reader (the review page) reads each once and keeps it."""
    records = _read_records(folder)
    return None if records is None else Part(folder, records)
