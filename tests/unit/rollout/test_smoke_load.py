"""The smoke load's plan: a blue-green with analysis and no client traffic promotes on its
own once the operator sends its sample to the preview, and holds forever without it; the
plan follows the stage, stops with the rollout and at maxDuration, and survives a restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelship.core import names
from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship.core.smoke import infer_body, ready_addresses, smoke_plan
from modelship_api.modeldeployment import BlueGreen, Canary, CanaryStep, Rollout, SmokeLoad
from tests.unit.rollout.sim import Sim, analysis, erroring, make_spec, serving, stored

SAMPLE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 1, 1, 1]}]}


def blue_green(smoke: dict[str, Any] | None, **kwargs: Any) -> Sim:
    rollout = Rollout(
        blue_green=BlueGreen(preview_duration="10s", post_switch_duration="5s"),
        analysis=analysis(window="2s", inconclusive_limit=3),
        smoke_load=SmokeLoad.model_validate(smoke) if smoke is not None else None,
        scale_down_delay="0s", **kwargs)
    sim = serving(make_spec(rollout, provider="gateway"))
    sim.desired = 2
    return sim


def run_without_clients(sim: Sim, seconds: float) -> list[int | None]:
    """Tick once a second; the only requests any version serves are the smoke load's (the
    window's count at the planned rate). Returns the version the plan targeted each tick."""
    targets: list[int | None] = []
    for _ in range(int(seconds)):
        plan = smoke_plan(sim.spec, sim.status, sim.now)
        targets.append(plan.version if plan is not None else None)
        window = parse_duration(sim.spec.rollout.analysis.window)  # type: ignore[union-attr]
        sim.requests = plan.rate * window if plan is not None else 0.0
        sim.tick(1)
        if sim.status.phase in ("Ready", "RolledBack") and sim.status.candidate_version is None:
            break
    return targets


def test_without_a_smoke_load_a_preview_without_clients_never_promotes() -> None:
    sim = blue_green(None)
    run_without_clients(sim, 120)
    assert sim.status.stable_version == 1 and sim.status.candidate_version == 2
    assert sim.status.analysis is not None and sim.status.analysis.last_result == "Inconclusive"
    assert sim.status.rollout is not None and sim.status.rollout.held_for_data


def test_the_smoke_load_lets_a_preview_promote_on_its_own() -> None:
    sim = blue_green({**SAMPLE, "rate": 5, "during": "EveryStage"})
    targets = run_without_clients(sim, 120)
    assert sim.status.phase == "Ready" and sim.status.stable_version == 2
    assert (sim.status.history or [])[0].outcome == "Promoted"
    assert 2 in targets  # the preview got the load
    assert smoke_plan(sim.spec, sim.status, sim.now) is None  # promoted: the load stops


def test_by_default_only_the_zero_weight_stage_gets_the_load() -> None:
    sim = blue_green({**SAMPLE, "rate": 5})
    stages: dict[str, set[bool]] = {}
    for _ in range(40):
        plan = smoke_plan(sim.spec, sim.status, sim.now)
        stage = sim.status.rollout.stage if sim.status.rollout is not None else ""
        stages.setdefault(stage, set()).add(plan is not None)
        sim.requests = 10.0 if plan is not None or stage == "PostSwitch" else 0.0
        sim.tick(1)
    assert stages["Preview"] == {True}
    assert stages["PostSwitch"] == {False}  # clients have the candidate now
    assert stages.get("Starting", {False}) == {False}  # the candidate is not routed yet
    assert sim.status.stable_version == 2


def test_a_bad_preview_fed_by_the_smoke_load_rolls_back() -> None:
    sim = blue_green({**SAMPLE, "rate": 5})
    sim.measure = erroring
    run_without_clients(sim, 60)
    assert sim.status.phase == "RolledBack" and sim.status.stable_version == 1
    assert smoke_plan(sim.spec, sim.status, sim.now) is None


def test_the_load_ends_max_duration_after_the_stage_began_even_across_a_restart() -> None:
    sim = blue_green({**SAMPLE, "rate": 5, "maxDuration": "3s"})
    sim.spec.rollout.blue_green.preview_duration = "1h"  # type: ignore[union-attr]
    sim.run_until(lambda s: s.status.rollout is not None and s.status.rollout.stage == "Preview")
    began = sim.now
    plan = smoke_plan(sim.spec, sim.status, sim.now)
    assert plan is not None and plan.version == 2 and plan.rate == 5
    assert plan.until == began + timedelta(seconds=3)
    restarted = stored(sim.status)  # a new operator reads status back
    assert smoke_plan(sim.spec, restarted, began + timedelta(seconds=2)) == plan
    assert smoke_plan(sim.spec, restarted, began + timedelta(seconds=3)) is None


def test_a_canary_step_of_weight_zero_gets_the_load_and_weighted_steps_do_not() -> None:
    rollout = Rollout(canary=Canary(steps=[CanaryStep(weight=0, pause="5s"),
                                           CanaryStep(weight=50, pause="5s")]),
                      analysis=analysis(), smoke_load=SmokeLoad.model_validate(SAMPLE))
    sim = serving(make_spec(rollout, provider="gateway"))
    sim.desired = 2
    seen: dict[int, set[bool]] = {}
    for _ in range(30):
        weights = sim.status.weights
        if sim.status.rollout is not None and sim.status.rollout.stage == "Canary":
            assert weights is not None
            seen.setdefault(weights.candidate, set()).add(
                smoke_plan(sim.spec, sim.status, sim.now) is not None)
        sim.tick(1)
    assert seen == {0: {True}, 50: {False}}


def test_the_request_body_has_the_types_triton_parses() -> None:
    load = SmokeLoad.model_validate({"inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [1, 2], "data": [3, 4]},
        {"name": "mask", "datatype": "BOOL", "shape": [2], "data": [1, 0]},
        {"name": "x", "datatype": "FP32", "shape": [1], "data": [0.5]}]})
    assert infer_body(load) == {"inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [1, 2], "data": [3, 4]},
        {"name": "mask", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        {"name": "x", "datatype": "FP32", "shape": [1], "data": [0.5]}]}
    assert all(type(v) is int for v in infer_body(load)["inputs"][0]["data"])


def test_only_ready_pods_not_being_deleted_are_sent_to() -> None:
    def pod(ip: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": ip}
        if deleting:
            meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        return {"metadata": meta, "status": {"podIP": ip, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False"}]}}
    assert ready_addresses([pod("10.0.0.2", True), pod("10.0.0.1", True),
                            pod("10.0.0.3", False), pod("10.0.0.4", True, True)]) == (
        "10.0.0.1", "10.0.0.2")


def test_a_new_revision_of_the_stable_version_gets_the_load_not_the_stable() -> None:
    """Stable and candidate share version 1; the load goes to the candidate's pods (their
    model-version label is the release's, `1-r1`), never the stable's."""
    rollout = Rollout(blue_green=BlueGreen(preview_duration="1h", post_switch_duration="5s"),
                      analysis=analysis(), smoke_load=SmokeLoad.model_validate(SAMPLE))
    sim = serving(make_spec(rollout, version=1, provider="gateway"), version=1, template="A")
    sim.template = "B"
    sim.run_until(lambda s: s.status.rollout is not None and s.status.rollout.stage == "Preview")
    plan = smoke_plan(sim.spec, sim.status, sim.now)
    assert plan is not None and plan.release == Release(1, 1)
    assert names.version_selector("md", plan.release)["modelship.io/model-version"] == "1-r1"
