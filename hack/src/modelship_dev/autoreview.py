"""The demo's automated reviewer: a stand-in for people that labels sampled production data
with the generator's ground truth.

The demo's clients (workload.InferenceLoad) send batches of generated camera images whose
true labels they know, and name each request (the gRPC request id, which the serving runner
records with every sample it keeps). The reviewer reads the production area the runner
writes (modelship_api.samples), finds the batch each kept sample came from by its request
id, and the sample's row in that batch by its pixels (a batch's rows share one request id),
and appends the true label, marked `source: automated`, to its own label file: at most
`rate` labels a second, so that the demo's "review" has a pace, as people would.

A sample whose request id it does not know (another client's) or whose image matches no row
of its batch is never labelled: a wrong label would be worse than none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelship_api import samples
from modelship_dev.background import Background
from modelship_trainer.data import FloatArray

REVIEWER = "ground-truth"
Labels = npt.NDArray[np.int64]


@dataclass
class GroundTruth:
    """The batches clients send, by the request ids they send them under.

    A request id is `<pool>.<batch>.<n>`: the pool (one lighting's images), the batch's index
    in it, and a counter that keeps ids unique. Pools are kept whole (a few MB each), so the
    truth of a request never depends on how many requests were sent."""

    pools: dict[str, tuple[FloatArray, Labels]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_pool(self, name: str, images: FloatArray, labels: Labels) -> None:
        """images (batches, B, C, H, W), labels (batches, B)."""
        if "." in name:
            raise ValueError(f"pool name {name!r} may not hold '.'")
        if images.shape[:2] != labels.shape:
            raise ValueError(f"pool {name}: images {images.shape} and labels {labels.shape}")
        with self.lock:
            self.pools[name] = (images, labels)

    @staticmethod
    def request_id(pool: str, batch: int, n: int) -> str:
        return f"{pool}.{batch}.{n}"

    def label(self, request_id: str, image: FloatArray) -> int | None:
        """The true label of `image`, a row of the batch `request_id` sent; None when the id
        is not one of these pools' or no row of its batch holds exactly these pixels."""
        pool, _, rest = request_id.partition(".")
        batch_text = rest.partition(".")[0]
        with self.lock:
            found = self.pools.get(pool)
        if found is None or not batch_text.isdigit():
            return None
        images, labels = found
        batch = int(batch_text)
        if batch >= len(images):
            return None
        rows = images[batch].reshape(len(images[batch]), -1)
        flat = np.asarray(image, dtype=np.float32).reshape(-1)
        if flat.shape[0] != rows.shape[1]:
            return None
        matches = np.flatnonzero((rows == flat).all(axis=1))
        if not matches.size:
            return None
        # Identical rows in one batch carry one image; their labels are the same.
        return int(labels[batch][matches[0]])


@dataclass
class Pass:
    """What one pass over the area did."""

    labelled: int = 0
    unknown: int = 0  # samples whose request id or image no pool holds
    left: int = 0  # known, unlabelled samples left for a later pass (the rate)


class AutoReviewer(Background):
    """Labels the area's samples with `truth`, at most `rate` labels a second, every
    `interval` seconds while running. `pass_once` is one pass, for tests and the demo."""

    def __init__(self, area: Path, truth: GroundTruth, *, rate: float = 20.0,
                 interval: float = 1.0, label_set: str = samples.DEFAULT_LABEL_SET,
                 reviewer: str = REVIEWER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("auto-reviewer")
        if rate <= 0:
            raise ValueError("rate must be positive (labels a second)")
        if not samples.NAME.match(reviewer):
            raise ValueError(f"reviewer {reviewer!r}: use letters, digits, '_', '.' or '-'")
        self.area, self.truth = area, truth
        self.rate, self.interval = rate, interval
        self.label_set, self.reviewer = label_set, reviewer
        self.clock = clock
        self.budget = 0.0
        self.last: float | None = None
        self.done: set[str] = set()  # samples this reviewer labelled (or found unknowable)
        self.labelled = 0
        self.unknown = 0
        self._loaded = False

    def _load_done(self) -> None:
        """Its own earlier labels (a restarted reviewer does not label a sample twice)."""
        records, _ = samples.read_labels(self.area, self.label_set)
        self.done.update(r.sample for r in records if r.reviewer == self.reviewer)
        self._loaded = True

    def _refill(self) -> None:
        now = self.clock()
        # At most one interval's labels saved up: a pause does not become a burst.
        most = self.rate * max(1.0, self.interval)
        gained = most if self.last is None else (now - self.last) * self.rate
        self.budget = min(most, self.budget + gained)
        self.last = now

    def pass_once(self) -> Pass:
        if not self._loaded:
            self._load_done()
        self._refill()
        out = Pass()
        parts, _ = samples.read_parts(self.area)
        for part in parts:
            todo = [(i, r) for i, r in enumerate(part.records) if r.id not in self.done]
            if not todo:
                continue
            try:
                images = np.load(part.path / samples.IMAGES_FILE, allow_pickle=False)
            except (OSError, ValueError):
                continue  # corrupt: the trainer skips it too
            if len(images) != len(part.records):
                continue
            for i, record in todo:
                label = self.truth.label(record.request_id, images[i]) \
                    if record.request_id else None
                if label is None:
                    self.done.add(record.id)
                    out.unknown += 1
                    continue
                if self.budget < 1.0:
                    out.left += 1
                    continue
                samples.append_label(self.area, samples.LabelRecord(
                    sample=record.id, label=label, reviewer=self.reviewer,
                    at=datetime.now(UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    label_set=self.label_set, source="automated"))
                self.budget -= 1.0
                self.done.add(record.id)
                out.labelled += 1
        self.labelled += out.labelled
        self.unknown += out.unknown
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pass_once()
            self._stop.wait(self.interval)
