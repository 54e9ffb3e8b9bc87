"""Properties of the state machine over random specs and random sequences of observations:
weights stay consistent, inconclusive analysis never advances, a rollback routes before it
scales down, a tick resumed from the stored status decides what the uninterrupted run
decided, and a running release never changes its pod template (a new template is a new
revision, rolled out; the stable keeps its template until one is promoted)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelship.core.analysis import CheckQuery, Measurement, aggregate
from modelship.core.releases import Release
from modelship.core.rollout import (
    COMMAND_ACTIONS,
    Decision,
    EnsureVersion,
    Observations,
    RemoveVersion,
    SetTraffic,
    stages_of,
    step,
)
from modelship_api.modeldeployment import (
    BlueGreen,
    Canary,
    CanaryStep,
    Check,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Rollout,
    Shadow,
)
from tests.unit.rollout.sim import Sim, analysis, make_spec, serving, stored

durations = st.sampled_from(["1s", "2s", "3s", "5s", "10s"])


@st.composite
def canary_steps(draw: st.DrawFn, min_size: int = 1) -> list[CanaryStep]:
    weights = sorted(draw(st.lists(st.integers(0, 100), min_size=min_size, max_size=4)))
    return [CanaryStep(weight=w, pause=draw(st.none() | durations)) for w in weights]


@st.composite
def rollouts(draw: st.DrawFn) -> Rollout | None:
    kind = draw(st.sampled_from(["none", "canary", "blueGreen", "shadow"]))
    if kind == "none":
        return None
    checks = None
    if draw(st.booleans()):
        checks = [Check(name="errors", builtin="errorRatio", max=0.01),
                  Check(name="custom", query='q{version="{{candidate}}"}', max=1.0,
                        relative_to_stable=draw(st.booleans()))]
    judged = draw(st.booleans()) and analysis(
        interval=draw(st.sampled_from(["1s", "2s", "1500ms"])),
        initial_delay=draw(st.sampled_from(["0s", "1s", "3s"])),
        failure_limit=draw(st.integers(1, 3)),
        inconclusive_limit=draw(st.integers(1, 4)),
        inconclusive_policy=draw(st.sampled_from(["Hold", "Rollback"])),
        checks=checks,
    )
    common = {
        "analysis": judged or None,
        "progress_deadline": draw(st.sampled_from(["5s", "20s", "1m"])),
        "scale_down_delay": draw(st.sampled_from(["0s", "10s", "1m"])),
        "abort_scale_down_delay": draw(st.sampled_from(["0s", "5s", "30s"])),
    }
    if kind == "canary":
        return Rollout(canary=Canary(steps=draw(canary_steps())), **common)
    if kind == "blueGreen":
        return Rollout(blue_green=BlueGreen(preview_duration=draw(durations),
                                            post_switch_duration=draw(durations),
                                            auto_promote=draw(st.booleans())), **common)
    steps = draw(st.none() | canary_steps())
    return Rollout(shadow=Shadow(mirror_percent=draw(st.integers(1, 100)),
                                 duration=draw(durations), canary_steps=steps), **common)


Quality = str  # good | bad | nan | none | error


def measurement(quality: Quality, query: CheckQuery) -> Measurement:
    stable = 10.0 if query.stable is not None else None
    if quality == "error":
        return Measurement(error="timeout")
    if quality == "none":
        return Measurement(value=None, stable=stable)
    if quality == "nan":
        return Measurement(value=math.nan, stable=stable)
    good = quality == "good"
    if query.check.builtin == "errorRatio":
        return Measurement(value=0.0 if good else 0.3)
    if query.check.relative_to_stable:
        return Measurement(value=10.0 if good else 40.0, stable=stable)
    return Measurement(value=0.5 if good else 3.0)


@dataclass(frozen=True)
class TickPlan:
    seconds: float
    quality: Quality
    command: str | None
    desired: int | None  # None: unchanged
    template: str | None  # the spec's pod template; None: unchanged
    candidate_ready: bool
    mirroring: bool
    gateway_accepts: bool  # provider gateway: the gateway takes routes written before


ticks = st.builds(
    TickPlan,
    seconds=st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 5.0, 30.0]),
    quality=st.sampled_from(["good", "good", "good", "bad", "nan", "none", "error"]),
    command=st.none() | st.none() | st.none() | st.sampled_from(COMMAND_ACTIONS),
    desired=st.none() | st.none() | st.none() | st.none() | st.sampled_from([1, 2, 3]),
    template=st.none() | st.none() | st.none() | st.none() | st.sampled_from(["A", "B", "C"]),
    candidate_ready=st.booleans() | st.just(True),
    mirroring=st.just(True) | st.just(True) | st.just(False),
    gateway_accepts=st.just(True) | st.just(True) | st.just(False),
)


def check_weights(status: ModelDeploymentStatus) -> None:
    w = status.weights
    if w is None:
        assert status.stable_version is None
        return
    assert 0 <= w.stable <= 100 and 0 <= w.candidate <= 100 and 0 <= w.mirror <= 100
    assert w.stable + w.candidate == 100
    if w.mirror:
        assert status.rollout is not None and status.rollout.stage == "Shadow"
        assert w.candidate == 0
    if status.candidate_version is None:
        assert (w.stable, w.candidate, w.mirror) == (100, 0, 0)


def stable(status: ModelDeploymentStatus) -> Release | None:
    v = status.stable_version
    return None if v is None else Release(v, status.stable_revision or 0)


def candidate(status: ModelDeploymentStatus) -> Release | None:
    v = status.candidate_version
    return None if v is None else Release(v, status.candidate_revision or 0)


def check_actions(decision: Decision, before: ModelDeploymentStatus) -> None:
    routes = [i for i, a in enumerate(decision.actions) if isinstance(a, SetTraffic)]
    assert len(routes) <= 1
    for i, action in enumerate(decision.actions):
        if isinstance(action, SetTraffic):
            assert 0 <= action.candidate_weight <= 100 and 0 <= action.mirror_percent <= 100
            if action.candidate_version is None:
                assert action.candidate_weight == 0 and action.mirror_percent == 0
            if action.mirror_percent:
                assert action.candidate_weight == 0
        # Whatever is removed was taken off the route earlier in the same decision.
        if isinstance(action, RemoveVersion) and before.stable_version is not None:
            assert routes and routes[0] < i
            route = decision.actions[routes[0]]
            assert isinstance(route, SetTraffic)
            assert action.release not in (route.stable, route.candidate)
    finished = decision.finished
    if finished is not None and finished.outcome in ("RolledBack", "Aborted", "Superseded"):
        route = decision.actions[routes[0]]
        assert isinstance(route, SetTraffic)
        ended = Release(finished.version, finished.revision or 0)
        assert route.candidate != ended and route.stable != ended


def check_routing(decision: Decision, obs: Observations, spec: ModelDeploymentSpec,
                  before: ModelDeploymentStatus) -> None:
    """No removal unless a route without the version was confirmed, and no weighted
    Service of the replicas provider while a third version runs."""
    for action in decision.actions:
        if isinstance(action, RemoveVersion) and obs.route is not None:
            drained = any(Release(d.version, d.revision or 0) == action.release
                          and d.route_confirmed_at is not None for d in before.draining or [])
            assert not obs.route.sends_to(action.release)
            assert obs.route.generation == 0 or obs.route.accepted or drained
        if (isinstance(action, SetTraffic) and spec.traffic.provider == "replicas"
                and 0 < action.candidate_weight < 100):
            assert set(obs.versions) <= {action.stable, action.candidate}


def check_templates(decision: Decision, before: ModelDeploymentStatus, sim: Sim) -> None:
    """The stable runs the template it was promoted with, whatever the spec says now; a
    release that ends (rolled back, aborted) leaves the stable as it was."""
    old = stable(before)
    for action in decision.actions:
        if isinstance(action, EnsureVersion) and action.release == old:
            assert action.template == before.stable_template
    after = decision.status
    if decision.finished is not None and decision.finished.outcome != "Promoted":
        assert stable(after) == old and after.stable_template == before.stable_template
    if stable(after) != old and old is not None and decision.finished is not None:
        assert decision.finished.outcome == "Promoted"
    if after.candidate_version is not None and sim.template is not None:
        assert after.candidate_template is not None


def position(status: ModelDeploymentStatus) -> tuple[Release | None, str, int]:
    r = status.rollout
    return (candidate(status), r.stage if r else "", r.step if r else 0)


def advanced(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> bool:
    """The candidate moved to a later stage or was promoted (not: entered its first stage)."""
    if before.candidate_version is None or before.rollout is None:
        return False
    if before.rollout.stage == "Starting":
        return False
    promoted = stable(after) == candidate(before)
    return promoted or (candidate(after) == candidate(before)
                        and position(after) != position(before))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rollout=rollouts(), plan=st.lists(ticks, min_size=1, max_size=80),
       provider=st.sampled_from(["replicas", "gateway"]))
def test_rollout_invariants(rollout: Rollout | None, plan: list[TickPlan],
                            provider: str) -> None:
    spec: ModelDeploymentSpec = make_spec(rollout, provider=provider)
    sim = serving(spec, template="A")
    sim.desired = 2
    for n, tick in enumerate(plan):
        sim.now += timedelta(seconds=tick.seconds)
        if tick.desired is not None:
            sim.desired = tick.desired
        if tick.template is not None:
            sim.template = tick.template
        # The first release always serves; any other only when the plan says so.
        sim.healthy_versions = {Release(1)} | ({1, 2, 3} if tick.candidate_ready else set())
        sim.mirroring = tick.mirroring
        sim.accepting = tick.gateway_accepts
        sim.measure = lambda q, quality=tick.quality: measurement(quality, q)  # type: ignore[misc]
        command = f"{tick.command}@{n}" if tick.command else None
        obs = sim.observations(command)
        before = sim.status
        decision = step(spec, before, obs, sim.now)

        # Resumed from the stored status (JSON, as the API server keeps it): same decision.
        resumed = step(spec, stored(before), obs, sim.now)
        assert resumed.status.to_api() == decision.status.to_api()
        assert resumed.actions == decision.actions
        assert resumed.requeue_after == decision.requeue_after
        assert stored(decision.status).to_api() == decision.status.to_api()

        check_weights(decision.status)
        check_actions(decision, before)
        check_routing(decision, obs, spec, before)
        check_templates(decision, before, sim)
        if decision.requeue_after is not None:
            assert decision.requeue_after >= 0

        judged = spec.rollout is not None and spec.rollout.analysis is not None
        untouched = (obs.command is None and tick.desired in (None, before.candidate_version)
                     and tick.template in (None, before.candidate_template))
        if judged and untouched and advanced(before, decision.status):
            # Only a successful latest run advances or promotes.
            assert decision.status.analysis is not None
            assert decision.status.analysis.last_result == "Successful"
            if decision.analysis_run is not None:
                assert aggregate(decision.analysis_run) == "Successful"
        failed_run = (decision.analysis_run is not None
                      and aggregate(decision.analysis_run) != "Successful")
        if failed_run and untouched:
            assert not advanced(before, decision.status)
        sim.apply(decision)


@settings(max_examples=100, deadline=None)
@given(rollout=rollouts(), plan=st.lists(ticks, min_size=1, max_size=40),
       cut=st.integers(0, 39), provider=st.sampled_from(["replicas", "gateway"]))
def test_a_restart_anywhere_continues_the_same_rollout(
        rollout: Rollout | None, plan: list[TickPlan], cut: int, provider: str) -> None:
    """Two runs see the same observations; one is restarted (status re-read from storage)
    at tick `cut`. Every later decision is the same."""
    spec = make_spec(rollout, provider=provider)
    runs = [serving(spec, template="A"), serving(spec, template="A")]
    for sim in runs:
        sim.desired = 2
    for n, tick in enumerate(plan):
        if n == cut:
            runs[1].status = stored(runs[1].status)
        decisions = []
        for sim in runs:
            sim.now += timedelta(seconds=tick.seconds)
            if tick.desired is not None:
                sim.desired = tick.desired
            if tick.template is not None:
                sim.template = tick.template
            sim.healthy_versions = {Release(1)} | ({1, 2, 3} if tick.candidate_ready
                                                   else set())
            sim.accepting = tick.gateway_accepts
            sim.measure = lambda q, quality=tick.quality: measurement(quality, q)  # type: ignore[misc]
            command = f"{tick.command}@{n}" if tick.command else None
            decisions.append(sim.tick(0, command))
        assert decisions[0].actions == decisions[1].actions
        assert decisions[0].status.to_api() == decisions[1].status.to_api()


@settings(max_examples=100, deadline=None)
@given(plan=st.lists(st.sampled_from(["nan", "none", "error"]), min_size=1, max_size=60),
       seconds=st.sampled_from([0.5, 1.0, 3.0]), rollout=rollouts())
def test_inconclusive_analysis_never_promotes(plan: list[Quality], seconds: float,
                                              rollout: Rollout | None) -> None:
    if rollout is None or rollout.analysis is None:
        rollout = Rollout(canary=Canary(steps=[CanaryStep(weight=10, pause="1s")]),
                          analysis=analysis())
    first = stages_of(rollout)[0]
    sim = serving(make_spec(rollout))
    sim.desired = 2
    for quality in plan:
        sim.measure = lambda q, quality=quality: measurement(quality, q)  # type: ignore[misc]
        sim.tick(seconds)
        assert sim.status.stable_version == 1
        r = sim.status.rollout
        if r is None:  # rolled back by the Rollback policy
            assert sim.status.phase == "RolledBack"
            assert rollout.analysis is not None
            assert rollout.analysis.inconclusive_policy == "Rollback"
            continue
        assert (r.stage, r.step) in (("Starting", 0), (first.name, first.step))


def test_stored_status_round_trip_is_exact() -> None:
    sim = serving(make_spec(Rollout(canary=Canary(steps=[CanaryStep(weight=10, pause="1s")]),
                                    analysis=analysis())))
    sim.desired = 2
    sim.run(3, every=0.5)
    assert sim.status.analysis is not None and sim.status.analysis.checks
    assert stored(sim.status) == sim.status
