"""Triton Python-backend model: runs the version's model.onnx with onnxruntime (CPU).

Published verbatim as `<model>/<version>/model.py` when the backend is `python`. It imports
only what Triton's Python backend stub offers (triton_python_backend_utils) plus numpy and
onnxruntime, never modelship.

Failed requests (non-finite pixels, failed inference) are counted in a custom family,
modelship_runner_errors_total{model,version,reason}, and made visible to Triton's own
counters, which rollout analysis reads. Measured on Triton 2.51 (nvidia-pytriton 0.7.0): an
error *response* returned from execute() is counted in nv_inference_request_success, with or
without a custom metric family registered; only an exception raised from execute() is
counted in nv_inference_request_failure{reason="BACKEND"}. So when every request of a call
fails (always the case without dynamic batching: one request per call) the runner raises;
in a mixed dynamic batch it answers the failing requests with errors so the others still
succeed, and only the custom counter sees them. tests/e2e/test_triton_serves_published.py
checks all of this against the real server.

Model statistics (see modelship_api.profile, which this file cannot import): per served
sample, the statistics the version's profile.json defines (for images: brightness, contrast,
saturated fraction, top-1 confidence, entropy, predicted class), plus the samples whose
output is not finite. Each custom-metric call crosses from the stub to the server (measured
+0.14 ms per call), so nothing is exported per sample. execute() only keeps each served
batch; a background thread measures them every MODELSHIP_STATISTICS_FLUSH_S seconds (5 s)
with numpy, a few hundred samples at a time, and queues one counter increment per series
that changed, grouped by histogram. The increments are made by execute() itself, at least
CALLS_PER_EXECUTE at a time after its own work (measured: metric calls from another thread
crawl while requests flow), and by the background thread only once no request came for
IDLE_S. A histogram's increments are always made in one go: a scrape between them would see
its low buckets counting a flush that its high buckets do not yet (a half-updated
histogram, whose bucket counts are wrong: on the real data plane, stationary traffic
scored PSI 1.5 on input_contrast when a window ended on one). The histograms are
Prometheus classic-histogram series built from counters (`<family>_bucket{le}`, `_count`,
`_sum`): a Triton HISTOGRAM metric takes one value per observe() call, a crossing per
sample and statistic.

The config.pbtxt parameter `modelship_statistics: "off"` turns them off (hack/bench/
profiling.py compares the two).

The trainer imports the measuring functions from here (the same code computes the profile
and the live statistics), outside Triton, where triton_python_backend_utils is absent.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

try:
    import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found,unused-ignore]
except ModuleNotFoundError:  # imported by the trainer for the measuring functions only
    pb_utils = None

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
ERRORS_METRIC = "modelship_runner_errors_total"
# The names and conventions of modelship_api.profile (duplicated: the stub cannot import it).
PROFILE_FILE = "profile.json"
INPUT_METRIC = "modelship_input_statistic"
OUTPUT_METRIC = "modelship_output_statistic"
PREDICTIONS_METRIC = "modelship_predictions_total"
NONFINITE_METRIC = "modelship_nonfinite_outputs_total"
SATURATION_LOW, SATURATION_HIGH = 0.02, 0.98
FLUSH_S = float(os.environ.get("MODELSHIP_STATISTICS_FLUSH_S", "5"))
STATISTICS_PARAMETER = "modelship_statistics"  # config.pbtxt parameter; "off" disables
MAX_PENDING_BYTES = 32 << 20  # served batches kept between flushes
CHUNK_SAMPLES = 256  # measured together: numpy's per-call cost amortised, temporaries small
CALLS_PER_EXECUTE = 4  # metric increments one execute() makes (about 0.14 ms each)
IDLE_S = 1.0  # without execute() for this long, the statistics thread makes the calls

Floats = npt.NDArray[np.float64]


def softmax_summary(logits: npt.NDArray[Any]) -> tuple[Floats, Floats, npt.NDArray[np.int64]]:
    """(top-1 probability, entropy in nats, argmax) per row of finite logits."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1)
    # H = log(sum e^z) - sum(p z): no log(0) for vanishing probabilities.
    entropy = np.log(total) - (e * z).sum(axis=1) / total
    return 1.0 / total, np.maximum(entropy, 0.0), logits.argmax(axis=1).astype(np.int64)


