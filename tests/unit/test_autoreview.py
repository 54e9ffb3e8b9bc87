"""The demo's automated reviewer on a production area the serving runner's own sampler wrote
from the load generator's camera images: each kept sample gets the generator's true label,
marked automated, at the bounded rate; samples of requests it does not know, or whose pixels
are not in the batch their request id names, are never labelled; a restarted reviewer does
not label a sample twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelship_api import samples
from modelship_dev.autoreview import REVIEWER, AutoReviewer, GroundTruth, Labels
from modelship_dev.workload import BATCH, camera_data
from modelship_trainer import triton_runner as runner
from modelship_trainer.data import FloatArray

SEED = 7
BATCHES = 13  # 104 images: the generator makes at least 100


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _serve(area: Path, truth: GroundTruth) -> tuple[FloatArray, Labels]:
    """Requests as InferenceLoad sends them, kept by the runner's sampler (rate 1: all)."""
    images, labels = camera_data(0.5, SEED, BATCHES)
    truth.add_pool("light500", images, labels)
    sampler = runner.Sampler(runner.SamplingPolicy(area, 1.0, 10_000, 0.0, 1.0), 1, "pod-a",
                             [], seed=1)
    rng = np.random.default_rng(0)
    for n in range(BATCHES):
        logits = rng.normal(size=(BATCH, 3)).astype(np.float32)
        sampler.offer(images[n], logits, GroundTruth.request_id("light500", n, n))
    logits = rng.normal(size=(BATCH, 3)).astype(np.float32)
    # Another client's request, and one that sent batch 1's pixels under batch 0's id.
    sampler.offer(images[2], logits, "other-client-17")
    sampler.offer(images[1] + 0.01, logits, GroundTruth.request_id("light500", 0, 99))
    assert sampler.flush(), "the sampler wrote no part"
    return images, labels


def test_samples_get_the_true_label_at_the_bounded_rate_marked_automated(
        tmp_path: Path) -> None:
    area = samples.production_area(tmp_path, "defects")
    truth = GroundTruth()
    images, labels = _serve(area, truth)
    parts, corrupt = samples.read_parts(area)
    assert corrupt == 0
    records = [r for p in parts for r in p.records]
    assert len(records) == (BATCHES + 2) * BATCH

    clock = Clock()
    reviewer = AutoReviewer(area, truth, rate=40, interval=1.0, clock=clock)
    first = reviewer.pass_once()
    assert (first.labelled, first.unknown, first.left) == (40, 2 * BATCH, BATCHES * BATCH - 40)
    again = reviewer.pass_once()  # no time passed: nothing more
    assert again.labelled == 0
    for _ in range(10):
        clock.now += 1.0
        if reviewer.pass_once().left == 0:
            break
    assert reviewer.labelled == BATCHES * BATCH

    written, bad = samples.read_labels(area, samples.DEFAULT_LABEL_SET)
    assert bad == 0 and len(written) == BATCHES * BATCH
    assert {(r.reviewer, r.source, r.label_set) for r in written} == {
        (REVIEWER, "automated", samples.DEFAULT_LABEL_SET)}
    # The label is the generator's for exactly the image the runner kept.
    by_id = {r.id: r for r in records}
    image_of = {}
    for part in parts:
        kept = np.load(part.path / samples.IMAGES_FILE)
        for i, r in enumerate(part.records):
            image_of[r.id] = kept[i].reshape(-1)
    flat = images.reshape(BATCHES * BATCH, -1)
    for label in written:
        row = int(np.flatnonzero((flat == image_of[label.sample]).all(axis=1))[0])
        assert label.label == int(labels.reshape(-1)[row]), label
        assert by_id[label.sample].request_id.startswith("light500.")
    resolved = samples.resolve(written, samples.read_settings(area, samples.DEFAULT_LABEL_SET))
    assert len(resolved) == BATCHES * BATCH
    assert all(v.label is not None and not v.disagreement for v in resolved.values())

    # A restarted reviewer reads its own labels back and adds none.
    restarted = AutoReviewer(area, truth, rate=1000, clock=clock)
    assert restarted.pass_once().labelled == 0
    assert len(samples.read_labels(area, samples.DEFAULT_LABEL_SET)[0]) == BATCHES * BATCH


def test_a_request_id_names_a_pool_batch_and_row_or_nothing() -> None:
    truth = GroundTruth()
    images, labels = camera_data(0.2, SEED, BATCHES)
    truth.add_pool("dark", images, labels)
    assert truth.label("dark.1.5", images[1][3]) == int(labels[1][3])
    assert truth.label(f"dark.{BATCHES}.5", images[1][3]) is None  # no such batch
    assert truth.label("bright.1.5", images[1][3]) is None  # no such pool
    assert truth.label("dark.x.5", images[1][3]) is None
    assert truth.label("dark.1.5", images[1][3] * 0.5) is None  # not this batch's pixels
    with pytest.raises(ValueError, match="may not hold"):
        truth.add_pool("a.b", images, labels)
    with pytest.raises(ValueError, match="rate must be positive"):
        AutoReviewer(Path("/nonexistent"), truth, rate=0)
