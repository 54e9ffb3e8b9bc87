"""Canary: steps of weight and pause, analysis throughout, rollback on failures."""

from __future__ import annotations

from modelship.core.rollout import RemoveVersion, SetTraffic
from modelship_api.modeldeployment import Canary, CanaryStep, Rollout
from tests.unit.rollout.sim import (
    Sim,
    analysis,
    erroring,
    healthy,
    make_spec,
    no_data,
    phase,
    serving,
    slow,
    unreachable,
)


def canary(*steps: tuple[int, str | None], **analysis_kwargs: object) -> Rollout:
    return Rollout(
        canary=Canary(steps=[CanaryStep(weight=w, pause=p) for w, p in steps]),
        analysis=analysis(**analysis_kwargs),
        scale_down_delay="1m",
    )


def start(rollout: Rollout) -> Sim:
    sim = serving(make_spec(rollout))
    sim.desired = 2
    return sim


def weights(sim: Sim) -> tuple[int, int, int]:
    w = sim.status.weights
    assert w is not None
    return (w.stable, w.candidate, w.mirror)


def test_happy_path_walks_every_step_then_promotes() -> None:
    sim = start(canary((10, "5s"), (50, "5s")))
    seen: list[tuple[int, int, int]] = []
    sim.run_until(lambda s: s.status.phase == "Ready" and s.status.stable_version == 2,
                  limit=60)
    for d in sim.decisions:
        w = d.status.weights
        assert w is not None
        if not seen or seen[-1] != (w.stable, w.candidate, w.mirror):
            seen.append((w.stable, w.candidate, w.mirror))
    assert seen == [(100, 0, 0), (90, 10, 0), (50, 50, 0), (100, 0, 0)]
    assert sim.route == SetTraffic(2, None, 0, 0)
    assert sim.reasons() == ["RolloutStarted", "StageStarted", "StageStarted", "Promoted"]
    history = sim.status.history
    assert history is not None and history[0].outcome == "Promoted"
    assert (history[0].version, history[0].previous_version, history[0].strategy) == (
        2, 1, "canary")
    # The old stable stays warm for scaleDownDelay.
    assert sim.running == {1, 2}
    assert [w.version for w in sim.status.warm_versions or []] == [1]
    sim.run(61)
    assert sim.running == {2} and sim.status.warm_versions is None


def test_each_step_holds_for_its_pause() -> None:
    sim = start(canary((10, "10s"), (50, "10s")))
    sim.run_until(lambda s: weights(s) == (90, 10, 0))
    entered = sim.now
    sim.run_until(lambda s: weights(s) == (50, 50, 0))
    assert (sim.now - entered).total_seconds() == 10


def test_consecutive_failures_roll_back_route_first() -> None:
    sim = start(canary((20, "30s"), failure_limit=2))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.measure = erroring
    d1 = sim.tick(1)
    assert d1.status.analysis is not None and d1.status.analysis.consecutive_failures == 1
    assert sim.status.phase == "Progressing"
    d2 = sim.tick(1)
    assert phase(sim) == "RolledBack"
    route = [a for a in d2.actions if isinstance(a, SetTraffic)]
    removal = [a for a in d2.actions if isinstance(a, RemoveVersion)]
    assert route == [SetTraffic(1, None, 0, 0)]
    assert removal == []  # drained: removed abortScaleDownDelay after the route change
    assert sim.running == {1, 2}
    assert d2.finished is not None and d2.finished.outcome == "RolledBack"
    assert "error-ratio=0.25 (max 0.01)" in d2.finished.reason
    assert sim.status.rolled_back_version == 2
    assert sim.status.candidate_version is None
    checks = {c.name: c for c in sim.status.analysis.checks or []}  # type: ignore[union-attr]
    assert checks["error-ratio"].result == "Failed" and checks["error-ratio"].value == 0.25
    conditions = {c.type: c for c in sim.status.conditions or []}
    assert conditions["Degraded"].status == "True"
    assert conditions["Degraded"].reason == "RolledBack"
    assert conditions["Ready"].status == "False"
    assert "RolledBack" in sim.reasons()


