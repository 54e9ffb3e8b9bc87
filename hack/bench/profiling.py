"""What the live model statistics and production sampling cost: p50/p99 latency and
throughput of the demo model through a real Triton, with and without the runner's
statistics, and with and without sampling.

The demo's model (built-in surface-defects recipe, Python-backend runner) is trained once and
published three times into one repository: `defects_on` (statistics exported, as every
version), `defects_off` (config parameter modelship_statistics "off") and `defects_sampled`
(statistics and sampling, spec.monitoring.sampling's defaults unless --sampling-rate says
otherwise, writing to a temporary folder). One tritonserver serves them all, so all see
the same machine; rounds rotate the order between them.
Each measures latency with one closed-loop gRPC client sending one 32x32 image per request,
then throughput with several concurrent clients, each for long enough to include the
runner's periodic flushes (every 5 s); between measurements the bench waits until the
statistics have caught up, so that one measurement's flush does not land in the next.
A fourth model, `defects_ensemble`, measures the design the runner's aggregation was weighed
against (docs/profiles.md): a Triton ensemble of `defects_off` and the cheapest Python
statistics step; and in onnxruntime the published graph against the same graph with the six
summary statistics as extra outputs.
Figures are medians over rounds. It also times the runner's per-request work in-process
(statistics and sampling), counts the metric calls one flush makes at most, the samples
written, and prints the load average (a busy machine widens every figure). Goal: <= 5 % on
p50 and on throughput for each; sampling: no measurable slowdown.

    .venv/bin/python hack/bench/profiling.py [--rounds 6] [--seconds 10] [--clients 4]
        [--sampling-rate 0.01]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import torch
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelship_api import samples
from modelship_api.profile import NumericStatistic, Profile
from modelship_api.trainingrun import TrainingRunSpec
from modelship_dev.triton import TritonServer
from modelship_trainer import triton_config
from modelship_trainer import triton_runner as runner
from modelship_trainer.data import FloatArray
from modelship_trainer.pipeline import RunConfig, run
from modelship_trainer.triton_runner import (
    SATURATION_HIGH,
    SATURATION_LOW,
    STATISTICS_PARAMETER,
    Statistics,
    read_definitions,
)

MODELS = {"on": "defects_on", "off": "defects_off", "sampled": "defects_sampled",
          "ensemble": "defects_ensemble"}
MODES = tuple(MODELS)
# The statistics step of the design the runner's aggregation was weighed against: the
# summary scalars as extra outputs of the ONNX graph, turned into metrics by a Python step of
# a Triton ensemble. The cheapest such step: it receives the few floats (here the 3 logits)
# and keeps them; a real one would also fold them into histograms now and then.
STEP_MODEL = "defects_statistics_step"
STEP_CODE = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.kept = []

    def execute(self, requests):
        replies = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
            self.kept.append(logits)
            if len(self.kept) >= 4096:
                self.kept.clear()
            replies.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("logits", logits)]))
        return replies
"""


def publish_demo_model(repo: Path, samples_dir: Path, rate: float) -> tuple[FloatArray, Path]:
    """The demo's model published under the three names; (held-out images, version
    folder)."""
    spec = TrainingRunSpec.model_validate({
        "model": MODELS["on"], "dataset": {"generated": {"samples": 2000, "seed": 5}},
        "trainer": {"hyperparameters": {"epochs": "3"}},
        "publish": {"repository": {}, "backend": "python"}})
    out = run(RunConfig(spec, repo))
    assert out.result.outcome == "Succeeded", out.result.message
    off = repo / MODELS["off"]
    shutil.copytree(repo / MODELS["on"], off)
    config = (off / "config.pbtxt").read_text().replace(
        f'name: "{MODELS["on"]}"', f'name: "{MODELS["off"]}"')
    switch = f'key: "{STATISTICS_PARAMETER}" value: {{ string_value: "off" }}'
    (off / "config.pbtxt").write_text(f"{config}parameters {{ {switch} }}\n")
    sampled = repo / MODELS["sampled"]
    shutil.copytree(repo / MODELS["on"], sampled)
    config = (sampled / "config.pbtxt").read_text().replace(
        f'name: "{MODELS["on"]}"', f'name: "{MODELS["sampled"]}"')
    # No hourly cap (past it nothing is drawn): the bench measures the sampling itself.
    params = {runner.SAMPLING_AREA: str(samples_dir), runner.SAMPLING_RATE: repr(rate),
              runner.SAMPLING_HOURLY_CAP: str(10**9)}
    config += "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n'
                      for k, v in params.items())
    (sampled / "config.pbtxt").write_text(config)
    publish_ensemble(repo, spec.publish.max_batch_size)
    return out.held_out.images, repo / MODELS["on"] / "1"


