"""A production area as the review page reads it: parts read once (they never change), label
files read on from where the last read stopped (they only grow), settings read again when
they change, so a page request or a scrape costs a few stat calls while nothing moves and a
new label costs the parsing of its own line."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from modelship.core.review import figures, npy, png
from modelship_api import samples
from modelship_api.samples import LabelRecord, LabelSetSettings, Resolved, SampleRecord

Signature = tuple[tuple[str, int, int], ...]


class UnknownSampleError(LookupError):
    pass


@dataclass(frozen=True)
class _Part:
    records: tuple[SampleRecord, ...]
    images: Path
    header: npy.NpyHeader


@dataclass
class Snapshot:
    """The area at one moment; derived figures are computed once per snapshot."""

    records: tuple[SampleRecord, ...]
    labels: tuple[LabelRecord, ...]
    bad_label_lines: int
    corrupt_parts: int
    settings: LabelSetSettings
    window: int
    newest: tuple[SampleRecord, ...]  # records, newest served first
    _ids: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self._ids = frozenset(r.id for r in self.records)

    @cached_property
    def latest(self) -> dict[str, dict[str, LabelRecord]]:
        return samples.latest_per_reviewer(r for r in self.labels if r.sample in self._ids)

    @cached_property
    def resolved(self) -> dict[str, Resolved]:
        return samples.resolve((r for r in self.labels if r.sample in self._ids),
                               self.settings)

    @cached_property
    def accuracy(self) -> list[figures.Accuracy]:
        known = [r for r in self.labels if r.sample in self._ids]
        return figures.reviewed_accuracy(self.newest, known, self.settings, self.window)

    @cached_property
    def labels_total(self) -> int:
        return figures.labels_total(self.records, self.resolved)


class Area:
    def __init__(self, root: Path, label_set: str, window: int) -> None:
        self.root = root
        self.label_set = label_set
        self.window = window
        self._labels_folder = samples.label_set_folder(root, label_set)
        self._lock = threading.Lock()
        self._parts: dict[Path, _Part | None] = {}  # None: corrupt, skipped for good
        self._where: dict[str, tuple[_Part, int]] = {}
        self._key: tuple[tuple[Path, ...], Signature, Signature] | None = None
        self._label_files: dict[str, _LabelFile] = {}
        self._snapshot: Snapshot | None = None
        self._newest: tuple[SampleRecord, ...] = ()

    def snapshot(self) -> Snapshot:
        with self._lock:
            folders = tuple(samples.part_folders(self.root))
            key = (folders, self._signature("*.jsonl"), self._signature(samples.SETTINGS_FILE))
            if self._snapshot is not None and key == self._key:
                return self._snapshot
            for folder in folders:
                if folder not in self._parts:
                    self._parts[folder] = part = _read_part(folder)
                    if part is not None:
                        for row, record in enumerate(part.records):
                            self._where[record.id] = (part, row)
            labels, bad = self._read_labels(key[1])
            records = tuple(r for f in folders if (p := self._parts[f]) for r in p.records)
            corrupt = sum(1 for f in folders if self._parts[f] is None)
            if self._key is None or self._key[0] != folders:
                self._newest = tuple(figures.newest_first(records))
            self._snapshot = Snapshot(records, tuple(labels), bad, corrupt,
                                      self._settings(), self.window, self._newest)
            self._key = key
            return self._snapshot

    def _settings(self) -> LabelSetSettings:
        try:
            return samples.read_settings(self.root, self.label_set)
        except ValidationError as err:
            path = self._labels_folder / samples.SETTINGS_FILE
            raise ValueError(f"{path}: expected {{\"resolution\": \"consensus\" or "
                             f"\"unclear\"}}: {err.errors()[0]['msg']}") from None

    def _read_labels(self, files: Signature) -> tuple[list[LabelRecord], int]:
        """What samples.read_labels returns (each file in name order, its lines in order,
        lines that do not parse counted), reading only what was appended since last time."""
        labels: list[LabelRecord] = []
        bad = 0
        for name, size, _ in files:
            known = self._label_files.get(name)
            if known is None or size < known.offset:  # new, or not append-only after all
                known = self._label_files[name] = _LabelFile()
            if size > known.offset:
                known.read_on(self._labels_folder / name)
            labels.extend(known.records)
            bad += known.bad
        return labels, bad

    def _signature(self, pattern: str) -> Signature:
        if not self._labels_folder.is_dir():
            return ()
        out = []
        for path in sorted(self._labels_folder.glob(pattern)):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((path.name, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def record(self, sample_id: str) -> SampleRecord:
        self.snapshot()
        found = self._where.get(sample_id)
        if found is None:
            raise UnknownSampleError(sample_id)
        part, row = found
        return part.records[row]

    def image_png(self, sample_id: str) -> bytes:
        self.snapshot()
        found = self._where.get(sample_id)
        if found is None:
            raise UnknownSampleError(sample_id)
        part, row = found
        header = part.header
        with part.images.open("rb") as f:
            f.seek(header.offset + row * header.row_bytes)
            data = f.read(header.row_bytes)
        values = npy.row_to_bytes(header, data)
        return png.encode(png.from_row(values, header.row_shape))

    def append(self, reviewer: str, sample_id: str,
               label: int | Literal["unclear"]) -> LabelRecord:
        self.record(sample_id)  # raises UnknownSampleError
        entry = LabelRecord(sample=sample_id, label=label, reviewer=reviewer,
                            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                            label_set=self.label_set, source="human")
        samples.append_label(self.root, entry)
        return entry


@dataclass
class _LabelFile:
    offset: int = 0  # bytes consumed: complete lines only
    records: list[LabelRecord] = field(default_factory=list)
    bad: int = 0

    def read_on(self, path: Path) -> None:
        with path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being appended waits for its newline
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                self.records.append(LabelRecord.model_validate_json(line))
            except ValidationError:
                self.bad += 1
        self.offset += end


def _read_part(folder: Path) -> _Part | None:
    """A part whose records parse and whose images.npy holds one image row per record."""
    part = samples.read_part(folder)
    if part is None:
        return None
    images = folder / samples.IMAGES_FILE
    try:
        with images.open("rb") as f:
            preamble = f.read(npy.PREAMBLE)
            length = npy.header_length(preamble)
            f.seek(0)
            header = npy.parse_header(f.read(length))
        size = images.stat().st_size
    except (OSError, npy.NpyError):
        return None
    if (header.rows != len(part.records) or len(header.row_shape) not in (2, 3)
            or size < header.offset + header.data_bytes):
        return None
    return _Part(part.records, images, header)


def classes_from_repository(repository: Path, model: str,
                            versions: Sequence[int]) -> list[str] | None:
    """Class names from the newest of `versions` whose lineage.json lists them."""
    for version in sorted(set(versions), reverse=True):
        path = repository / model / str(version) / "lineage.json"
        try:
            classes = json.loads(path.read_text()).get("classes")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
            return classes
    return None
