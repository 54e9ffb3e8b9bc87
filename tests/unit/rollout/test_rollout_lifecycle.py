"""First version, replace, progress deadline, fast track, GitOps spec changes, history."""

from __future__ import annotations

from modelship.core.rollout import (
    HISTORY_LIMIT,
    EnsureVersion,
    Observations,
    RemoveVersion,
    SetTraffic,
    step,
)
from modelship_api.modeldeployment import Canary, CanaryStep, Check, Rollout
from tests.unit.rollout.sim import T0, Sim, analysis, erroring, make_spec, phase, serving


def canary_rollout(**kwargs: object) -> Rollout:
    return Rollout(canary=Canary(steps=[CanaryStep(weight=20, pause="5s")]),
                   analysis=analysis(failure_limit=1), **kwargs)


def conditions(sim: Sim) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in sim.status.conditions or []}


def test_first_version_serves_once_ready_with_no_route_before() -> None:
    sim = Sim(spec=make_spec(canary_rollout()), desired=1)
    sim.healthy_versions.discard(1)
    d = sim.tick()
    assert d.actions[0] == EnsureVersion(1, 1)
    assert not any(isinstance(a, SetTraffic) for a in d.actions)
    assert sim.status.phase == "Pending" and d.requeue_after == 5.0
    # Written after the Deployment is applied: what the cluster then holds, so the pass
    # that next sees the Deployment (no pod ready yet) has no new status to write.
    assert sim.status.message == "version 1: 0/1 Triton pods ready"
    first = sim.status.model_copy(deep=True)
    sim.tick(1)
    assert sim.status == first
    sim.healthy_versions.add(1)
    d = sim.tick(1)
    assert phase(sim) == "Ready" and sim.route == SetTraffic(1, None, 0, 0)
    assert conditions(sim)["Ready"] == ("True", "Serving")
    assert sim.status.history is None and sim.status.rollout is None


def test_first_version_past_the_deadline_is_degraded() -> None:
    sim = Sim(spec=make_spec(canary_rollout(progress_deadline="30s")), desired=1)
    sim.healthy_versions.discard(1)
    sim.run(31)
    assert sim.status.phase == "Pending"
    assert conditions(sim)["Degraded"] == ("True", "ProgressDeadlineExceeded")


def test_without_a_rollout_block_the_new_version_replaces_the_old_once_ready() -> None:
    sim = serving(make_spec(None))
    sim.desired = 2
    sim.healthy_versions.discard(2)
    sim.run(10)
    assert sim.status.phase == "Progressing" and sim.route == SetTraffic(1, 2, 0, 0)
    sim.healthy_versions.add(2)
    d = sim.tick(1)
    assert phase(sim) == "Ready" and sim.status.stable_version == 2
    assert [a for a in d.actions if isinstance(a, SetTraffic | RemoveVersion)] == [
        SetTraffic(2, None, 0, 0)]
    assert (sim.status.history or [])[0].strategy == "replace"
    sim.run_until(lambda s: s.running == {2}, limit=31)  # drained for abortScaleDownDelay


def test_candidate_not_ready_within_the_deadline_is_rolled_back() -> None:
    sim = serving(make_spec(canary_rollout(progress_deadline="1m")))
    sim.desired = 2
    sim.healthy_versions.discard(2)
    sim.tick()
    assert sim.decisions[-1].requeue_after == 5.0
    sim.run(59)
    assert sim.status.phase == "Progressing"
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=2)
    assert "ProgressDeadlineExceeded" in (sim.status.history or [])[0].reason
    sim.run_until(lambda s: s.running == {1}, limit=31)


def test_candidate_that_stops_being_ready_mid_rollout_is_rolled_back() -> None:
    sim = serving(make_spec(canary_rollout(progress_deadline="20s")))
    sim.desired = 2
    sim.run_until(lambda s: s.status.weights is not None and s.status.weights.candidate == 20)
    sim.healthy_versions.discard(2)
    sim.run(10)
    assert sim.status.phase == "Progressing" and "not ready" in sim.status.message
    assert sim.status.weights is not None and sim.status.weights.candidate == 20
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=15)


def test_fast_track_back_to_a_warm_version_skips_analysis() -> None:
    sim = serving(make_spec(canary_rollout(scale_down_delay="10m")))
    sim.desired = 2
    sim.run_until(lambda s: s.status.stable_version == 2)
    queried = sim.queried
    sim.desired = 1
    d = sim.tick(1)
    assert sim.status.phase == "Ready" and sim.status.stable_version == 1
    assert sim.route == SetTraffic(1, None, 0, 0)
    assert sim.queried == queried
    assert d.finished is not None and d.finished.strategy == "fastTrack"
    assert [w.version for w in sim.status.warm_versions or []] == [2]
    assert "FastTrack" in sim.reasons()


def test_no_fast_track_once_the_warm_version_expired() -> None:
    sim = serving(make_spec(canary_rollout(scale_down_delay="30s")))
    sim.desired = 2
    sim.run_until(lambda s: s.status.stable_version == 2)
    sim.run(31)
    assert sim.running == {2}
    sim.desired = 1
    sim.tick(1)
    assert sim.status.phase == "Progressing" and sim.status.candidate_version == 1


