"""A real Triton serves what the trainer published, with PyTorch's outputs; and which of
Triton's counters sees a failing request (measured against the real metrics endpoint)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from modelship_api.trainingrun import TrainingRunSpec
from modelship_dev.triton import TritonServer
from modelship_trainer.data import ArrayDataset, FloatArray
from modelship_trainer.pipeline import RunConfig, RunOutput, run
from modelship_trainer.training import predict_logits

MODEL = "defects"
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


def infer(client: grpcclient.InferenceServerClient, images: FloatArray) -> FloatArray:
    inp = grpcclient.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    result = client.infer(MODEL, [inp], outputs=[grpcclient.InferRequestedOutput("logits")],
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
    assert index == {(MODEL, "1"): "READY", (PROBE, "1"): "READY"}, index  # no staging dir
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
