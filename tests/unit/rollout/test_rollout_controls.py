"""Manual controls: abort, promote, promote-full, pause, resume, retry."""

from __future__ import annotations

import pytest

from modelship.core.rollout import Command, RemoveVersion, SetTraffic, parse_command
from modelship_api.modeldeployment import Canary, CanaryStep, Rollout
from tests.unit.rollout.sim import Sim, analysis, healthy, make_spec, phase, serving, unreachable


def start(*steps: tuple[int, str | None], **analysis_kwargs: object) -> Sim:
    rollout = Rollout(
        canary=Canary(steps=[CanaryStep(weight=w, pause=p) for w, p in steps]),
        analysis=analysis(**analysis_kwargs),
    )
    sim = serving(make_spec(rollout))
    sim.desired = 2
    return sim


def candidate_weight(sim: Sim) -> int:
    return sim.status.weights.candidate if sim.status.weights is not None else -1


def test_parse_command() -> None:
    assert parse_command(" promote-full@2025-01-01T00:00:00Z ") == Command(
        "promote-full", "promote-full@2025-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="expected <action>@<id>"):
        parse_command("promote")
    with pytest.raises(ValueError, match="unknown action 'skip'"):
        parse_command("skip@1")


def test_abort_routes_back_first_and_stays_until_retry() -> None:
    sim = start((30, "1m"))
    sim.run_until(lambda s: candidate_weight(s) == 30)
    d = sim.tick(1, command="abort@1")
    assert [a for a in d.actions if isinstance(a, SetTraffic | RemoveVersion)] == [
        SetTraffic(1, None, 0, 0)]
    assert sim.status.phase == "RolledBack"
    assert (sim.status.history or [])[0].outcome == "Aborted"
    conditions = {c.type: c for c in sim.status.conditions or []}
    assert conditions["Degraded"].reason == "Aborted"
    assert "aborted" in sim.status.message
    sim.run(60)
    assert sim.status.phase == "RolledBack" and sim.running == {1}
    assert sim.reasons().count("RolloutStarted") == 1
    sim.tick(1, command="retry@2")
    assert phase(sim) == "Progressing" and sim.status.candidate_version == 2
    sim.run_until(lambda s: s.status.phase == "Ready")
    assert sim.status.stable_version == 2


def test_abort_while_starting() -> None:
    sim = start((30, "1m"))
    sim.healthy_versions.discard(2)
    sim.tick(1)
    sim.tick(1, command="abort@x")
    assert sim.status.phase == "RolledBack" and sim.running == {1, 2}
    sim.run_until(lambda s: s.running == {1}, limit=31)


def test_promote_skips_the_pause_of_one_step() -> None:
    sim = start((10, "1h"), (50, "1h"))
    sim.run_until(lambda s: candidate_weight(s) == 10)
    sim.tick(1)
    sim.tick(1, command="promote@1")
    assert candidate_weight(sim) == 50
    sim.tick(1)
    sim.tick(1, command="promote@2")
    assert sim.status.phase == "Ready" and sim.status.stable_version == 2


def test_promote_is_refused_after_an_inconclusive_run() -> None:
    sim = start((10, None), (50, None), inconclusive_limit=100)
    sim.run_until(lambda s: candidate_weight(s) == 10)
    sim.measure = unreachable
    sim.tick(1)
    d = sim.tick(1, command="promote@1")
    assert candidate_weight(sim) == 10
    assert any(getattr(a, "reason", "") == "PromoteRefused" for a in d.actions)
    assert sim.status.last_command == "promote@1"
    sim.measure = healthy
    sim.tick(1)
    sim.tick(1, command="promote@2")
    assert candidate_weight(sim) == 50


def test_promote_full_overrules_steps_and_analysis() -> None:
    sim = start((10, "1h"), (50, "1h"), inconclusive_limit=100)
    sim.run_until(lambda s: candidate_weight(s) == 10)
    sim.measure = unreachable
    sim.tick(1)
    d = sim.tick(1, command="promote-full@1")
    assert sim.status.phase == "Ready" and sim.status.stable_version == 2
    assert d.finished is not None and "promote --full" in d.finished.reason


def test_promote_full_needs_a_ready_candidate() -> None:
    sim = start((10, "1h"))
    sim.healthy_versions.discard(2)
    sim.tick(1)
    sim.tick(1, command="promote-full@1")
    assert sim.status.candidate_version == 2 and sim.status.stable_version == 1
    assert "PromoteRefused" in sim.reasons()


def test_pause_holds_the_step_and_resume_goes_on() -> None:
    sim = start((10, "2s"), (50, "2s"))
    sim.run_until(lambda s: candidate_weight(s) == 10)
    sim.tick(0, command="pause@1")
    assert sim.status.phase == "Paused"
    sim.run(30)
    assert candidate_weight(sim) == 10
    sim.tick(1, command="resume@2")
    assert phase(sim) == "Progressing"
    sim.run_until(lambda s: s.status.phase == "Ready", limit=10)


def test_a_command_acts_once_even_if_the_annotation_stays() -> None:
    sim = start((10, "1h"), (20, "1h"), (30, "1h"))
    sim.run_until(lambda s: candidate_weight(s) == 10)
    sim.tick(1)
    for _ in range(5):
        sim.tick(1, command="promote@same")
    assert candidate_weight(sim) == 20


def test_a_command_with_nothing_to_act_on_is_reported() -> None:
    sim = start((10, "1h"))
    sim.desired = 1
    d = sim.tick(1, command="pause@1")
    assert any(getattr(a, "reason", "") == "CommandIgnored" for a in d.actions)
    assert sim.status.last_command == "pause@1"
