"""A new pod template is a new revision of the same model version, rolled out like a new
version: canary steps and analysis, the stable untouched until promotion, rollback to the
stable's template."""

from __future__ import annotations

from modelship.core.releases import Release
from modelship.core.rollout import EnsureVersion, SetTraffic, due_queries
from modelship_api.modeldeployment import (
    Canary,
    CanaryStep,
    Check,
    ModelDeploymentStatus,
    Rollout,
    Weights,
)
from tests.unit.rollout.sim import Sim, analysis, erroring, make_spec, phase, serving

R1 = Release(1, 1)


def canary(**rollout: object) -> Rollout:
    return Rollout(canary=Canary(steps=[CanaryStep(weight=20, pause="5s"),
                                        CanaryStep(weight=50, pause="5s")]),
                   analysis=analysis(), **rollout)


def changed_template(rollout: Rollout, provider: str = "replicas") -> Sim:
    """Version 1 serves with template A; the spec now describes template B."""
    sim = serving(make_spec(rollout, version=1, provider=provider), version=1, template="A")
    sim.template = "B"
    return sim


def ensured(sim: Sim, release: Release) -> set[str | None]:
    """The templates every decision so far asked `release` to run."""
    return {a.template for d in sim.decisions for a in d.actions
            if isinstance(a, EnsureVersion) and a.release == release}


def test_a_template_change_rolls_out_through_the_canary_steps() -> None:
    sim = changed_template(canary(scale_down_delay="0s", abort_scale_down_delay="0s"),
                           provider="gateway")
    sim.tick()
    st = sim.status
    assert (st.candidate_version, st.candidate_revision, st.candidate_template) == (1, 1, "B")
    assert (st.stable_version, st.stable_revision, st.stable_template) == (1, None, "A")
    assert st.desired_revision == 1 and st.desired_template == "B"
    weights: list[int] = []
    sim.run_until(lambda s: s.status.candidate_version is None, limit=60)
    for d in sim.decisions:
        for a in d.actions:
            if isinstance(a, SetTraffic) and a.candidate == R1 and (
                    not weights or weights[-1] != a.candidate_weight):
                weights.append(a.candidate_weight)
    assert weights == [0, 20, 50]
    assert phase(sim) == "Ready"
    st = sim.status
    assert (st.stable_version, st.stable_revision, st.stable_template) == (1, 1, "B")
    assert st.history is not None
    assert (st.history[0].outcome, st.history[0].revision, st.history[0].previous_revision) == (
        "Promoted", 1, None)
    # The old stable ran its own template until promotion, the new revision its own.
    assert ensured(sim, Release(1)) == {"A"} and ensured(sim, R1) == {"B"}
    sim.run_until(lambda s: s.running == {R1}, limit=10)
    assert sim.route == SetTraffic(1, None, 0, 0, stable_revision=1)
    assert "serving resnet version 1 revision 1" in sim.status.message


def test_a_bad_template_rolls_back_and_leaves_the_stable_as_it_was() -> None:
    sim = changed_template(canary(abort_scale_down_delay="0s"))
    sim.measure = erroring
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=60)
    st = sim.status
    assert (st.stable_version, st.stable_revision, st.stable_template) == (1, None, "A")
    assert (st.rolled_back_version, st.rolled_back_revision, st.rolled_back_template) == (
        1, 1, "B")
    assert "version 1 revision 1 rolled back" in st.message
    assert "change spec.runtime" in st.message
    assert ensured(sim, Release(1)) == {"A"}
    sim.run_until(lambda s: s.running == {1}, limit=10)
    assert sim.route == SetTraffic(1, None, 0, 0)
    # It stays rolled back while the spec still describes template B...
    sim.run(5)
    assert phase(sim) == "RolledBack" and sim.running == {1}
    # ...a third template is the next revision, started afresh...
    sim.template = "C"
    sim.tick()
    assert (sim.status.candidate_version, sim.status.candidate_revision) == (1, 2)
    # ...and going back to the stable's template ends it at once.
    sim.template = "A"
    sim.tick()
    assert phase(sim) == "Ready" and sim.status.candidate_version is None
    assert sim.status.history is not None
    assert sim.status.history[0].outcome == "Superseded"