class Measures:
    """Per-sample values of the measures over one set of samples, each computed at most
    once and sharing the work (one float64 copy, one softmax): x is (N, features) flattened
    inputs, logits (N, K) finite rows; see modelship_api.profile for the measures."""

    def __init__(self, x: npt.NDArray[Any], logits: npt.NDArray[Any]) -> None:
        self.x, self.logits = x, logits
        self._moments: tuple[Floats, Floats] | None = None
        self._softmax: tuple[Floats, Floats, npt.NDArray[np.int64]] | None = None

    def moments(self) -> tuple[Floats, Floats]:
        """(mean, std) per sample: float64 sums of x and x*x (one pass each, BLAS-fast)."""
        if self._moments is None:
            x64 = self.x.astype(np.float64)
            n = max(x64.shape[1], 1)
            mean = x64.sum(axis=1) / n
            var = np.einsum("ij,ij->i", x64, x64) / n - mean * mean
            self._moments = mean, np.sqrt(np.maximum(var, 0.0))
        return self._moments

    def softmax(self) -> tuple[Floats, Floats, npt.NDArray[np.int64]]:
        if self._softmax is None:
            self._softmax = softmax_summary(self.logits)
        return self._softmax

    def values(self, measure: str, feature: int | None) -> Floats | npt.NDArray[np.int64]:
        if measure == "mean":
            return self.moments()[0]
        if measure == "std":
            return self.moments()[1]
        if measure == "saturated_fraction":
            saturated = (self.x <= SATURATION_LOW) | (self.x >= SATURATION_HIGH)
            count = np.count_nonzero(saturated, axis=1)
            return np.asarray(count, dtype=np.float64) / max(self.x.shape[1], 1)
        if measure == "feature":
            return self.x[:, feature].astype(np.float64)
        if measure == "confidence":
            return self.softmax()[0]
        if measure == "entropy":
            return self.softmax()[1]
        if measure == "predicted_class":
            return self.softmax()[2]
        raise ValueError(f"unknown measure {measure!r}")


@dataclass
class Definition:
    """One statistic of profile.json, as the runner needs it."""

    name: str
    source: str
    measure: str
    feature: int | None
    edges: list[float] | None  # numeric
    categories: list[str] | None  # categorical (predicted_class)


def read_definitions(version_dir: Path) -> list[Definition]:
    """The statistics profile.json defines; none when the version has no profile."""
    path = version_dir / PROFILE_FILE
    if not path.is_file():
        return []
    stats = json.loads(path.read_text())["statistics"]
    return [Definition(name, s["source"], s["measure"], s.get("feature"), s.get("edges"),
                       s.get("categories")) for name, s in sorted(stats.items())]


def class_labels(version_dir: Path, definitions: Sequence[Definition],
                 num_classes: int) -> list[str]:
    """The profile's categories, else lineage.json's classes, else the class indices."""
    for d in definitions:
        if d.measure == "predicted_class" and d.categories:
            return list(d.categories)
    lineage = version_dir / "lineage.json"
    if lineage.is_file():
        classes = json.loads(lineage.read_text()).get("classes")
        if isinstance(classes, list) and len(classes) == num_classes:
            return [str(c) for c in classes]
    return [str(i) for i in range(num_classes)]


def le_label(edge: float) -> str:
    """How Prometheus spells a bucket bound (1 -> "1.0", +Inf -> "+Inf")."""
    return "+Inf" if math.isinf(edge) else repr(float(edge))