def publish_ensemble(repo: Path, max_batch_size: int) -> None:
    """defects_ensemble: defects_off (the model, no statistics) then the statistics step,
    replying after both, as Triton's ensembles do."""
    tensor = 'name: "{}" data_type: TYPE_FP32 dims: [ {} ]'
    # The ensemble's own tensors are the model's, as published.
    tensors = [line for line in (repo / MODELS["off"] / "config.pbtxt").read_text().splitlines()
               if line.startswith(("input [", "output ["))]
    (repo / STEP_MODEL / "1").mkdir(parents=True)
    (repo / STEP_MODEL / "1" / "model.py").write_text(STEP_CODE)
    (repo / STEP_MODEL / "config.pbtxt").write_text("\n".join([
        f'name: "{STEP_MODEL}"', 'backend: "python"', f"max_batch_size: {max_batch_size}",
        f"input [ {{ {tensor.format('logits', 3)} }} ]",
        f"output [ {{ {tensor.format('logits', 3)} }} ]",
        "instance_group [ { kind: KIND_CPU count: 1 } ]", ""]))
    (repo / MODELS["ensemble"] / "1").mkdir(parents=True)
    (repo / MODELS["ensemble"] / "config.pbtxt").write_text("\n".join([
        f'name: "{MODELS["ensemble"]}"', 'platform: "ensemble"',
        f"max_batch_size: {max_batch_size}",
        *tensors, "ensemble_scheduling { step [",
        f'  {{ model_name: "{MODELS["off"]}" model_version: -1 '
        'input_map { key: "images" value: "images" } '
        'output_map { key: "logits" value: "raw_logits" } },',
        f'  {{ model_name: "{STEP_MODEL}" model_version: -1 '
        'input_map { key: "logits" value: "raw_logits" } '
        'output_map { key: "logits" value: "logits" } }',
        "] }", ""]))


def graph_outputs_cost(version_dir: Path, images: FloatArray, n: int = 4000
                       ) -> tuple[float, float]:
    """Microseconds per one-image inference in onnxruntime (CPU): (model.onnx as published,
    the same graph with the image recipe's summary scalars as extra outputs: mean,
    standard deviation and saturated fraction of the input; top-1 confidence, entropy and
    class of the output)."""
    model = onnx.load(str(version_dir / "model.onnx"))
    g = model.graph
    x, y = g.input[0].name, g.output[0].name
    # Opset 13, as exported: ReduceMean and ReduceMax take axes as an attribute, ReduceSum
    # as an input.
    last = onnx.helper.make_tensor("last", onnx.TensorProto.INT64, [1], [-1])
    pixels = [1, 2, 3]
    g.initializer.extend([last, *(onnx.helper.make_tensor(name, onnx.TensorProto.FLOAT, [], [v])
                                  for name, v in (("low", SATURATION_LOW),
                                                  ("high", SATURATION_HIGH)))])
    node = onnx.helper.make_node
    g.node.extend([
        node("ReduceMean", [x], ["stat_mean"], axes=pixels, keepdims=0),
        node("ReduceMean", [x], ["mean_kept"], axes=pixels, keepdims=1),
        node("Sub", [x, "mean_kept"], ["centred"]),
        node("Mul", ["centred", "centred"], ["squared"]),
        node("ReduceMean", ["squared"], ["variance"], axes=pixels, keepdims=0),
        node("Sqrt", ["variance"], ["stat_std"]),
        node("LessOrEqual", [x, "low"], ["dark"]),
        node("GreaterOrEqual", [x, "high"], ["bright"]),
        node("Or", ["dark", "bright"], ["saturated"]),
        node("Cast", ["saturated"], ["saturated_f"], to=onnx.TensorProto.FLOAT),
        node("ReduceMean", ["saturated_f"], ["stat_saturated"], axes=pixels, keepdims=0),
        node("Softmax", [y], ["probabilities"], axis=-1),
        node("ReduceMax", ["probabilities"], ["stat_confidence"], axes=[-1], keepdims=0),
        node("Log", ["probabilities"], ["log_p"]),
        node("Mul", ["probabilities", "log_p"], ["p_log_p"]),
        node("ReduceSum", ["p_log_p", "last"], ["negative_entropy"], keepdims=0),
        node("Neg", ["negative_entropy"], ["stat_entropy"]),
        node("ArgMax", [y], ["stat_class"], axis=-1, keepdims=0),
    ])
    floats = ("stat_mean", "stat_std", "stat_saturated", "stat_confidence", "stat_entropy")
    g.output.extend([*(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                          ["batch"]) for name in floats),
                     onnx.helper.make_tensor_value_info("stat_class", onnx.TensorProto.INT64,
                                                        ["batch"])])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    plain = ort.InferenceSession(str(version_dir / "model.onnx"), options,
                                 providers=["CPUExecutionProvider"])
    extended = ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    got = extended.run(None, {x: images[:4]})
    assert np.allclose(got[1], images[:4].mean(axis=(1, 2, 3)), atol=1e-5)
    times = {}
    for label, session, outputs in (("plain", plain, [y]), ("extended", extended, None)):
        for i in range(200):
            session.run(outputs, {x: images[i % len(images)][None]})
        start = time.perf_counter()
        for i in range(n):
            session.run(outputs, {x: images[i % len(images)][None]})
        times[label] = (time.perf_counter() - start) / n * 1e6
    return times["plain"], times["extended"]


