"""What the live model statistics cost: p50/p99 latency and throughput of the demo model
through a real Triton, with and without the runner's statistics.

The demo's model (built-in surface-defects recipe, Python-backend runner) is trained once and
published twice into one repository: `defects_on` (statistics exported, as every version)
and `defects_off` (config parameter modelship_statistics "off"). One tritonserver serves
both, so both see the same machine; rounds alternate between them (off/on, then on/off).
Each measures latency with one closed-loop gRPC client sending one 32x32 image per request,
then throughput with several concurrent clients, each for long enough to include the
runner's periodic flushes (every 5 s); between measurements the bench waits until the
statistics have caught up, so that one measurement's flush does not land in the next.
Figures are medians over rounds. It also times the runner's per-request work in-process
and counts the metric calls one flush makes at most. Goal: <= 5 % on p50 and on throughput.

    .venv/bin/python hack/bench/profiling.py [--rounds 6] [--seconds 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelship_api.profile import NumericStatistic, Profile
from modelship_api.trainingrun import TrainingRunSpec
from modelship_dev.triton import TritonServer
from modelship_trainer import triton_config
from modelship_trainer.data import FloatArray
from modelship_trainer.pipeline import RunConfig, run
from modelship_trainer.triton_runner import STATISTICS_PARAMETER, Statistics, read_definitions

MODELS = {"on": "defects_on", "off": "defects_off"}


def publish_demo_model(repo: Path) -> tuple[FloatArray, Path]:
    """The demo's model published as both names; (held-out images, version folder)."""
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


def settle(triton: TritonServer) -> None:
    """Wait until the statistics of `defects_on` cover every sample it served (Triton counts
    its warmup too), so that no flush of one phase runs during the next."""
    labels = frozenset({("model", MODELS["on"]), ("version", "1")})
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0,
                   help="per measurement (latency, then throughput), at least 2 flushes")
    p.add_argument("--clients", type=int, default=4, help="concurrent throughput clients")
    args = p.parse_args()
    torch.set_num_threads(2)
    results: dict[str, list[tuple[float, float, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="modelship-bench-profiling-") as tmp:
        work = Path(tmp)
        images, version_dir = publish_demo_model(work / "repo")
        profile = Profile.load(version_dir / "profile.json")
        flush_calls = 1 + sum(len(s.edges) + 3 if isinstance(s, NumericStatistic)
                              else len(s.categories) for s in profile.statistics.values())
        add_us, total_us = in_process_cost(version_dir, images)
        with TritonServer(work / "repo", work) as triton:
            for r in range(args.rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    model = MODELS[mode]
                    p50, p99 = latency(triton.grpc_url, model, images, args.seconds)
                    settle(triton)
                    rps = throughput(triton.grpc_url, model, images, args.seconds, args.clients)
                    settle(triton)
                    results[mode].append((p50, p99, rps))
                    print(f"round {r + 1} statistics {mode:<3}: p50 {p50:.3f} ms, "
                          f"p99 {p99:.3f} ms, {rps:.0f} req/s", flush=True)
            served = sum(v for (name, labels), v in triton.metrics().items()
                         if name == "modelship_input_statistic_count"
                         and ("statistic", "input_brightness") in labels)

    def med(mode: str, i: int) -> float:
        return statistics.median(x[i] for x in results[mode])

    print(f"\ndemo model (surface-defects, Python-backend runner), one 32x32 image per "
          f"request, {args.rounds} alternating rounds of {args.seconds:g} s, medians "
          f"(throughput: {args.clients} clients):")
    for i, (label, unit, better) in enumerate((("p50 latency", "ms", -1),
                                                ("p99 latency", "ms", -1),
                                                ("throughput", "req/s", 1))):
        off, on = med("off", i), med("on", i)
        cost = (on - off) / off * 100 * (-better)
        print(f"  {label:<12} off {off:9.3f} {unit:<5} on {on:9.3f} {unit:<5} "
              f"cost {cost:+.1f} %")
    print(f"  runner work per request, in-process: {add_us:.1f} us on the request path "
          f"(Statistics.add), {total_us:.1f} us with its share of the flush's measuring")
    print(f"  metric calls per flush (at most, every 5 s): {flush_calls}")
    print(f"  samples counted by the served statistics: {served:.0f}")


if __name__ == "__main__":
    main()