class Statistics:
    """Served samples since the last take(), thread-safe. add() only keeps the batch (a
    reference, microseconds on the request path); take(), on the flush thread, measures
    them vectorized, a few hundred samples at a time. Past MAX_PENDING_BYTES of kept
    batches add() asks the flush thread to run early (`due`); past twice that, a flush
    thread that cannot keep up, add() measures them itself, so memory stays bounded and
    no sample is lost."""

    def __init__(self, definitions: Sequence[Definition], num_classes: int) -> None:
        self.numeric = [d for d in definitions if d.edges is not None]
        self.edges = [np.asarray(d.edges, dtype=np.float64) for d in self.numeric]
        self.num_classes = num_classes
        self.lock = threading.Lock()
        self.due = threading.Event()
        self.batches: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]] = []
        self.batch_bytes = 0
        self._reset()

    def _reset(self) -> None:
        self.counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in self.edges]
        self.sums = [0.0] * len(self.edges)
        self.classes = np.zeros(self.num_classes, dtype=np.int64)
        self.nonfinite = 0
        self.measured = False

    def add(self, x: npt.NDArray[Any], logits: npt.NDArray[Any]) -> None:
        """x (N, ...) inputs and their (N, K) outputs; the caller no longer writes either."""
        with self.lock:
            self.batches.append((x, logits))
            self.batch_bytes += x.nbytes + logits.nbytes
            kept = self.batch_bytes
        if kept > 2 * MAX_PENDING_BYTES:
            self._fold(self._swap())
        elif kept > MAX_PENDING_BYTES:
            self.due.set()

    def _swap(self) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
        with self.lock:
            batches, self.batches, self.batch_bytes = self.batches, [], 0
            return batches

    def _fold(self, batches: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]) -> None:
        """Measure `batches` (without the lock: add() never waits for this) in chunks of
        about CHUNK_SAMPLES (bounded temporaries), then add the results to the counts."""
        counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in self.edges]
        sums = [0.0] * len(self.edges)
        classes = np.zeros(self.num_classes, dtype=np.int64)
        nonfinite = 0
        start = 0
        while start < len(batches):
            end, n = start, 0
            while end < len(batches) and (n == 0 or n + len(batches[end][0]) <= CHUNK_SAMPLES):
                n += len(batches[end][0])
                end += 1
            chunk = batches[start:end]
            start = end
            flat = np.concatenate([x.reshape(x.shape[0], -1) for x, _ in chunk])
            logits = np.concatenate([out for _, out in chunk])
            finite = np.isfinite(logits).all(axis=1)
            good = logits[finite]
            inputs, outputs = Measures(flat, logits[:0]), Measures(flat[:0], good)
            for i, (d, edges) in enumerate(zip(self.numeric, self.edges, strict=True)):
                v = (inputs if d.source == "input" else outputs).values(d.measure, d.feature)
                counts[i] += np.bincount(np.searchsorted(edges, v, side="left"),
                                         minlength=len(edges) + 1)
                sums[i] += float(v.sum())
            if len(good):
                classes += np.bincount(good.argmax(axis=1), minlength=self.num_classes)
            nonfinite += int((~finite).sum())
        if not batches:
            return
        with self.lock:
            for i in range(len(counts)):
                self.counts[i] += counts[i]
                self.sums[i] += sums[i]
            self.classes += classes
            self.nonfinite += nonfinite
            self.measured = True

    def take(self) -> tuple[list[npt.NDArray[np.int64]], list[float], npt.NDArray[np.int64],
                            int] | None:
        self.due.clear()
        self._fold(self._swap())
        with self.lock:
            if not self.measured:
                return None
            out = self.counts, self.sums, self.classes, self.nonfinite
            self._reset()
            return out


