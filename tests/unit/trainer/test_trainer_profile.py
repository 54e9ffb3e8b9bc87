"""The profile the trainer publishes: shape, data time, status summary, and the same numbers
the serving runner's statistics give for the same samples."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pytest
from trainer_harness import TrainerRun

from modelship_api.profile import (
    PROFILE_FILE,
    CategoricalStatistic,
    NumericStatistic,
    Profile,
    StatisticDefinition,
    image_statistics,
)
from modelship_api.training_result import TrainingResult
from modelship_api.trainingrun import GeneratedDataset
from modelship_trainer.data import FloatArray, split
from modelship_trainer.profiling import build_profile
from modelship_trainer.surface_defects import CLASSES, generate
from modelship_trainer.triton_runner import Definition, Statistics, read_definitions


def held_out(samples: int = 600) -> FloatArray:
    # What SMALL (samples=600, seed 0, validationFraction 0.2) holds out.
    _, out = split(generate(GeneratedDataset(samples=samples)), 0.2, 0)
    return out.images


def test_published_version_carries_its_profile(published_run: tuple[Path, TrainerRun]) -> None:
    repo, run = published_run
    version_dir = repo / "defects" / "1"
    profile = Profile.load(version_dir / PROFILE_FILE)
    assert profile.samples == 120  # the held-out split of 600
    assert set(profile.statistics) == {d.name for d in image_statistics(CLASSES)}
    for d in image_statistics(CLASSES):
        stat = profile.statistics[d.name]
        assert (stat.source, stat.measure) == (d.source, d.measure)
        if isinstance(stat, NumericStatistic):
            assert stat.edges == d.edges and sum(stat.counts) == 120
        else:
            assert isinstance(stat, CategoricalStatistic)
            assert stat.categories == list(CLASSES) and sum(stat.counts) == 120
    images = held_out()
    brightness = profile.statistics["input_brightness"]
    assert isinstance(brightness, NumericStatistic) and brightness.mean is not None
    assert brightness.mean == pytest.approx(float(images.mean()), abs=1e-6)
    # Generated data is as new as the run that generated it.
    created = profile.created_at
    assert profile.data_time <= created and (created - profile.data_time).total_seconds() < 120

    result = TrainingResult.parse(run.termination_message)
    assert result.profile is not None
    assert result.profile.digest == profile.digest()
    assert result.profile.samples == 120
    assert result.profile.statistics is not None
    assert result.profile.statistics["input_brightness"].mean == round(brightness.mean, 6)
    assert result.profile.statistics["predicted_class"].top in CLASSES


def test_served_statistics_count_what_the_profile_counts(
        published_run: tuple[Path, TrainerRun]) -> None:
    """The runner's aggregation over the held-out samples, sent in uneven batches, gives the
    profile's counts exactly: same definitions (read from profile.json), same edges."""
    version_dir = published_run[0] / "defects" / "1"
    profile = Profile.load(version_dir / PROFILE_FILE)
    images = held_out()
    session = ort.InferenceSession(str(version_dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"images": images[i:i + 7]})[0]
                             for i in range(0, len(images), 7)])
    definitions = read_definitions(version_dir)
    stats = Statistics(definitions, len(CLASSES))
    for i in range(0, len(images), 7):
        stats.add(images[i:i + 7], logits[i:i + 7])
    taken = stats.take()
    assert taken is not None and stats.take() is None  # nothing counted twice
    counts, sums, classes, nonfinite = taken
    expected = build_profile(profile.definitions(), images, logits, profile.data_time)
    numeric = [d for d in definitions if d.edges is not None]
    assert [d.name for d in numeric] == ["input_brightness", "input_contrast",
                                         "input_saturated_fraction", "output_confidence",
                                         "output_entropy"]
    for d, c, s in zip(numeric, counts, sums, strict=True):
        stat = expected.statistics[d.name]
        assert isinstance(stat, NumericStatistic) and stat.mean is not None
        assert c.tolist() == stat.counts, d.name
        assert s / len(images) == pytest.approx(stat.mean, rel=1e-9)
    predicted = expected.statistics["predicted_class"]
    assert isinstance(predicted, CategoricalStatistic)
    assert classes.tolist() == predicted.counts and nonfinite == 0


def runner_definitions(profile: Profile, tmp_path: Path) -> list[Definition]:
    """The runner's view of a profile: what it reads from the published profile.json."""
    profile.dump(tmp_path / PROFILE_FILE)
    return read_definitions(tmp_path)


def test_non_finite_outputs_are_counted_apart_and_enter_no_output_statistic(
        tmp_path: Path) -> None:
    definitions = image_statistics(CLASSES)
    images = np.full((3, 1, 4, 4), 0.5, dtype=np.float32)
    logits = np.array([[1.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [0.0, np.inf, 0.0]],
                      dtype=np.float32)
    profile = build_profile(definitions, images, logits, datetime.now(UTC))
    assert sum(profile.statistics["input_brightness"].counts) == 3
    assert sum(profile.statistics["output_confidence"].counts) == 1
    assert profile.statistics["predicted_class"].counts == [1, 0, 0]

    served = Statistics(runner_definitions(profile, tmp_path), len(CLASSES))
    served.add(images, logits)
    taken = served.take()
    assert taken is not None
    counts, _, classes, nonfinite = taken
    assert nonfinite == 2 and classes.tolist() == [1, 0, 0]
    assert [int(c.sum()) for c in counts] == [3, 3, 3, 1, 1]


def test_a_feature_recipe_defines_per_feature_statistics(tmp_path: Path) -> None:
    """A non-image recipe's statistics: one numeric statistic per watched feature (a
    categorical feature as its integer codes), plus the outputs."""
    definitions = [
        StatisticDefinition(name="input_age", source="input", measure="feature", feature=0,
                            kind="numeric", edges=[18.0, 30.0, 50.0, 70.0]),
        StatisticDefinition(name="input_region", source="input", measure="feature", feature=2,
                            kind="numeric", edges=[0.0, 1.0, 2.0]),
        *image_statistics(["no", "yes"])[3:],
    ]
    rows = np.array([[25.0, 9.9, 0.0], [61.0, 1.0, 2.0], [17.0, 3.0, 1.0], [90.0, 0.0, 0.0]],
                    dtype=np.float32)
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 0.1], [3.0, 0.0]], dtype=np.float32)
    profile = build_profile(definitions, rows, logits, datetime(2026, 1, 1, tzinfo=UTC))
    assert profile.statistics["input_age"].counts == [1, 1, 0, 1, 1]
    assert profile.statistics["input_region"].counts == [2, 1, 1, 0]
    assert profile.statistics["predicted_class"].counts == [2, 2]
    served = Statistics(runner_definitions(profile, tmp_path), 2)
    served.add(rows, logits)
    taken = served.take()
    assert taken is not None
    assert [c.tolist() for c in taken[0][:2]] == [[1, 1, 0, 1, 1], [2, 1, 1, 0]]