def test_a_version_change_keeps_the_template_revision() -> None:
    sim = serving(make_spec(canary(), version=1), version=1, template="A")
    sim.desired = 2
    sim.tick()
    assert (sim.status.candidate_version, sim.status.candidate_revision) == (2, None)


def test_version_and_template_changed_at_once_are_one_rollout() -> None:
    sim = changed_template(canary())
    sim.desired = 2
    sim.tick()
    st = sim.status
    assert (st.candidate_version, st.candidate_revision, st.candidate_template) == (2, 1, "B")
    assert sim.reasons().count("RolloutStarted") == 1
    assert Release(2, 1) in sim.running and Release(2) not in sim.live


def test_an_operator_that_did_not_track_templates_is_adopted_without_a_rollout() -> None:
    """A stable recorded before templates were tracked is taken to run the spec's."""
    status = ModelDeploymentStatus(stable_version=1, phase="Ready", weights=Weights())
    sim = Sim(spec=make_spec(canary(), version=1), status=status, desired=1, template="A")
    sim.live.add(Release(1))
    sim.templates[Release(1)] = "A"  # what it runs: the template the spec describes
    sim.tick()
    assert phase(sim) == "Ready" and sim.status.candidate_version is None
    assert sim.status.stable_template == "A"


def test_analysis_tells_two_revisions_of_one_version_apart_by_pod() -> None:
    checks = [Check(name="errors", builtin="errorRatio", max=0.05),
              Check(name="latency", builtin="meanLatency", max=1.5, relative_to_stable=True),
              Check(name="p99", builtin="p99Latency", max=2.0),
              Check(name="nan", builtin="nonFinite", max=0)]
    sim = changed_template(Rollout(canary=Canary(steps=[CanaryStep(weight=20, pause="5s")]),
                                   analysis=analysis(checks=checks)))
    sim.run_until(lambda s: s.status.rollout is not None
                  and s.status.rollout.stage == "Canary", limit=10)
    queries = due_queries(sim.spec, sim.status, "prod", sim.now, deployment="md")
    assert [q.check.name for q in queries] == ["errors", "latency", "p99", "nan"]
    for q in queries:
        assert 'pod=~"md-v1-r1-[a-z0-9]+-[a-z0-9]+"' in q.candidate
        assert q.stable is None or 'pod=~"md-v1-[a-z0-9]+-[a-z0-9]+"' in q.stable
    # Different versions need no pod matcher: Triton's version label tells them apart.
    status = sim.status.model_copy(update={"candidate_version": 2, "candidate_revision": None})
    assert all("pod=~" not in q.candidate
               for q in due_queries(sim.spec, status, "prod", sim.now, deployment="md"))


def test_a_user_check_tells_two_revisions_apart_with_the_pods_placeholder() -> None:
    """Triton's version label is the same for both revisions: {{pods}} is what a user
    template can select them by (the judged release's pods, stable's for the stable side)."""
    check = Check(name="mine", query='sum(rate(x{version="{{candidate}}",pod=~"{{pods}}"}'
                  '[{{window}}]))', max=1.5, relative_to_stable=True)
    sim = changed_template(Rollout(canary=Canary(steps=[CanaryStep(weight=20, pause="5s")]),
                                   analysis=analysis(checks=[check])))
    sim.run_until(lambda s: s.status.rollout is not None
                  and s.status.rollout.stage == "Canary", limit=10)
    (q,) = due_queries(sim.spec, sim.status, "prod", sim.now, deployment="md")
    assert 'pod=~"md-v1-r1-[a-z0-9]+-[a-z0-9]+"' in q.candidate
    assert q.stable is not None and 'pod=~"md-v1-[a-z0-9]+-[a-z0-9]+"' in q.stable
    (anywhere,) = due_queries(sim.spec, sim.status, "prod", sim.now)
    assert 'pod=~".+"' in anywhere.candidate
