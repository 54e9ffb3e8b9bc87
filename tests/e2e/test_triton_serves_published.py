"""A real Triton serves what the trainer published, with PyTorch's outputs; which of
Triton's counters sees a failing request (measured against the real metrics endpoint); and
the model statistics every served version exports, with its profile's buckets."""

from __future__ import annotations

import shutil
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from modelship_api.profile import PROFILE_FILE, NumericStatistic, Profile, numeric_statistic
from modelship_api.trainingrun import TrainingRunSpec
from modelship_dev.triton import TritonServer
from modelship_trainer import triton_config
from modelship_trainer.data import ArrayDataset, FloatArray
from modelship_trainer.pipeline import RunConfig, RunOutput, run
from modelship_trainer.surface_defects import CLASSES
from modelship_trainer.training import predict_logits

MODEL = "defects"
LEGACY = "defects_without_profile"  # a version published before profiles existed
PROBE = "error_response_probe"
PROBE_MODEL_PY = textwrap.dedent('''
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            self.family = pb_utils.MetricFamily(
                name="probe_errors_total", description="probe",
                kind=pb_utils.MetricFamily.COUNTER)

        def execute(self, requests):
            return [pb_utils.InferenceResponse(output_tensors=[],
                                               error=pb_utils.TritonError("probe error"))
                    for _ in requests]
''')
PROBE_CONFIG = textwrap.dedent(f'''
    name: "{PROBE}"
    backend: "python"
    max_batch_size: 8
    input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 2 ] }} ]
    output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
    instance_group [ {{ kind: KIND_CPU count: 1 }} ]
''')


@dataclass
class Published:
    repo: Path
    output: RunOutput


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    torch.set_num_threads(2)
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    spec = TrainingRunSpec.model_validate({
        "model": MODEL, "dataset": {"generated": {"samples": 800, "seed": 11}},
        "trainer": {"hyperparameters": {"epochs": "3"}},
        "publish": {"repository": {}, "backend": "python", "maxBatchSize": 64}})
    output = run(RunConfig(spec, repo))
    assert output.result.outcome == "Succeeded" and output.result.version == 1
    # What a killed publish leaves behind: Triton must not take it for a version.
    stale = repo / MODEL / ".staging-killed"
    stale.mkdir()
    (stale / "model.py").write_text("raise RuntimeError('half-written')\n")
    shutil.copytree(repo / MODEL, repo / LEGACY, ignore=shutil.ignore_patterns(".staging-*"))
    (repo / LEGACY / "1" / PROFILE_FILE).unlink()
    for config in (repo / LEGACY / "config.pbtxt", repo / LEGACY / "1" / "config.pbtxt"):
        config.write_text(config.read_text().replace(f'name: "{MODEL}"', f'name: "{LEGACY}"'))
    (repo / PROBE / "1").mkdir(parents=True)
    (repo / PROBE / "1" / "model.py").write_text(PROBE_MODEL_PY)
    (repo / PROBE / "config.pbtxt").write_text(PROBE_CONFIG)
    return Published(repo, output)


@pytest.fixture(scope="module")
def server(published: Published, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TritonServer]:
    with TritonServer(published.repo, tmp_path_factory.mktemp("triton")) as srv:
        yield srv


@pytest.fixture
def client(server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        yield c
    finally:
        c.close()


def infer(client: grpcclient.InferenceServerClient, images: FloatArray,
          model: str = MODEL) -> FloatArray:
    inp = grpcclient.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    result = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput("logits")],
                          client_timeout=30.0)
    out: FloatArray = result.as_numpy("logits")
    assert out is not None
    return out


def counter(server: TritonServer, name: str, **labels: str) -> float:
    return server.metrics().get((name, frozenset(labels.items())), 0.0)


def test_triton_serves_the_published_version_with_pytorch_outputs(
        published: Published, server: TritonServer,
        client: grpcclient.InferenceServerClient) -> None:
    assert client.is_model_ready(MODEL, "1")
    index = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
    assert index == {(MODEL, "1"): "READY", (LEGACY, "1"): "READY",
                     (PROBE, "1"): "READY"}, index  # no staging dir
    held_out: ArrayDataset = published.output.held_out
    images = held_out.images[:200]
    served = np.concatenate([infer(client, images[i:i + 64]) for i in range(0, len(images), 64)])
    expected = predict_logits(published.output.model, images)
    assert served.shape == expected.shape == (len(images), 3) and len(images) >= 150
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)
    assert np.array_equal(served.argmax(1), expected.argmax(1))