class Exporter:
    """The Prometheus series of one version, created at start (so they exist at 0 before the
    first request and increase() sees every count); measure() queues their increments,
    pump() (execute) and the idle statistics thread make them."""

    def __init__(self, model: str, version: str, stats: Statistics,
                 labels: Sequence[str]) -> None:
        base = {"model": model, "version": version}
        self.stats = stats
        families: dict[str, Any] = {}

        def family(name: str, description: str, kind: str = "COUNTER") -> Any:
            if name not in families:
                families[name] = pb_utils.MetricFamily(
                    name=name, description=description,
                    kind=getattr(pb_utils.MetricFamily, kind))
            return families[name]

        self.buckets: list[list[Any]] = []
        self.count_sum: list[tuple[Any, Any]] = []
        for d, edges in zip(stats.numeric, stats.edges, strict=True):
            prefix = INPUT_METRIC if d.source == "input" else OUTPUT_METRIC
            what = f"{d.source} statistic per served sample (modelship_api.profile)"
            bucket = family(f"{prefix}_bucket", f"Histogram buckets of an {what}")
            series = {**base, "statistic": d.name}
            self.buckets.append([bucket.Metric(labels={**series, "le": le_label(e)})
                                 for e in [*edges.tolist(), math.inf]])
            self.count_sum.append((
                family(f"{prefix}_count", f"Samples counted in an {what}").Metric(labels=series),
                # A gauge: a "feature" statistic may sum to less than zero.
                family(f"{prefix}_sum", f"Sum of an {what}", "GAUGE").Metric(labels=series)))
        predictions = family(PREDICTIONS_METRIC, "Served samples by predicted class")
        self.predictions = [predictions.Metric(labels={**base, "class": c}) for c in labels]
        self.nonfinite = family(NONFINITE_METRIC, "Served samples whose output has a NaN or "
                                "an infinity").Metric(labels=base)
        self.families = families
        # Groups one measure() queues at most: a histogram's series each, predictions,
        # non-finite outputs.
        self.groups = len(self.buckets) + 2
        # Groups of (metric, increment), in order; a group is made in one go.
        self.queue: deque[list[tuple[Any, float]]] = deque()
        self.calling = threading.Lock()  # one caller of the metric API at a time
        self.last_execute = time.monotonic()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="modelship-statistics",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.halt.is_set():
            self.stats.due.wait(FLUSH_S)
            self.measure()
            with self.calling:
                # Only while idle: once requests flow again, execute() takes over.
                while self.queue and time.monotonic() - self.last_execute >= IDLE_S:
                    self._call(1, len(self.queue))

    def measure(self) -> None:
        """Fold what was served into counts and queue their increments (numpy only)."""
        taken = self.stats.take()
        if taken is None:
            return
        counts, sums, classes, nonfinite = taken
        for metrics, (count, total), c, s in zip(self.buckets, self.count_sum, counts, sums,
                                                 strict=True):
            # Prometheus buckets are cumulative: le=e counts every value <= e.
            group = [(m, n) for m, n in zip(metrics, np.cumsum(c).tolist(), strict=True) if n]
            if c.sum():
                group.append((count, int(c.sum())))
            if s:
                group.append((total, s))
            if group:
                self.queue.append(group)
        # Last, so that when these moved, the histograms of the same samples have too.
        group = [(m, n) for m, n in zip(self.predictions, classes.tolist(), strict=True) if n]
        if group:
            self.queue.append(group)
        if nonfinite:
            self.queue.append([(self.nonfinite, nonfinite)])

    def pump(self) -> None:
        """From execute(): a few queued increments, never waiting for the idle drain."""
        self.last_execute = time.monotonic()
        if self.queue and self.calling.acquire(blocking=False):
            try:
                # Never more than one measure()'s worth behind, however slow the traffic.
                self._call(CALLS_PER_EXECUTE, self.groups)
            finally:
                self.calling.release()

    def _call(self, calls: int, behind: int) -> None:
        """Whole groups, until at least `calls` increments are made and at most `behind`
        groups are left."""
        made = 0
        while self.queue and (made < calls or len(self.queue) > behind):
            group = self.queue.popleft()
            for metric, value in group:
                metric.increment(value)
            made += len(group)

    def close(self) -> None:
        self.halt.set()
        self.stats.due.set()
        self.thread.join(timeout=10)
        self.measure()
        with self.calling:
            self._call(0, 0)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model = args["model_name"]
        self.version = args["model_version"]
        path = Path(args["model_repository"]) / self.version / "model.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("MODELSHIP_RUNNER_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, OUTPUT_NAME)["data_type"])
        self.errors_family = pb_utils.MetricFamily(
            name=ERRORS_METRIC,
            description="Requests the modelship runner answered with an error",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.errors: dict[str, Any] = {}
        self.statistics: Statistics | None = None
        self.exporter: Exporter | None = None
        parameters = config.get("parameters") or {}
        switch = (parameters.get(STATISTICS_PARAMETER) or {}).get("string_value", "on")
        if switch != "off":
            version_dir = Path(args["model_repository"]) / self.version
            num_classes = int(pb_utils.get_output_config_by_name(
                config, OUTPUT_NAME)["dims"][-1])
            definitions = read_definitions(version_dir)
            self.statistics = Statistics(definitions, num_classes)
            self.exporter = Exporter(self.model, self.version, self.statistics,
                                     class_labels(version_dir, definitions, num_classes))
        # Triton runs the config's warmup requests (zeros) before the version is ready and
        # before any client can reach it; they are no served samples (nor in nv_* counts).
        self.warmup_left = sum(int(w.get("count", 1) or 1)
                               for w in config.get("model_warmup") or [])

    def _count(self, reason: str) -> None:
        metric = self.errors.get(reason)
        if metric is None:
            metric = self.errors_family.Metric(
                labels={"model": self.model, "version": self.version, "reason": reason})
            self.errors[reason] = metric
        metric.increment(1)

    def _run(self, request: Any) -> tuple[Any, str | None, str]:
        """(output tensor or None, error reason, error message) for one request."""
        x = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
        if not np.isfinite(x).all():
            return None, "invalid_input", "input contains NaN or infinity"
        x = x.astype(np.float32)  # a copy: the request's own buffer is freed with it
        try:
            (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        except Exception as exc:  # onnxruntime raises several types; all are this request's
            return None, "inference", f"inference failed: {exc}"
        if self.warmup_left > 0:
            self.warmup_left -= 1
        elif self.statistics is not None:
            self.statistics.add(x, logits)
        return pb_utils.Tensor(OUTPUT_NAME, logits.astype(self.output_dtype)), None, ""

    def execute(self, requests: list[Any]) -> list[Any]:
        results = [self._run(request) for request in requests]
        if self.exporter is not None:
            self.exporter.pump()
        for _, reason, message in results:
            if reason is not None:
                self._count(reason)
                pb_utils.Logger.log_error(f"{self.model} v{self.version}: {message}")
        if all(out is None for out, _, _ in results):
            # Raised, not returned: Triton then counts the requests as failures (see above).
            raise pb_utils.TritonModelException(results[0][2])
        return [pb_utils.InferenceResponse(output_tensors=[out]) if out is not None else
                pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(msg))
                for out, _, msg in results]

    def finalize(self) -> None:
        if self.exporter is not None:
            self.exporter.close()
        self.errors.clear()
