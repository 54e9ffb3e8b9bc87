"""What the route allows: the replicas provider's pod split and its two-version rule, the
drain of a version taken off the route (confirmed route, then abortScaleDownDelay), and a
route the gateway refuses or has not taken yet holding the rollout."""

from __future__ import annotations

from modelship.core.rollout import EnsureVersion, RemoveVersion, SetTraffic
from modelship.core.rollout.routing import candidate_replicas
from modelship_api.modeldeployment import Canary, CanaryStep, Rollout
from tests.unit.rollout.sim import Sim, analysis, erroring, make_spec, serving, stored

GATEWAY_REFUSAL = ("NotAllowedByListeners", "Accepted=False: no listener named nope")


def canary(*steps: tuple[int, str], **kwargs: object) -> Rollout:
    return Rollout(canary=Canary(steps=[CanaryStep(weight=w, pause=p) for w, p in steps]),
                   **kwargs)


def weight(sim: Sim) -> int:
    return sim.status.weights.candidate if sim.status.weights is not None else 0


def conditions(sim: Sim) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in sim.status.conditions or []}


def removals(sim: Sim) -> list[int]:
    return [a.version for d in sim.decisions for a in d.actions
            if isinstance(a, RemoveVersion)]


def test_candidate_replicas_approximate_the_weight() -> None:
    for stable, w, expected in [(4, 20, 1), (4, 50, 4), (3, 25, 1), (1, 10, 1), (4, 75, 12),
                                (2, 0, 2), (2, 100, 2)]:
        assert candidate_replicas(stable, w) == expected, (stable, w)


def test_replicas_provider_split_is_in_the_decision() -> None:
    sim = serving(make_spec(canary((20, "5s"), (50, "5s"), (75, "5s")), replicas=4))
    sim.desired = 2
    seen = set()
    sim.run_until(lambda s: s.status.stable_version == 2)
    for d in sim.decisions:
        route = next((a for a in d.actions if isinstance(a, SetTraffic)), None)
        sizes = {a.version: a.replicas for a in d.actions if isinstance(a, EnsureVersion)}
        if route is not None and route.candidate_version == 2:
            assert sizes[1] == 4
            assert sizes[2] == candidate_replicas(4, route.candidate_weight)
            seen.add((route.candidate_weight, sizes[2]))
    assert {(20, 1), (50, 4), (75, 12)} <= seen
    assert sim.replicas[2] == 4  # promoted: the full count


def test_gateway_provider_keeps_the_full_count_for_the_candidate() -> None:
    sim = serving(make_spec(canary((20, "5s")), replicas=4, provider="gateway"))
    sim.desired = 2
    sim.run_until(lambda s: weight(s) == 20)
    assert sim.replicas == {1: 4, 2: 4}


def test_replicas_canary_never_weights_while_a_third_version_runs() -> None:
    """v2 replaced v1, which stays warm; a canary of v3 must not start its weighted step
    while v1 is observed: the Service of that step would select v1's pods too."""
    sim = serving(make_spec(canary((30, "5s"), scale_down_delay="10m")), removal_ticks=4)
    sim.desired = 2
    sim.run_until(lambda s: s.status.stable_version == 2)
    assert sim.running == {1, 2} and [w.version for w in sim.status.warm_versions or []] == [1]
    sim.decisions.clear()
    sim.desired = 3
    for _ in range(30):
        observed = set(sim.running)  # what this tick observes
        d = sim.tick(1)
        if any(isinstance(a, SetTraffic) and 0 < a.candidate_weight < 100 for a in d.actions):
            assert observed == {2, 3}, observed
            break
    assert weight(sim) == 30 and removals(sim) == [1]
    assert "waiting for version 1 to be removed first" in " ".join(
        d.status.message for d in sim.decisions)


def test_gateway_canary_keeps_the_warm_version() -> None:
    sim = serving(make_spec(canary((30, "5s"), scale_down_delay="10m"), provider="gateway"))
    sim.desired = 2
    sim.run_until(lambda s: s.status.stable_version == 2)
    sim.desired = 3
    sim.run_until(lambda s: weight(s) == 30)
    assert sim.running == {1, 2, 3}
    assert sim.route == SetTraffic(2, 3, 30, 0)


