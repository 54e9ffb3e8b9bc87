"""Built-in recipe: surface-defect classification (ok / scratch / pit) on generated images.

Images imitate a brushed metal part under uneven lighting: a brightness level with a tilted
gradient, horizontal grain, sensor noise, and, on defective parts, a thin scratch or a small
round pit that is darker or brighter than the surface. Every knob of GeneratedDataset shifts
the distribution on purpose (brightness: lighting drift, noise: sensor drift, defect_rate:
label drift). The model keeps pixels in absolute units, so lighting drift really hurts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from modelship_api.trainingrun import GeneratedDataset
from modelship_trainer.data import ArrayDataset, FloatArray, IntArray
from modelship_trainer.hyperparameters import Hyperparameter, Value
from modelship_trainer.recipe import Recipe
from modelship_trainer.training import fit_classifier

CLASSES = ("ok", "scratch", "pit")
_CHUNK = 1024  # bounds memory for large sample counts; part of the deterministic stream


def generate(spec: GeneratedDataset) -> ArrayDataset:
    """The same spec always gives the same bytes (one seeded stream, fixed chunking)."""
    rng = np.random.default_rng(spec.seed)
    size = spec.image_size
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    images = np.empty((spec.samples, 1, size, size), dtype=np.float32)
    labels = np.empty(spec.samples, dtype=np.int64)
    for start in range(0, spec.samples, _CHUNK):
        n = min(_CHUNK, spec.samples - start)
        img, lab = _chunk(rng, n, xx, yy, spec)
        images[start:start + n, 0] = img
        labels[start:start + n] = lab
    return ArrayDataset(images, labels, CLASSES)


def _chunk(rng: np.random.Generator, n: int, xx: FloatArray, yy: FloatArray,
           spec: GeneratedDataset) -> tuple[FloatArray, IntArray]:
    f32 = np.float32
    size = xx.shape[0]
    # Every parameter is drawn for every image, so a knob changes what it names and nothing
    # else: the same seed with another defect_rate keeps lighting, positions and noise.
    grad = rng.uniform(-0.08, 0.08, (2, n, 1, 1)).astype(f32)
    grain = rng.normal(0.0, 0.02, (n, size, 1)).astype(f32)
    is_defect = rng.random(n) < spec.defect_rate
    kind = rng.integers(1, 3, n)
    contrast = (rng.uniform(0.12, 0.35, n) * rng.choice([-1.0, 1.0], n)).astype(f32)
    theta = rng.uniform(0.0, np.pi, n).astype(f32)
    cx, cy = rng.uniform(-0.55, 0.55, (2, n)).astype(f32)
    half_len = rng.uniform(0.3, 0.8, n).astype(f32)
    width = rng.uniform(0.035, 0.07, n).astype(f32)
    radius = rng.uniform(0.07, 0.15, n).astype(f32)
    noise = rng.normal(0.0, 1.0, (n, size, size)).astype(f32)

    labels = np.where(is_defect, kind, 0).astype(np.int64)
    px = xx[None] - cx[:, None, None]
    py = yy[None] - cy[:, None, None]
    dx, dy = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    along = np.clip(px * dx + py * dy, -half_len[:, None, None], half_len[:, None, None])
    dist2 = (px - along * dx) ** 2 + (py - along * dy) ** 2
    scratch = np.exp(-dist2 / width[:, None, None] ** 2)
    pit = np.exp(-(px**2 + py**2) / radius[:, None, None] ** 2)
    mark = np.where((labels == 1)[:, None, None], scratch,
                    np.where((labels == 2)[:, None, None], pit, 0.0))
    img = (spec.brightness + grad[0] * xx + grad[1] * yy + grain
           + contrast[:, None, None] * mark + spec.noise * noise)
    return np.clip(img, 0.0, 1.0).astype(f32), labels


class SmallCNN(nn.Module):
    """Three conv blocks and a global max pool: a defect is small and can be anywhere."""

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 0.5 is a constant, not a per-image statistic: lighting drift reaches the model.
        logits: torch.Tensor = self.head(self.features(x - 0.5))
        return logits


class SurfaceDefectsRecipe(Recipe):
    name: ClassVar[str] = "surface-defects"
    supports_weights: ClassVar[bool] = True  # fit_classifier weights each sample's loss
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]] = {
        hp.name: hp for hp in (
            Hyperparameter("epochs", int, 6, 1, 1000, "passes over the training split"),
            Hyperparameter("lr", float, 0.01, 1e-6, 10.0, "peak learning rate (one-cycle)"),
            Hyperparameter("batch_size", int, 64, 1, 65536, "mini-batch size"),
            Hyperparameter("weight_decay", float, 1e-4, 0.0, 1.0, "AdamW weight decay"),
            Hyperparameter("width", int, 16, 1, 256, "channels of the first conv block"),
            Hyperparameter("seed", int, 0, 0, 2**31 - 1, "initialisation and shuffling"),
        )
    }

    def generate(self, spec: GeneratedDataset) -> ArrayDataset:
        return generate(spec)

    def build_model(self, sample_shape: tuple[int, ...], num_classes: int,
                    hp: Mapping[str, Value]) -> nn.Module:
        torch.manual_seed(int(hp["seed"]))
        return SmallCNN(sample_shape[0], num_classes, int(hp["width"]))

    def fit(self, model: nn.Module, train: ArrayDataset, hp: Mapping[str, Value]) -> None:
        fit_classifier(model, train, epochs=int(hp["epochs"]), lr=float(hp["lr"]),
                       batch_size=int(hp["batch_size"]),
                       weight_decay=float(hp["weight_decay"]), seed=int(hp["seed"]))
