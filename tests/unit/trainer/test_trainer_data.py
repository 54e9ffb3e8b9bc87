"""The generated surface-defect data: determinism, each knob, the split and the directory format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelship_api.trainingrun import GeneratedDataset
from modelship_trainer.data import load_directory, split
from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.surface_defects import CLASSES, generate


def spec(**kw: float) -> GeneratedDataset:
    return GeneratedDataset.model_validate({"samples": 600, **kw})


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, b, c = generate(spec(seed=7)), generate(spec(seed=7)), generate(spec(seed=8))
    assert a.digest() == b.digest()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert a.digest() != c.digest()


def test_shapes_range_and_classes() -> None:
    d = generate(spec(samples=300, image_size=24))
    assert d.images.shape == (300, 1, 24, 24) and d.images.dtype == np.float32
    assert d.labels.shape == (300,) and set(np.unique(d.labels)) <= {0, 1, 2}
    assert d.images.min() >= 0.0 and d.images.max() <= 1.0
    assert d.classes == CLASSES


def test_brightness_moves_the_lighting() -> None:
    dark, bright = generate(spec(brightness=0.3)), generate(spec(brightness=0.7))
    assert dark.images.mean() == pytest.approx(0.3, abs=0.02)
    assert bright.images.mean() == pytest.approx(0.7, abs=0.02)


def test_noise_raises_pixel_spread_on_clean_parts() -> None:
    quiet, noisy = generate(spec(noise=0.01, defect_rate=0.0)), generate(
        spec(noise=0.2, defect_rate=0.0))
    assert noisy.images.std() > 2 * quiet.images.std()


def test_defect_rate_controls_labels_and_nothing_else() -> None:
    none, all_, half = (generate(spec(defect_rate=r)) for r in (0.0, 1.0, 0.5))
    assert (none.labels == 0).all()
    assert (all_.labels != 0).all()
    assert 0.4 < (half.labels != 0).mean() < 0.6
    # Images of parts that are clean in both runs are identical: only the defects moved.
    clean_both = (none.labels == 0) & (half.labels == 0)
    assert np.array_equal(none.images[clean_both], half.images[clean_both])


def test_drift_knobs_change_the_digest() -> None:
    base = generate(spec()).digest()
    for knob in ({"brightness": 0.6}, {"noise": 0.1}, {"defect_rate": 0.3}):
        assert generate(spec(**knob)).digest() != base, knob


def test_split_is_deterministic_and_disjoint() -> None:
    d = generate(spec(samples=500))
    tr1, va1 = split(d, 0.2, seed=3)
    tr2, va2 = split(d, 0.2, seed=3)
    assert len(va1) == 100 and len(tr1) == 400
    assert np.array_equal(va1.images, va2.images) and np.array_equal(tr1.labels, tr2.labels)
    rows = {r.tobytes() for r in tr1.images}
    assert not any(r.tobytes() in rows for r in va1.images)


def test_directory_format_round_trip(tmp_path: Path) -> None:
    d = generate(spec(samples=120))
    np.save(tmp_path / "images.npy", (d.images[:, 0] * 255).round().astype(np.uint8))
    np.save(tmp_path / "labels.npy", d.labels)
    (tmp_path / "classes.json").write_text(json.dumps(list(CLASSES)))
    loaded = load_directory(tmp_path)
    assert loaded.images.shape == d.images.shape and loaded.classes == CLASSES
    assert np.abs(loaded.images - d.images).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(loaded.labels, d.labels)


def test_directory_without_classes_and_with_bad_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((4, 3, 8, 8), np.float32))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 4, 1]))
    loaded = load_directory(tmp_path)
    assert loaded.classes == ("0", "1", "2", "3", "4") and loaded.sample_shape == (3, 8, 8)
    (tmp_path / "classes.json").write_text('["a", "b"]')
    with pytest.raises(InvalidSpecError, match=r"labels must lie in 0\.\.1"):
        load_directory(tmp_path)


def test_directory_missing_labels_names_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8), np.float32))
    with pytest.raises(InvalidSpecError, match=r"missing labels\.npy"):
        load_directory(tmp_path)
