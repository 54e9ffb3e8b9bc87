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

Sampled production data (docs/production-data.md): with the config.pbtxt parameters
modelship_sampling_* (the operator renders them from spec.monitoring.sampling) execute()
draws one random number per served sample and keeps only the rows that may be kept
(Sampler.offer, under a microsecond a request); a thread of its own decides every
MODELSHIP_SAMPLING_FLUSH_S seconds (10 s) which to keep (base rate; low-confidence and
rare-slice samples over-sampled, each record saying by how much), within the hourly cap,
and writes them as modelship_api.samples lays out. A write that fails (a full volume)
stops sampling, never a request; it is tried again every MODELSHIP_SAMPLING_RETRY_S
(60 s). Its metric calls (samples written per reason, the stopped gauge) join the
statistics' queue: at most a few per flush.

The trainer imports the measuring functions from here (the same code computes the profile
and the live statistics), outside Triton, where triton_python_backend_utils is absent.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
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
    counts: list[int] | None = None  # the profile's samples per bucket or category


def read_definitions(version_dir: Path) -> list[Definition]:
    """The statistics profile.json defines; none when the version has no profile."""
    path = version_dir / PROFILE_FILE
    if not path.is_file():
        return []
    stats = json.loads(path.read_text())["statistics"]
    return [Definition(name, s["source"], s["measure"], s.get("feature"), s.get("edges"),
                       s.get("categories"), s.get("counts"))
            for name, s in sorted(stats.items())]


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


class Calls:
    """Metric calls (a metric's increment or set, and its value) that the background threads
    queue, in groups made in one go (a histogram's series: a scrape between them would see
    it half updated), in order. execute() makes a few after its own work (pump); a
    background thread makes them only once no request came for IDLE_S (metric calls from
    another thread crawl while requests flow). `backlog`: the groups one flush may queue."""

    def __init__(self) -> None:
        self.queue: deque[list[tuple[Callable[[Any], None], Any]]] = deque()
        self.calling = threading.Lock()  # one caller of the metric API at a time
        self.last_execute = time.monotonic()
        self.backlog = 0

    def put(self, call: Callable[[Any], None], value: Any) -> None:
        self.queue.append([(call, value)])

    def put_group(self, group: list[tuple[Callable[[Any], None], Any]]) -> None:
        if group:
            self.queue.append(group)

    def pump(self) -> None:
        """From execute(): a few queued calls, never waiting for the idle drain."""
        self.last_execute = time.monotonic()
        if self.queue and self.calling.acquire(blocking=False):
            try:
                # Never more than one flush's worth behind, however slow the traffic.
                self._call(CALLS_PER_EXECUTE, self.backlog)
            finally:
                self.calling.release()

    def drain_if_idle(self) -> None:
        with self.calling:
            # Only while idle: once requests flow again, execute() takes over.
            while self.queue and time.monotonic() - self.last_execute >= IDLE_S:
                self._call(1, len(self.queue))

    def drain(self) -> None:
        with self.calling:
            self._call(0, 0)

    def _call(self, calls: int, behind: int) -> None:
        """Whole groups, until at least `calls` calls are made and at most `behind` groups
        are left."""
        made = 0
        while self.queue and (made < calls or len(self.queue) > behind):
            group = self.queue.popleft()
            for call, value in group:
                call(value)
            made += len(group)


class Exporter:
    """The Prometheus series of one version, created at start (so they exist at 0 before the
    first request and increase() sees every count); measure() queues their increments,
    pump() (execute) and the idle statistics thread make them."""

    def __init__(self, model: str, version: str, stats: Statistics,
                 labels: Sequence[str], calls: Calls | None = None) -> None:
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
        self.calls = calls = calls if calls is not None else Calls()
        # Groups one measure() queues at most: a histogram's series each, predictions,
        # non-finite outputs.
        calls.backlog += len(self.buckets) + 2
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="modelship-statistics",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.halt.is_set():
            self.stats.due.wait(FLUSH_S)
            self.measure()
            self.calls.drain_if_idle()

    def measure(self) -> None:
        """Fold what was served into counts and queue their increments (numpy only)."""
        taken = self.stats.take()
        if taken is None:
            return
        counts, sums, classes, nonfinite = taken
        put = self.calls.put_group
        for metrics, (count, total), c, s in zip(self.buckets, self.count_sum, counts, sums,
                                                 strict=True):
            # Prometheus buckets are cumulative: le=e counts every value <= e.
            group = [(m.increment, n)
                     for m, n in zip(metrics, np.cumsum(c).tolist(), strict=True) if n]
            if c.sum():
                group.append((count.increment, int(c.sum())))
            if s:
                group.append((total.increment, s))
            put(group)
        # Last, so that when these moved, the histograms of the same samples have too.
        put([(m.increment, n) for m, n in zip(self.predictions, classes.tolist(), strict=True)
             if n])
        if nonfinite:
            put([(self.nonfinite.increment, nonfinite)])

    @property
    def queue(self) -> deque[list[tuple[Callable[[Any], None], Any]]]:
        return self.calls.queue

    def pump(self) -> None:
        """As execute() does after its own work."""
        self.calls.pump()

    def close(self) -> None:
        self.halt.set()
        self.stats.due.set()
        self.thread.join(timeout=10)
        self.measure()
        self.calls.drain()


