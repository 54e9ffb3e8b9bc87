"""The p99Latency check end to end on 127.0.0.1: a real Triton started with the latency-summary
arguments modelship renders into every Triton Deployment, real gRPC requests, a real
Prometheus scraping Triton every second, and the checks' real PromQL through the adapter.

Both versions take 20 ms a request. Version 2 also takes 200 ms longer on every 50th
(hack's "tail" behaviour): its mean is within the default 1.5x of stable's, so the mean
check passes it; only the p99 check sees the slow tail. Limits leave room for a loaded
2-core machine, where scheduling adds tens of ms to some requests of both versions.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from tests.e2e.test_analysis_signals import prometheus

from modelship.adapters.prometheus import measure_checks
from modelship.core import triton_manifests
from modelship.core.analysis import DEFAULT_CHECKS, Measurement, QueryContext, check_query, verdict
from modelship_api.modeldeployment import Check, CheckResult
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.traffic import STEADY_S, TAIL_EVERY, TAIL_S, write_model
from modelship_dev.triton import TritonServer

try:
    import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
except ImportError as missing:  # a clear failure, never a skip
    raise RuntimeError("tritonclient[grpc] is missing: pip install 'tritonclient[grpc]'"
                       ) from missing

pytestmark = pytest.mark.e2e

MODEL = "tail"
STABLE, TAIL = 1, 2
REQUESTS = 300  # per version: 6 slow ones (2%) for TAIL, so its p99 is a slow request
MIN_REQUESTS = 100
MEAN = DEFAULT_CHECKS[1]  # meanLatency, max 1.5x stable
P99 = Check(name="p99-vs-stable", builtin="p99Latency", max=3, relative_to_stable=True)
P99_MAX_MS = 100.0
P99_ABSOLUTE = Check(name="p99-ms", builtin="p99Latency", max=P99_MAX_MS)


__all__ = ["prometheus"]  # test_analysis_signals' fixture, scraping this module's triton


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = tmp_path_factory.mktemp("tail") / "repo"
    write_model(repo, MODEL, {STABLE: "steady", TAIL: "tail"})
    with TritonServer(repo, tmp_path_factory.mktemp("triton"),
                      extra_args=list(triton_manifests.LATENCY_SUMMARY_ARGS)) as server:
        yield server


def send(triton: TritonServer, per_version: int) -> dict[int, list[float]]:
    """Alternate real gRPC requests between the versions; each one's seconds as the client
    saw them."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    seen: dict[int, list[float]] = {STABLE: [], TAIL: []}
    try:
        for _ in range(per_version):
            for version in (STABLE, TAIL):
                x = grpcclient.InferInput("x", [4], "FP32")
                x.set_data_from_numpy(np.ones(4, dtype=np.float32))
                started = time.monotonic()
                client.infer(MODEL, [x], model_version=str(version), client_timeout=10)
                seen[version].append(time.monotonic() - started)
    finally:
        client.close()
    return seen


def judge(prometheus: PrometheusProcess, candidate: int, stable: int,
          checks: list[Check]) -> dict[str, CheckResult]:
    # A 5m window counts every request sent, however long sending took on a loaded machine.
    ctx = QueryContext(model=MODEL, namespace="", candidate=candidate, stable=stable,
                       window="5m", min_requests=MIN_REQUESTS)
    measured: dict[str, Measurement] = asyncio.run(measure_checks(
        prometheus.url, [check_query(c, ctx) for c in checks], 5.0))
    return {c.name: verdict(c, measured[c.name], min_requests=MIN_REQUESTS) for c in checks}


def test_p99_fails_a_slow_tail_that_the_mean_lets_through(
        triton: TritonServer, prometheus: PrometheusProcess) -> None:
    seen = send(triton, REQUESTS)
    slow = [s for s in seen[TAIL] if s >= STEADY_S + TAIL_S]
    assert len(slow) >= REQUESTS // TAIL_EVERY, "the tail version did not serve its slow tail"

    # Wait on state: until Prometheus has scraped every request of both versions and every
    # check is conclusive. Triton's quantiles forget them after 60 s; this comes sooner.
    checks = [MEAN, P99, P99_ABSOLUTE]
    deadline = time.monotonic() + 30
    while True:
        results = judge(prometheus, TAIL, STABLE, checks)
        stable = judge(prometheus, STABLE, TAIL, [P99_ABSOLUTE])[P99_ABSOLUTE.name]
        conclusive = all(r.result != "Inconclusive" for r in (*results.values(), stable))
        if conclusive and all((r.requests or 0) >= REQUESTS for r in results.values()):
            break
        assert time.monotonic() < deadline, f"still inconclusive after 30s: {results}, {stable}"
        time.sleep(0.5)

    mean, p99, absolute = (results[c.name] for c in checks)
    assert mean.result == "Successful", mean  # the default mean check lets the tail through
    assert p99.result == "Failed", p99
    assert p99.value is not None and p99.value > 3, p99  # candidate / stable p99
    assert p99.message == f"{p99.value:g} is above max 3"
    assert absolute.result == "Failed", absolute
    assert absolute.value is not None and absolute.value >= TAIL_S * 1000, absolute  # ms
    # The stable version passes the same absolute bound: the check tells the two apart.
    assert stable.result == "Successful", stable
    assert stable.value is not None and stable.value >= STEADY_S * 1000, stable


def test_p99_forgets_requests_older_than_tritons_window_and_is_then_inconclusive(
        triton: TritonServer, prometheus: PrometheusProcess) -> None:
    """Documents the window the quantile covers: Triton's own 60 s, not the analysis window.
    A minute after the last request the summary reports NaN (the run is Inconclusive),
    while increase() over a longer analysis window still counts those requests."""
    ctx = QueryContext(model=MODEL, namespace="", candidate=TAIL, stable=None, window="5m",
                       min_requests=1)

    def measure() -> Measurement:
        return asyncio.run(measure_checks(prometheus.url, [check_query(P99_ABSOLUTE, ctx)], 5.0))[
            P99_ABSOLUTE.name]

    send(triton, 20)
    last_request = time.monotonic()
    deadline = last_request + 150
    m = measure()
    while m.value is None or not math.isfinite(m.value):  # first: Prometheus sees them
        assert time.monotonic() < deadline, f"p99 never became a number: {m}"
        time.sleep(0.5)
        m = measure()
    while not math.isnan(m.value or 0.0):  # then: Triton's window lets them go
        assert time.monotonic() < deadline, f"p99 still {m} 150s after the last request"
        time.sleep(2)
        m = measure()
    forgotten_after = time.monotonic() - last_request
    result = verdict(P99_ABSOLUTE, m, min_requests=1)
    assert result.result == "Inconclusive", result
    assert result.message == "candidate: NaN (no requests in the window?)", result
    assert (m.requests or 0) >= 20, (m, forgotten_after)  # the 5m window still holds them
