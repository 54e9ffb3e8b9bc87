"""The analysis signals, end to end on 127.0.0.1: a real Triton serves versions of a tiny ONNX
model (published with the trainer's publish code, run by the project's Python-backend
runner), real gRPC traffic reaches them, a real Prometheus (upstream build) scrapes Triton
every second, and the adapter runs the built-in checks' real PromQL against it.

Version 1 works. Version 2 passes onnx's checker and loads, but its class index table is
wrong, so onnxruntime fails every inference at run time (a model that really fails, not a
simulated one). Version 3 works and gets no traffic.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelship.adapters.prometheus import PrometheusClient, QueryResult, measure_checks
from modelship.core.analysis import (
    DEFAULT_CHECKS,
    QueryContext,
    check_query,
    error_ratio_query,
    mean_latency_query,
    verdict,
)
from modelship_api.modeldeployment import Check
from modelship_dev import tools
from modelship_dev.prometheus import KubernetesPods, PrometheusProcess
from modelship_dev.triton import TritonServer

try:
    import onnx
    import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
    from onnx import TensorProto, helper, numpy_helper
    from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

    from modelship_trainer import triton_config
    from modelship_trainer.repository import publish
except ImportError as missing:  # a clear failure, never a skip
    raise RuntimeError(
        f"{missing.name} is missing; these tests need the train extra, tritonclient[grpc] and "
        "nvidia-pytriton: pip install -e '.[train,dev]' 'tritonclient[grpc]' nvidia-pytriton"
    ) from missing

pytestmark = pytest.mark.e2e

MODEL = "signals"
GOOD, FAILING, IDLE, NEVER_SERVED = 1, 2, 3, 9
WINDOW = "10s"
FEATURES, CLASSES = 4, 3
ERRORS = Check(name="error-ratio", builtin="errorRatio", max=0.01)
TRITON_COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure",
                   "modelship_runner_errors_total")


def tiny_onnx(class_indices: list[int]) -> bytes:
    """logits = Gather(images @ w, class_indices): valid ONNX whatever the indices; an index
    past the last class fails only when onnxruntime runs it."""
    weights = np.arange(FEATURES * CLASSES, dtype=np.float32).reshape(FEATURES, CLASSES) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["scores"]),
         helper.make_node("Gather", ["scores", "classes"], ["logits"], axis=1)],
        MODEL,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weights, "w"),
         numpy_helper.from_array(np.array(class_indices, dtype=np.int64), "classes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the onnxruntime in the Triton stub's environment reads
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized


def runner_source() -> Path:
    # Located, not imported: the runner imports triton_python_backend_utils (Triton only).
    spec = importlib.util.find_spec("modelship_trainer.triton_runner")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("signals") / "repo"
    # The trainer's config, plus a policy that serves every version from one Triton (the
    # operator's pods each pin one version instead).
    # No warmup: the failing version must load and fail on requests, not at load.
    config = (triton_config.render(MODEL, "python", 8, (FEATURES,), CLASSES, warmup=False)
              + "version_policy: { all: {} }\n")
    for expected, indices in ((GOOD, [0, 1, 2]), (FAILING, [0, 1, 7]), (IDLE, [2, 1, 0])):
        onnx_bytes = tiny_onnx(indices)

        def fill(version_dir: Path, onnx_bytes: bytes = onnx_bytes) -> None:
            (version_dir / "model.onnx").write_bytes(onnx_bytes)
            shutil.copyfile(runner_source(), version_dir / "model.py")

        assert publish(repo, MODEL, fill, model_config=config).version == expected
    return repo


@pytest.fixture(scope="module")
def triton(repository: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TritonServer]:
    with TritonServer(repository, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusProcess]:
    tools.build(tools.PROMETHEUS)  # cached after the first build
    prom = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), scrape_interval="1s",
                             static_targets=[f"127.0.0.1:{triton.metrics_port}"])
    prom.start()
    try:
        prom.wait_scraping(1, timeout=30)
        yield prom
    finally:
        prom.stop()
        assert not prom.alive()


@pytest.fixture
def client(triton: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        yield c
    finally:
        c.close()


def infer(client: grpcclient.InferenceServerClient, version: int) -> bool:
    """One real gRPC request; True when it succeeded."""
    images = grpcclient.InferInput("images", [2, FEATURES], "FP32")
    images.set_data_from_numpy(np.ones((2, FEATURES), dtype=np.float32))
    try:
        client.infer(MODEL, [images], model_version=str(version), client_timeout=10.0)
    except InferenceServerException:
        return False
    return True


@dataclass
class Traffic:
    """Requests to the good and the failing version in a background thread, bounded in count
    and time."""

    client: grpcclient.InferenceServerClient
    max_requests: int = 3000
    max_seconds: float = 90.0
    pause_s: float = 0.02
    sent: dict[int, list[bool]] = field(default_factory=lambda: {GOOD: [], FAILING: []})
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for i in range(self.max_requests):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            version = GOOD if i % 2 == 0 else FAILING
            self.sent[version].append(infer(self.client, version))
            self.stop.wait(self.pause_s)


@pytest.fixture
def traffic(client: grpcclient.InferenceServerClient) -> Iterator[Traffic]:
    t = Traffic(client)
    thread = threading.Thread(target=t.run, daemon=True)
    thread.start()
    try:
        yield t
    finally:
        t.stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive()


def query(prometheus: PrometheusProcess, promql: str) -> QueryResult:
    async def go() -> QueryResult:
        async with PrometheusClient(prometheus.url) as prom:
            return await prom.query(promql, 5.0)
    return asyncio.run(go())


def poll(what: str, get: Callable[[], QueryResult], done: Callable[[QueryResult], bool],
         timeout: float = 40.0) -> QueryResult:
    deadline = time.monotonic() + timeout
    result = get()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.5)
        result = get()
    assert done(result), f"{what}: still {result} after {timeout:g}s"
    return result


def finite(result: QueryResult) -> bool:
    return result.value is not None and math.isfinite(result.value)


def counters(triton: TritonServer, version: int) -> dict[str, float]:
    """Triton's request counters of one version, summed over their other labels (reason)."""
    out = dict.fromkeys(TRITON_COUNTERS, 0.0)
    for (name, labels), value in triton.metrics().items():
        if name in out and ("model", MODEL) in labels and ("version", str(version)) in labels:
            out[name] += value
    return out