# Sampled production data: the names and layout of modelship_api.samples (duplicated: the
# stub cannot import it). The operator passes these config.pbtxt parameters when the
# ModelDeployment's spec.monitoring.sampling is enabled (core.serving_config).
SAMPLES_FOLDER = "samples"
IMAGES_FILE = "images.npy"
RECORDS_FILE = "samples.jsonl"
SAMPLING_AREA = "modelship_sampling_area"  # <volume>/<path>/production/<model>
SAMPLING_RATE = "modelship_sampling_rate"
SAMPLING_HOURLY_CAP = "modelship_sampling_hourly_cap"  # per version and pod
SAMPLING_LOW_CONFIDENCE = "modelship_sampling_low_confidence_below"
SAMPLING_OVERSAMPLING = "modelship_sampling_oversampling"
WRITTEN_METRIC = "modelship_samples_written_total"
STOPPED_METRIC = "modelship_sampling_stopped"
REASONS = ("random", "lowConfidence", "driftedSlice")
STOP_REASONS = {errno.ENOSPC: "VolumeFull", errno.EDQUOT: "VolumeFull",
                errno.EROFS: "ReadOnly", errno.EACCES: "PermissionDenied",
                errno.EPERM: "PermissionDenied"}
OTHER_STOP = "WriteFailed"
SAMPLING_FLUSH_S = float(os.environ.get("MODELSHIP_SAMPLING_FLUSH_S", "10"))
SAMPLING_RETRY_S = float(os.environ.get("MODELSHIP_SAMPLING_RETRY_S", "60"))
RARE_FRACTION = 0.01  # a profile bucket holding less of the training samples is "rare"
MAX_PENDING_ROWS = 4096  # candidates kept between flushes; more are not considered


@dataclass(frozen=True)
class SamplingPolicy:
    """spec.monitoring.sampling as this model instance applies it."""

    area: Path
    rate: float
    hourly_cap: int  # this instance's share of the pod's cap
    low_confidence_below: float
    oversampling: float

    @property
    def top(self) -> float:
        """The highest probability any sample has of being kept."""
        return min(1.0, self.rate * self.oversampling)


