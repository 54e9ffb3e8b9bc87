"""The profile contract (modelship_api.profile): statistics, buckets, profile.json, digest."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelship_api.profile import (
    PROFILE_FILE,
    CategoricalStatistic,
    NumericStatistic,
    Profile,
    StatisticDefinition,
    bucket_index,
    equal_edges,
    image_statistics,
)
from modelship_api.training_result import MAX_TERMINATION_MESSAGE_BYTES, TrainingResult
from modelship_api.trainingrun import TrainingRunStatus

CLASSES = ["ok", "scratch", "pit"]
DATA_TIME = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CREATED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def brightness() -> StatisticDefinition:
    return next(d for d in image_statistics(CLASSES) if d.name == "input_brightness")


def small_profile(created: datetime = CREATED) -> Profile:
    definitions = image_statistics(CLASSES)
    values: dict[str, list[float]] = {
        "input_brightness": [0.5, 0.5, 0.52, 0.07],
        "input_contrast": [0.06, 0.07, 0.07, 0.3],
        "input_saturated_fraction": [0.0, 0.0, 0.003, 0.6],
        "output_confidence": [0.99, 0.97, 0.6, 0.4],
        "output_entropy": [0.05, 0.1, 0.8, 1.05],
        "predicted_class": [0, 0, 2, 1],
    }
    return Profile.build(definitions, values, samples=4, data_time=DATA_TIME,
                         created_at=created)


def test_image_statistics_are_the_documented_six_with_fixed_edges() -> None:
    defs = {d.name: d for d in image_statistics(CLASSES)}
    assert list(defs) == ["input_brightness", "input_contrast", "input_saturated_fraction",
                          "output_confidence", "output_entropy", "predicted_class"]
    assert defs["input_brightness"].edges == equal_edges(0.0, 1.0) == [
        round(0.05 * i, 6) for i in range(1, 21)]
    assert defs["input_contrast"].edges == equal_edges(0.0, 0.25)
    entropy = defs["output_entropy"].edges
    assert entropy is not None and len(entropy) == 20 and entropy[-1] == round(math.log(3), 6)
    assert defs["predicted_class"].kind == "categorical"
    assert defs["predicted_class"].categories == CLASSES
    # The same classes always give the same edges: trainer and serving cannot disagree.
    assert image_statistics(CLASSES) == image_statistics(list(CLASSES))


def test_buckets_follow_prometheus_le() -> None:
    edges = [0.1, 0.2, 0.3]
    assert [bucket_index(edges, v) for v in (-1.0, 0.1, 0.1000001, 0.2, 0.3, 0.31, 9e9)] == [
        0, 0, 1, 1, 2, 3, 3]


def test_counts_and_mean_are_right_and_non_finite_values_are_left_out() -> None:
    d = StatisticDefinition(name="x", source="input", measure="mean", kind="numeric",
                            edges=[0.25, 0.5, 0.75])
    p = Profile.build([d], {"x": [0.25, 0.3, 0.5, 0.9, 2.0, math.nan, math.inf]}, samples=7,
                      data_time=DATA_TIME, created_at=CREATED)
    stat = p.statistics["x"]
    assert isinstance(stat, NumericStatistic)
    assert stat.counts == [1, 2, 0, 2]  # <=0.25, (0.25,0.5], (0.5,0.75], >0.75
    assert stat.mean == pytest.approx((0.25 + 0.3 + 0.5 + 0.9 + 2.0) / 5)


def test_weights_give_each_bucket_its_weighted_share_of_the_samples() -> None:
    # Samples kept with a third of the others' chance weigh 3: the weighted histogram holds
    # them at their real share, as whole counts adding up to the samples counted.
    d = StatisticDefinition(name="x", source="input", measure="mean", kind="numeric",
                            edges=[0.5])
    c = StatisticDefinition(name="c", source="output", measure="predicted_class",
                            kind="categorical", categories=["a", "b"])
    values = {"x": [0.2, 0.2, 0.9, 0.9, math.nan], "c": [0, 0, 1, 1]}
    weights = {"x": [1.0, 1.0, 3.0, 3.0, 5.0], "c": [1.0, 1.0, 3.0, 3.0]}
    p = Profile.build([d, c], values, samples=5, data_time=DATA_TIME, created_at=CREATED,
                      weights=weights)
    x, cat = p.statistics["x"], p.statistics["c"]
    assert isinstance(x, NumericStatistic) and isinstance(cat, CategoricalStatistic)
    assert x.counts == [1, 3] and cat.counts == [1, 3]
    assert x.mean == pytest.approx((0.2 * 2 + 0.9 * 6) / 8)
    with pytest.raises(ValueError, match="statistic 'c': 3 weights for 4 values"):
        Profile.build([d, c], values, samples=5, data_time=DATA_TIME, created_at=CREATED,
                      weights={**weights, "c": [1.0, 1.0, 1.0]})


def test_profile_json_has_the_contract_shape() -> None:
    data = json.loads(small_profile().dumps())
    assert set(data) == {"schemaVersion", "dataTime", "createdAt", "samples", "statistics"}
    assert data["schemaVersion"] == 1 and data["samples"] == 4
    assert data["dataTime"] == "2026-11-30T08:00:00Z"
    b = data["statistics"]["input_brightness"]
    assert b["kind"] == "numeric" and len(b["counts"]) == len(b["edges"]) + 1 == 21
    assert b["counts"][1] == 1 and b["counts"][9] == 2 and b["counts"][10] == 1
    assert sum(b["counts"]) == 4
    c = data["statistics"]["predicted_class"]
    assert c == {"kind": "categorical", "source": "output", "measure": "predicted_class",
                 "categories": CLASSES, "counts": [2, 1, 1]}


def test_digest_is_stable_and_covers_the_content(tmp_path: Path) -> None:
    p = small_profile()
    assert p.digest() == small_profile().digest()
    assert p.digest().startswith("sha256:") and len(p.digest()) == 71
    p.dump(tmp_path / PROFILE_FILE)
    loaded = Profile.load(tmp_path / PROFILE_FILE)
    assert loaded == p and loaded.digest() == p.digest()
    # The same instant in another offset is the same profile.
    shifted = small_profile(CREATED.astimezone(timezone(timedelta(hours=2))))
    assert shifted.digest() == p.digest()
    other = small_profile()
    stat = other.statistics["input_brightness"]
    assert isinstance(stat, NumericStatistic)
    stat.counts[0] += 1
    assert other.digest() != p.digest()


def test_summary_gives_means_top_class_and_digest() -> None:
    p = small_profile()
    s = p.summary()
    assert s.digest == p.digest() and s.samples == 4 and s.data_time == "2026-11-30T08:00:00Z"
    assert s.statistics is not None
    assert s.statistics["input_brightness"].mean == pytest.approx((0.5 + 0.5 + 0.52 + 0.07) / 4)
    assert (s.statistics["predicted_class"].top, s.statistics["predicted_class"].top_fraction) \
        == ("ok", 0.5)
    # It becomes TrainingRun status, through the termination message.
    result = TrainingResult(outcome="Succeeded", reason="Published", profile=s)
    status = TrainingRunStatus.model_validate(result.status_fields())
    assert status.profile == s


def test_definitions_round_trip_through_profile_json() -> None:
    p = small_profile()
    assert sorted(p.definitions(), key=lambda d: d.name) == sorted(
        image_statistics(CLASSES), key=lambda d: d.name)


@pytest.mark.parametrize(("fields", "message"), [
    ({"edges": [0.5, 0.2]}, "strictly ascending"),
    ({"edges": [0.1, math.inf]}, "must be finite"),
    ({"edges": []}, "at least one bucket edge"),
    ({"measure": "confidence"}, "is not an input measure"),
    ({"measure": "feature"}, "set feature exactly when measure is feature"),
    ({"kind": "categorical", "edges": None, "categories": ["a"]}, "is numeric"),
    ({"categories": ["a"]}, "has edges, not categories"),
])
def test_bad_definitions_are_refused_naming_the_statistic(fields: dict[str, object],
                                                          message: str) -> None:
    base: dict[str, object] = {"name": "input_level", "source": "input", "measure": "mean",
                               "kind": "numeric", "edges": [0.5, 1.0]}
    with pytest.raises(ValidationError, match=message) as err:
        StatisticDefinition.model_validate({**base, **fields})
    assert "'input_level'" in str(err.value)


def test_bad_profiles_are_refused() -> None:
    good = json.loads(small_profile().dumps())
    wrong_counts = json.loads(json.dumps(good))
    wrong_counts["statistics"]["input_brightness"]["counts"].pop()
    with pytest.raises(ValidationError, match="counts must be 21"):
        Profile.loads(json.dumps(wrong_counts))
    wrong_version = {**good, "schemaVersion": 2}
    with pytest.raises(ValidationError, match="schemaVersion"):
        Profile.loads(json.dumps(wrong_version))
    with pytest.raises(ValueError, match=r"category index 3 outside 0\.\.2"):
        Profile.build(image_statistics(CLASSES)[5:], {"predicted_class": [3]}, samples=1,
                      data_time=DATA_TIME, created_at=CREATED)
    with pytest.raises(ValueError, match="no values for statistic 'predicted_class'"):
        Profile.build(image_statistics(CLASSES)[5:], {}, samples=0, data_time=DATA_TIME,
                      created_at=CREATED)
    assert isinstance(small_profile().statistics["predicted_class"], CategoricalStatistic)


def test_profile_summary_survives_termination_message_trimming() -> None:
    summary = small_profile().summary()
    result = TrainingResult(outcome="Succeeded", reason="Published", message="m" * 5000,
                            metrics={f"metric_{i}": i / 7 for i in range(300)},
                            profile=summary)
    parsed = TrainingResult.parse(result.to_termination_message())
    assert len(result.to_termination_message().encode()) <= MAX_TERMINATION_MESSAGE_BYTES
    assert parsed.truncated and parsed.profile is not None
    assert (parsed.profile.digest, parsed.profile.samples, parsed.profile.data_time) == (
        summary.digest, 4, "2026-11-30T08:00:00Z")