def test_which_triton_counters_move_for_failing_requests(
        triton: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    """Documents Triton 2.51's behaviour with the project's runner: a request whose inference
    really fails is a Triton *failure* (the runner raises from execute()), and the runner's
    own counter sees it too; a good request is a success and nothing else."""
    n = 5
    before = {v: counters(triton, v) for v in (GOOD, FAILING)}
    assert [infer(client, GOOD) for _ in range(n)] == [True] * n
    assert [infer(client, FAILING) for _ in range(n)] == [False] * n
    moved = {v: {k: counters(triton, v)[k] - before[v][k] for k in TRITON_COUNTERS}
             for v in (GOOD, FAILING)}
    assert moved[FAILING] == {"nv_inference_request_success": 0,
                              "nv_inference_request_failure": n,
                              "modelship_runner_errors_total": n}, moved
    assert moved[GOOD] == {"nv_inference_request_success": n,
                           "nv_inference_request_failure": 0,
                           "modelship_runner_errors_total": 0}, moved
    failure_reasons = {dict(labels).get("reason") for (name, labels), v in triton.metrics().items()
                       if name == "nv_inference_request_failure" and v > 0
                       and ("version", str(FAILING)) in labels}
    assert failure_reasons == {"BACKEND"}
    assert "indices element out of data bounds" in triton.log_tail(50_000)


def test_error_ratio_and_latency_through_prometheus(
        prometheus: PrometheusProcess, traffic: Traffic) -> None:
    bad = poll("error ratio of the failing version",
               lambda: query(prometheus, error_ratio_query(MODEL, FAILING, WINDOW)), finite)
    good = poll("error ratio of the good version",
                lambda: query(prometheus, error_ratio_query(MODEL, GOOD, WINDOW)), finite)
    latency = poll("mean latency of the good version",
                   lambda: query(prometheus, mean_latency_query(MODEL, GOOD, WINDOW)), finite)
    assert traffic.sent[GOOD] and all(traffic.sent[GOOD])
    assert traffic.sent[FAILING] and not any(traffic.sent[FAILING])
    assert bad.value is not None and bad.value > 0.5, bad
    assert good.value is not None and abs(good.value) < 1e-9, good
    assert latency.value is not None and 0 < latency.value < 5000, latency  # ms
    # No successes at all: the failing version's mean latency is 0/0.
    bad_latency = query(prometheus, mean_latency_query(MODEL, FAILING, WINDOW))
    assert bad_latency.value is not None and math.isnan(bad_latency.value), bad_latency

    # The same through the checks the state machine runs: the default checks, with the good
    # version as stable and the failing one as candidate, and the other way round.
    for candidate, stable, expected in ((FAILING, GOOD, "Failed"), (GOOD, FAILING, None)):
        ctx = QueryContext(model=MODEL, namespace="", candidate=candidate, stable=stable,
                           window=WINDOW)
        queries = [check_query(c, ctx) for c in DEFAULT_CHECKS]
        measured = asyncio.run(measure_checks(prometheus.url, queries, 5.0))
        results = {c.name: verdict(c, measured[c.name]).result for c in DEFAULT_CHECKS}
        if expected == "Failed":
            # Errors fail; latency relative to a stable that answered nothing is undecidable.
            assert results == {"error-ratio": "Failed", "mean-latency": "Inconclusive"}, measured
        else:
            assert results == {"error-ratio": "Successful", "mean-latency": "Inconclusive"}, (
                measured)  # the failing stable has no latency to compare with


def test_a_version_without_traffic_is_inconclusive(
        triton: TritonServer, prometheus: PrometheusProcess) -> None:
    # Loaded but idle: Triton exports its counters at 0, so the ratio is 0/0 = NaN once
    # Prometheus holds two samples in the window.
    assert counters(triton, IDLE)["nv_inference_request_success"] == 0
    idle = poll("error ratio of the idle version",
                lambda: query(prometheus, error_ratio_query(MODEL, IDLE, WINDOW)),
                lambda r: r.value is not None)
    assert idle.value is not None and math.isnan(idle.value) and not idle.error, idle
    # Never served: no series at all, so an empty vector.
    never = query(prometheus, error_ratio_query(MODEL, NEVER_SERVED, WINDOW))
    assert never.no_data, never
    for version in (IDLE, NEVER_SERVED):
        ctx = QueryContext(model=MODEL, namespace="", candidate=version, stable=None,
                           window=WINDOW)
        measured = asyncio.run(measure_checks(prometheus.url, [check_query(ERRORS, ctx)], 5.0))
        result = verdict(ERRORS, measured[ERRORS.name])
        assert result.result == "Inconclusive" and result.value is None, result


def test_prometheus_stopped_mid_test_is_an_error_never_a_number(
        prometheus: PrometheusProcess, traffic: Traffic) -> None:
    promql = error_ratio_query(MODEL, FAILING, WINDOW)
    assert finite(poll("error ratio before the stop", lambda: query(prometheus, promql), finite))
    prometheus.stop()
    try:
        assert not prometheus.alive()
        ctx = QueryContext(model=MODEL, namespace="", candidate=FAILING, stable=GOOD,
                           window=WINDOW)
        queries = [check_query(c, ctx) for c in DEFAULT_CHECKS]
        measured = asyncio.run(measure_checks(prometheus.url, queries, 2.0))
        for check in DEFAULT_CHECKS:
            m = measured[check.name]
            assert m.value is None and "unreachable" in m.error, m
            assert verdict(check, m).result == "Inconclusive"
    finally:
        prometheus.start()  # same port: a URL in a ModelDeployment stays valid
    back = poll("error ratio after the restart", lambda: query(prometheus, promql), finite)
    assert back.value is not None and back.value > 0.5


def test_kubernetes_discovery_config_is_accepted_and_targets_reload(
        triton: TritonServer, tmp_path: Path) -> None:
    """The upstream build takes the pod-discovery job (Debian's package would refuse
    kubernetes_sd_configs), and a reload swaps the static targets of a running server."""
    with socket.socket() as unused:  # bound, never listening: the API server is refused
        unused.bind(("127.0.0.1", 0))
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "local",
            "clusters": [{"name": "local", "cluster": {
                "server": f"https://127.0.0.1:{unused.getsockname()[1]}",
                "insecure-skip-tls-verify": True}}],
            "users": [{"name": "local", "user": {"token": "unused"}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
        }))
        prom = PrometheusProcess(tmp_path / "prometheus", scrape_interval="1s",
                                 static_targets=[f"127.0.0.1:{triton.metrics_port}"],
                                 kubernetes=KubernetesPods(kubeconfig, namespaces=["models"]))
        with prom:
            loaded = json.loads(httpx.get(f"{prom.url}/api/v1/status/config",
                                          timeout=5).text)["data"]["yaml"]
            for expected in ("kubernetes_sd_configs", "role: pod", str(kubeconfig),
                             "target_label: model_version", "target_label: pod",
                             "__meta_kubernetes_pod_label_modelship_io_model_version",
                             "__meta_kubernetes_pod_annotation_prometheus_io_port"):
                assert expected in loaded, expected
            assert [t["labels"]["job"] for t in prom.wait_scraping(1)] == ["static"]
            prom.set_targets([])
            deadline = time.monotonic() + 10
            while prom.active_targets() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert prom.active_targets() == []
            prom.set_targets([f"127.0.0.1:{triton.metrics_port}"])
            assert len(prom.wait_scraping(1)) == 1
            pid = prom.proc.pid if prom.proc else 0
        assert not prom.alive() and not Path(f"/proc/{pid}").exists()