def test_a_failing_request_is_counted_as_a_triton_failure(
        server: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    labels = {"model": MODEL, "version": "1"}
    ok_before = counter(server, "nv_inference_request_success", **labels)
    failed_before = counter(server, "nv_inference_request_failure", reason="BACKEND", **labels)
    runner_before = counter(server, "modelship_runner_errors_total", reason="invalid_input",
                            **labels)
    bad = np.full((2, 1, 32, 32), 0.5, dtype=np.float32)
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(InferenceServerException):
        infer(client, bad)
    assert counter(server, "nv_inference_request_failure", reason="BACKEND", **labels) == (
        failed_before + 1)
    assert counter(server, "nv_inference_request_success", **labels) == ok_before
    assert counter(server, "modelship_runner_errors_total", reason="invalid_input",
                   **labels) == runner_before + 1
    assert "input contains NaN or infinity" in server.log_tail(20000)


def test_a_wrong_shape_is_refused_by_triton_and_counted_nowhere(
        server: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    # Observed on Triton 2.51: shape checks happen before scheduling, outside the model's
    # request statistics, so error ratios from nv_inference_request_* cannot see them.
    before = {k: v for k, v in server.metrics().items() if k[0].startswith("nv_inference_request")}
    with pytest.raises(InferenceServerException, match="unexpected shape for input 'images'"):
        infer(client, np.zeros((2, 1, 16, 16), dtype=np.float32))
    after = {k: v for k, v in server.metrics().items() if k[0].startswith("nv_inference_request")}
    assert after == before


def test_an_error_response_from_execute_counts_as_success(
        server: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    # Why the runner raises instead of returning error responses (see triton_runner.py):
    # with a custom metric family registered, Triton 2.51 still counts a returned error
    # response as a success.
    labels = {"model": PROBE, "version": "1"}
    ok_before = counter(server, "nv_inference_request_success", **labels)
    failed_before = sum(counter(server, "nv_inference_request_failure", reason=r, **labels)
                        for r in ("BACKEND", "OTHER", "REJECTED", "CANCELED"))
    inp = grpcclient.InferInput("x", [1, 2], "FP32")
    inp.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="probe error"):
        client.infer(PROBE, [inp], client_timeout=30.0)
    assert counter(server, "nv_inference_request_success", **labels) == ok_before + 1
    assert sum(counter(server, "nv_inference_request_failure", reason=r, **labels)
               for r in ("BACKEND", "OTHER", "REJECTED", "CANCELED")) == failed_before


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def model_series(server: TritonServer, model: str) -> Samples:
    return {k: v for k, v in server.metrics().items() if ("model", model) in k[1]}


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def settled(server: TritonServer, model: str) -> Samples:
    """The model's series once its statistics cover every sample Triton counted as served
    (nv_inference_count): each served sample is predicted or non-finite. Triton counts its
    warmup requests there too (zeros, before the version is ready); the statistics leave them
    out. The runner flushes every few seconds, and within a flush those two counters come
    after the histograms, so these are complete too."""
    deadline = time.monotonic() + 60
    while True:
        now = model_series(server, model)
        labels = {"model": model, "version": "1"}
        served = now.get(("nv_inference_count", frozenset(labels.items())), 0.0) - (
            triton_config.WARMUP_COUNT)
        counted = now.get(("modelship_nonfinite_outputs_total", frozenset(labels.items())),
                          0.0) + sum(delta(now, {}, "modelship_predictions_total", **labels,
                                           **c) for c in per_class())
        if counted == served:
            return now
        assert counted < served, f"{model}: {counted} samples counted, {served} served"
        assert time.monotonic() < deadline, (
            f"{model}: {counted} samples counted in 60 s, {served} served")
        time.sleep(0.2)


def per_class() -> list[dict[str, str]]:
    return [{"class": c} for c in CLASSES]


def served_output_values(logits: FloatArray) -> dict[str, list[float]]:
    """Confidence and entropy computed here, independently of the runner's code."""
    p = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    return {"output_confidence": p.max(axis=1).tolist(), "output_entropy": entropy.tolist()}


def test_served_version_exports_its_profile_histograms_and_counts_what_it_served(
        published: Published, server: TritonServer,
        client: grpcclient.InferenceServerClient) -> None:
    repo = published.repo
    profile = Profile.load(repo / MODEL / "1" / PROFILE_FILE)
    images = published.output.held_out.images
    assert len(images) == profile.samples == 160
    before = settled(server, MODEL)
    served = np.concatenate([infer(client, images[i:i + 48])
                             for i in range(0, len(images), 48)])
    after = settled(server, MODEL)
    base = {"model": MODEL, "version": "1"}
    assert delta(after, before, "nv_inference_count", **base) == len(images)
    outputs = served_output_values(served)
    for name, stat in profile.statistics.items():
        if not isinstance(stat, NumericStatistic):
            continue
        family = "modelship_input_statistic" if stat.source == "input" else (
            "modelship_output_statistic")
        series = {**base, "statistic": name}
        # The buckets are the profile's edges, exported from the moment the version loaded.
        les = {dict(k[1])["le"] for k in after if k[0] == f"{family}_bucket"
               and ("statistic", name) in k[1]}
        assert les == {*(repr(e) for e in stat.edges), "+Inf"}, name
        cumulative = [delta(after, before, f"{family}_bucket", **series, le=le)
                      for le in [*(repr(e) for e in stat.edges), "+Inf"]]
        counts = np.diff([0.0, *cumulative]).astype(int).tolist()
        if stat.source == "input":
            # The same images, the same code: the profile's own counts.
            assert counts == stat.counts, name
        else:
            # Counted from the outputs Triton answered with, by this test's own formulas.
            assert counts == numeric_statistic(
                next(d for d in profile.definitions() if d.name == name),
                outputs[name]).counts, name
        assert delta(after, before, f"{family}_count", **series) == len(images)
        total = delta(after, before, f"{family}_sum", **series)
        expected_mean = stat.mean if stat.source == "input" else float(np.mean(outputs[name]))
        assert total / len(images) == pytest.approx(expected_mean, rel=1e-6, abs=1e-9)
    predicted = np.bincount(served.argmax(axis=1), minlength=len(CLASSES))
    assert [delta(after, before, "modelship_predictions_total", **base, **{"class": c})
            for c in CLASSES] == predicted.tolist()
    assert delta(after, before, "modelship_nonfinite_outputs_total", **base) == 0


def test_non_finite_outputs_are_counted_and_enter_no_output_statistic(
        server: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    huge = np.full((3, 1, 32, 32), 3e38, dtype=np.float32)  # finite, so the runner serves it
    before = settled(server, MODEL)
    out = infer(client, huge)
    assert not np.isfinite(out).all(axis=1).any(), out  # the model overflows on every row
    after = settled(server, MODEL)
    series = {"model": MODEL, "version": "1"}
    assert delta(after, before, "modelship_nonfinite_outputs_total", **series) == 3
    assert delta(after, before, "modelship_input_statistic_count", **series,
                 statistic="input_brightness") == 3
    assert delta(after, before, "modelship_output_statistic_count", **series,
                 statistic="output_confidence") == 0
    assert sum(delta(after, before, "modelship_predictions_total", **series, **labels)
               for labels in per_class()) == 0


def test_a_version_without_profile_still_counts_predictions_and_non_finite_outputs(
        published: Published, server: TritonServer,
        client: grpcclient.InferenceServerClient) -> None:
    images = published.output.held_out.images[:20]
    before = settled(server, LEGACY)
    served = infer(client, images, LEGACY)
    after = settled(server, LEGACY)
    assert delta(after, before, "nv_inference_count", model=LEGACY, version="1") == 20
    # Class labels come from the version's lineage.json.
    assert [delta(after, before, "modelship_predictions_total", model=LEGACY, version="1",
                  **labels) for labels in per_class()] == np.bincount(
        served.argmax(axis=1), minlength=len(CLASSES)).tolist()
    assert ("modelship_nonfinite_outputs_total",
            frozenset({("model", LEGACY), ("version", "1")})) in after
    assert not [k for k in after if "_statistic" in k[0]]  # no profile, no histograms
