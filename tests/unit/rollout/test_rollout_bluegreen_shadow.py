"""Blue-green (preview, switch, post-switch, switch-back) and shadow (mirror, then promote or
continue into canary steps)."""

from __future__ import annotations

from modelship.core.rollout import RemoveVersion, SetTraffic
from modelship_api.modeldeployment import BlueGreen, CanaryStep, Rollout, Shadow
from tests.unit.rollout.sim import Sim, analysis, erroring, make_spec, serving, unreachable


def blue_green(auto_promote: bool = True, **analysis_kwargs: object) -> Sim:
    rollout = Rollout(
        blue_green=BlueGreen(preview_duration="5s", post_switch_duration="5s",
                             auto_promote=auto_promote),
        analysis=analysis(**analysis_kwargs),
        scale_down_delay="30s",
    )
    sim = serving(make_spec(rollout))
    sim.desired = 2
    return sim


def shadow(steps: list[CanaryStep] | None = None, **analysis_kwargs: object) -> Sim:
    rollout = Rollout(
        shadow=Shadow(mirror_percent=50, duration="5s", canary_steps=steps),
        analysis=analysis(**analysis_kwargs),
    )
    sim = serving(make_spec(rollout))
    sim.desired = 2
    return sim


def stage(sim: Sim) -> str:
    return sim.status.rollout.stage if sim.status.rollout is not None else ""


def test_blue_green_previews_switches_then_promotes_and_keeps_the_old_warm() -> None:
    sim = blue_green()
    sim.run_until(lambda s: stage(s) == "Preview")
    assert sim.route == SetTraffic(1, 2, 0, 0)
    preview_at = sim.now
    sim.run_until(lambda s: stage(s) == "PostSwitch")
    assert (sim.now - preview_at).total_seconds() == 5
    assert sim.route == SetTraffic(1, 2, 100, 0)
    assert sim.running == {1, 2}  # the old version stays up for an instant switch-back
    sim.run_until(lambda s: s.status.phase == "Ready")
    assert sim.route == SetTraffic(2, None, 0, 0)
    assert sim.running == {1, 2}
    history = sim.status.history or []
    assert (history[0].outcome, history[0].strategy) == ("Promoted", "blueGreen")
    sim.run(30)
    assert sim.running == {2}


def test_blue_green_switches_back_at_once_when_post_switch_analysis_fails() -> None:
    sim = blue_green(failure_limit=1)
    sim.run_until(lambda s: stage(s) == "PostSwitch")
    sim.measure = erroring
    d = sim.tick(1)
    assert sim.status.phase == "RolledBack"
    assert [a for a in d.actions if isinstance(a, SetTraffic | RemoveVersion)] == [
        SetTraffic(1, None, 0, 0)]
    assert [v.version for v in sim.status.draining or []] == [2]
    sim.run_until(lambda s: s.running == {1}, limit=31)  # abortScaleDownDelay: 30s


def test_blue_green_failing_preview_never_switches() -> None:
    sim = blue_green(failure_limit=2)
    sim.run_until(lambda s: stage(s) == "Preview")
    sim.measure = erroring
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=5)
    weights = [d.status.weights.candidate for d in sim.decisions if d.status.weights]
    assert max(weights) == 0


def test_blue_green_without_auto_promote_waits_for_promote_after_a_passing_preview() -> None:
    sim = blue_green(auto_promote=False)
    sim.run_until(lambda s: stage(s) == "Preview")
    sim.run(30)
    assert stage(sim) == "Preview"
    assert "advances on `modelship promote`" in sim.status.message
    sim.tick(1, command="promote@1")
    assert stage(sim) == "PostSwitch"


def test_shadow_mirrors_then_promotes_directly() -> None:
    sim = shadow()
    sim.run_until(lambda s: stage(s) == "Shadow")
    assert sim.route == SetTraffic(1, 2, 0, 50)
    weights = sim.status.weights
    assert weights is not None and (weights.stable, weights.candidate, weights.mirror) == (
        100, 0, 50)
    sim.run_until(lambda s: s.status.phase == "Ready", limit=10)
    assert sim.route == SetTraffic(2, None, 0, 0)


def test_shadow_continues_into_canary_steps_without_mirroring() -> None:
    sim = shadow([CanaryStep(weight=25, pause="3s")])
    sim.run_until(lambda s: stage(s) == "Canary")
    assert sim.route == SetTraffic(1, 2, 25, 0)
    sim.run_until(lambda s: s.status.phase == "Ready", limit=10)
    routes = [a for d in sim.decisions for a in d.actions if isinstance(a, SetTraffic)]
    assert all(r.mirror_percent == 0 or r.candidate_weight == 0 for r in routes)


def test_shadow_rolls_back_on_failures() -> None:
    sim = shadow(failure_limit=2)
    sim.run_until(lambda s: stage(s) == "Shadow")
    sim.measure = erroring
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=5)
    assert sim.route == SetTraffic(1, None, 0, 0)


def test_shadow_stays_in_shadow_while_prometheus_is_down() -> None:
    sim = shadow(inconclusive_limit=100)
    sim.run_until(lambda s: stage(s) == "Shadow")
    sim.measure = unreachable
    sim.run(60)
    assert stage(sim) == "Shadow" and sim.status.stable_version == 1


def test_shadow_is_refused_when_the_provider_cannot_mirror() -> None:
    sim = shadow()
    sim.mirroring = False
    sim.run(5)
    assert sim.status.phase == "Failed"
    assert sim.status.candidate_version is None
    assert sim.running == {1}
    assert "mirrors requests" in sim.status.message
    conditions = {c.type: c for c in sim.status.conditions or []}
    assert (conditions["Degraded"].status, conditions["Degraded"].reason) == (
        "True", "MirroringUnsupported")
    sim.mirroring = True
    sim.run_until(lambda s: stage(s) == "Shadow")