def request(client: grpcclient.InferenceServerClient, model: str, image: FloatArray) -> None:
    inp = grpcclient.InferInput("images", [1, *image.shape], "FP32")
    inp.set_data_from_numpy(image[None])
    client.infer(model, [inp], client_timeout=30.0)


def latency(url: str, model: str, images: FloatArray, seconds: float) -> tuple[float, float]:
    """(p50, p99) in milliseconds of sequential requests for `seconds`."""
    client = grpcclient.InferenceServerClient(url)
    try:
        for i in range(50):  # connection and caches
            request(client, model, images[i % len(images)])
        times: list[float] = []
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            request(client, model, images[len(times) % len(images)])
            times.append((time.perf_counter() - start) * 1000)
    finally:
        client.close()
    q = statistics.quantiles(times, n=100, method="inclusive")
    return q[49], q[98]


def throughput(url: str, model: str, images: FloatArray, seconds: float,
               clients: int) -> float:
    """Requests per second that `clients` closed-loop clients complete in `seconds`."""
    done = [0] * clients
    stop_at = time.monotonic() + seconds

    def loop(k: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        try:
            i = k
            while time.monotonic() < stop_at:
                request(client, model, images[i % len(images)])
                done[k] += 1
                i += clients
        finally:
            client.close()

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return sum(done) / (time.monotonic() - start)


def settle(triton: TritonServer, model: str) -> None:
    """Wait until the statistics of `model` cover every sample it served (Triton counts its
    warmup too), so that no flush of one phase runs during the next."""
    if model in (MODELS["off"], MODELS["ensemble"]):
        return
    labels = frozenset({("model", model), ("version", "1")})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = triton.metrics()
        served = m.get(("nv_inference_count", labels), 0.0) - triton_config.WARMUP_COUNT
        counted = sum(v for (name, ls), v in m.items() if labels <= ls and name in (
            "modelship_predictions_total", "modelship_nonfinite_outputs_total"))
        if counted == served:
            return
        time.sleep(0.2)
    raise TimeoutError("the statistics did not catch up with the served samples in 60 s")


def in_process_cost(version_dir: Path, images: FloatArray, n: int = 2000
                    ) -> tuple[float, float]:
    """Microseconds per one-image request, outside Triton: (Statistics.add on the request
    path, add plus its share of the flush thread's take())."""
    stats = Statistics(read_definitions(version_dir), 3)
    logits = np.random.default_rng(0).normal(size=(len(images), 3)).astype(np.float32)
    batches = [(images[i % len(images)][None].copy(), logits[i % len(logits)][None].copy())
               for i in range(n)]
    start = time.perf_counter()
    for x, out in batches:
        stats.add(x, out)
    added = time.perf_counter()
    taken = stats.take()
    end = time.perf_counter()
    assert taken is not None and int(taken[0][0].sum()) == n
    return (added - start) / n * 1e6, (end - start) / n * 1e6


def sampling_cost(version_dir: Path, images: FloatArray, folder: Path, rate: float,
                  n: int = 20000) -> tuple[float, float]:
    """Microseconds per one-image request, outside Triton: (Sampler.offer on the request
    path, offer plus its share of the sampling thread's flush, the writes included)."""
    sampler = runner.Sampler(runner.SamplingPolicy(folder, rate, 10**9, 0.6, 10.0), 1,
                             "bench", read_definitions(version_dir))
    logits = np.random.default_rng(0).normal(size=(len(images), 3)).astype(np.float32)
    batches = [(images[i % len(images)][None].copy(), logits[i % len(logits)][None].copy())
               for i in range(n)]
    start = time.perf_counter()
    for i, (x, out) in enumerate(batches):
        sampler.offer(x, out, f"r-{i}")
    offered = time.perf_counter()
    sampler.flush()
    end = time.perf_counter()
    assert sampler.stopped is None
    return (offered - start) / n * 1e6, (end - start) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0,
                   help="per measurement (latency, then throughput), at least 2 flushes")
    p.add_argument("--clients", type=int, default=4, help="concurrent throughput clients")
    p.add_argument("--sampling-rate", type=float, default=0.01,
                   help="spec.monitoring.sampling.rate of defects_sampled (oversampling 10)")
    args = p.parse_args()
    torch.set_num_threads(2)
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODELS}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="modelship-bench-profiling-") as tmp:
        work = Path(tmp)
        area = work / "samples" / samples.PRODUCTION_FOLDER / MODELS["sampled"]
        images, version_dir = publish_demo_model(work / "repo", area, args.sampling_rate)
        profile = Profile.load(version_dir / "profile.json")
        flush_calls = 1 + sum(len(s.edges) + 3 if isinstance(s, NumericStatistic)
                              else len(s.categories) for s in profile.statistics.values())
        add_us, total_us = in_process_cost(version_dir, images)
        plain_us, graph_us = graph_outputs_cost(version_dir, images)
        offer_us, sample_us = sampling_cost(version_dir, images, work / "in-process",
                                            args.sampling_rate)
        with TritonServer(work / "repo", work) as triton:
            for r in range(args.rounds):
                for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
                    model = MODELS[mode]
                    p50, p99 = latency(triton.grpc_url, model, images, args.seconds)
                    settle(triton, model)
                    rps = throughput(triton.grpc_url, model, images, args.seconds, args.clients)
                    settle(triton, model)
                    results[mode].append((p50, p99, rps))
                    load.append(os.getloadavg()[0])
                    print(f"round {r + 1} {mode:<7}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
                          f"{rps:.0f} req/s (load {load[-1]:.2f})", flush=True)
            metrics = triton.metrics()
            served = sum(v for (name, labels), v in metrics.items()
                         if name == "modelship_input_statistic_count"
                         and ("statistic", "input_brightness") in labels
                         and ("model", MODELS["on"]) in labels)
            written = sum(v for (name, _), v in metrics.items()
                          if name == "modelship_samples_written_total")
        parts, corrupt = samples.read_parts(area)
        on_disk = sum(len(part.records) for part in parts)

    def med(mode: str, i: int) -> float:
        return statistics.median(x[i] for x in results[mode])

    print(f"\ndemo model (surface-defects, Python-backend runner), one 32x32 image per "
          f"request, {args.rounds} rotating rounds of {args.seconds:g} s, medians "
          f"(throughput: {args.clients} clients); 1-minute load average "
          f"{min(load):.2f}-{max(load):.2f} on {os.cpu_count()} CPUs:")
    for base, mode, what in (("off", "on", "statistics"),
                             ("on", "sampled", f"sampling at rate {args.sampling_rate:g}"),
                             ("off", "ensemble", "the alternative: a Python statistics step "
                              "in an ensemble")):
        print(f"  {what} ({MODELS[base]} vs {MODELS[mode]}):")
        for i, (label, unit, better) in enumerate((("p50 latency", "ms", -1),
                                                    ("p99 latency", "ms", -1),
                                                    ("throughput", "req/s", 1))):
            off, on = med(base, i), med(mode, i)
            cost = (on - off) / off * 100 * (-better)
            print(f"    {label:<12} off {off:9.3f} {unit:<5} on {on:9.3f} {unit:<5} "
                  f"cost {cost:+.1f} %")
    print(f"  runner work per request, in-process: {add_us:.1f} us on the request path "
          f"(Statistics.add), {total_us:.1f} us with its share of the flush's measuring")
    print(f"  the alternative's graph outputs, in onnxruntime: {plain_us:.1f} us per "
          f"one-image inference as published, {graph_us:.1f} us with the 6 statistics as "
          f"outputs ({(graph_us - plain_us) / plain_us * 100:+.1f} %)")
    print(f"  sampling per request, in-process: {offer_us:.1f} us on the request path "
          f"(Sampler.offer), {sample_us:.1f} us with its share of the flush (decide, write)")
    print(f"  metric calls per flush (at most, every 5 s): {flush_calls}")
    print(f"  samples counted by the served statistics: {served:.0f}")
    print(f"  samples written by {MODELS['sampled']}: {written:.0f} counted, {on_disk} read "
          f"back in {len(parts)} parts ({corrupt} corrupt)")


if __name__ == "__main__":
    main()
