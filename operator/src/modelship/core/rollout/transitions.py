"""The moves of a rollout: start, enter a stage, promote, roll back, supersede, hold.

Each edits the status of a Tick; routes and scaling follow from the status afterwards (see
`actions`), which is what puts the route update before any scale-down.
"""

from __future__ import annotations

from datetime import timedelta

from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship.core.rollout import routing
from modelship.core.rollout.clock import format_time
from modelship.core.rollout.stages import STARTING, Stage, stages_of, strategy_of
from modelship.core.rollout.tick import Outcome, Tick
from modelship_api.modeldeployment import (
    AnalysisStatus,
    Rollout,
    RolloutStatus,
    WarmVersion,
    Weights,
)


def progress_deadline(t: Tick) -> float:
    """Seconds the candidate has to become ready; without a rollout block, the default."""
    rollout = t.spec.rollout or Rollout()
    return parse_duration(rollout.progress_deadline)


def start(t: Tick, release: Release) -> None:
    st = t.status
    strategy = strategy_of(t.spec.rollout)
    t.set_candidate(release, t.obs.template)
    t.set_rolled_back(None, None)
    # A warm version that was not ready cannot be fast-tracked: it is rolled out afresh.
    st.warm_versions = [w for w in st.warm_versions or []
                        if routing.warm_release(w) != release] or None
    if routing.plan_shares_service(t.spec, stages_of(t.spec.rollout)):
        # The Service of a weighted step would select a warm version's pods too: it goes
        # now, so it is gone by the time the candidate is ready for its first weight.
        st.warm_versions = None
    st.rollout = RolloutStatus(strategy=strategy, stage=STARTING, step=0, started_at=t.at,
                               stage_started_at=t.at)
    has_analysis = t.spec.rollout is not None and t.spec.rollout.analysis is not None
    st.analysis = AnalysisStatus() if has_analysis else None
    st.weights = Weights()
    t.emit("Normal", "RolloutStarted",
           f"rolling out {release} over stable {t.stable} ({strategy})")


def enter(t: Tick, stages: list[Stage], position: int) -> None:
    """Move to stage `position`: set its weights, restart its clock and its success count."""
    st = t.status
    assert st.rollout is not None
    stage = stages[position]
    st.rollout.stage = stage.name
    st.rollout.step = stage.step
    st.rollout.stage_started_at = t.at
    st.rollout.traffic_since = st.rollout.traffic_since or t.at
    st.weights = Weights(stable=100 - stage.weight, candidate=stage.weight, mirror=stage.mirror)
    if st.analysis is not None:
        st.analysis.successful_runs = 0
    t.emit("Normal", "StageStarted", describe_stage(stage, t.candidate, len(stages)))


def describe_stage(stage: Stage, release: Release | None, count: int) -> str:
    if stage.name == "Shadow":
        return f"shadow: mirroring {stage.mirror}% of requests to {release}"
    if stage.name == "Preview":
        return f"preview: {release} runs beside stable with no live traffic"
    if stage.name == "PostSwitch":
        return f"switched: 100% to {release}, the previous version stays warm"
    return (f"canary step {stage.step + 1}/{count}: {stage.weight}% to {release}"
            if stage.name == "Canary" else stage.name)


def advance(t: Tick, stages: list[Stage], position: int | None) -> None:
    """The next stage, or promotion after the last. None: not yet in a stage."""
    nxt = 0 if position is None else position + 1
    if nxt < len(stages):
        enter(t, stages, nxt)
    else:
        promote(t, "all stages passed")


def retire(t: Tick, release: Release | None, template: str | None) -> None:
    """A former stable version stays warm for scaleDownDelay, then is removed."""
    rollout = t.spec.rollout
    delay = parse_duration(rollout.scale_down_delay) if rollout is not None else 0.0
    if release is None or delay <= 0:
        return
    until = format_time(t.now + timedelta(seconds=delay))
    kept = [w for w in t.status.warm_versions or [] if routing.warm_release(w) != release]
    t.status.warm_versions = [*kept, WarmVersion(version=release.version,
                                                 revision=release.revision or None,
                                                 template=template, until=until)]


def _finish(t: Tick, outcome: Outcome, reason: str) -> tuple[Release, str | None]:
    """Close the current rollout in history and send all traffic to stable."""
    st = t.status
    candidate = t.candidate
    assert candidate is not None
    template = st.candidate_template
    strategy = st.rollout.strategy if st.rollout is not None else strategy_of(t.spec.rollout)
    started = st.rollout.started_at if st.rollout is not None else None
    t.record(candidate, outcome, reason, strategy, started)
    t.set_candidate(None, None)
    st.rollout = None
    st.weights = Weights()
    return candidate, template


def promote(t: Tick, reason: str) -> None:
    st = t.status
    previous, previous_template = t.stable, st.stable_template
    candidate, template = _finish(t, "Promoted", reason)
    t.set_stable(candidate, template)
    retire(t, previous, previous_template)
    t.emit("Normal", "Promoted", f"{candidate} promoted over {previous}: {reason}")


def roll_back(t: Tick, outcome: Outcome, reason: str) -> None:
    """All traffic back to stable; the candidate is remembered so that it is not rolled out
    again while the spec still names it."""
    candidate, template = _finish(t, outcome, reason)
    t.set_rolled_back(candidate, template)
    verb = "aborted" if outcome == "Aborted" else "rolled back"
    t.emit("Warning", "Aborted" if outcome == "Aborted" else "RolledBack",
           f"{candidate} {verb}, traffic back on {t.stable}: {reason}")


def supersede(t: Tick, reason: str) -> None:
    candidate, _ = _finish(t, "Superseded", reason)
    t.emit("Normal", "Superseded", f"rollout of {candidate} stopped: {reason}")


def hold(t: Tick, reason: str, for_data: bool = False) -> None:
    """Pause the rollout; an existing pause keeps its first reason (and is not re-announced
    on every later inconclusive run). `for_data`: the hold lifts itself once analysis is
    conclusive again (see lift_hold)."""
    rollout = t.status.rollout
    assert rollout is not None
    if rollout.paused:
        return
    rollout.paused = True
    rollout.pause_reason = reason
    rollout.held_for_data = for_data
    t.emit("Warning", "RolloutHeld", f"rollout of {t.candidate} held: {reason}")


def lift_hold(t: Tick) -> None:
    """A hold for missing data ends at a conclusive, successful run: the step goes on from
    there (its pause counts from the start of the step, as before the hold)."""
    rollout = t.status.rollout
    assert rollout is not None
    if not (rollout.paused and rollout.held_for_data):
        return
    rollout.paused = False
    rollout.held_for_data = False
    rollout.pause_reason = ""
    t.emit("Normal", "Resumed", f"rollout of {t.candidate} resumed: "
                                "analysis is conclusive again")


def fast_track(t: Tick, release: Release) -> bool:
    """Switch straight back to a recently stable version that is still warm and ready."""
    st = t.status
    warm = next((w for w in st.warm_versions or [] if routing.warm_release(w) == release),
                None)
    if warm is None or not t.ready(release):
        return False
    previous, previous_template = t.stable, st.stable_template
    st.warm_versions = [w for w in st.warm_versions or [] if w is not warm] or None
    reason = f"{release} was still warm"
    t.record(release, "Promoted", f"fast track: {reason}", "fastTrack", t.at)
    t.set_stable(release, warm.template)
    t.set_rolled_back(None, None)
    st.weights = Weights()
    retire(t, previous, previous_template)
    t.emit("Normal", "FastTrack", f"switched back to {release} at once: {reason}")
    return True
