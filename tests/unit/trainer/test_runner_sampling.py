"""The runner's production sampling outside Triton: which samples it keeps and why, the
parts it writes (read back through the shared contract), the hourly cap, and a volume
that refuses writes stopping sampling until a write succeeds again."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from modelship_api import samples
from modelship_trainer import triton_runner as r


def _policy(area: Path, rate: float = 0.1, cap: int = 1000, low: float = 0.6,
            over: float = 5.0) -> r.SamplingPolicy:
    return r.SamplingPolicy(area, rate, cap, low, over)


def _brightness(counts: list[int]) -> r.Definition:
    return r.Definition("input_brightness", "input", "mean", None, [0.25, 0.5, 0.75], None,
                        counts)


def test_policy_comes_from_the_config_parameters_and_splits_the_cap_between_instances(
        ) -> None:
    def param(v: str) -> dict[str, str]:
        return {"string_value": v}

    assert r.sampling_policy({}, 1) is None
    policy = r.sampling_policy({r.SAMPLING_AREA: param("/data/production/m"),
                                r.SAMPLING_RATE: param("0.02"),
                                r.SAMPLING_HOURLY_CAP: param("1000"),
                                r.SAMPLING_LOW_CONFIDENCE: param("0.7"),
                                r.SAMPLING_OVERSAMPLING: param("100")}, 3)
    assert policy == r.SamplingPolicy(Path("/data/production/m"), 0.02, 334, 0.7, 100.0)
    assert policy.top == 1.0  # 0.02 * 100 capped at certainty


def test_low_confidence_and_rare_slices_are_over_sampled_and_say_by_how_much(
        tmp_path: Path) -> None:
    policy = _policy(tmp_path, rate=0.1, over=5.0)
    u = np.array([0.05, 0.3, 0.3, 0.3, 0.6])
    confidence = np.array([0.9, 0.9, 0.5, 0.9, 0.5])
    rare = np.array([False, False, False, True, True])
    kept, reasons, probability = r.decide(u, confidence, rare, policy)
    assert kept.tolist() == [True, False, True, True, False]
    assert reasons == ["random", "random", "lowConfidence", "driftedSlice", "lowConfidence"]
    assert probability.tolist() == pytest.approx([0.1, 0.1, 0.5, 0.5, 0.5])


def test_a_rare_slice_is_a_bucket_the_profile_saw_in_under_one_percent_of_samples() -> None:
    # Brightness buckets <=0.25, <=0.5, <=0.75, >0.75; training saw almost no dark image.
    rare = r.rare_buckets([_brightness([5, 600, 390, 5]),
                           r.Definition("output_confidence", "output", "confidence", None,
                                        [0.5], None, [0, 100])])
    assert len(rare) == 1 and rare[0][2].tolist() == [True, False, False, True]
    x = np.stack([np.full(16, v) for v in (0.1, 0.4, 0.6, 0.9)])
    assert r.in_rare_slice(x, rare).tolist() == [True, False, False, True]
    assert r.rare_buckets([_brightness([0, 0, 0, 0])]) == []  # no profile data: none rare


def _serve(sampler: r.Sampler, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n one-image requests: bright images, confident logits except every 4th."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.4, 0.6, size=(n, 1, 8, 8)).astype(np.float32)
    logits = np.tile(np.array([[6.0, 0.0, 0.0]], dtype=np.float32), (n, 1))
    logits[::4] = [0.2, 0.0, 0.1]  # top-1 about 0.36: low confidence
    for i in range(n):
        sampler.offer(x[i:i + 1], logits[i:i + 1], f"req-{i}")
    return x, logits


def test_written_parts_follow_the_contract_and_read_back(tmp_path: Path) -> None:
    area = tmp_path / "production" / "defects"
    sampler = r.Sampler(_policy(area, rate=0.1, over=5.0), 3, "pod-a.defects_0",
                        [_brightness([300, 300, 300, 100])], seed=1)
    x, _ = _serve(sampler, 2000)
    written = sampler.flush()
    assert written and sampler.stopped is None
    parts, corrupt = samples.read_parts(area)
    assert corrupt == 0 and [p.path for p in parts] == written
    records = [rec for p in parts for rec in p.records]
    for part in parts:
        images = np.load(part.path / samples.IMAGES_FILE)
        assert images.shape == (len(part.records), 1, 8, 8) and images.dtype == np.float32
        for index, rec in enumerate(part.records):
            served = int(rec.request_id.removeprefix("req-"))
            np.testing.assert_array_equal(images[index], x[served])
            assert rec.id == f"{part.path.parent.parent.name}/{part.path.parent.name}/" \
                f"{part.path.name}/{index}"
            assert part.path.name.startswith("v3-") and part.path.name.endswith("-pod-a.defects_0")
    by_reason = {reason: [rec for rec in records if rec.reason == reason]
                 for reason in ("random", "lowConfidence")}
    # 1500 confident requests at 0.1, 500 low-confidence ones at 0.5: both near expectation.
    assert 110 <= len(by_reason["random"]) <= 190
    assert 200 <= len(by_reason["lowConfidence"]) <= 300
    assert all(rec.probability == pytest.approx(0.1) and rec.oversampling == 1.0
               for rec in by_reason["random"])
    assert all(rec.probability == pytest.approx(0.5) and rec.oversampling == pytest.approx(5)
               and rec.confidence < 0.6 for rec in by_reason["lowConfidence"])
    assert all(int(rec.request_id.removeprefix("req-")) % 4 == 0
               for rec in by_reason["lowConfidence"])
    assert sampler.written == {"random": len(by_reason["random"]),
                               "lowConfidence": len(by_reason["lowConfidence"])}
    assert not list((area / samples.SAMPLES_FOLDER).glob("*/*/.*"))  # nothing half-written


def test_the_hourly_cap_bounds_what_is_kept_and_stops_drawing_until_the_next_hour(
        tmp_path: Path) -> None:
    sampler = r.Sampler(_policy(tmp_path, rate=1.0, cap=25), 1, "w", [],
                        seed=2)
    _serve(sampler, 60)
    sampler.flush()
    parts, _ = samples.read_parts(tmp_path)
    assert sum(len(p.records) for p in parts) == 25
    assert sampler.full_until > time.time()
    _serve(sampler, 10)
    assert sampler.pending == []  # the cap is reached: nothing drawn until the hour ends


def test_a_volume_that_refuses_writes_stops_sampling_until_a_write_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    area = tmp_path / "area"
    area.write_text("a file where the production area should be")  # every write fails
    sampler = r.Sampler(_policy(area, rate=1.0), 1, "w", [], seed=3)
    _serve(sampler, 5)
    assert sampler.flush() == [] and sampler.stopped == "WriteFailed"
    _serve(sampler, 5)
    assert sampler.pending == []  # stopped: nothing is kept until the retry
    assert not list(tmp_path.glob("**/.*"))  # the failed part left nothing behind
    monkeypatch.setattr(r, "SAMPLING_RETRY_S", 0.0)
    area.unlink()
    sampler.retry_at = 0.0
    assert sampler.flush() == [] and sampler.stopped is None  # the probe write succeeded
    _serve(sampler, 5)
    assert len(sampler.flush()) == 1
    assert r.stop_reason(OSError(28, "No space left on device")) == "VolumeFull"
    assert r.stop_reason(OSError(30, "Read-only file system")) == "ReadOnly"


def test_writer_names_fit_the_contract() -> None:
    assert r.writer_name("defects-v1-7f9c-abcde", "defects_0_0") == \
        "defects-v1-7f9c-abcde.defects_0_0"
    long = r.writer_name("x" * 80, "inst/0")
    assert samples.NAME.match(long) and long.endswith("inst-0")


def test_each_row_of_a_batched_request_is_a_sample_with_the_requests_id(
        tmp_path: Path) -> None:
    sampler = r.Sampler(_policy(tmp_path, rate=0.5, over=1.0), 1, "w", [], seed=4)
    x = np.arange(40 * 4, dtype=np.float32).reshape(40, 1, 2, 2) / 160
    logits = np.tile(np.array([[0.0, 5.0, 0.0]], dtype=np.float32), (40, 1))
    sampler.offer(x, logits, "batch-1")
    sampler.flush()
    (part,), _ = samples.read_parts(tmp_path)
    images = np.load(part.path / samples.IMAGES_FILE)
    assert 8 <= len(part.records) <= 32 and images.shape == (len(part.records), 1, 2, 2)
    rows = [round(float(img.flat[0]) * 160 / 4) for img in images]
    assert rows == sorted(set(rows))  # distinct rows, in served order
    np.testing.assert_array_equal(images, x[rows])
    assert {rec.request_id for rec in part.records} == {"batch-1"}
    assert all(rec.prediction == 1 for rec in part.records)
