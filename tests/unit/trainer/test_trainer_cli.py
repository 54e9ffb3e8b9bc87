"""The trainer command end to end: outcomes, exit codes, spec sources, plug-in recipes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from trainer_harness import SMALL, TrainerRun, run_trainer

from modelship_api.profile import PROFILE_FILE, Profile
from modelship_api.training_result import (
    ENV_TRAINING_SPEC,
    EXIT_FAILED,
    EXIT_INVALID_SPEC,
    EXIT_REJECTED,
    TrainingResult,
)
from modelship_api.trainingrun import GeneratedDataset
from modelship_trainer.export import tensorrt_unavailable
from modelship_trainer.surface_defects import generate


def spec_file(tmp_path: Path, gate: dict[str, object]) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"model": "defects", "dataset": {"generated": {}},
                                "gate": gate, "publish": {"repository": {}}}))
    return path


def copy_repo(published: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(published, repo)
    return repo


def test_gate_rejection_publishes_nothing(published_run: tuple[Path, TrainerRun],
                                          tmp_path: Path) -> None:
    repo = copy_repo(published_run[0], tmp_path)
    spec = spec_file(tmp_path, {"baseline": {"minImprovement": 0.5}})
    run = run_trainer(["--spec", str(spec), "--repository", str(repo), *SMALL],
                      tmp_path / "term")
    assert run.returncode == EXIT_REJECTED, run.stderr[-2000:]
    result = TrainingResult.parse(run.termination_message)
    assert (result.outcome, result.reason, result.version) == ("Rejected", "GateRejected", None)
    assert "vs production v1" in result.message and "must improve by at least 0.5" in (
        result.message)
    assert result.lineage is not None and result.lineage.parent_version == 1
    assert sorted(p.name for p in (repo / "defects").iterdir()) == ["1", "config.pbtxt"]


def test_blessed_against_production_records_the_comparison(
        published_run: tuple[Path, TrainerRun], tmp_path: Path) -> None:
    repo = copy_repo(published_run[0], tmp_path)
    spec = spec_file(tmp_path, {"thresholds": [{"metric": "accuracy", "min": 0.4}],
                                "baseline": {"maxRegression": 1.0}})
    run = run_trainer(["--spec", str(spec), "--repository", str(repo), "--backend", "python",
                       "--hp", "seed=1", *SMALL], tmp_path / "term")
    assert run.returncode == 0, run.stderr[-2000:]
    result = TrainingResult.parse(run.termination_message)
    assert result.version == 2 and result.gate is not None and result.gate.verdict == "Blessed"
    metrics = json.loads((repo / "defects" / "2" / "metrics.json").read_text())
    assert metrics["production"]["version"] == 1
    assert json.loads((repo / "defects" / "2" / "lineage.json").read_text())["parentVersion"] == 1
    assert (repo / "defects" / "1" / "model.onnx").read_bytes() == (
        published_run[0] / "defects" / "1" / "model.onnx").read_bytes()


def test_bad_hyperparameter_is_an_invalid_spec(tmp_path: Path) -> None:
    run = run_trainer(["--model", "m", "--repository", str(tmp_path / "repo"),
                       "--hp", "epochs=many"], tmp_path / "term")
    assert run.returncode == EXIT_INVALID_SPEC
    result = TrainingResult.parse(run.termination_message)
    assert (result.outcome, result.reason) == ("Failed", "InvalidSpec")
    assert "'epochs': expected an integer, got 'many'" in result.message
    assert not (tmp_path / "repo" / "m").exists()


def test_invalid_spec_field_is_named(tmp_path: Path) -> None:
    run = run_trainer(["--model", "bad name!", "--repository", str(tmp_path)], tmp_path / "t")
    assert run.returncode == EXIT_INVALID_SPEC
    assert TrainingResult.parse(run.termination_message).message.startswith("spec.model:")


def test_tensorrt_backend_without_a_plan_fails_before_training(tmp_path: Path) -> None:
    run = run_trainer(["--model", "m", "--repository", str(tmp_path), "--backend", "tensorrt",
                       "--tensorrt", "Never"], tmp_path / "term")
    assert run.returncode == EXIT_INVALID_SPEC
    assert "needs a TensorRT plan (export.tensorrt is Never)" in (
        TrainingResult.parse(run.termination_message).message)


def test_tensorrt_always_without_gpu_fails(tmp_path: Path) -> None:
    run = run_trainer(["--model", "m", "--repository", str(tmp_path), "--tensorrt", "Always",
                       *SMALL], tmp_path / "term")
    result = TrainingResult.parse(run.termination_message)
    if tensorrt_unavailable() is None:  # a GPU machine with tensorrt builds the plan
        assert run.returncode == 0 and result.artifact is not None
        assert result.artifact.formats == ["onnx", "tensorrt"]
        assert (tmp_path / "m" / "1" / "model.plan").is_file()
    else:
        assert run.returncode == EXIT_FAILED
        assert result.reason == "TensorRTUnavailable"
        assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []


PLUGIN = textwrap.dedent('''
    from typing import ClassVar
    import torch
    from torch import nn
    from modelship_trainer.hyperparameters import Hyperparameter
    from modelship_trainer.recipe import Recipe
    from modelship_trainer.training import fit_classifier

    class TinyLinear(Recipe):
        name: ClassVar[str] = "tiny-linear"
        hyperparameters: ClassVar = {"epochs": Hyperparameter("epochs", int, 3, 1, 100)}

        def build_model(self, sample_shape, num_classes, hp):
            torch.manual_seed(0)
            size = 1
            for d in sample_shape:
                size *= d
            return nn.Sequential(nn.Flatten(), nn.Linear(size, num_classes))

        def fit(self, model, train, hp):
            fit_classifier(model, train, epochs=hp["epochs"], lr=0.01, batch_size=32,
                           weight_decay=0.0, seed=0)
''')


def test_custom_recipe_from_an_entry_point_with_a_dataset_directory(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "tiny_recipes-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-recipes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[modelship.recipes]\ntiny-linear = tiny_recipes:TinyLinear\n")
    (site / "tiny_recipes.py").write_text(PLUGIN)
    data = generate(GeneratedDataset(samples=200, image_size=16))
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "images.npy", data.images)
    np.save(tmp_path / "data" / "labels.npy", data.labels)
    # The data's time is when its arrays were written (the profile's dataTime, for staleness).
    written = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    os.utime(tmp_path / "data" / "images.npy", (written - 60, written - 60))
    os.utime(tmp_path / "data" / "labels.npy", (written, written))
    spec = {"apiVersion": "modelship.io/v1alpha1", "kind": "TrainingRun", "spec": {
        "model": "plug", "trainer": {"recipe": "tiny-linear", "hyperparameters": {"epochs": "2"}},
        "dataset": {"volume": {"hostPath": "/data"}}, "publish": {"repository": {}}}}
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, ENV_TRAINING_SPEC: json.dumps(spec)}
    run = run_trainer(["--repository", str(tmp_path / "repo"), "--dataset-dir",
                       str(tmp_path / "data")], tmp_path / "term", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert TrainingResult.parse(run.termination_message).version == 1
    lineage = json.loads((tmp_path / "repo" / "plug" / "1" / "lineage.json").read_text())
    assert lineage["recipe"] == "tiny-linear" and lineage["classes"] == ["0", "1", "2"]
    config = (tmp_path / "repo" / "plug" / "1" / "config.pbtxt").read_text()
    assert "dims: [ 1, 16, 16 ]" in config and 'backend: "onnxruntime"' in config
    profile = Profile.load(tmp_path / "repo" / "plug" / "1" / PROFILE_FILE)
    assert profile.data_time == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert profile.samples == 40 and profile.statistics["predicted_class"].kind == "categorical"

    missing = run_trainer(["--repository", str(tmp_path / "repo"), "--recipe", "nope"],
                          tmp_path / "term2", env=env)
    assert missing.returncode == EXIT_INVALID_SPEC
    message = TrainingResult.parse(missing.termination_message).message
    assert "unknown recipe 'nope'; available: surface-defects, tiny-linear" in message


def test_sigterm_while_training_fails_cleanly(tmp_path: Path) -> None:
    term = tmp_path / "term"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelship_trainer", "--termination-log", str(term), "--model",
         "m", "--repository", str(tmp_path / "repo"), "--hp", "epochs=200"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        for line in proc.stderr:  # "generate" is reported when training starts
            if "modelship-train: generate" in line:
                break
            assert time.monotonic() < deadline
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == EXIT_FAILED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = TrainingResult.parse(term.read_text())
    assert (result.outcome, result.reason) == ("Failed", "Terminated")
    assert not (tmp_path / "repo").exists()  # nothing was staged before publish
