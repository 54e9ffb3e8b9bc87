"""A real Triton serves the published runner with sampling on, through the per-pod config the
operator renders: what it served lands on the dataset volume as complete parts the shared
contract reads back; when the volume fills up every request still succeeds, sampling stops,
the gauge says why, and the operator's query of a real Prometheus turns it into the
condition Sampling False VolumeFull; once there is room again, sampling resumes.

The volume is a 1 MiB tmpfs that Triton's own mount namespace holds (unshare: nothing on the
host's mount table), read and filled by the test through /proc/<pid>/root."""

from __future__ import annotations

import asyncio
import errno
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
from tests.conftest import wait_for

from modelship.adapters.prometheus import query_vectors
from modelship.core import sampling
from modelship.core.triton_manifests import VIEW_MOUNT, view_script
from modelship_api import samples
from modelship_api.common import Condition
from modelship_api.modeldeployment import Runtime
from modelship_api.monitoring import Sampling
from modelship_api.trainingrun import TrainingRunSpec
from modelship_dev import tools
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.triton import TritonServer
from modelship_trainer.data import FloatArray
from modelship_trainer.pipeline import RunConfig, run

MODEL = "defects"
SPEC = Sampling.model_validate({"enabled": True,
                                "volume": {"hostPath": "/data", "path": "plant"},
                                "rate": 0.5, "oversampling": 2, "lowConfidenceBelow": 0.6})


@dataclass
class Served:
    triton: TritonServer
    prometheus: PrometheusProcess
    images: FloatArray
    area: Path  # the production area, as the test sees it

    def condition(self) -> Condition:
        """Sampling, as the operator's monitoring decides it from Prometheus."""
        query = sampling.stopped_query(MODEL, 1, {})
        answers = asyncio.run(query_vectors(self.prometheus.url, [query], 5.0))
        return sampling.condition(answers[query.key], 1, "the test's volume", None)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    torch.set_num_threads(2)
    work = tmp_path_factory.mktemp("samples")
    repo, view, volume = work / "repo", work / "view", work / "volume"
    spec = TrainingRunSpec.model_validate({
        "model": MODEL, "dataset": {"generated": {"samples": 800, "seed": 11}},
        "trainer": {"hyperparameters": {"epochs": "3"}},
        "publish": {"repository": {}, "backend": "python", "maxBatchSize": 64}})
    output = run(RunConfig(spec, repo))  # publishes this checkout's runner as model.py
    assert output.result.outcome == "Succeeded"
    # The pod's repository view, as its init container builds it.
    script = view_script(str(repo), MODEL, 1, Runtime(backend="python"), SPEC)
    script = script.replace(VIEW_MOUNT, str(view)).replace(sampling.MOUNT, str(volume))
    script = script.replace("/dev/termination-log", str(work / "termination-log"))
    view.mkdir()
    volume.mkdir()
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, timeout=30)
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"', str(volume)]
    env = {"MODELSHIP_SAMPLING_FLUSH_S": "1", "MODELSHIP_SAMPLING_RETRY_S": "2"}
    tools.build(tools.PROMETHEUS)
    with TritonServer(view, work / "triton", wrapper=wrapper, env=env) as triton:
        assert triton.proc is not None
        seen = Path(f"/proc/{triton.proc.pid}/root{volume}")
        area = seen / "plant" / samples.PRODUCTION_FOLDER / MODEL
        with PrometheusProcess(work / "prometheus",
                               static_targets=[f"127.0.0.1:{triton.metrics_port}"]) as prom:
            yield Served(triton, prom, output.held_out.images[:64], area)


def infer(client: grpcclient.InferenceServerClient, image: FloatArray,
          request_id: str) -> FloatArray:
    inp = grpcclient.InferInput("images", [1, *image.shape], "FP32")
    inp.set_data_from_numpy(image[None])
    result = client.infer(MODEL, [inp], request_id=request_id, client_timeout=30.0)
    out: FloatArray = result.as_numpy("logits")
    return out[0]