def test_rollback_waits_for_the_gateway_then_the_delay() -> None:
    sim = serving(make_spec(canary((30, "1m"), analysis=None, abort_scale_down_delay="20s"),
                            provider="gateway"))
    sim.desired = 2
    sim.run_until(lambda s: weight(s) == 30)
    sim.accepting = False  # the gateway is slow to program the change
    d = sim.tick(1, command="abort@1")
    assert sim.status.phase == "RolledBack" and sim.route == SetTraffic(1, None, 0, 0)
    assert not [a for a in d.actions if isinstance(a, RemoveVersion)]
    sim.run(120)
    assert sim.running == {1, 2}, "removed before the gateway confirmed the route"
    draining = (sim.status.draining or [])[0]
    assert draining.version == 2 and draining.route_confirmed_at is None
    assert sim.decisions[-1].requeue_after == 1.0
    sim.accepting = True
    sim.tick(1)
    confirmed = sim.now
    assert (sim.status.draining or [])[0].route_confirmed_at is not None
    sim.run_until(lambda s: 2 not in s.running, limit=25)
    assert (sim.now - confirmed).total_seconds() == 20
    sim.tick(1)
    assert sim.status.draining is None  # listed until its Deployment is gone


def test_zero_delay_removes_once_confirmed() -> None:
    sim = serving(make_spec(canary((30, "1m"), abort_scale_down_delay="0s"),
                            provider="gateway"))
    sim.desired = 2
    sim.run_until(lambda s: weight(s) == 30)
    sim.tick(1, command="abort@1")
    assert 2 in sim.running  # the route change is not confirmed in its own pass
    sim.tick(0.1)
    assert sim.running == {1}


def test_replicas_provider_counts_the_service_update_as_confirmed() -> None:
    sim = serving(make_spec(canary((30, "1m"), abort_scale_down_delay="0s")))
    sim.desired = 2
    sim.run_until(lambda s: weight(s) == 30)
    d = sim.tick(1, command="abort@1")
    assert [a for a in d.actions if isinstance(a, SetTraffic | RemoveVersion)] == [
        SetTraffic(1, None, 0, 0), RemoveVersion(2)]


def test_a_drain_survives_a_restart() -> None:
    sim = serving(make_spec(canary((30, "1m"), abort_scale_down_delay="30s",
                                   analysis=analysis(failure_limit=1)), provider="gateway"))
    sim.desired = 2
    sim.measure = erroring
    sim.run_until(lambda s: weight(s) == 30)
    sim.run_until(lambda s: s.status.phase == "RolledBack", limit=10)
    sim.run(10)
    sim.status = stored(sim.status)  # the operator restarts, reading status back
    sim.run_until(lambda s: 2 not in s.running, limit=30)
    assert 2 in removals(sim)


def test_a_refused_route_holds_the_rollout_and_is_reported() -> None:
    sim = serving(make_spec(canary((20, "2s"), (60, "2s")), provider="gateway"))
    assert conditions(sim)["RouteAccepted"][:2] == ("Unknown", "Pending")  # just written
    sim.tick(1)
    assert conditions(sim)["RouteAccepted"][:2] == ("True", "Accepted")
    sim.refusal = GATEWAY_REFUSAL
    sim.desired = 2
    sim.run(30)
    assert sim.status.stable_version == 1 and sim.status.candidate_version == 2
    assert weight(sim) == 0  # never advanced past Starting
    assert conditions(sim)["RouteAccepted"] == ("False", *GATEWAY_REFUSAL)
    assert sim.reasons().count("RouteRefused") == 1  # on the transition only
    assert "the gateway refused the GRPCRoute: NotAllowedByListeners" in sim.status.message
    sim.tick(1, command="promote-full@1")
    assert sim.status.stable_version == 1 and sim.reasons()[-1] == "PromoteRefused"
    assert sim.decisions[-1].requeue_after == 5.0
    sim.refusal = None
    sim.run_until(lambda s: s.status.stable_version == 2, limit=30)
    assert conditions(sim)["RouteAccepted"][:2] == ("True", "Accepted")
    assert "RouteAccepted" in sim.reasons()


def test_a_refusal_mid_rollout_holds_the_step() -> None:
    sim = serving(make_spec(canary((20, "2s"), (60, "2s")), provider="gateway"))
    sim.desired = 2
    sim.run_until(lambda s: weight(s) == 20)
    sim.refusal = GATEWAY_REFUSAL
    sim.run(20)
    assert weight(sim) == 20 and sim.status.stable_version == 1


def test_a_route_not_yet_taken_holds_the_step() -> None:
    sim = serving(make_spec(canary((20, "2s"), (60, "2s")), provider="gateway"))
    sim.desired = 2
    sim.run_until(lambda s: weight(s) == 20)
    sim.accepting = False
    sim.run(20)
    assert weight(sim) == 20  # the first step's route was never confirmed: no second step
    assert "waiting for the gateway to accept generation" in sim.status.message
    assert conditions(sim)["RouteAccepted"][0] == "True"  # pending keeps the last verdict
    sim.accepting = True
    sim.run_until(lambda s: s.status.stable_version == 2, limit=10)


def test_replicas_provider_has_no_route_condition() -> None:
    sim = serving(make_spec(canary((20, "2s"))))
    assert "RouteAccepted" not in conditions(sim)
