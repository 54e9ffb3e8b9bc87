"""The rollout state machine: one pure function from (spec, status, observations, now) to
the new status and the actions that get the cluster there.

Everything that must survive an operator restart is in the status it returns; nothing is
kept in memory, so a tick resumed from a stored status decides exactly what an
uninterrupted run would have.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelship.core.analysis import Measurement, analysis_checks, check_errors, record_run, verdict
from modelship.core.releases import Release
from modelship.core.rollout import revisions, routing
from modelship.core.rollout import transitions as tr
from modelship.core.rollout.clock import elapsed, format_time, parse_time
from modelship.core.rollout.decisions import (
    Action,
    Decision,
    EnsureVersion,
    RemoveVersion,
    SetTraffic,
)
from modelship.core.rollout.inputs import Observations
from modelship.core.rollout.schedule import active_analysis, analysis_due_at
from modelship.core.rollout.stages import STARTING, Stage, locate, stages_of, strategy_of
from modelship.core.rollout.summary import summarize
from modelship.core.rollout.tick import Tick
from modelship_api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RolloutStatus,
    Weights,
)

# While a version is not ready, look again this often even without a watch event.
READINESS_POLL_S = 5.0


def step(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, obs: Observations,
         now: datetime | str) -> Decision:
    """Decide one tick. `now` is an aware datetime or an RFC 3339 string."""
    moment = parse_time(now)
    st = status.model_copy(deep=True)
    command = obs.command
    if command is not None and command.raw == status.last_command:
        command = None  # already handled; the annotation merely stayed
    t = Tick(spec=spec, obs=obs, now=moment, at=format_time(moment), status=st, command=command)
    if command is not None:
        st.last_command = command.raw
    st.observed_generation = obs.generation
    revisions.adopt(st, obs.template)
    desired = _desired(t)
    st.desired_version = obs.desired_version
    st.desired_revision = (desired.revision or None if desired is not None
                           and obs.desired_version is not None else None)
    st.desired_template = obs.template
    _expire_warm(t)

    if desired is None:
        pass
    elif st.stable_version is None:
        _first_version(t, desired, status.desired_version)
    elif desired == t.stable:
        _at_stable(t)
    else:
        _toward(t, desired)
    if t.command is not None and not t.command_used:
        t.emit("Normal", "CommandIgnored",
               f"{t.command.action}: nothing to {t.command.action} in phase {status.phase}")
    routing.update_drains(t, status)
    routing.update_route_condition(t)
    actions = _actions(t, desired)
    t.creating = {a.release: a.replicas for a in actions
                  if isinstance(a, EnsureVersion) and a.release not in obs.versions}
    summarize(t, desired)
    return Decision(status=st, actions=actions, requeue_after=_requeue(t),
                    finished=t.finished, analysis_run=t.run)


def _desired(t: Tick) -> Release | None:
    """The release the spec asks for: its version, with the revision of its pod template.
    When the version resolves to none (e.g. no blessed TrainingRun yet), whatever is under
    way carries on rather than being undone."""
    obs = t.obs
    if obs.desired_version is not None:
        return Release(obs.desired_version,
                       revisions.revision_for(t.status, obs.template, obs.versions))
    for release in (t.candidate, t.rolled_back, t.stable):
        if release is not None:
            return release
    return None


def _expire_warm(t: Tick) -> None:
    st = t.status
    if st.warm_versions is None:
        return
    st.warm_versions = [w for w in st.warm_versions if parse_time(w.until) > t.now] or None


def _first_version(t: Tick, desired: Release, previous_desired: int | None) -> None:
    """Nothing serves yet: there is no stable version to protect, so no rollout."""
    st = t.status
    if t.ready(desired):
        t.set_stable(desired, t.obs.template)
        st.rollout = None
        st.weights = Weights()
        t.emit("Normal", "Serving", f"serving {desired}")
    elif st.rollout is None or previous_desired != desired.version:
        # Remembered only to time the progress deadline of this first version.
        st.rollout = RolloutStatus(strategy=strategy_of(t.spec.rollout), stage=STARTING,
                                   started_at=t.at, stage_started_at=t.at)


def _at_stable(t: Tick) -> None:
    """The spec names the stable version: any rollout stops and nothing is left Degraded."""
    st = t.status
    if st.candidate_version is not None:
        tr.supersede(t, f"spec reverted to stable {t.stable}")
    t.set_rolled_back(None, None)
    st.rollout = None


def _blocked(t: Tick) -> bool:
    """Reasons a rollout cannot start; the stable version keeps serving meanwhile."""
    rollout = t.spec.rollout
    if rollout is None:
        return False
    if rollout.shadow is not None and not t.obs.mirroring_supported:
        t.blocked_reason = "MirroringUnsupported"
        t.blocked_message = ("rollout.shadow needs a traffic provider that mirrors requests: "
                             "use traffic.provider gateway, or a canary")
        return True
    errors = check_errors(rollout.analysis) if rollout.analysis is not None else []
    if errors:
        t.blocked_reason = "InvalidCheck"
        t.blocked_message = "; ".join(errors)
        return True
    return False


def _toward(t: Tick, desired: Release) -> None:
    st = t.status
    if st.candidate_version is not None and t.candidate != desired:
        tr.supersede(t, f"spec moved on to {desired}")
    if st.candidate_version is None:
        if t.rolled_back == desired:
            if not t.take("retry"):
                return  # stays RolledBack until the spec moves on or a retry
            t.emit("Normal", "Retry", f"retrying {desired}")
        if _blocked(t) or tr.fast_track(t, desired):
            return
        tr.start(t, desired)
    if st.rollout is None:  # a candidate without a rollout record: begin again
        tr.start(t, desired)
    _progress(t)


def _progress(t: Tick) -> None:
    st = t.status
    rollout = st.rollout
    candidate = t.candidate
    assert rollout is not None and candidate is not None
    stages = stages_of(t.spec.rollout)
    deadline = tr.progress_deadline(t)
    ready = t.ready(candidate)

    if t.take("abort"):
        tr.roll_back(t, "Aborted", "aborted by `modelship abort`")
        return
    if t.take("pause"):
        rollout.paused = True
        rollout.held_for_data = False
        rollout.pause_reason = "paused by `modelship pause`"
        t.emit("Normal", "Paused", f"rollout of {candidate} paused")
    if t.take("resume"):
        rollout.paused = False
        rollout.held_for_data = False
        rollout.pause_reason = ""
        if st.analysis is not None:
            st.analysis.consecutive_inconclusive = 0  # a hold starts counting afresh
        t.emit("Normal", "Resumed", f"rollout of {candidate} resumed")

    if rollout.stage == STARTING:
        if not ready:
            assert rollout.started_at is not None
            if elapsed(rollout.started_at, t.now) > deadline:
                tr.roll_back(t, "RolledBack", f"ProgressDeadlineExceeded: {candidate} "
                             f"not ready within {deadline:g}s")
                return
            _refuse_promotion(t, f"{candidate} is not ready")
            return
        blocker = _move_blocker(t, stages, 0)
        if blocker:
            t.waiting_for = blocker
            _refuse_promotion(t, blocker)
            return
        if not t.take("promote-full"):
            tr.advance(t, stages, None)
            return
        tr.promote(t, "promoted by `modelship promote --full`")
        return

    position = locate(stages, rollout.stage, rollout.step)
    if position is None:
        # The strategy changed under a running rollout: its stages begin again.
        tr.advance(t, stages, None)
        return
    stage = stages[position]
    if ready:
        rollout.unready_since = None
    else:
        rollout.unready_since = rollout.unready_since or t.at
        if elapsed(rollout.unready_since, t.now) > deadline:
            tr.roll_back(t, "RolledBack", f"{candidate} not ready for longer than the "
                         "progress deadline")
            return
    if stage.mirror > 0 and not t.obs.mirroring_supported:
        tr.roll_back(t, "RolledBack", "the traffic provider cannot mirror requests")
        return
    if not _analyse(t):
        return

    if t.take("promote-full"):
        why = (f"{candidate} is not ready" if not ready
               else routing.route_blocker(t))
        if why:
            t.emit("Warning", "PromoteRefused", why)
        else:
            tr.promote(t, "promoted by `modelship promote --full`")
        return
    if t.take("promote"):
        why = _promotion_blocker(t, ready) or _move_blocker(t, stages, position + 1)
        if why:
            t.emit("Warning", "PromoteRefused", why)
        else:
            tr.advance(t, stages, position)
        return
    if _may_advance(t, stage, ready):
        blocker = _move_blocker(t, stages, position + 1)
        if blocker:
            t.waiting_for = blocker
        else:
            tr.advance(t, stages, position)


def _analyse(t: Tick) -> bool:
    """Run the analysis of this tick when one is due; False when it rolled back."""
    st = t.status
    assert st.rollout is not None
    configured = t.spec.rollout.analysis if t.spec.rollout is not None else None
    if configured is not None and check_errors(configured):
        tr.hold(t, "invalid check: " + "; ".join(check_errors(configured)))
        return True
    analysis = active_analysis(t.spec, st)
    due = analysis_due_at(t.spec, st)
    measurements = t.obs.measurements
    if analysis is None or measurements is None or due is None or t.now < due:
        return True
    results = [verdict(check, measurements.get(check.name, Measurement(error="not measured")),
                       t.at, analysis.min_requests)
               for check in analysis_checks(analysis)]
    assert st.analysis is not None
    st.analysis, outcome = record_run(analysis, st.analysis, results, t.at)
    t.run = tuple(results)
    if outcome.action == "rollback":
        tr.roll_back(t, "RolledBack", outcome.reason)
        return False
    if outcome.action == "hold":
        tr.hold(t, outcome.reason, for_data=True)
    elif st.analysis.last_result == "Successful":
        tr.lift_hold(t)
    return True


def _move_blocker(t: Tick, stages: list[Stage], nxt: int) -> str:
    """Why the rollout cannot move to stage `nxt` (or promote, past the last) now: the
    route of this stage is not confirmed, or the next weight would reach a third version."""
    why = routing.route_blocker(t)
    if not why and nxt < len(stages):
        why = routing.weight_blocker(t, stages[nxt].weight)
    return why


def _promotion_blocker(t: Tick, ready: bool) -> str:
    """Why `modelship promote` cannot advance now: a human may skip a wait, not overrule a
    failing or inconclusive analysis (that is what `promote --full` is for)."""
    st = t.status
    if not ready:
        return f"{t.candidate} is not ready"
    last = st.analysis.last_result if st.analysis is not None else None
    if active_analysis(t.spec, st) is not None and last in ("Failed", "Inconclusive"):
        return f"the last analysis run was {last}; use `modelship promote --full` to overrule"
    return ""


def _refuse_promotion(t: Tick, why: str) -> None:
    for action in ("promote", "promote-full"):
        if t.take(action):
            t.emit("Warning", "PromoteRefused", why)


def _may_advance(t: Tick, stage: Stage, ready: bool) -> bool:
    st = t.status
    rollout = st.rollout
    assert rollout is not None and rollout.stage_started_at is not None
    if rollout.paused or not ready or stage.manual:
        return False
    if elapsed(rollout.stage_started_at, t.now) < stage.hold:
        return False
    if t.spec.rollout is None or t.spec.rollout.analysis is None:
        return True
    # Only a successful latest run in this stage advances: inconclusive never promotes.
    analysis = st.analysis
    return (analysis is not None and analysis.successful_runs >= 1
            and analysis.last_result == "Successful")


def _actions(t: Tick, desired: Release | None) -> tuple[Action, ...]:
    """Scale up what must run, route, then remove what no longer serves, then events."""
    st = t.status
    keep: list[Release] = []
    for release in (t.stable, t.candidate, *routing.warm(st)):
        if release is not None and release not in keep:
            keep.append(release)
    if st.stable_version is None and desired is not None:
        keep.append(desired)
    replicas = t.spec.runtime.replicas
    weights = st.weights
    actions: list[Action] = []
    for release in keep:
        count = replicas
        if (release == t.candidate and weights is not None
                and t.spec.traffic.provider == "replicas"):
            # The replicas provider's weight is the candidate's share of the pods.
            count = routing.candidate_replicas(replicas, weights.candidate)
        template = (revisions.template_of(st, release) if st.stable_version is not None
                    else t.obs.template)
        actions.append(EnsureVersion(release.version, count, release.revision, template))
    stable, candidate = t.stable, t.candidate
    if stable is not None:
        assert weights is not None
        actions.append(SetTraffic(stable.version, st.candidate_version, weights.candidate,
                                  weights.mirror, stable.revision,
                                  candidate.revision if candidate is not None else 0))
    actions += [RemoveVersion(r.version, r.revision) for r in sorted(t.obs.versions)
                if r not in keep and routing.removable(t, r)]
    actions += t.events
    return tuple(actions)


def _stage_end(t: Tick) -> datetime | None:
    """When the current stage's hold ends, if that alone could advance it."""
    rollout = t.status.rollout
    assert rollout is not None
    stages = stages_of(t.spec.rollout)
    pos = locate(stages, rollout.stage, rollout.step)
    if pos is None or rollout.paused or stages[pos].manual or rollout.stage_started_at is None:
        return None
    return parse_time(rollout.stage_started_at) + timedelta(seconds=stages[pos].hold)


def _requeue(t: Tick) -> float | None:
    """Seconds to the next moment time alone can change the decision."""
    st = t.status
    instants = [parse_time(w.until) for w in st.warm_versions or []]
    poll = False
    rollout = st.rollout
    if rollout is not None:
        deadline = timedelta(seconds=tr.progress_deadline(t))
        if rollout.stage == STARTING and rollout.started_at is not None:
            poll = True
            instants.append(parse_time(rollout.started_at) + deadline)
        elif st.candidate_version is not None:
            if rollout.unready_since is not None:
                poll = True
                instants.append(parse_time(rollout.unready_since) + deadline)
            end = _stage_end(t)
            if end is not None:
                instants.append(end)
    delays = [(x - t.now).total_seconds() for x in instants if x > t.now]
    delays += routing.route_delays(t)
    due = analysis_due_at(t.spec, st)
    if due is not None:
        delays.append(max(0.0, (due - t.now).total_seconds()))
    if poll:
        delays.append(READINESS_POLL_S)
    return min(delays) if delays else None