def test_after_a_rollback_nothing_loops_and_only_a_spec_change_moves_on() -> None:
    sim = serving(make_spec(canary_rollout()))
    sim.desired = 2
    sim.measure = erroring
    sim.run_until(lambda s: s.status.phase == "RolledBack")
    started = sim.reasons().count("RolloutStarted")
    sim.run(600, every=10)
    assert sim.status.phase == "RolledBack"
    assert sim.reasons().count("RolloutStarted") == started
    assert sim.decisions[-1].requeue_after is None
    sim.desired = 3
    sim.tick(1)
    assert phase(sim) == "Progressing" and sim.status.candidate_version == 3
    assert sim.status.rolled_back_version is None


def test_reverting_spec_to_stable_after_a_rollback_is_ready_at_once() -> None:
    sim = serving(make_spec(canary_rollout()))
    sim.desired = 2
    sim.measure = erroring
    sim.run_until(lambda s: s.status.phase == "RolledBack")
    sim.desired = 1
    sim.tick(1)
    assert sim.status.phase == "Ready"
    assert conditions(sim) == {"Degraded": ("False", "AsExpected"),
                               "Progressing": ("False", "AsExpected"),
                               "Ready": ("True", "Serving")}


def test_reverting_spec_mid_rollout_stops_it_route_first() -> None:
    sim = serving(make_spec(canary_rollout()))
    sim.desired = 2
    sim.run_until(lambda s: s.status.weights is not None and s.status.weights.candidate == 20)
    sim.desired = 1
    d = sim.tick(1)
    assert sim.status.phase == "Ready"
    assert [a for a in d.actions if isinstance(a, SetTraffic | RemoveVersion)] == [
        SetTraffic(1, None, 0, 0)]
    assert d.finished is not None and d.finished.outcome == "Superseded"
    sim.run_until(lambda s: s.running == {1}, limit=31)


def test_a_newer_version_supersedes_the_running_rollout() -> None:
    sim = serving(make_spec(canary_rollout()))
    sim.desired = 2
    sim.run_until(lambda s: s.status.weights is not None and s.status.weights.candidate == 20)
    sim.desired = 3
    d = sim.tick(1)
    assert sim.status.candidate_version == 3
    assert [a for a in d.actions if isinstance(a, SetTraffic | RemoveVersion)] == [
        SetTraffic(1, 3, 0, 0)]
    assert [h.outcome for h in sim.status.history or []] == ["Superseded"]
    # Version 2 drains first: the replicas provider's weighted step waits until it is gone.
    sim.run_until(lambda s: s.status.weights is not None and s.status.weights.candidate == 20)
    assert sim.running == {1, 3}
    sim.run_until(lambda s: s.status.stable_version == 3)


def test_history_is_newest_first_and_bounded() -> None:
    sim = serving(make_spec(Rollout(canary=Canary(steps=[CanaryStep(weight=50, pause="1s")]))))
    sim.healthy_versions = set(range(1, 20))
    for version in range(2, 15):
        sim.desired = version
        sim.run_until(lambda s: s.status.stable_version == s.desired)
    history = sim.status.history or []
    assert len(history) == HISTORY_LIMIT
    assert [h.version for h in history] == list(range(14, 4, -1))


def test_an_unresolved_version_keeps_what_is_under_way() -> None:
    sim = serving(make_spec(canary_rollout()))
    sim.desired = 2
    sim.run_until(lambda s: s.status.weights is not None and s.status.weights.candidate == 20)
    sim.desired = None
    sim.tick(1)
    assert sim.status.candidate_version == 2 and sim.status.phase == "Progressing"


def test_pending_reason_without_any_version() -> None:
    obs = Observations(desired_version=None, pending_reason="no blessed TrainingRun yet")
    d = step(make_spec(None), Sim(spec=make_spec(None)).status, obs, T0)
    assert d.status.phase == "Pending" and d.status.message == "no blessed TrainingRun yet"
    assert d.actions == () and d.requeue_after is None


def test_an_invalid_check_template_blocks_the_rollout() -> None:
    rollout = Rollout(canary=Canary(steps=[CanaryStep(weight=20, pause="5s")]),
                      analysis=analysis(checks=[Check(name="c", query="x{{version}}", max=1)]))
    sim = serving(make_spec(rollout))
    sim.desired = 2
    sim.tick(1)
    assert sim.status.phase == "Failed" and sim.running == {1}
    assert conditions(sim)["Degraded"] == ("True", "InvalidCheck")
    assert "unknown placeholder {{version}}" in sim.status.message


def test_conditions_carry_the_generation_and_keep_transition_times() -> None:
    sim = serving(make_spec(canary_rollout()))
    before = {c.type: c.last_transition_time for c in sim.status.conditions or []}
    sim.generation = 7
    sim.run(5)
    assert all(c.observed_generation == 7 for c in sim.status.conditions or [])
    assert {c.type: c.last_transition_time for c in sim.status.conditions or []} == before


def test_editing_steps_mid_rollout_keeps_the_position_within_range() -> None:
    spec = make_spec(Rollout(canary=Canary(steps=[
        CanaryStep(weight=10, pause="1h"), CanaryStep(weight=20, pause="1h"),
        CanaryStep(weight=30, pause="1h")])))
    sim = serving(spec)
    sim.desired = 2
    sim.run_until(lambda s: s.status.weights is not None and s.status.weights.candidate == 10)
    sim.tick(1, command="promote@1")
    sim.tick(1, command="promote@2")
    assert sim.status.rollout is not None and sim.status.rollout.step == 2
    sim.spec = make_spec(Rollout(canary=Canary(steps=[CanaryStep(weight=50, pause="1s")])))
    sim.run_until(lambda s: s.status.stable_version == 2, limit=5)
