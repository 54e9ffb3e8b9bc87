"""What a recipe is: how to make data (optionally), build a model, fit it, and which
statistics describe its inputs and outputs.

A recipe trains a classifier over float32 tensors (N, C, H, W) that returns logits (N, K).
Everything around it (split, evaluation, export, parity, profile, gate, publish) is the
pipeline's. The statistics (modelship_api.profile) go into the version's profile.json and are
what every served version exports to Prometheus; the default is the image set (brightness,
contrast, saturated fraction, confidence, entropy, predicted class). A recipe over feature
vectors overrides `statistics` with one `measure="feature"` statistic per feature it wants
watched (fixed edges on that feature's range; a categorical feature as its integer codes),
plus the output statistics.
Custom recipes are installed packages exposing a Recipe subclass (or an instance, or a
factory) in the `modelship.recipes` entry point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from torch import nn

from modelship_api.profile import StatisticDefinition, image_statistics
from modelship_api.trainingrun import GeneratedDataset
from modelship_trainer.data import ArrayDataset
from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.hyperparameters import Hyperparameter, Value


class Recipe(ABC):
    """Subclass this for a custom recipe and register it under `modelship.recipes`."""

    name: ClassVar[str]
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]]
    # True when fit() honours ArrayDataset.weights; otherwise the pipeline passes no weights
    # and records that production samples were not re-weighted.
    supports_weights: ClassVar[bool] = False

    def generate(self, spec: GeneratedDataset) -> ArrayDataset:
        """Synthetic data from a seed; recipes without a generator need a dataset volume."""
        raise InvalidSpecError(f"recipe {self.name!r} cannot generate data; "
                          "give it a dataset volume")

    @abstractmethod
    def build_model(self, sample_shape: tuple[int, ...], num_classes: int,
                    hp: Mapping[str, Value]) -> nn.Module:
        """A fresh model mapping (N, *sample_shape) float32 to (N, num_classes) logits."""

    @abstractmethod
    def fit(self, model: nn.Module, train: ArrayDataset, hp: Mapping[str, Value]) -> None:
        """Train `model` in place on `train`."""

    def statistics(self, sample_shape: tuple[int, ...],
                   classes: Sequence[str]) -> list[StatisticDefinition]:
        """What profile.json and serving measure; images in [0, 1] by default."""
        return image_statistics(classes)
