"""core.retraining: triggers, bounds, adoption after a restart, and the check that a retrained
version cleared the drift."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship.core import retraining
from modelship.core.retraining import Inputs, Reviewed, decide, run_name
from modelship.core.retraining_manifest import training_run
from modelship.core.rollout.clock import format_time, parse_time
from modelship.handlers import runtime
from modelship_api.common import Condition
from modelship_api.modeldeployment import ModelDeployment
from modelship_api.monitoring import MonitoringStatus, StatisticStatus
from modelship_api.retraining import (
    ANNOTATION_LABELS,
    ANNOTATION_SEQUENCE,
    ANNOTATION_TRIGGER,
    LABEL_RETRAINED_FOR,
    Retraining,
    RetrainingStatus,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"model": "defects", "dataset": {"generated": {"seed": 1}},
            "publish": {"repository": {"hostPath": {"path": "/repo"}}}}


def spec(**extra: Any) -> Retraining:
    body = {"template": TEMPLATE, "triggers": {"dataDrift": {"for": "5m"}},
            "cooldown": "1h", "maxPerDay": 3, "verifyWithin": "30m", "minNewLabels": 50,
            **extra}
    return Retraining.model_validate(body)


def drift(since: datetime, status: str = "True") -> Condition:
    return Condition(type="DataDrift", status=status, reason="DataDrift",
                     last_transition_time=format_time(since))


def monitoring(version: int = 1, at: datetime = T0, result: str = "Drift",
               drifted: bool = True) -> MonitoringStatus:
    return MonitoringStatus(version=version, evaluated_at=format_time(at), window="1m",
                            statistics=[StatisticStatus(name="input_brightness", source="input",
                                                        result=result,  # type: ignore[arg-type]
                                                        drifted=drifted, psi=0.8)])


def run(sequence: int, phase: str | None, created: datetime, labels: int | None = 10,
        version: int | None = None) -> dict[str, Any]:
    notes = {ANNOTATION_SEQUENCE: str(sequence), ANNOTATION_TRIGGER: "DataDrift"}
    if labels is not None:
        notes[ANNOTATION_LABELS] = str(labels)
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if version is not None:
        status["version"] = version
    return {"metadata": {"name": run_name("defects", sequence), "annotations": notes,
                         "creationTimestamp": format_time(created)}, "status": status}


def inputs(now: datetime, *, the_spec: Retraining | None = None,
           conditions: list[Condition] | None = None,
           mon: MonitoringStatus | None = None, previous: RetrainingStatus | None = None,
           runs: list[dict[str, Any]] | None = None, reviewed: Reviewed | None = None,
           stable: int | None = 1, candidate: int | None = None,
           ended: frozenset[int] = frozenset()) -> Inputs:
    return Inputs(spec=the_spec or spec(), deployment="defects",
                  created_at=format_time(T0 - timedelta(days=10)),
                  conditions=conditions if conditions is not None else [drift(T0)],
                  monitoring=mon or monitoring(), stable_version=stable,
                  candidate_version=candidate, rollouts_ended=ended, previous=previous,
                  runs=runs or [],
                  reviewed=reviewed or Reviewed(labels_total=10), now=now)


def test_drift_must_hold_for_its_duration_then_one_run_starts_with_provenance() -> None:
    early = decide(inputs(T0 + timedelta(minutes=4)))
    assert early.start is None and early.status.triggered == ""
    assert early.requeue_after == pytest.approx(60)
    plan = decide(inputs(T0 + timedelta(minutes=5)))
    assert plan.start is not None
    assert (plan.start.name, plan.start.sequence, plan.start.trigger) == \
        ("defects-retrain-1", 1, "DataDrift")
    assert "input_brightness psi=0.800" in plan.start.scores
    assert plan.start.labels_total == 10 and "monitoring window 1m" in plan.start.window
    assert plan.status.sequence == 1 and plan.status.started_last_day == 1
    assert plan.status.last_run is not None and plan.status.last_run.phase == "Pending"
    assert plan.status.history is not None and plan.status.history[0].name == plan.start.name
    assert [e.reason for e in plan.events] == ["RetrainingStarted"]


def started(now: datetime, **kw: Any) -> RetrainingStatus:
    plan = decide(inputs(now, **kw))
    assert plan.start is not None
    return plan.status


def test_one_run_at_a_time_then_the_cooldown() -> None:
    t1 = T0 + timedelta(minutes=5)
    status = started(t1)
    running = decide(inputs(t1 + timedelta(minutes=2), previous=status,
                            runs=[run(1, "Running", t1)]))
    assert running.start is None
    assert "defects-retrain-1 is Running (one run at a time)" in running.status.not_started
    # Succeeded, its version not picked up yet: that rollout comes first.
    waiting = decide(inputs(t1 + timedelta(minutes=30), previous=running.status,
                            runs=[run(1, "Succeeded", t1, version=2)], the_spec=spec(
                                cooldown="1m")))
    assert waiting.start is None
    assert waiting.status.not_started == \
        "version 2 of retraining run defects-retrain-1 is not rolled out yet"
    # Succeeded and its version rolled back: the cooldown still holds.
    done = decide(inputs(t1 + timedelta(minutes=30), previous=running.status,
                         runs=[run(1, "Succeeded", t1, version=2)], ended=frozenset({2})))
    assert done.start is None
    assert done.status.not_started.startswith("cooldown 1h until")
    assert done.status.next_allowed_at == format_time(t1 + timedelta(hours=1))
    assert done.requeue_after == pytest.approx(30 * 60)
    after = decide(inputs(t1 + timedelta(hours=1), previous=done.status,
                          runs=[run(1, "Succeeded", t1, version=2)], ended=frozenset({2})))
    assert after.start is not None and after.start.name == "defects-retrain-2"


def test_daily_cap_counts_the_last_24_hours() -> None:
    the_spec = spec(cooldown="0s", maxPerDay=2)
    t, status = T0 + timedelta(minutes=5), None
    for i in (1, 2):
        status = started(t, the_spec=the_spec, previous=status,
                         runs=[run(n, "Failed", t) for n in range(1, i)])
        t += timedelta(hours=1)
    capped = decide(inputs(t, the_spec=the_spec, previous=status,
                           runs=[run(1, "Failed", t), run(2, "Failed", t)]))
    assert capped.start is None and "daily cap: 2 runs" in capped.status.not_started
    first = T0 + timedelta(minutes=5)
    assert capped.status.next_allowed_at == format_time(first + timedelta(hours=24))
    later = decide(inputs(first + timedelta(hours=24), the_spec=the_spec,
                          previous=capped.status,
                          runs=[run(1, "Failed", t), run(2, "Failed", t)]))
    assert later.start is not None and later.status.started_last_day == 2


def test_after_a_rejected_run_only_new_labels_allow_another() -> None:
    the_spec = spec(cooldown="0s")
    t1 = T0 + timedelta(minutes=5)
    status = started(t1, the_spec=the_spec, reviewed=Reviewed(labels_total=100))
    rejected = [run(1, "Rejected", t1, labels=100)]
    same = decide(inputs(t1 + timedelta(hours=2), the_spec=the_spec, previous=status,
                         runs=rejected, reviewed=Reviewed(labels_total=149)))
    assert same.start is None
    assert "Rejected and the reviewed data has not changed: 49 new labels since, " \
        "minNewLabels 50" in same.status.not_started
    unknown = decide(inputs(t1 + timedelta(hours=2), the_spec=the_spec, previous=status,
                            runs=rejected, reviewed=Reviewed(error="Prometheus down")))
    assert unknown.start is None and "Prometheus down" in unknown.status.not_started
    changed = decide(inputs(t1 + timedelta(hours=2), the_spec=the_spec, previous=status,
                            runs=rejected, reviewed=Reviewed(labels_total=150)))
    assert changed.start is not None and changed.start.labels_total == 150


def test_a_run_started_before_labels_could_be_counted_counts_from_the_first_reading() -> None:
    the_spec = spec(cooldown="0s")
    t1 = T0 + timedelta(minutes=5)
    status = started(t1, the_spec=the_spec, reviewed=Reviewed(error="no series"))
    rejected = [run(1, "Rejected", t1)]
    assert status.last_run is not None and status.last_run.labels_total is None
    blind = decide(inputs(t1 + timedelta(hours=1), the_spec=the_spec, previous=status,
                          runs=rejected, reviewed=Reviewed(error="no series")))
    assert blind.start is None and "is unknown (no series)" in blind.status.not_started
    first = decide(inputs(t1 + timedelta(hours=2), the_spec=the_spec, previous=blind.status,
                          runs=rejected, reviewed=Reviewed(labels_total=70)))
    assert first.start is None and "0 new labels since" in first.status.not_started
    assert first.status.history and first.status.history[0].labels_total == 70
    later = decide(inputs(t1 + timedelta(hours=3), the_spec=the_spec, previous=first.status,
                          runs=rejected, reviewed=Reviewed(labels_total=120)))
    assert later.start is not None and later.start.labels_total == 120


def test_a_run_created_before_a_restart_is_adopted_not_created_again() -> None:
    t1 = T0 + timedelta(minutes=5)
    lost = started(t1)  # the status write of this pass never happened
    assert lost.sequence == 1
    plan = decide(inputs(t1 + timedelta(seconds=5), previous=None,
                         runs=[run(1, None, t1)]))
    assert plan.start is None
    assert plan.status.sequence == 1 and plan.status.started_last_day == 1
    assert "defects-retrain-1 is Pending" in plan.status.not_started
    # The same pass repeated from the same status names the same run: one object.
    assert decide(inputs(t1)).start == decide(inputs(t1)).start


def test_other_triggers() -> None:
    stale = Condition(type="Stale", status="True", reason="Stale")
    age = decide(inputs(T0, the_spec=spec(triggers={"modelAge": True}),
                        conditions=[stale]))
    assert age.start is not None and age.start.trigger == "ModelAge"
    # A version dated by its publish time only says its age is a lower bound.
    lower = decide(inputs(T0, the_spec=spec(triggers={"modelAge": True}), conditions=[stale],
                          mon=MonitoringStatus(version=1, model_age_seconds=2678400,
                                               age_source="PublishTime",
                                               published_at="2026-11-01T00:00:00Z")))
    assert lower.start is not None and lower.start.scores == (
        "model age at least 2678400s, published 2026-11-01T00:00:00Z")
    accuracy = spec(triggers={"reviewedAccuracy": {"below": 0.9, "minSamples": 100}})
    few = decide(inputs(T0, the_spec=accuracy, conditions=[],
                        reviewed=Reviewed(accuracy=0.5, samples=99)))
    assert few.start is None
    low = decide(inputs(T0, the_spec=accuracy, conditions=[],
                        reviewed=Reviewed(accuracy=0.8, samples=100, labels_total=7)))
    assert low.start is not None and low.start.trigger == "ReviewedAccuracy"
    assert "reviewed accuracy 0.800 < 0.9 over 100 labels" in low.start.scores
    schedule = spec(triggers={"schedule": {"every": "264h"}})
    assert decide(inputs(T0, the_spec=schedule, conditions=[])).start is None
    due = decide(inputs(T0 + timedelta(days=1), the_spec=schedule, conditions=[]))
    assert due.start is not None and due.start.trigger == "Schedule"


def promoted_status(t1: datetime) -> tuple[RetrainingStatus, list[dict[str, Any]]]:
    status = started(t1)
    runs = [run(1, "Succeeded", t1, version=2)]
    rolling = decide(inputs(t1 + timedelta(minutes=10), previous=status, runs=runs,
                            candidate=2))
    assert rolling.effective is None
    assert "version 2 of retraining run defects-retrain-1 is being rolled out" in \
        rolling.status.not_started
    promoted = decide(inputs(t1 + timedelta(minutes=20), previous=rolling.status, runs=runs,
                             stable=2))
    assert promoted.status.last_run is not None
    assert promoted.status.last_run.promoted_at == format_time(t1 + timedelta(minutes=20))
    assert promoted.effective is not None and promoted.effective.reason == "Verifying"
    return promoted.status, runs


def test_drift_that_clears_after_promotion_makes_the_retraining_effective() -> None:
    t1 = T0 + timedelta(minutes=5)
    status, runs = promoted_status(t1)
    # The old version's verdict (drift) does not count, nor the new one's first look.
    t = t1 + timedelta(minutes=21)
    seen = decide(inputs(t, previous=status, runs=runs, stable=2,
                         conditions=[drift(t, "False")],
                         mon=monitoring(version=2, at=t, result="Drift", drifted=False)))
    assert seen.effective is not None and seen.effective.status == "Unknown"
    cleared = decide(inputs(t, previous=status, runs=runs, stable=2,
                            conditions=[drift(t, "False")],
                            mon=monitoring(version=2, at=t, result="Normal", drifted=False)))
    assert cleared.effective is not None
    assert (cleared.effective.status, cleared.effective.reason) == ("True", "DriftCleared")
    assert [e.reason for e in cleared.events] == ["RetrainingEffective"]


def test_the_evaluation_made_in_the_promoting_pass_counts() -> None:
    # The pass that promotes version 2 judges it at once, stamped with the pass's start, a
    # moment before promotedAt; an unchanged judgement is then not stored again for minutes.
    t1 = T0 + timedelta(minutes=5)
    status, runs = promoted_status(t1)
    assert status.last_run is not None and status.last_run.promoted_at is not None
    at = parse_time(status.last_run.promoted_at) - timedelta(milliseconds=70)
    later = at + timedelta(minutes=1)
    cleared = decide(inputs(later, previous=status, runs=runs, stable=2,
                            conditions=[drift(at, "False")],
                            mon=monitoring(version=2, at=at, result="Normal", drifted=False)))
    assert cleared.effective is not None
    assert (cleared.effective.status, cleared.effective.reason) == ("True", "DriftCleared")


def test_drift_that_persists_past_verify_within_says_a_person_is_needed() -> None:
    t1 = T0 + timedelta(minutes=5)
    status, runs = promoted_status(t1)
    t = t1 + timedelta(minutes=20 + 29)
    still = [drift(t1 + timedelta(minutes=25))]
    verifying = decide(inputs(t, previous=status, runs=runs, stable=2, conditions=still,
                              mon=monitoring(version=2, at=t)))
    assert verifying.start is None and "verifying version 2" in verifying.status.not_started
    assert verifying.requeue_after == pytest.approx(60)
    t = t1 + timedelta(minutes=50)
    failed = decide(inputs(t, previous=status, runs=runs, stable=2, conditions=still,
                           mon=monitoring(version=2, at=t)))
    assert failed.effective is not None
    assert (failed.effective.status, failed.effective.reason) == ("False", "DriftPersists")
    assert "a person is needed" in failed.effective.message
    assert [e.reason for e in failed.events][:1] == ["DriftPersists"]
    # The drift holds, past the cooldown: the same data would train the same model, so
    # only new reviewed labels allow another run.
    t = t1 + timedelta(hours=2)
    again = decide(inputs(t, previous=failed.status, runs=runs, stable=2, conditions=still,
                          mon=monitoring(version=2, at=t), reviewed=Reviewed(labels_total=59)))
    assert again.start is None
    assert "did not clear the drift and the reviewed data has not changed: 49 new labels" \
        in again.status.not_started
    new = decide(inputs(t, previous=failed.status, runs=runs, stable=2, conditions=still,
                        mon=monitoring(version=2, at=t), reviewed=Reviewed(labels_total=60)))
    assert new.start is not None and new.start.sequence == 2
    # The verdict on version 2 stands while the next run trains.
    assert new.effective is not None and new.effective.reason == "DriftPersists"


def test_the_run_carries_the_selector_labels_and_provenance() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "ml"},
        "spec": {"model": {"name": "defects", "fromTrainingRuns": {
            "matchLabels": {"pipeline": "defects"}}},
            "repository": {"hostPath": {"path": "/repo"}}, "retraining": spec().to_api()}})
    plan = decide(inputs(T0 + timedelta(minutes=5)))
    assert plan.start is not None
    obj = training_run(md, plan.start)
    assert obj["metadata"]["labels"] == {"pipeline": "defects", LABEL_RETRAINED_FOR: "defects"}
    assert obj["metadata"]["annotations"][ANNOTATION_TRIGGER] == "DataDrift"
    assert obj["metadata"]["annotations"][ANNOTATION_LABELS] == "10"
    assert obj["spec"]["model"] == "defects" and obj["spec"]["dataset"]["generated"]["seed"] == 1
    assert "ownerReferences" not in obj["metadata"]


def test_a_drift_run_takes_its_reference_from_samples_served_since_the_drift() -> None:
    production = {"volume": {"hostPath": "/data"}}
    body = {**spec().to_api(), "template": {**TEMPLATE, "dataset": {
        **TEMPLATE["dataset"], "production": production}}}

    def run_spec(retraining: dict[str, Any], conditions: list[Condition]) -> dict[str, Any]:
        md = ModelDeployment.model_validate({
            "metadata": {"name": "defects", "namespace": "ml"},
            "spec": {"model": {"name": "defects", "fromTrainingRuns": {
                "matchLabels": {"pipeline": "defects"}}},
                "repository": {"hostPath": {"path": "/repo"}}, "retraining": retraining}})
        plan = decide(inputs(T0 + timedelta(minutes=5),
                             the_spec=Retraining.model_validate(retraining),
                             conditions=conditions))
        assert plan.start is not None
        return dict(training_run(md, plan.start)["spec"])

    got = run_spec(body, [drift(T0)])["dataset"]["production"]
    assert got["referenceSince"] == format_time(T0) and got["reference"] == "Production"
    # The template's own choice stands; a run another trigger started has no drift start.
    fixed = {**production, "referenceSince": "2026-01-01T00:00:00Z"}
    own = {**body, "template": {**body["template"], "dataset": {
        **TEMPLATE["dataset"], "production": fixed}}}
    assert run_spec(own, [drift(T0)])["dataset"]["production"]["referenceSince"] == \
        "2026-01-01T00:00:00Z"
    scheduled = {**body, "triggers": {"schedule": {"every": "1h"}}}
    assert "referenceSince" not in run_spec(scheduled, [])["dataset"]["production"]


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=50)
       .filter(lambda s: s[0].isalpha() and s[-1] != "-"), st.integers(1, 10**6))
def test_run_names_fit_and_differ_per_deployment_and_sequence(name: str, n: int) -> None:
    made = run_name(name, n)
    assert len(made) <= retraining.MAX_RUN_NAME and made.endswith(f"-retrain-{n}")
    assert run_name(name + "x", n) != made or len(name) >= 50


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * 24 * 60), st.sampled_from(
    ["Running", "Succeeded", "Failed", "Rejected"])), min_size=1, max_size=30),
       st.integers(0, 180), st.integers(1, 5))
def test_bounds_hold_whatever_happens(steps: list[tuple[int, str]], cooldown: int,
                                      cap: int) -> None:
    """Driven pass by pass with runs ending in any phase: never two runs unfinished, never
    two starts closer than the cooldown, never more than maxPerDay in 24 hours."""
    the_spec = spec(cooldown=f"{cooldown}m", maxPerDay=cap, minNewLabels=0)
    status: RetrainingStatus | None = None
    runs: list[dict[str, Any]] = []
    starts: list[datetime] = []
    now = T0 + timedelta(minutes=5)
    for minutes, phase in sorted(steps):
        now = max(now, T0 + timedelta(minutes=5 + minutes))
        plan = decide(inputs(now, the_spec=the_spec, previous=status, runs=runs))
        status = plan.status
        if plan.start is not None:
            assert all((r.get("status") or {}).get("phase") not in (None, "Running")
                       for r in runs)
            runs.append(run(plan.start.sequence, None, now))
            starts.append(now)
        elif runs:
            runs[-1]["status"] = {"phase": phase}
    for a, b in itertools.pairwise(starts):
        assert (b - a) >= timedelta(minutes=cooldown)
    for i, s in enumerate(starts):
        assert sum(1 for x in starts[i:] if x - s < timedelta(hours=24)) <= cap


def test_a_retraining_run_that_changes_wakes_its_model_deployment() -> None:
    """A run's new phase is acted on at once, not at the next resync."""
    key = ("ModelDeployment", "ml", "defects")
    woken = runtime._wakeups.setdefault(key, asyncio.Event())
    try:
        runtime._on_change("TrainingRun", "MODIFIED", {"metadata": {
            "namespace": "ml", "name": "defects-retrain-1",
            "labels": {LABEL_RETRAINED_FOR: "defects"}}})
        assert woken.is_set()
    finally:
        runtime._wakeups.pop(key, None)
