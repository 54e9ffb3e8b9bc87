"""One monitoring evaluation of the served version: status.monitoring, the conditions
DataDrift, PredictionDrift, Stale and NumericFault, and the events on their transitions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from modelship.core.conditions import get_condition
from modelship.core.drift import monitor, profiles
from modelship.core.drift.queries import NONFINITE, VectorAnswer
from modelship_api.monitoring import Monitoring
from tests.unit.drift.fixtures import (
    NOW,
    TARGET,
    answers,
    profile,
    read,
)


def run(spec: Monitoring, previous: monitor.Evaluation | None, ans: dict[str, VectorAnswer] | None,
        r: profiles.ProfileRead | None = None, at: datetime = NOW,
        unmeasured: str = "") -> monitor.Evaluation:
    return monitor.run(spec, previous.status if previous else None,
                       previous.conditions if previous else None, r or read(), TARGET, ans,
                       at, 1, unmeasured)


def cond(ev: monitor.Evaluation, type_: str) -> str:
    c = get_condition(ev.conditions, type_)
    assert c is not None
    return c.status


def test_stationary_traffic_raises_nothing() -> None:
    spec, p = Monitoring(), profile()
    ev = None
    for i in range(10):
        ev = run(spec, ev, answers(p, 0.5), at=NOW + timedelta(seconds=15 * i))
        assert ev.events == []
    assert ev is not None
    assert [cond(ev, t) for t in monitor.CONDITIONS] == ["False"] * 4
    assert ev.status.statistics is not None and len(ev.status.statistics) == 6
    assert all(s.result == "Normal" and s.samples == 500 for s in ev.status.statistics)


def test_darker_images_raise_data_drift_after_raise_after_evaluations_and_clear_later() -> None:
    spec, p = Monitoring(raise_after=2, clear_after=3), profile()
    first = run(spec, None, answers(p, dark=True))
    assert cond(first, "DataDrift") == "False"  # one high score is not yet a drift
    brightness = next(s for s in first.status.statistics or [] if s.name == "input_brightness")
    assert brightness.result == "Drift" and brightness.streak == 1 and brightness.psi > 1
    second = run(spec, first, answers(p, dark=True), at=NOW + timedelta(seconds=15))
    assert cond(second, "DataDrift") == "True"
    assert cond(second, "PredictionDrift") == "False"  # outputs unchanged
    (event,) = second.events
    assert event.type == "Warning" and event.reason == "DataDrift"
    assert "input_brightness" in event.message and "version 3" in event.message
    ev = second
    for i in range(3):
        assert cond(ev, "DataDrift") == "True"
        ev = run(spec, ev, answers(p), at=NOW + timedelta(seconds=30 + 15 * i))
    assert cond(ev, "DataDrift") == "False"
    assert [(e.type, e.reason) for e in ev.events] == [("Normal", "NoDataDrift")]


def test_too_few_samples_are_inconclusive_never_a_drift() -> None:
    spec, p = Monitoring(min_samples=200), profile()
    ev = None
    for i in range(5):  # 100 samples of very dark images, five times over
        ev = run(spec, ev, answers(p, scale=0.1, dark=True), at=NOW + timedelta(seconds=i))
        assert ev.events == []
    assert ev is not None and cond(ev, "DataDrift") == "Unknown"
    s = ev.status.statistics or []
    assert all(x.result == "Inconclusive" and not x.drifted for x in s)
    assert "fewer than minSamples 200" in s[0].message


def test_a_model_that_predicts_one_class_raises_prediction_drift() -> None:
    spec, p = Monitoring(raise_after=1), profile()
    ev = run(spec, None, answers(p, classes={"ok": 1000.0}))
    assert cond(ev, "PredictionDrift") == "True" and cond(ev, "DataDrift") == "False"


def test_stale_and_non_finite_outputs() -> None:
    p = profile(data_age_days=40)
    ev = run(Monitoring(max_model_age="720h"), None, answers(p, nonfinite=3.2), read(p))
    assert cond(ev, "Stale") == "True" and cond(ev, "NumericFault") == "True"
    assert ev.status.model_age_seconds == 40 * 86400 and ev.status.non_finite == 3
    assert {e.reason for e in ev.events} == {"Stale", "NonFiniteOutputs"}
    stale = get_condition(ev.conditions, "Stale")
    assert stale is not None and "maxModelAge 720h" in stale.message


def test_without_a_profile_only_non_finite_outputs_are_judged_and_status_says_why() -> None:
    # The pods of an earlier modelship carry profile.json only: nothing dates the version.
    missing = profiles.parse("", 3)
    spec = Monitoring()
    queries = monitor.plan(spec, missing, TARGET)
    assert [q.key for q in queries] == [NONFINITE]
    ev = run(spec, None, {NONFINITE: VectorAnswer({"": 0.0})}, missing)
    assert cond(ev, "NumericFault") == "False"
    for t in ("DataDrift", "PredictionDrift", "Stale"):
        c = get_condition(ev.conditions, t)
        assert c is not None and c.status == "Unknown" and c.reason == "NoProfile"
    assert ev.status.model_age_seconds is None and ev.status.age_source is None
    assert ev.status.unavailable == [
        "drift against the profile: version 3 has no profile.json (published before "
        "profiles, or by a recipe that writes none)",
        "model age: the pods of version 3 were started by an earlier modelship, whose init "
        "container carries profile.json only: the version's next revision carries what else "
        "dates it"]


def note(**fields: object) -> profiles.ProfileRead:
    """What the init container carries of version 3 without a profile that travels."""
    return profiles.parse(json.dumps(fields), 3)


def published(days_ago: float) -> str:
    return str(int((NOW - timedelta(days=days_ago)).timestamp()))


def test_without_a_profile_lineage_json_dates_the_training_data() -> None:
    data = (NOW - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = note(lineageDataTime=data, publishedAt=published(39))
    ev = run(Monitoring(max_model_age="720h"), None, None, r)
    stale = get_condition(ev.conditions, "Stale")
    assert stale is not None and (stale.status, stale.reason) == ("True", "Stale")
    assert stale.message == (f"training data from {data} (lineage.json dataTime) is 40 days "
                             "old, older than maxModelAge 720h: train on newer data")
    assert (ev.status.age_source, ev.status.data_time, ev.status.model_age_seconds) == (
        "LineageDataTime", data, 40 * 86400)
    assert ev.status.published_at is None
    # Drift against the profile cannot run; the age is exact, so it is not named.
    assert ev.status.unavailable is not None and len(ev.status.unavailable) == 1
    assert ev.status.unavailable[0].startswith("drift against the profile: version 3 has no")
    assert cond(ev, "DataDrift") == "Unknown"


def test_only_the_publish_time_gives_a_lower_bound_that_turns_stale_once_past_the_limit(
        ) -> None:
    spec = Monitoring(max_model_age="720h")
    r = note(lineageDataTime="", publishedAt=published(3))
    ev = run(spec, None, {NONFINITE: VectorAnswer({"": 0.0})}, r)
    stale = get_condition(ev.conditions, "Stale")
    assert stale is not None and (stale.status, stale.reason) == ("Unknown", "AgeLowerBound")
    pub = (NOW - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    due = (NOW + timedelta(days=27)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stale.message == (
        f"version published {pub}, 3 days ago: its training data is at least that old, and "
        "the training-data time is unknown (lineage.json of version 3 records no dataTime); "
        f"Stale turns True at {due}, maxModelAge 720h after the publish time")
    assert (ev.status.age_source, ev.status.published_at, ev.status.data_time,
            ev.status.model_age_seconds) == ("PublishTime", pub, None, 3 * 86400)
    assert "exact model age: lineage.json of version 3 records no dataTime; the age counts " \
        "from the version's publish time, a lower bound" in (ev.status.unavailable or [])
    assert not [e for e in ev.events if e.reason == "Stale"]

    # A second past the limit: Stale, with its Warning event, though the data time is unknown.
    later = run(spec, ev, {NONFINITE: VectorAnswer({"": 0.0})}, r,
                at=NOW + timedelta(days=27, seconds=1))
    stale = get_condition(later.conditions, "Stale")
    assert stale is not None and (stale.status, stale.reason) == ("True", "Stale")
    assert stale.message.startswith(f"version published {pub}, 30 days ago: its training "
                                    "data is at least that old, older than maxModelAge 720h")
    (event,) = [e for e in later.events if e.reason == "Stale"]
    assert event.type == "Warning" and "train on newer data" in event.message


def test_a_profile_too_large_to_carry_still_dates_the_version_by_its_data_time() -> None:
    data = (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = note(profileTooLarge=5000, profileDataTime=data, lineageDataTime=data,
             publishedAt=published(1))
    ev = run(Monitoring(), None, None, r)
    stale = get_condition(ev.conditions, "Stale")
    assert stale is not None and (stale.status, stale.reason) == ("False", "Fresh")
    assert f"training data from {data} (profile.json dataTime)" in stale.message
    assert ev.status.age_source == "ProfileDataTime"
    drift = get_condition(ev.conditions, "DataDrift")
    assert drift is not None and drift.reason == "NoProfile" and "5000 bytes" in drift.message


def test_one_query_per_statistic_per_version() -> None:
    p = profile()
    queries = monitor.plan(Monitoring(statistics=["input_brightness", "predicted_class"]),
                           read(p), TARGET)
    by_key = {q.key: q for q in queries}
    assert set(by_key) == {NONFINITE, "input_brightness", "predicted_class"}
    assert by_key["input_brightness"].promql == (
        'sum by (le)(increase(modelship_input_statistic_bucket{model="defects",version="3",'
        'namespace="prod",statistic="input_brightness"}[60s]))')
    assert by_key["predicted_class"].by == "class"
    assert "modelship_predictions_total" in by_key["predicted_class"].promql


def test_no_prometheus_still_judges_age_and_says_what_cannot_run() -> None:
    ev = run(Monitoring(), None, None, unmeasured="no Prometheus to query: set "
             "spec.monitoring.prometheus.address")
    assert cond(ev, "Stale") == "False" and cond(ev, "NumericFault") == "Unknown"
    assert ev.status.unavailable is not None
    assert "spec.monitoring.prometheus.address" in ev.status.unavailable[0]


def test_a_version_served_by_triton_own_backend_says_its_statistics_are_not_exported() -> None:
    why = monitor.not_exported("onnxruntime")
    assert monitor.not_exported("python") == ""
    ev = run(Monitoring(), None, None, unmeasured=why)
    for type_ in ("DataDrift", "PredictionDrift", "NumericFault"):
        c = get_condition(ev.conditions, type_)
        assert c is not None and (c.status, c.reason) == ("Unknown", "NotMeasured")
        assert "runtime.backend onnxruntime" in c.message
        assert "runtime.backend python" in c.message
    assert cond(ev, "Stale") == "False"  # the age needs no live statistics
    assert ev.status.model_age_seconds is not None
    assert ev.status.unavailable and "runtime.backend onnxruntime" in ev.status.unavailable[0]


def test_a_new_stable_version_starts_its_own_hysteresis() -> None:
    spec, p = Monitoring(raise_after=2), profile()
    first = run(spec, None, answers(p, dark=True))
    other = monitor.run(spec, first.status, first.conditions, read(p),
                        monitor.Target("defects", 4), answers(p, dark=True),
                        NOW + timedelta(seconds=15), 1)
    assert cond(other, "DataDrift") == "False"  # the streak of version 3 does not count


def test_a_statistic_the_profile_lacks_is_named_as_unavailable() -> None:
    p = profile()
    del p.statistics["input_contrast"]
    ev = run(Monitoring(statistics=["input_contrast", "input_brightness"]), None, answers(p),
             read(p))
    assert ev.status.unavailable == [
        "input_contrast: the profile has no such statistic (it has input_brightness, "
        "input_saturated_fraction, output_confidence, output_entropy, predicted_class)"]


def test_due_on_interval() -> None:
    spec = Monitoring(interval="15s")
    assert monitor.due(spec, None, NOW)
    assert not monitor.due(spec, NOW, NOW + timedelta(seconds=14))
    assert monitor.due(spec, NOW, NOW + timedelta(seconds=15))
    assert monitor.seconds_to_next(spec, NOW, NOW + timedelta(seconds=5)) == 10
    assert not monitor.due(Monitoring(enabled=False), None, NOW)


def test_a_steady_judgement_keeps_the_stored_status_until_its_refresh() -> None:
    """New scores alone do not rewrite status (a converged resource writes nothing); a new
    streak or result does, and the figures are refreshed every STATUS_REFRESH_S."""
    spec, p = Monitoring(), profile()
    first = run(spec, None, answers(p, 0.5))
    later = NOW + timedelta(seconds=15)
    second = run(spec, first, answers(p, 0.7), at=later)
    assert second.status == first.status and second.conditions == first.conditions
    refreshed = run(spec, second, answers(p, 0.7),
                    at=NOW + timedelta(seconds=monitor.STATUS_REFRESH_S))
    assert refreshed.status.evaluated_at != first.status.evaluated_at
    assert refreshed.status.statistics is not None
    assert refreshed.status.statistics[0].samples == 700
    moved = run(spec, first, answers(p, dark=True), at=later)
    assert moved.status != first.status  # a streak began: written at once


def test_the_same_verdict_at_a_later_generation_leaves_the_conditions_as_written() -> None:
    # A new leader (its schedule starts empty) or a rollout's spec change re-evaluates the
    # stable version: an unchanged verdict must not rewrite status (observedGeneration too).
    spec = Monitoring()
    first = run(spec, None, None, unmeasured="no Prometheus to query")
    again = monitor.run(spec, first.status, first.conditions, read(), TARGET, None,
                        NOW + timedelta(seconds=15), 2, "no Prometheus to query")
    assert again.conditions == first.conditions
    assert {c.observed_generation for c in again.conditions or []} == {1}
    assert not again.events
