"""The moves of a rollout: start, enter a stage, promote, roll back, supersede, hold.

Each edits the status of a Tick; routes and scaling follow from the status afterwards (see
`actions`), which is what puts the route update before any scale-down.
"""

from __future__ import annotations

from datetime import timedelta

from modelship.core.durations import parse_duration
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


def start(t: Tick, version: int) -> None:
    st = t.status
    strategy = strategy_of(t.spec.rollout)
    st.candidate_version = version
    st.rolled_back_version = None
    # A warm version that was not ready cannot be fast-tracked: it is rolled out afresh.
    st.warm_versions = [w for w in st.warm_versions or [] if w.version != version] or None
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
           f"rolling out version {version} over stable version {st.stable_version} ({strategy})")


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
    t.emit("Normal", "StageStarted", describe_stage(stage, st.candidate_version, len(stages)))


def describe_stage(stage: Stage, version: int | None, count: int) -> str:
    if stage.name == "Shadow":
        return f"shadow: mirroring {stage.mirror}% of requests to version {version}"
    if stage.name == "Preview":
        return f"preview: version {version} runs beside stable with no live traffic"
    if stage.name == "PostSwitch":
        return f"switched: 100% to version {version}, the previous version stays warm"
    return (f"canary step {stage.step + 1}/{count}: {stage.weight}% to version {version}"
            if stage.name == "Canary" else stage.name)


def advance(t: Tick, stages: list[Stage], position: int | None) -> None:
    """The next stage, or promotion after the last. None: not yet in a stage."""
    nxt = 0 if position is None else position + 1
    if nxt < len(stages):
        enter(t, stages, nxt)
    else:
        promote(t, "all stages passed")


def retire(t: Tick, version: int | None) -> None:
    """A former stable version stays warm for scaleDownDelay, then is removed."""
    rollout = t.spec.rollout
    delay = parse_duration(rollout.scale_down_delay) if rollout is not None else 0.0
    if version is None or delay <= 0:
        return
    until = format_time(t.now + timedelta(seconds=delay))
    kept = [w for w in t.status.warm_versions or [] if w.version != version]
    t.status.warm_versions = [*kept, WarmVersion(version=version, until=until)]


def _finish(t: Tick, outcome: Outcome, reason: str) -> int:
    """Close the current rollout in history and send all traffic to stable."""
    st = t.status
    assert st.candidate_version is not None
    candidate = st.candidate_version
    strategy = st.rollout.strategy if st.rollout is not None else strategy_of(t.spec.rollout)
    started = st.rollout.started_at if st.rollout is not None else None
    t.record(candidate, outcome, reason, strategy, started)
    st.candidate_version = None
    st.rollout = None
    st.weights = Weights()
    return candidate


def promote(t: Tick, reason: str) -> None:
    st = t.status
    previous = st.stable_version
    candidate = _finish(t, "Promoted", reason)
    st.stable_version = candidate
    retire(t, previous)
    t.emit("Normal", "Promoted", f"version {candidate} promoted over version {previous}: "
                                 f"{reason}")


def roll_back(t: Tick, outcome: Outcome, reason: str) -> None:
    """All traffic back to stable; the candidate is remembered so that it is not rolled out
    again while the spec still names it."""
    candidate = _finish(t, outcome, reason)
    t.status.rolled_back_version = candidate
    verb = "aborted" if outcome == "Aborted" else "rolled back"
    t.emit("Warning", "Aborted" if outcome == "Aborted" else "RolledBack",
           f"version {candidate} {verb}, traffic back on version {t.status.stable_version}: "
           f"{reason}")


def supersede(t: Tick, reason: str) -> None:
    candidate = _finish(t, "Superseded", reason)
    t.emit("Normal", "Superseded", f"rollout of version {candidate} stopped: {reason}")


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
    t.emit("Warning", "RolloutHeld", f"rollout of version {t.status.candidate_version} "
                                     f"held: {reason}")


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
    t.emit("Normal", "Resumed", f"rollout of version {t.status.candidate_version} resumed: "
                                "analysis is conclusive again")


def fast_track(t: Tick, version: int) -> bool:
    """Switch straight back to a recently stable version that is still warm and ready."""
    st = t.status
    if not any(w.version == version for w in st.warm_versions or []) or not t.ready(version):
        return False
    previous = st.stable_version
    st.warm_versions = [w for w in st.warm_versions or [] if w.version != version] or None
    reason = f"version {version} was still warm"
    t.record(version, "Promoted", f"fast track: {reason}", "fastTrack", t.at)
    st.stable_version = version
    st.rolled_back_version = None
    st.weights = Weights()
    retire(t, previous)
    t.emit("Normal", "FastTrack", f"switched back to version {version} at once: {reason}")
    return True
