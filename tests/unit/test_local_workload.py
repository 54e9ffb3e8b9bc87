"""The demo's and end-to-end tests' resources are valid API objects, and the demo's chart is a
real PNG of what it was given."""

from __future__ import annotations

from pathlib import Path

from modelship_api.modeldeployment import ModelDeployment
from modelship_api.trainingrun import TrainingRun
from modelship_dev.chart import ReviewReading, Sample, write_chart
from modelship_dev.workload import (
    BATCH,
    IMAGE_SIZE,
    LIGHTING,
    PLACEMENT,
    InferenceLoad,
    camera_images,
    model_deployment,
    training_run,
)


def test_training_run_is_valid_and_runs_on_the_local_node(tmp_path: Path) -> None:
    obj = training_run("r", "m", tmp_path, labels={"p": "x"}, seed=3,
                       hyperparameters={"width": "96"}, baseline_deployment="md",
                       max_regression=0.02)
    run = TrainingRun.model_validate(obj)
    assert run.spec.trainer.node_selector == PLACEMENT["nodeSelector"]
    assert run.spec.trainer.tolerations is not None
    assert run.spec.gate is not None and run.spec.gate.baseline is not None
    assert run.spec.gate.baseline.model_deployment == "md"
    assert run.spec.gate.baseline.max_regression == 0.02
    assert run.spec.publish.repository.host_path is not None
    assert run.spec.publish.repository.host_path.path == str(tmp_path)


def test_model_deployment_is_valid_and_judged_by_the_given_prometheus(tmp_path: Path) -> None:
    obj = model_deployment("md", "m", tmp_path, follow={"p": "x"},
                           parent_ref={"name": "gw", "namespace": "ns", "sectionName": "grpc"},
                           prometheus_url="http://127.0.0.1:9", rollout={"canary": {
                               "steps": [{"weight": 20}]}})
    md = ModelDeployment.model_validate(obj)
    assert md.spec.model.from_training_runs is not None
    assert md.spec.runtime.node_selector == PLACEMENT["nodeSelector"]
    assert md.spec.rollout is not None and md.spec.rollout.analysis is not None
    assert md.spec.rollout.analysis.prometheus.address == "http://127.0.0.1:9"
    assert {c.name for c in md.spec.rollout.analysis.checks or []} == {"errors", "latency"}


def test_clients_send_the_recipes_images_and_the_lights_can_dim() -> None:
    images = camera_images()
    assert images.shape == (256, BATCH, 1, IMAGE_SIZE, IMAGE_SIZE)
    # Distinct images of parts under the training lighting (GeneratedDataset's default).
    assert len({x.tobytes() for x in images.reshape(-1, IMAGE_SIZE * IMAGE_SIZE)}) == (
        256 * BATCH)
    assert abs(float(images.mean()) - LIGHTING) < 0.01
    load = InferenceLoad("127.0.0.1:9", "m")  # never started: no request is sent
    at = load.set_lighting(0.3)
    assert load.lighting == [(0.0, LIGHTING), (at, 0.3)]
    assert abs(float(load._images.mean()) - 0.3) < 0.01


def test_chart_is_a_png(tmp_path: Path) -> None:
    series = [(s, {1: 18, 2: 2} if s > 3 else {1: 20}, 1 if s == 5 else 0,
               {1: 2.0, 2: 6.0} if s > 3 else {1: 2.0}) for s in range(10)]
    samples = [Sample(float(s), 1, 2 if s > 3 else None, 20 if s > 3 else 0)
               for s in range(10)]
    path = tmp_path / "out" / "chart.png"
    reviewed = [ReviewReading(float(s), 40 * s, {1: (0.9, 20 * s), 2: (0.95, 20 * s)})
                for s in range(1, 10)]
    write_chart(path, series, samples, [(4.0, "Progressing Canary")], load_offset=1.0,
                reviewed=reviewed)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
