"""Datasets as arrays: the in-memory form every recipe trains on, and the directory format.

Directory format (a dataset volume):
    images.npy    (N, H, W) or (N, C, H, W); uint8 (0..255) or float32 (0..1)
    labels.npy    (N,) integers in 0..K-1
    classes.json  optional list of K class names (default: "0".."K-1")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelship_trainer.errors import InvalidSpecError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ArrayDataset:
    """float32 images (N, C, H, W) in 0..1, int64 labels (N,) and optional float32 sample
    weights (N,) for recipes that support them (None: all 1)."""

    images: FloatArray
    labels: IntArray
    classes: tuple[str, ...]
    weights: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.images.shape[1:])

    def digest(self) -> str:
        """sha256 over shapes, dtypes, bytes and class names: same data, same digest."""
        h = hashlib.sha256()
        for arr in (self.images, self.labels):
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(json.dumps(list(self.classes)).encode())
        return "sha256:" + h.hexdigest()

    def subset(self, index: npt.NDArray[np.int64]) -> ArrayDataset:
        weights = self.weights[index] if self.weights is not None else None
        return ArrayDataset(self.images[index], self.labels[index], self.classes, weights)


def concat(first: ArrayDataset, second: ArrayDataset) -> ArrayDataset:
    """Both datasets' rows; weights are kept when either has them (the other's count 1)."""
    weights = None
    if first.weights is not None or second.weights is not None:
        weights = np.concatenate([
            d.weights if d.weights is not None else np.ones(len(d), dtype=np.float32)
            for d in (first, second)]).astype(np.float32)
    return ArrayDataset(np.concatenate([first.images, second.images]).astype(np.float32),
                        np.concatenate([first.labels, second.labels]).astype(np.int64),
                        first.classes, weights)


def split(data: ArrayDataset, validation_fraction: float, seed: int) -> tuple[ArrayDataset,
                                                                             ArrayDataset]:
    """Deterministic (train, held-out) split; the held-out part is what the gate judges."""
    n = len(data)
    n_val = round(n * validation_fraction)
    if n_val < 1 or n_val >= n:
        raise InvalidSpecError(f"validationFraction {validation_fraction} leaves no train or "
                          f"held-out samples out of {n}")
    order = np.random.default_rng([seed, 0x5EED]).permutation(n).astype(np.int64)
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))


def load_directory(path: Path) -> ArrayDataset:
    """Read the documented directory format, refusing anything ambiguous."""
    images_path, labels_path = path / "images.npy", path / "labels.npy"
    for p in (images_path, labels_path):
        if not p.is_file():
            raise InvalidSpecError(f"dataset directory {path}: missing {p.name} "
                              "(expected images.npy and labels.npy)")
    images = np.load(images_path, allow_pickle=False)
    labels = np.load(labels_path, allow_pickle=False)
    if images.ndim == 3:
        images = images[:, None, :, :]
    if images.ndim != 4:
        raise InvalidSpecError(f"images.npy: expected shape (N, H, W) or (N, C, H, W), "
                          f"got {images.shape}")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif images.dtype in (np.float32, np.float64):
        images = images.astype(np.float32)
    else:
        raise InvalidSpecError(f"images.npy: expected uint8 or float32, got {images.dtype}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise InvalidSpecError(
            f"labels.npy: expected shape ({images.shape[0]},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidSpecError(f"labels.npy: expected integers, got {labels.dtype}")
    if not np.isfinite(images).all():
        raise InvalidSpecError("images.npy: contains NaN or infinity")
    labels = labels.astype(np.int64)
    classes_path = path / "classes.json"
    if classes_path.is_file():
        classes = json.loads(classes_path.read_text())
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise InvalidSpecError("classes.json: expected a list of class names")
    else:
        classes = [str(i) for i in range(int(labels.max(initial=0)) + 1)]
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(classes):
        raise InvalidSpecError(f"labels.npy: labels must lie in 0..{len(classes) - 1}")
    return ArrayDataset(images, labels, tuple(classes))
