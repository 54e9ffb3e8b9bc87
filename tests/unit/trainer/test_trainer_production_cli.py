"""The trainer command on a dataset directory plus a production area of dark (drifted)
reviewed samples: what it trains and evaluates on, what it reports, and a slice veto."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from production_fixture import START, label, write_part, write_reviewed
from trainer_harness import run_trainer

from modelship_api import samples as s
from modelship_api.profile import PROFILE_FILE, NumericStatistic, Profile
from modelship_api.training_result import (
    EXIT_INVALID_SPEC,
    EXIT_REJECTED,
    EXIT_SUCCEEDED,
    TrainingResult,
)
from modelship_api.trainingrun import GeneratedDataset, TrainingRunStatus
from modelship_trainer.surface_defects import CLASSES, generate

DARK = {"name": "dark", "inputStatistic": {"statistic": "input_brightness", "max": 0.3},
        "minSamples": 20}
REVIEWED = {"name": "reviewed", "reviewedProduction": True, "minSamples": 20}


def dataset_dir(root: Path) -> Path:
    """The original data: normal lighting, written long before the production samples."""
    data = generate(GeneratedDataset(samples=500, image_size=32, seed=3))
    folder = root / "dataset"
    folder.mkdir()
    np.save(folder / "images.npy", data.images)
    np.save(folder / "labels.npy", data.labels)
    (folder / "classes.json").write_text(json.dumps(list(CLASSES)))
    old = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for f in folder.iterdir():
        os.utime(f, (old, old))
    return folder


def production_volume(root: Path) -> Path:
    """Two reviewed parts of dark images, a corrupt part and a half-written label line."""
    volume = root / "volume"
    area = s.production_area(volume, "defects")
    dark = generate(GeneratedDataset(samples=300, image_size=32, brightness=0.15, seed=4))
    write_reviewed(area, dark.subset(np.arange(150)))
    write_reviewed(area, dark.subset(np.arange(150, 300)), at=START + timedelta(hours=1),
                   writer="pod-b")
    broken = write_part(area, dark.images[:5], at=START + timedelta(hours=2))
    for sample in broken:
        label(area, sample, 0)
    np.save(area / s.SAMPLES_FOLDER / broken[0].rsplit("/", 1)[0] / s.IMAGES_FILE,
            dark.images[:4])
    with (area / s.LABELS_FOLDER / "default" / "truth.jsonl").open("a") as f:
        f.write('{"sample": "2026')
    return volume


def spec(path: Path, slices: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({
        "model": "defects", "publish": {"repository": {}},
        "dataset": {"volume": {"hostPath": "/data"},
                    "production": {"volume": {"hostPath": "/samples"}}},
        "gate": {"slices": slices}}))
    return path


def test_trains_on_reviewed_samples_and_gates_on_the_dark_slice(tmp_path: Path) -> None:
    data, volume, repo = dataset_dir(tmp_path), production_volume(tmp_path), tmp_path / "repo"
    unreviewed = generate(GeneratedDataset(samples=100, image_size=32, brightness=0.15, seed=5))
    write_part(s.production_area(volume, "defects"), unreviewed.images,
               at=START + timedelta(hours=3), writer="pod-c")
    common = ["--repository", str(repo), "--dataset-dir", str(data),
              "--production-dir", str(volume), "--threads", "2"]
    # Small batches: enough steps on 700 images for a model that tells defects apart.
    first = run_trainer(["--spec", str(spec(tmp_path / "a.json", [
        {**DARK, "min": 0.5}, {**REVIEWED, "min": 0.5}])), *common,
        "--hp", "epochs=5", "--hp", "batch_size=16"], tmp_path / "term-a")
    assert first.returncode == EXIT_SUCCEEDED, first.stderr[-3000:]
    result = TrainingResult.parse(first.termination_message)
    assert result.lineage is not None and result.lineage.production is not None
    used = result.lineage.production
    assert (used.parts, used.corrupt_parts, used.bad_label_lines) == (3, 1, 1)
    assert used.train + used.held_out == 300 and 50 < used.held_out < 130
    assert used.weighted and used.parts_digest.startswith("sha256:")
    assert "1 corrupt parts, 1 bad label lines" in result.message
    status = TrainingRunStatus.model_validate(result.status_fields())
    assert status.lineage is not None and status.lineage.production == used
    checks = {c.name: c for c in (result.gate.checks if result.gate else None) or []}
    assert checks["slice dark: accuracy>=0.5"].passed
    assert checks["slice reviewed: accuracy>=0.5"].passed

    version = repo / "defects" / "1"
    report = json.loads((version / "metrics.json").read_text())
    assert report["samples"] == {"train": 400 + used.train, "heldOut": 100 + used.held_out}
    # The original split is bright: the dark slice is exactly the reviewed held-out samples.
    assert report["slices"]["dark"]["samples"] == used.held_out
    assert report["slices"]["reviewed"]["samples"] == used.held_out
    assert json.loads((version / "lineage.json").read_text())["production"] == used.to_api()
    profile = Profile.load(version / PROFILE_FILE)
    assert profile.data_time == START + timedelta(hours=1, seconds=149)
    assert used.newest_sample == profile.data_time.isoformat()
    # The drift reference is what the version will serve: the dark production samples it
    # never trained on (held out, or not reviewed yet), not the bright original split.
    assert profile.samples == used.held_out + 100
    assert used.reference.startswith(f"{used.held_out + 100} production samples not trained")
    assert f"drift reference: {used.reference}" in result.message
    brightness = profile.statistics["input_brightness"]
    assert isinstance(brightness, NumericStatistic) and brightness.mean is not None
    assert brightness.mean < 0.25

    # A candidate that barely trained is worse on the dark slice than v1: vetoed, naming it.
    second = run_trainer(["--spec", str(spec(tmp_path / "b.json", [
        {**DARK, "maxRegression": 0.05}])), *common, "--hp", "epochs=1", "--hp", "lr=1e-6"],
        tmp_path / "term-b")
    assert second.returncode == EXIT_REJECTED, second.stderr[-3000:]
    rejected = TrainingResult.parse(second.termination_message)
    assert rejected.gate is not None and rejected.gate.verdict == "Rejected"
    assert rejected.gate.reason.startswith("slice dark: accuracy ")
    assert "vs production v1" in rejected.gate.reason
    assert sorted(p.name for p in (repo / "defects").iterdir()) == ["1", "config.pbtxt"]


def test_a_slice_the_data_cannot_select_is_refused_before_training(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({
        "model": "defects", "publish": {"repository": {}}, "dataset": {"generated": {}},
        "gate": {"slices": [{"name": "dents", "class": "dent", "min": 0.5}]}}))
    run = run_trainer(["--spec", str(path), "--repository", str(tmp_path / "repo")],
                      tmp_path / "term")
    assert run.returncode == EXIT_INVALID_SPEC, run.stderr[-2000:]
    result = TrainingResult.parse(run.termination_message)
    assert result.message.startswith("gate.slices[0].class: 'dent' is not a class")
    assert "modelship-train: train" not in run.stderr
