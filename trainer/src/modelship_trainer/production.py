"""Reviewed production samples as training and held-out data (spec.dataset.production).

The area's layout and label resolution are modelship_api.samples'. Here: load each complete
part's images (skipping and counting a part whose array does not load or does not match its
records), keep samples whose resolved label is a class of the dataset (unclear, unresolved and
unknown classes are counted and left out), and split them by a stable hash of the sample id:
the same id lands on the same side in every run, whatever else the area holds, so a sample
held out once is never trained on by a later run (as long as heldOutFraction is unchanged;
raising it only moves samples from train to held-out).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from modelship_api.samples import (
    IMAGES_FILE,
    RECORDS_FILE,
    SAMPLES_FOLDER,
    Part,
    SampleRecord,
    production_area,
    read_labels,
    read_parts,
    read_settings,
    resolve,
)
from modelship_api.trainingrun import ProductionData, ProductionDataUsed
from modelship_trainer.data import ArrayDataset, FloatArray
from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.lineage import file_digest

_HASH_SPACE = float(2**64)


@dataclass(frozen=True)
class ProductionSamples:
    """Reviewed samples split into train (weights 1/probability) and held-out."""

    train: ArrayDataset
    held_out: ArrayDataset
    used: ProductionDataUsed
    newest: datetime | None
    train_ids: tuple[str, ...]
    held_out_ids: tuple[str, ...]
    reference: Reference


@dataclass(frozen=True)
class Reference:
    """The newest production samples no run trains on (held-out reviewed ones, unreviewed
    ones), served at or after `since`: what a version trained on them will serve, for its
    drift reference. Weights 1/probability undo the sampler's over-sampling."""

    images: FloatArray
    weights: FloatArray
    since: datetime | None
    oldest: datetime | None


MAX_REFERENCE = 5000  # the newest samples kept for the reference (about 20 MB of 32x32 images)


class _Newest:
    """The newest MAX_REFERENCE (time, image, weight) seen, trimmed as they come."""

    def __init__(self) -> None:
        self.rows: list[tuple[datetime, FloatArray, float]] = []

    def add(self, t: datetime, image: FloatArray, weight: float) -> None:
        self.rows.append((t, image, weight))
        if len(self.rows) >= 2 * MAX_REFERENCE:
            self._trim()

    def _trim(self) -> None:
        self.rows.sort(key=lambda r: r[0], reverse=True)
        del self.rows[MAX_REFERENCE:]

    def reference(self, since: datetime | None, sample_shape: tuple[int, ...]) -> Reference:
        self._trim()
        images = (np.stack([r[1] for r in self.rows]) if self.rows
                  else np.empty((0, *sample_shape), dtype=np.float32))
        return Reference(images.astype(np.float32),
                         np.asarray([r[2] for r in self.rows], dtype=np.float32), since,
                         self.rows[-1][0] if self.rows else None)


def is_held_out(sample_id: str, fraction: float) -> bool:
    """Stable across runs and machines: the first 8 bytes of sha256(id) as a fraction."""
    digest = hashlib.sha256(sample_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE < fraction


def load_part_images(part: Part, sample_shape: tuple[int, ...]) -> FloatArray | None:
    """The part's images as float32 (N, *sample_shape), or None when the part is corrupt."""
    try:
        images = np.load(part.path / IMAGES_FILE, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if images.dtype not in (np.float32, np.float64) or images.shape != (
            len(part.records), *sample_shape):
        return None
    images = images.astype(np.float32)
    return images if np.isfinite(images).all() else None


def _time(record: SampleRecord) -> datetime | None:
    try:
        t = datetime.fromisoformat(record.time.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@dataclass
class _Rows:
    images: list[FloatArray]
    labels: list[int]
    weights: list[float]
    ids: list[str]

    def dataset(self, classes: tuple[str, ...], sample_shape: tuple[int, ...],
                weighted: bool) -> ArrayDataset:
        images = (np.stack(self.images) if self.images
                  else np.empty((0, *sample_shape), dtype=np.float32))
        weights = None
        if weighted and self.weights:
            w = np.asarray(self.weights, dtype=np.float32)
            weights = (w / w.mean()).astype(np.float32)  # mean 1: only the ratios change
        return ArrayDataset(images.astype(np.float32),
                            np.asarray(self.labels, dtype=np.int64), classes, weights)


def load(spec: ProductionData, volume_dir: Path, model: str, classes: tuple[str, ...],
         sample_shape: tuple[int, ...], weighted: bool) -> ProductionSamples:
    """Read the production area of `model` on the volume mounted at `volume_dir`."""
    area = production_area(volume_dir, spec.model or model)
    try:
        settings = read_settings(area, spec.label_set)
    except (ValidationError, ValueError) as exc:
        raise InvalidSpecError(f"dataset.production: the settings.json of label set "
                               f"{spec.label_set!r} in {area} is invalid: {exc}") from exc
    since = _since(spec.reference_since)
    newest_unused = _Newest()
    collect = spec.reference == "Production"  # HeldOut: the reference is not these samples
    parts, corrupt = read_parts(area)
    label_lines, bad_lines = read_labels(area, spec.label_set)
    resolved = resolve(label_lines, settings)
    train, held = _Rows([], [], [], []), _Rows([], [], [], [])
    parts_hash, labels_hash = hashlib.sha256(), hashlib.sha256()
    used_parts, excluded = 0, 0
    newest: datetime | None = None
    for part in parts:
        times = [_time(r) for r in part.records]
        images = load_part_images(part, sample_shape)
        if images is None or any(t is None for t in times):
            corrupt += 1
            continue
        used_parts += 1
        rel = part.path.relative_to(area / SAMPLES_FOLDER).as_posix()
        parts_hash.update(f"{rel}\0{file_digest(part.path / IMAGES_FILE)}\0"
                          f"{file_digest(part.path / RECORDS_FILE)}\n".encode())
        for record, image, t in zip(part.records, images, times, strict=True):
            assert t is not None
            side = is_held_out(record.id, spec.held_out_fraction)
            verdict = resolved.get(record.id)
            label = verdict.label if verdict is not None else None
            usable = isinstance(label, int) and 0 <= label < len(classes)
            if collect and not (usable and not side) and (since is None or t >= since):
                newest_unused.add(t, image, 1.0 / record.probability)  # never trained on
            if verdict is None:
                continue  # not reviewed yet
            if not isinstance(label, int) or not usable:
                excluded += 1
                continue
            rows = held if side else train
            rows.images.append(image)
            rows.labels.append(label)
            rows.weights.append(1.0 / record.probability)
            rows.ids.append(record.id)
            labels_hash.update(f"{record.id}\0{label}\0{int(side)}\n".encode())
            newest = t if newest is None or t > newest else newest
    used = ProductionDataUsed(
        parts=used_parts, corrupt_parts=corrupt, bad_label_lines=bad_lines,
        excluded_labels=excluded, train=len(train.labels), held_out=len(held.labels),
        weighted=weighted and bool(train.labels),
        newest_sample=newest.isoformat() if newest else None,
        parts_digest="sha256:" + parts_hash.hexdigest(),
        labels_digest="sha256:" + labels_hash.hexdigest())
    return ProductionSamples(train.dataset(classes, sample_shape, weighted),
                             held.dataset(classes, sample_shape, False), used, newest,
                             tuple(train.ids), tuple(held.ids),
                             newest_unused.reference(since, sample_shape))


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)

