"""What the live model statistics and production sampling cost: p50/p99 latency and
throughput of the demo model through a real Triton, with and without the runner's
statistics, and with and without sampling.

The demo's model (built-in surface-defects recipe, Python-backend runner) is trained once and
published three times into one repository: `defects_on` (statistics exported, as every
version), `defects_off` (config parameter modelship_statistics "off") and `defects_sampled`
(statistics and sampling, spec.monitoring.sampling's defaults unless --sampling-rate says
otherwise, writing to a temporary folder). One tritonserver serves all three, so all see
the same machine; rounds rotate the order between them.
Each measures latency with one closed-loop gRPC client sending one 32x32 image per request,
then throughput with several concurrent clients, each for long enough to include the
runner's periodic flushes (every 5 s); between measurements the bench waits until the
statistics have caught up, so that one measurement's flush does not land in the next.
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
from modelship_trainer.triton_runner import STATISTICS_PARAMETER, Statistics, read_definitions

MODELS = {"on": "defects_on", "off": "defects_off", "sampled": "defects_sampled"}
ORDERS = (("off", "on", "sampled"), ("sampled", "off", "on"), ("on", "sampled", "off"))


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
    return out.held_out.images, repo / MODELS["on"] / "1"


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
    if model == MODELS["off"]:
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
        offer_us, sample_us = sampling_cost(version_dir, images, work / "in-process",
                                            args.sampling_rate)
        with TritonServer(work / "repo", work) as triton:
            for r in range(args.rounds):
                for mode in ORDERS[r % len(ORDERS)]:
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
                             ("on", "sampled", f"sampling at rate {args.sampling_rate:g}")):
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
    print(f"  sampling per request, in-process: {offer_us:.1f} us on the request path "
          f"(Sampler.offer), {sample_us:.1f} us with its share of the flush (decide, write)")
    print(f"  metric calls per flush (at most, every 5 s): {flush_calls}")
    print(f"  samples counted by the served statistics: {served:.0f}")
    print(f"  samples written by {MODELS['sampled']}: {written:.0f} counted, {on_disk} read "
          f"back in {len(parts)} parts ({corrupt} corrupt)")


if __name__ == "__main__":
    main()