def test_slow_candidate_relative_to_stable_rolls_back() -> None:
    sim = start(canary((20, "30s")))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.measure = slow
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=5)
    history = sim.status.history or []
    assert "mean-latency=4 (max 1.5x stable)" in history[0].reason


def test_a_single_failure_followed_by_success_does_not_roll_back() -> None:
    sim = start(canary((20, "10s"), failure_limit=2))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.measure = erroring
    sim.tick(1)
    sim.measure = healthy
    sim.run_until(lambda s: s.status.phase == "Ready", limit=30)
    assert sim.status.stable_version == 2


def test_inconclusive_never_advances_and_holds() -> None:
    sim = start(canary((20, "2s"), (60, "2s"), inconclusive_limit=3,
                       inconclusive_policy="Hold"))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.measure = unreachable
    sim.run(20)
    assert weights(sim) == (80, 20, 0)
    assert sim.status.phase == "Paused"
    assert sim.status.rollout is not None and sim.status.rollout.paused
    assert "3 inconclusive runs in a row" in sim.status.rollout.pause_reason
    assert sim.reasons().count("RolloutHeld") == 1
    assert sim.status.rollout.held_for_data
    # The hold lasts while data is missing; the first conclusive, successful run lifts it.
    sim.measure = healthy
    sim.tick(1)
    assert sim.status.rollout is not None and not sim.status.rollout.paused
    assert sim.reasons().count("Resumed") == 1
    sim.run_until(lambda s: s.status.phase == "Ready", limit=30)


def test_a_pause_by_a_person_outlasts_successful_runs() -> None:
    sim = start(canary((20, "2s"), (60, "2s")))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.tick(1, command="pause@1")
    sim.run(10)
    assert weights(sim) == (80, 20, 0)
    assert sim.status.phase == "Paused"
    assert sim.status.rollout is not None and not sim.status.rollout.held_for_data
    sim.tick(1, command="resume@2")
    sim.run_until(lambda s: s.status.phase == "Ready", limit=30)


def test_inconclusive_policy_rollback() -> None:
    sim = start(canary((20, "2s"), inconclusive_limit=2, inconclusive_policy="Rollback"))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.measure = no_data
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=5)
    assert "inconclusive" in (sim.status.history or [])[0].reason


def test_failures_still_roll_back_while_held() -> None:
    sim = start(canary((20, "2s"), inconclusive_limit=1, failure_limit=2))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    sim.measure = unreachable
    sim.tick(1)
    assert sim.status.phase == "Paused"
    sim.measure = erroring
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=5)


def test_initial_delay_postpones_the_first_run() -> None:
    sim = start(canary((20, "1s"), initial_delay="5s"))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    entered = sim.now
    sim.run_until(lambda s: s.status.analysis is not None
                  and s.status.analysis.last_run_at is not None)
    assert (sim.now - entered).total_seconds() == 5


def test_analysis_runs_every_interval_and_requeue_says_when() -> None:
    sim = start(canary((20, "1m"), interval="3s"))
    sim.run_until(lambda s: weights(s) == (80, 20, 0))
    d = sim.tick()
    assert d.analysis_run is not None  # initialDelay 0: the first run is due at once
    assert d.requeue_after == 3.0
    assert sim.tick(1).requeue_after == 2.0
    assert sim.tick(1.5).analysis_run is None
    d = sim.tick(0.5)
    assert d.analysis_run is not None and d.requeue_after == 3.0


def test_step_without_pause_waits_for_promote() -> None:
    sim = start(canary((10, None), (50, "2s")))
    sim.run_until(lambda s: weights(s) == (90, 10, 0))
    sim.run(30)
    assert weights(sim) == (90, 10, 0)
    assert "advances on `modelship promote`" in sim.status.message
    sim.tick(1, command="promote@a")
    assert weights(sim) == (50, 50, 0)
    sim.run_until(lambda s: s.status.phase == "Ready", limit=10)


def test_without_analysis_steps_advance_on_time_alone() -> None:
    rollout = Rollout(canary=Canary(steps=[CanaryStep(weight=30, pause="3s")]))
    sim = start(rollout)
    sim.run_until(lambda s: s.status.phase == "Ready", limit=10)
    assert sim.queried == 0
    assert sim.status.analysis is None
