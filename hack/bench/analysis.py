"""How fast the built-in error ratio sees errors: from the first failing request to the
errorRatio query crossing 0.01, with a real Triton, a real Prometheus scraping every 1 s,
and the adapter polling the query every 0.1 s.

One version of a tiny ONNX model, served by the project's Python-backend runner, gets steady
gRPC traffic; in each run every request starts carrying a NaN pixel, which the runner
refuses (a Triton failure), until the ratio crosses the threshold; then traffic turns good
again and the run waits for the ratio to fall back below it.

    .venv/bin/python hack/bench/analysis.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from modelship.adapters.prometheus import PrometheusClient
from modelship.core.analysis import error_ratio_query
from modelship_dev import tools
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.triton import TritonServer
from modelship_trainer import triton_config
from modelship_trainer.repository import publish

MODEL, FEATURES, CLASSES = "bench_signals", 4, 3
THRESHOLD, WINDOW = 0.01, "10s"


def publish_model(repo: Path) -> None:
    weights = np.ones((FEATURES, CLASSES), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["logits"])], MODEL,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    spec = importlib.util.find_spec("modelship_trainer.triton_runner")
    assert spec is not None and spec.origin is not None
    runner = Path(spec.origin)

    def fill(version_dir: Path) -> None:
        (version_dir / "model.onnx").write_bytes(model.SerializeToString())
        shutil.copyfile(runner, version_dir / "model.py")

    publish(repo, MODEL, fill, triton_config.render(MODEL, "python", 8, (FEATURES,), CLASSES))


class Traffic(threading.Thread):
    """About 50 requests a second, good or failing as `failing` says, for at most max_s."""

    def __init__(self, grpc_url: str, max_s: float) -> None:
        super().__init__(daemon=True)
        self.client = grpcclient.InferenceServerClient(grpc_url)
        self.failing = threading.Event()
        self.halt = threading.Event()
        self.first_failure_at: float | None = None
        self.deadline = time.monotonic() + max_s

    def run(self) -> None:
        good = np.ones((1, FEATURES), dtype=np.float32)
        bad = good.copy()
        bad[0, 0] = np.nan
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            failing = self.failing.is_set()
            images = grpcclient.InferInput("images", [1, FEATURES], "FP32")
            images.set_data_from_numpy(bad if failing else good)
            sent_at = time.monotonic()
            try:
                self.client.infer(MODEL, [images], model_version="1", client_timeout=10.0)
            except InferenceServerException:
                if self.first_failure_at is None:
                    self.first_failure_at = sent_at
            self.halt.wait(0.02)
        self.client.close()


async def wait_ratio(prom: PrometheusClient, above: bool, timeout_s: float) -> float:
    """Poll until the ratio is above (or back below) THRESHOLD; the time it happened."""
    promql = error_ratio_query(MODEL, 1, WINDOW)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await prom.query(promql, 2.0)
        value = result.value
        if value is not None and math.isfinite(value) and (value > THRESHOLD) == above:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"error ratio not {'above' if above else 'below'} {THRESHOLD} "
                       f"within {timeout_s:g}s")


async def measure(prometheus: PrometheusProcess, traffic: Traffic, runs: int) -> list[float]:
    times: list[float] = []
    async with PrometheusClient(prometheus.url) as prom:
        await wait_ratio(prom, above=False, timeout_s=60)  # good traffic scraped
        for i in range(runs):
            traffic.first_failure_at = None
            traffic.failing.set()
            crossed = await wait_ratio(prom, above=True, timeout_s=30)
            traffic.failing.clear()
            assert traffic.first_failure_at is not None
            times.append(crossed - traffic.first_failure_at)
            print(f"run {i + 1}: {times[-1]:.2f}s", flush=True)
            await wait_ratio(prom, above=False, timeout_s=60)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    tools.build(tools.PROMETHEUS)
    with tempfile.TemporaryDirectory(prefix="modelship-bench-analysis-") as tmp:
        work = Path(tmp)
        publish_model(work / "repo")
        with TritonServer(work / "repo", work) as triton:
            prometheus = PrometheusProcess(work / "prometheus", scrape_interval="1s",
                                           static_targets=[f"127.0.0.1:{triton.metrics_port}"])
            prometheus.start()
            traffic = Traffic(triton.grpc_url, max_s=60 + args.runs * 60)
            traffic.start()
            try:
                times = asyncio.run(measure(prometheus, traffic, args.runs))
            finally:
                traffic.halt.set()
                traffic.join(timeout=20)
                prometheus.stop()
    q = statistics.quantiles(times, n=20, method="inclusive")
    print(f"\nfirst failing request -> errorRatio > {THRESHOLD} ({len(times)} runs, 1 s scrape, "
          f"0.1 s polling): p50 {statistics.median(times):.2f}s, p95 {q[18]:.2f}s, "
          f"max {max(times):.2f}s")


if __name__ == "__main__":
    main()