def sampling_policy(parameters: dict[str, Any], instances: int) -> SamplingPolicy | None:
    """The policy from config.pbtxt parameters; None when sampling is off."""
    def value(key: str, default: str) -> str:
        return str((parameters.get(key) or {}).get("string_value", default))

    area = value(SAMPLING_AREA, "")
    if not area:
        return None
    cap = int(value(SAMPLING_HOURLY_CAP, "1000"))
    return SamplingPolicy(Path(area), float(value(SAMPLING_RATE, "0.01")),
                          max(1, -(-cap // max(1, instances))),
                          float(value(SAMPLING_LOW_CONFIDENCE, "0.6")),
                          float(value(SAMPLING_OVERSAMPLING, "10")))


def rare_buckets(definitions: Sequence[Definition]) -> list[tuple[Definition, Floats,
                                                                  npt.NDArray[np.bool_]]]:
    """Per numeric input statistic with profile counts: its edges and which of its buckets
    hold less than RARE_FRACTION of the profile's samples (a slice training saw rarely)."""
    out = []
    for d in definitions:
        if d.source != "input" or d.edges is None or not d.counts or sum(d.counts) <= 0:
            continue
        counts = np.asarray(d.counts, dtype=np.float64)
        out.append((d, np.asarray(d.edges, dtype=np.float64),
                    counts / counts.sum() < RARE_FRACTION))
    return out


def in_rare_slice(x: npt.NDArray[Any], rare: Sequence[tuple[Definition, Floats,
                                                            npt.NDArray[np.bool_]]]
                  ) -> npt.NDArray[np.bool_]:
    """Per row of x (N, features): whether any input statistic falls in a rare bucket."""
    out = np.zeros(len(x), dtype=bool)
    measures = Measures(x, x[:0])
    for d, edges, is_rare in rare:
        values = measures.values(d.measure, d.feature)
        out |= is_rare[np.searchsorted(edges, values, side="left")]
    return out


def decide(u: Floats, confidence: Floats, rare: npt.NDArray[np.bool_],
           policy: SamplingPolicy) -> tuple[npt.NDArray[np.bool_], list[str], Floats]:
    """(kept, reason, probability) per candidate: each had draw u ~ U(0, 1). A low-confidence
    sample, else one in a rare slice, has probability rate * oversampling (at most 1), any
    other rate; a sample is kept when u < its probability."""
    low = confidence < policy.low_confidence_below
    boosted = low | rare
    probability = np.where(boosted, policy.top, policy.rate)
    reasons = ["lowConfidence" if lo else "driftedSlice" if r else "random"
               for lo, r in zip(low.tolist(), rare.tolist(), strict=True)]
    return u < probability, reasons, probability


def writer_name(host: str, instance: str) -> str:
    """This instance's name in part names: the pod (HOSTNAME) and the model instance, in
    the characters modelship_api.samples.NAME allows."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{host}.{instance}" if instance else host)
    return name[-63:].lstrip("._-") or "runner"


def stop_reason(err: OSError) -> str:
    return STOP_REASONS.get(err.errno or 0, OTHER_STOP)


def hour_of(t: float) -> str:
    """The partition (modelship_api.samples.hour_folder) of a UTC timestamp."""
    return time.strftime("%Y-%m-%d/%H", time.gmtime(t))


def rfc3339(t: float) -> str:
    ms = int(t * 1000) % 1000  # truncated, as gmtime truncates the seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def write_part(area: Path, hour: str, part: str, images: npt.NDArray[Any],
               records: Sequence[dict[str, Any]]) -> Path:
    """One part as modelship_api.samples lays it out: written under a "." name in its hour
    folder, synced, then renamed into place, so a reader never sees it half-written. A
    failure removes what it wrote and raises."""
    folder = area / SAMPLES_FOLDER / hour
    folder.mkdir(parents=True, exist_ok=True)
    tmp, final = folder / f".{part}", folder / part
    try:
        tmp.mkdir()
        for name, write in ((IMAGES_FILE, lambda f: np.save(f, images, allow_pickle=False)),
                            (RECORDS_FILE, lambda f: f.write("".join(
                                json.dumps(r, separators=(",", ":")) + "\n"
                                for r in records).encode()))):
            with (tmp / name).open("wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        tmp.rename(final)
    except OSError:
        for name in (IMAGES_FILE, RECORDS_FILE):
            with contextlib.suppress(OSError):
                (tmp / name).unlink()
        with contextlib.suppress(OSError):
            tmp.rmdir()
        raise
    return final


@dataclass
class Candidate:
    """Rows of one request drawn on the request path (u below the policy's top)."""

    x: npt.NDArray[Any]
    logits: npt.NDArray[Any]
    u: tuple[float, ...]  # each row's draw
    request_id: str
    served_at: float


class Sampler:
    """The sampled production data of one model instance. offer() runs on the request path
    and costs one random draw per sample: only rows whose draw is below the highest
    probability any sample can have are kept (a one-sample request's arrays by reference,
    as Statistics.add keeps them; the rows of a batch copied). flush(), on its own thread,
    measures them (confidence, rare slices), keeps those whose draw is below their own
    probability, up to the hourly cap, and writes one part per hour. Any OSError (a full
    volume: ENOSPC) stops sampling: the gauge says why, offer() keeps nothing, and a
    write is tried again after SAMPLING_RETRY_S; requests never wait or fail for it."""

    def __init__(self, policy: SamplingPolicy, version: int, writer: str,
                 definitions: Sequence[Definition], seed: int | None = None) -> None:
        self.policy, self.version, self.writer = policy, version, writer
        self.rare = rare_buckets(definitions)
        # One draw per one-sample request from the stdlib (0.1 us), numpy's for batches.
        self.draw = random.Random(seed).random
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.due = threading.Event()
        self.pending: list[Candidate] = []
        self.pending_rows = 0
        self.hour, self.kept = "", 0  # this hour's samples, against the cap
        self.full_until = 0.0  # time.time() the cap lifts (the next hour)
        self.stopped: str | None = None
        self.retry_at = 0.0  # time.monotonic()
        self.written: dict[str, int] = {}  # per reason, taken by SamplingExporter.flush()

    def offer(self, x: npt.NDArray[Any], logits: npt.NDArray[Any], request_id: str) -> None:
        """x (N, ...) and logits (N, K) of one served request; never raises for sampling."""
        now = time.time()
        if (self.stopped is not None and time.monotonic() < self.retry_at) or \
                now < self.full_until:
            return
        if self.pending_rows + len(x) > MAX_PENDING_ROWS:
            return
        if len(x) == 1:
            first = self.draw()
            if first >= self.policy.top:
                return  # most requests end here
            # Kept by reference, as Statistics.add does: the runner's own arrays.
            candidate = Candidate(x, logits, (first,), request_id, now)
        else:
            u = self.rng.random(len(x))
            rows = np.flatnonzero(u < self.policy.top)
            if not rows.size:
                return
            candidate = Candidate(x[rows], logits[rows], tuple(u[rows].tolist()), request_id,
                                  now)
        with self.lock:
            self.pending.append(candidate)
            self.pending_rows += len(candidate.u)

    def flush(self) -> list[Path]:
        """Decide and write what was offered; the parts written."""
        with self.lock:
            pending, self.pending, self.pending_rows = self.pending, [], 0
        if self.stopped is not None and time.monotonic() < self.retry_at:
            return []
        try:
            parts = self._write(self._choose(pending))
            if self.stopped is not None and not parts:
                self._probe()
        except OSError as err:
            self.retry_at = time.monotonic() + SAMPLING_RETRY_S
            self.stopped = stop_reason(err)
            return []
        self.stopped = None
        return parts

    def _choose(self, pending: Sequence[Candidate]
                ) -> list[tuple[Candidate, int, str, float, float, int]]:
        """(candidate, row, reason, probability, confidence, prediction) per kept sample,
        in served order, within the hourly cap."""
        rows = [(c, i) for c in pending for i in range(len(c.x))]
        if not rows:
            return []
        logits = np.concatenate([c.logits for c in pending]).astype(np.float64)
        finite = np.isfinite(logits).all(axis=1)
        x = np.concatenate([c.x.reshape(len(c.x), -1) for c in pending])
        u = np.fromiter((v for c in pending for v in c.u), dtype=np.float64, count=len(rows))
        confidence = np.zeros(len(rows))
        prediction = np.zeros(len(rows), dtype=np.int64)
        if finite.any():
            top1, _, argmax = softmax_summary(logits[finite])
            confidence[finite], prediction[finite] = top1, argmax
        kept, reasons, probability = decide(u, confidence, in_rare_slice(x, self.rare),
                                            self.policy)
        out = []
        for k in np.flatnonzero(kept & finite).tolist():
            c, i = rows[k]
            hour = hour_of(c.served_at)
            if hour != self.hour:
                self.hour, self.kept = hour, 0
            if self.kept >= self.policy.hourly_cap:
                self.full_until = (math.floor(c.served_at / 3600) + 1) * 3600
                continue
            self.kept += 1
            out.append((c, i, reasons[k], float(probability[k]), float(confidence[k]),
                        int(prediction[k])))
        return out

    def _write(self, chosen: Sequence[tuple[Candidate, int, str, float, float, int]]
               ) -> list[Path]:
        by_hour: dict[str, list[tuple[Candidate, int, str, float, float, int]]] = {}
        for item in chosen:
            by_hour.setdefault(hour_of(item[0].served_at), []).append(item)
        parts = []
        ms = int(time.time() * 1000)
        for hour, items in by_hour.items():
            part = f"v{self.version}-{ms}-{self.writer}"
            images = np.stack([c.x[i] for c, i, *_ in items]).astype(np.float32, copy=False)
            records = [{"id": f"{hour}/{part}/{n}", "requestId": c.request_id,
                        "version": self.version, "time": rfc3339(c.served_at),
                        "prediction": prediction,
                        "confidence": min(1.0, max(0.0, confidence)), "reason": reason,
                        "probability": probability,
                        "oversampling": max(1.0, probability / self.policy.rate)}
                       for n, (c, _, reason, probability, confidence, prediction)
                       in enumerate(items)]
            parts.append(write_part(self.policy.area, hour, part, images, records))
            for _, _, reason, *_ in items:
                self.written[reason] = self.written.get(reason, 0) + 1
        return parts

    def _probe(self) -> None:
        """While stopped with nothing to write: whether the volume takes a write again."""
        folder = self.policy.area / SAMPLES_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{self.writer}"
        try:
            with probe.open("wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()


class SamplingExporter:
    """The sampler's series, created at start (the operator reads the stopped gauges: any
    series means sampling is on), its thread (flush every SAMPLING_FLUSH_S) and the metric
    calls it queues: at most one per reason written and one per change of state a flush."""

    def __init__(self, model: str, version: str, sampler: Sampler, calls: Calls) -> None:
        base = {"model": model, "version": version}
        written = pb_utils.MetricFamily(
            name=WRITTEN_METRIC, description="Production samples written to the dataset volume",
            kind=pb_utils.MetricFamily.COUNTER)
        stopped = pb_utils.MetricFamily(
            name=STOPPED_METRIC, description="1 while sampling is stopped, by why (a write "
            "failed; retried every minute)", kind=pb_utils.MetricFamily.GAUGE)
        self.written = {r: written.Metric(labels={**base, "reason": r}) for r in REASONS}
        reasons = sorted({*STOP_REASONS.values(), OTHER_STOP})
        self.stopped = {r: stopped.Metric(labels={**base, "reason": r}) for r in reasons}
        for gauge in self.stopped.values():
            gauge.set(0)
        self.families = (written, stopped)
        self.sampler, self.calls = sampler, calls
        calls.backlog += len(REASONS) + len(reasons)
        self.shown: str | None = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="modelship-sampling",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.halt.is_set():
            self.sampler.due.wait(SAMPLING_FLUSH_S)
            self.sampler.due.clear()
            self.flush()
            self.calls.drain_if_idle()

    def flush(self) -> None:
        try:
            self.sampler.flush()
        except Exception as exc:  # never let sampling end the thread that retries it
            pb_utils.Logger.log_error(f"sampling: {exc}")
        written, self.sampler.written = self.sampler.written, {}
        for reason, n in written.items():
            self.calls.put(self.written[reason].increment, n)
        stopped = self.sampler.stopped
        if stopped != self.shown:
            if self.shown is not None:
                self.calls.put(self.stopped[self.shown].set, 0)
            if stopped is not None:
                self.calls.put(self.stopped[stopped].set, 1)
                pb_utils.Logger.log_warn(
                    f"sampling stopped ({stopped}) on {self.sampler.policy.area}; serving goes "
                    f"on, writing is tried again every {SAMPLING_RETRY_S:g} s")
            self.shown = stopped

    def close(self) -> None:
        self.halt.set()
        self.sampler.due.set()
        self.thread.join(timeout=10)
        self.flush()
        self.calls.drain()


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
        self.sampler: Sampler | None = None
        self.sampling: SamplingExporter | None = None
        self.calls = Calls()
        parameters = config.get("parameters") or {}
        version_dir = Path(args["model_repository"]) / self.version
        definitions = read_definitions(version_dir)
        switch = (parameters.get(STATISTICS_PARAMETER) or {}).get("string_value", "on")
        if switch != "off":
            num_classes = int(pb_utils.get_output_config_by_name(
                config, OUTPUT_NAME)["dims"][-1])
            self.statistics = Statistics(definitions, num_classes)
            self.exporter = Exporter(self.model, self.version, self.statistics,
                                     class_labels(version_dir, definitions, num_classes),
                                     self.calls)
        instances = sum(int(g.get("count", 1) or 1) for g in config.get("instance_group") or [])
        policy = sampling_policy(parameters, instances)
        if policy is not None:
            self.sampler = Sampler(policy, int(self.version),
                                   writer_name(os.environ.get("HOSTNAME") or
                                               socket.gethostname(),
                                               args.get("model_instance_name", "")),
                                   definitions)
            self.sampling = SamplingExporter(self.model, self.version, self.sampler,
                                             self.calls)
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
        else:
            if self.statistics is not None:
                self.statistics.add(x, logits)
            if self.sampler is not None:
                self.sampler.offer(x, logits, request.request_id())
        return pb_utils.Tensor(OUTPUT_NAME, logits.astype(self.output_dtype)), None, ""

    def execute(self, requests: list[Any]) -> list[Any]:
        results = [self._run(request) for request in requests]
        self.calls.pump()
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
        if self.sampling is not None:
            self.sampling.close()
        self.errors.clear()
