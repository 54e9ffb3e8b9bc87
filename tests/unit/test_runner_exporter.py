"""The runner's live-statistics exporter, driven as Triton drives it (execute() pumps the
queued increments) with a recording stand-in for triton_python_backend_utils' metric API,
which exists only inside Triton. Whatever moment Prometheus scrapes at, each histogram must
be one the served samples could have produced: all of a flush's increments or none."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest

from modelship_api.profile import image_statistics
from modelship_trainer import triton_runner
from modelship_trainer.triton_runner import CALLS_PER_EXECUTE, Definition, Exporter, Statistics

CLASSES = ["ok", "scratch", "pit"]


class Family:
    COUNTER, GAUGE = "counter", "gauge"

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name = name
        self.metrics: list[Metric] = []

    def Metric(self, labels: dict[str, str]) -> Metric:  # noqa: N802 (pb_utils' name)
        metric = Metric(self.name, labels)
        self.metrics.append(metric)
        return metric


class Metric:
    def __init__(self, family: str, labels: dict[str, str]) -> None:
        self.family, self.labels, self.value = family, labels, 0.0

    def increment(self, value: float) -> None:
        self.value += value


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Exporter]:
    monkeypatch.setattr(triton_runner, "pb_utils", SimpleNamespace(MetricFamily=Family))
    definitions = [Definition(d.name, d.source, d.measure, d.feature, d.edges, d.categories)
                   for d in image_statistics(CLASSES)]
    exp = Exporter("m", "1", Statistics(definitions, len(CLASSES)), CLASSES)
    # Its thread measures every few seconds and drains when idle: driven by hand here.
    exp.halt.set()
    exp.stats.due.set()
    exp.thread.join(timeout=10)
    assert not exp.thread.is_alive()
    yield exp


def histograms(exp: Exporter) -> dict[str, list[float]]:
    """Each statistic's series as a scrape would read them: its buckets, then its count."""
    out: dict[str, list[float]] = {}
    for buckets, (count, _) in zip(exp.buckets, exp.count_sum, strict=True):
        name = buckets[0].labels["statistic"]
        out[name] = [m.value for m in buckets] + [count.value]
    out["predicted_class"] = [m.value for m in exp.predictions]
    return out


def serve(exp: Exporter, rng: np.random.Generator, brightness: float, n: int = 64) -> None:
    x = np.clip(rng.normal(brightness, 0.08, (n, 1, 8, 8)), 0, 1).astype(np.float32)
    exp.stats.add(x, rng.normal(0, 2, (n, len(CLASSES))).astype(np.float32))


def test_a_scrape_between_two_executes_never_sees_a_half_updated_histogram(
        exporter: Exporter) -> None:
    rng = np.random.default_rng(3)
    before = histograms(exporter)
    for flush, brightness in enumerate((0.5, 0.3, 0.7)):
        serve(exporter, rng, brightness)
        exporter.measure()
        scrapes = []
        while exporter.queue:
            exporter.pump()  # one execute(), then a scrape
            scrapes.append(histograms(exporter))
        assert len(scrapes) > 1, "one flush in one execute(): this test would prove nothing"
        after = histograms(exporter)
        assert after["input_brightness"][-1] == 64 * (flush + 1)
        for scrape in scrapes:
            for name, series in scrape.items():
                assert series in (before[name], after[name]), (
                    f"flush {flush}: {name} half updated: {series}, before {before[name]}, "
                    f"after {after[name]}")
        before = after


def test_each_execute_makes_at_least_a_few_increments_and_whole_histograms(
        exporter: Exporter) -> None:
    serve(exporter, np.random.default_rng(4), 0.5)
    exporter.measure()
    sizes = [len(g) for g in exporter.queue]
    calls = []
    while exporter.queue:
        left = sum(len(g) for g in exporter.queue)
        exporter.pump()
        calls.append(left - sum(len(g) for g in exporter.queue))
    # Every execute made whole groups, at least CALLS_PER_EXECUTE increments unless the
    # queue ran out.
    assert sum(calls) == sum(sizes)
    assert all(c >= CALLS_PER_EXECUTE for c in calls[:-1]), calls
    bounds = set(np.cumsum(sizes).tolist())
    assert set(np.cumsum(calls).tolist()) <= bounds, (calls, sizes)