def serve(served: Served, start: int, count: int) -> dict[str, tuple[FloatArray, FloatArray]]:
    """`count` one-image requests with ids r-<n>: {id: (image, logits)}."""
    client = grpcclient.InferenceServerClient(served.triton.grpc_url)
    try:
        out = {}
        for n in range(start, start + count):
            image = served.images[n % len(served.images)]
            out[f"r-{n}"] = (image, infer(client, image, f"r-{n}"))
        return out
    finally:
        client.close()


def metric(served: Served, name: str, **labels: str) -> float:
    wanted = {("model", MODEL), ("version", "1"), *labels.items()}
    return sum(v for (n, ls), v in served.triton.metrics().items()
               if n == name and wanted <= ls)


def records(served: Served) -> tuple[list[samples.Part], int]:
    return samples.read_parts(served.area)


def test_served_samples_land_on_the_volume_and_read_back(served: Served) -> None:
    # The runner's series exist from the start: sampling is on before anything is written.
    wait_for("condition Sampling True", lambda: served.condition().status == "True")
    sent = serve(served, 0, 120)

    def written() -> list[samples.Part] | None:
        """The parts, once the runner's counters per reason match the records on disk (read
        between two equal readings of the counters) and at least a third of the requests
        are kept: each had a chance of 0.5 or more, and a flush may have taken only some."""
        counted = {r: metric(served, "modelship_samples_written_total", reason=r)
                   for r in ("random", "lowConfidence", "driftedSlice")}
        parts, corrupt = records(served)
        assert corrupt == 0
        on_disk = {r: sum(1 for p in parts for rec in p.records if rec.reason == r)
                   for r in counted}
        again = {r: metric(served, "modelship_samples_written_total", reason=r)
                 for r in counted}
        return parts if counted == again == on_disk and sum(on_disk.values()) >= 40 else None

    parts = wait_for("at least 40 samples written and counted", written)
    assert sum(len(p.records) for p in parts) <= 120
    for part in parts:
        images = np.load(part.path / samples.IMAGES_FILE)
        assert images.shape == (len(part.records), 1, 32, 32)
        for row, rec in zip(images, part.records, strict=True):
            image, logits = sent[rec.request_id]  # Triton's request id
            np.testing.assert_array_equal(row, image)
            assert rec.prediction == int(logits.argmax()) and rec.version == 1
            e = np.exp(logits.astype(np.float64) - logits.max())
            top1 = float(e.max() / e.sum())
            assert rec.confidence == pytest.approx(top1, rel=1e-5)
            assert (rec.probability, rec.oversampling) == (
                (0.5, 1.0) if rec.reason == "random" else (1.0, 2.0))
            assert rec.reason != "lowConfidence" or rec.confidence < 0.6


def test_a_full_volume_stops_sampling_never_serving_and_sampling_resumes(
        served: Served) -> None:
    count = len(served.images)
    reference = {int(rid[2:]) % count: logits
                 for rid, (_, logits) in serve(served, 0, count).items()}
    filler = served.area / "filler"
    # Unbuffered: a buffered file keeps what a failed flush could not write and fails again
    # when the with-block closes it (seen on a CI run).
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    n = 1000

    def stopped() -> Condition | None:
        nonlocal n
        for rid, (_, logits) in serve(served, n, 8).items():  # every request succeeds
            np.testing.assert_allclose(logits, reference[int(rid[2:]) % count], rtol=1e-5)
        n += 8
        cond = served.condition()
        return cond if (cond.status, cond.reason) == ("False", "VolumeFull") else None

    cond = wait_for("condition Sampling False VolumeFull", stopped)
    assert "the volume is full" in cond.message and "Serving goes on" in cond.message
    assert metric(served, "modelship_sampling_stopped", reason="VolumeFull") == 1
    # The parts written before stay whole; the part that could not be written left nothing.
    before, corrupt = records(served)
    assert before and corrupt == 0
    hours = served.area / samples.SAMPLES_FOLDER
    assert not [p for p in hours.glob("*/*/.*")], "a failed part was left behind"

    filler.unlink()

    def resumed() -> bool:
        nonlocal n
        serve(served, n, 8)
        n += 8
        parts, _ = records(served)
        return served.condition().status == "True" and len(parts) > len(before)

    wait_for("sampling resumed", resumed)
    assert metric(served, "modelship_sampling_stopped", reason="VolumeFull") == 0
