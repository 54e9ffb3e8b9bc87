"""Phase, message and the Ready / Progressing / Degraded conditions, derived from the status
the tick arrived at (one place, so they can never disagree)."""

from __future__ import annotations

from modelship.core.conditions import set_condition
from modelship.core.releases import Release
from modelship.core.rollout.clock import elapsed
from modelship.core.rollout.stages import STARTING, locate, stages_of
from modelship.core.rollout.tick import Tick
from modelship.core.rollout.transitions import describe_stage, progress_deadline
from modelship_api.common import Condition
from modelship_api.modeldeployment import Phase


def _waiting(t: Tick, release: Release) -> str:
    obs = t.obs.versions.get(release)
    if obs is None and release in t.creating:
        # What the cluster holds once this pass's actions are applied (the status is
        # written after them): the next pass, which sees the Deployment, then has nothing
        # new to write (a thousand new ModelDeployments, a thousand status writes fewer).
        return f"{release}: 0/{t.creating[release]} Triton pods ready"
    if obs is None:
        return f"creating the Triton Deployment of {release}"
    detail = "; ".join(dict.fromkeys(obs.problems))
    base = f"{release}: {obs.ready_replicas}/{obs.replicas} Triton pods ready"
    return f"{base} ({detail})" if detail else base


def _progress_message(t: Tick) -> str:
    st = t.status
    rollout = st.rollout
    candidate = t.candidate
    assert rollout is not None and candidate is not None
    if rollout.stage == STARTING:
        text = f"starting: {_waiting(t, candidate)}"
    else:
        stages = stages_of(t.spec.rollout)
        pos = locate(stages, rollout.stage, rollout.step)
        text = (describe_stage(stages[pos], candidate, len(stages)) if pos is not None
                else rollout.stage)
        if pos is not None and stages[pos].manual and not rollout.paused:
            text += "; advances on `modelship promote`"
        if not t.ready(candidate):
            text += f"; not ready: {_waiting(t, candidate)}"
    if rollout.paused:
        text += f"; paused: {rollout.pause_reason}"
    if t.waiting_for:
        text += f"; held: {t.waiting_for}"
    return text


def summarize(t: Tick, desired: Release | None) -> None:
    st = t.status
    gen = t.obs.generation
    ready = progressing = degraded = (False, "", "")
    phase: Phase
    if t.blocked_reason:
        phase, message = "Failed", t.blocked_message
        degraded = (True, t.blocked_reason, message)
        ready = (False, t.blocked_reason, message)
        progressing = (False, t.blocked_reason, message)
    elif st.stable_version is None:
        phase = "Pending"
        message = (t.obs.pending_reason if desired is None
                   else _waiting(t, desired))
        ready = (False, "NoVersion" if desired is None else "WaitingForTriton", message)
        late = (desired is not None and st.rollout is not None and st.rollout.started_at
                is not None and elapsed(st.rollout.started_at, t.now) > progress_deadline(t))
        progressing = ((False, "ProgressDeadlineExceeded", message) if late
                       else (desired is not None, "NewVersion", message))
        degraded = (late, "ProgressDeadlineExceeded" if late else "", message if late else "")
    elif st.candidate_version is not None:
        assert st.rollout is not None
        phase = "Paused" if st.rollout.paused else "Progressing"
        message = _progress_message(t)
        reason = "Paused" if st.rollout.paused else "RollingOut"
        ready = (False, reason, message)
        progressing = (True, reason, message)
    elif desired is not None and t.rolled_back == desired:
        last = next((h for h in st.history or []
                     if (h.version, h.revision or 0) == desired), None)
        outcome = last.outcome if last is not None else "RolledBack"
        phase = "RolledBack"
        change = ("spec.runtime" if t.stable is not None and desired.version == t.stable.version
                  else "spec.model.version")
        message = (f"{desired} {'aborted' if outcome == 'Aborted' else 'rolled back'}"
                   f"{': ' + last.reason if last is not None and last.reason else ''}; "
                   f"serving {t.stable}; change {change} or run `modelship retry`")
        ready = (False, outcome, message)
        degraded = (True, outcome, message)
    else:
        phase = "Ready"
        message = f"serving {t.spec.model.name} {t.stable}"
        ready = (True, "Serving", message)
    st.phase = phase
    st.message = message
    for type_, (ok, reason, text) in (("Ready", ready), ("Progressing", progressing),
                                      ("Degraded", degraded)):
        st.conditions = set_condition(st.conditions, Condition(
            type=type_, status="True" if ok else "False", reason=reason or "AsExpected",
            message=text, observed_generation=gen), t.at)
