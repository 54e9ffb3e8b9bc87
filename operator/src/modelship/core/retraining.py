"""Whether a ModelDeployment starts a retraining TrainingRun now, and whether the last
retrained version fixed the drift (pure).

Everything the decision needs comes in as values: the spec, the conditions with their
transition times, status.monitoring, the reviewed-sample readings from Prometheus, the
retraining bookkeeping in status and the retraining TrainingRuns the cluster holds. The
result is the new status.retraining, at most one run to create (with a name that depends
only on the ModelDeployment and the run's sequence number, so creating it twice is one run),
the RetrainingEffective condition, events, and when time alone could change the answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modelship.core.conditions import get_condition
from modelship.core.durations import parse_duration
from modelship.core.rollout.clock import format_time, parse_time
from modelship.core.rollout.decisions import Event
from modelship_api.common import Condition
from modelship_api.monitoring import MonitoringStatus
from modelship_api.retraining import (
    ANNOTATION_LABELS,
    ANNOTATION_SCORES,
    ANNOTATION_SEQUENCE,
    ANNOTATION_TRIGGER,
    EFFECTIVE_CONDITION,
    Retraining,
    RetrainingRun,
    RetrainingStatus,
)

DAY = timedelta(hours=24)
MAX_RUN_NAME = 52  # a TrainingRun's name limit (its Job and pods are named after it)
UNFINISHED = ("Pending", "Running", "Evaluating")
HISTORY = 20


@dataclass(frozen=True)
class Reviewed:
    """The review metrics of the stable version (`modelship review`'s gauges); None where
    Prometheus has no such series, `error` when it could not be asked."""

    accuracy: float | None = None
    samples: int | None = None
    labels_total: int | None = None
    error: str = ""


@dataclass(frozen=True)
class Inputs:
    spec: Retraining
    deployment: str  # the ModelDeployment's name
    created_at: str  # its creationTimestamp: a schedule counts from it before the first run
    conditions: Sequence[Condition] | None
    monitoring: MonitoringStatus | None
    stable_version: int | None
    candidate_version: int | None
    rollouts_ended: frozenset[int]  # versions whose rollout ended (status.history)
    previous: RetrainingStatus | None
    runs: Sequence[dict[str, Any]]  # the TrainingRuns labelled retrained-for this resource
    reviewed: Reviewed
    now: datetime


@dataclass(frozen=True)
class Start:
    """The TrainingRun to create."""

    name: str
    sequence: int
    trigger: str
    scores: str
    labels_total: int | None
    window: str
    drift_since: str | None = None  # DataDrift's transition, when DataDrift started it


@dataclass
class Plan:
    status: RetrainingStatus
    start: Start | None = None
    effective: Condition | None = None  # None: no retrained version to judge
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def run_name(deployment: str, sequence: int) -> str:
    """`<deployment>-retrain-<n>`; a long name is shortened with a digest of it, so two
    ModelDeployments never share a run name."""
    suffix = f"-retrain-{sequence}"
    if len(deployment) + len(suffix) <= MAX_RUN_NAME:
        return deployment + suffix
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:6]
    keep = MAX_RUN_NAME - len(suffix) - len(digest) - 1
    return f"{deployment[:keep].rstrip('-')}-{digest}{suffix}"


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def observed_run(obj: dict[str, Any]) -> RetrainingRun | None:
    """A retraining TrainingRun as the cluster shows it; None without a sequence number (not
    one the operator made)."""
    meta = obj.get("metadata") or {}
    notes = meta.get("annotations") or {}
    sequence = _int(notes.get(ANNOTATION_SEQUENCE))
    if sequence is None:
        return None
    status = obj.get("status") or {}
    version = status.get("version")
    return RetrainingRun(
        name=meta.get("name", ""), sequence=sequence,
        trigger=notes.get(ANNOTATION_TRIGGER, ""), scores=notes.get(ANNOTATION_SCORES, ""),
        labels_total=_int(notes.get(ANNOTATION_LABELS)),
        started_at=meta.get("creationTimestamp") or "",
        phase=status.get("phase") or "Pending",
        version=version if isinstance(version, int) else None)


def _track(status: RetrainingStatus, runs: Sequence[dict[str, Any]], stable: int | None,
           now: str, labels_total: int | None) -> None:
    """Fold the cluster's runs into status: adopt a run newer than status knows (created
    just before a restart or a refused status write), and follow the last run's phase. A
    run started while the reviewed-label count was unknown (the review page not yet
    scraped, Prometheus down) counts new labels from the first reading after its start:
    otherwise a run rejected then would keep every later one from starting, for good."""
    seen = {r.sequence: r for r in filter(None, map(observed_run, runs))}
    newest = max(seen) if seen else 0
    if newest > status.sequence:
        adopted = seen[newest]
        status.sequence, status.last_run = newest, adopted
        status.starts = [*(status.starts or []), adopted.started_at or now]
        status.history = [adopted, *(status.history or [])][:HISTORY]
    last = status.last_run
    if last is None:
        return
    current = seen.get(last.sequence)
    if current is not None:
        last.phase, last.version = current.phase, current.version or last.version
    elif last.phase in UNFINISHED:
        last.phase = "Deleted"  # gone before it finished: it runs no more
    if last.version is not None and last.version == stable and last.promoted_at is None:
        last.promoted_at = now
    if last.labels_total is None:
        last.labels_total = labels_total
    if status.history and status.history[0].sequence == last.sequence:
        status.history[0] = last.model_copy()


def _drift_scores(monitoring: MonitoringStatus | None) -> str:
    stats = [s for s in (monitoring.statistics or []) if s.source == "input" and s.drifted] \
        if monitoring is not None else []
    return ", ".join(f"{s.name} psi={s.psi:.3f}" if s.psi is not None else s.name
                     for s in stats)


def _model_age(monitoring: MonitoringStatus | None) -> str:
    age = monitoring.model_age_seconds if monitoring is not None else None
    if monitoring is not None and monitoring.age_source == "PublishTime":
        return f"model age at least {age or 0:.0f}s, published {monitoring.published_at}"
    return (f"model age {age or 0:.0f}s, training data from "
            f"{monitoring.data_time if monitoring else '?'}")


@dataclass(frozen=True)
class _Trigger:
    name: str
    scores: str
    window: str
    since: str | None = None


def _triggers(inputs: Inputs, status: RetrainingStatus
              ) -> tuple[list[_Trigger], list[datetime]]:
    """The triggers holding now, and when a trigger not holding yet would start to."""
    spec, now, mon = inputs.spec.triggers, inputs.now, inputs.monitoring
    holding, later = [], []
    window = (f"monitoring window {mon.window} of version {mon.version} at {mon.evaluated_at}"
              if mon is not None else "")
    drift = get_condition(list(inputs.conditions or []), "DataDrift")
    if spec.data_drift is not None and drift is not None and drift.status == "True" \
            and drift.last_transition_time:
        due = parse_time(drift.last_transition_time) + timedelta(
            seconds=parse_duration(spec.data_drift.for_))
        if due <= now:
            holding.append(_Trigger("DataDrift", f"DataDrift since "
                                    f"{drift.last_transition_time}: {_drift_scores(mon)}",
                                    window, since=drift.last_transition_time))
        else:
            later.append(due)
    stale = get_condition(list(inputs.conditions or []), "Stale")
    if spec.model_age and stale is not None and stale.status == "True":
        holding.append(_Trigger("ModelAge", _model_age(mon), window))
    accuracy, got = spec.reviewed_accuracy, inputs.reviewed
    if accuracy is not None and got.accuracy is not None and got.samples is not None \
            and got.samples >= accuracy.min_samples and got.accuracy < accuracy.below:
        holding.append(_Trigger(
            "ReviewedAccuracy", f"reviewed accuracy {got.accuracy:.3f} < {accuracy.below} "
            f"over {got.samples} labels", f"last {got.samples} reviewed labels of version "
            f"{inputs.stable_version}"))
    if spec.schedule is not None:
        since = status.last_run.started_at if status.last_run else inputs.created_at
        due = parse_time(since) + timedelta(seconds=parse_duration(spec.schedule.every))
        if due <= now:
            holding.append(_Trigger("Schedule", f"every {spec.schedule.every}, last start "
                                    f"{since}", ""))
        else:
            later.append(due)
    return holding, later


def _cleared(inputs: Inputs, run: RetrainingRun) -> bool:
    """The retrained version's own evaluation finds no input drift: DataDrift False and every
    input statistic's last score under the raise thresholds. Monitoring judges only the
    stable version, so an evaluation of the retrained version is one made after its
    promotion, whatever its time: the first is made in the promoting pass itself, stamped
    with that pass's start (before promotedAt), and an unchanged judgement is not stored
    again for minutes (core.drift.monitor.settle)."""
    mon = inputs.monitoring
    drift = get_condition(list(inputs.conditions or []), "DataDrift")
    if mon is None or mon.version != run.version or not mon.evaluated_at \
            or run.promoted_at is None or drift is None or drift.status != "False":
        return False
    inputs_ = [s for s in mon.statistics or [] if s.source == "input"]
    return bool(inputs_) and all(s.result == "Normal" and not s.drifted for s in inputs_)


def _effectiveness(inputs: Inputs, status: RetrainingStatus, plan: Plan,
                   later: list[datetime]) -> str:
    """RetrainingEffective for the newest retrained version that was promoted (it stands
    while a later run trains); the reason no new run may start while it is being verified
    ("" when none)."""
    run = next((r for r in status.history or [] if r.promoted_at is not None), None)
    if run is None or run.promoted_at is None or run.version is None:
        return ""
    before = get_condition(list(inputs.conditions or []), EFFECTIVE_CONDITION)
    deadline = parse_time(run.promoted_at) + timedelta(
        seconds=parse_duration(inputs.spec.verify_within))
    what = f"version {run.version} (retraining run {run.name}, trigger {run.trigger})"
    if _cleared(inputs, run) or (before is not None and before.status == "True"
                                 and f"version {run.version} " in before.message):
        cond = Condition(type=EFFECTIVE_CONDITION, status="True", reason="DriftCleared",
                         message=f"{what}: DataDrift cleared after its promotion")
        blocked = ""
    elif inputs.now >= deadline:
        cond = Condition(
            type=EFFECTIVE_CONDITION, status="False", reason="DriftPersists",
            message=f"{what}: DataDrift did not clear within verifyWithin "
            f"{inputs.spec.verify_within} of its promotion at {run.promoted_at}; the "
            "retraining did not fix the drift and a person is needed: look at the drifted "
            "statistics in status.monitoring and at the data the template trains on")
        blocked = ""
    else:
        cond = Condition(type=EFFECTIVE_CONDITION, status="Unknown", reason="Verifying",
                         message=f"{what}: DataDrift must clear by {format_time(deadline)}")
        later.append(deadline)
        blocked = f"verifying {what}: DataDrift must clear by {format_time(deadline)}"
    was = before.status if before is not None else "Unknown"
    if cond.status != was and cond.status == "True":
        plan.events.append(Event("Normal", "RetrainingEffective", cond.message))
    elif cond.status != was and cond.status == "False":
        plan.events.append(Event("Warning", "DriftPersists", cond.message))
    plan.effective = cond
    return blocked


def _blocked(inputs: Inputs, status: RetrainingStatus, later: list[datetime],
             ineffective: bool) -> str:
    """Why no run may start now ("" when one may); sets next_allowed_at."""
    spec, now, last = inputs.spec, inputs.now, status.last_run
    reasons = []
    if last is not None and last.phase in UNFINISHED:
        reasons.append(f"retraining run {last.name} is {last.phase} (one run at a time)")
    if last is not None and last.version is not None and last.promoted_at is None \
            and last.version not in inputs.rollouts_ended:
        # Its version is the one to judge next: the rollout decides, then verification.
        doing = "being rolled out" if last.version == inputs.candidate_version \
            else "not rolled out yet"
        reasons.append(f"version {last.version} of retraining run {last.name} is {doing}")
    allowed = []
    if last is not None and last.started_at:
        end = parse_time(last.started_at) + timedelta(seconds=parse_duration(spec.cooldown))
        if end > now:
            allowed.append(end)
            reasons.append(f"cooldown {spec.cooldown} until {format_time(end)}")
    starts = status.starts or []
    if len(starts) >= spec.max_per_day:
        end = parse_time(starts[-spec.max_per_day]) + DAY
        allowed.append(end)
        reasons.append(f"daily cap: {len(starts)} runs started in the last 24h "
                       f"(maxPerDay {spec.max_per_day}) until {format_time(end)}")
    # A run whose gate rejected it, or whose promoted version left the drift as it was,
    # would be repeated on the same data: only new reviewed labels justify another.
    failed = "was Rejected" if last is not None and last.phase == "Rejected" else \
        "did not clear the drift" if ineffective else ""
    if last is not None and failed and spec.min_new_labels > 0:
        total, before = inputs.reviewed.labels_total, last.labels_total
        if total is None or before is None:
            why = inputs.reviewed.error or "no modelship_reviewed_labels_total series"
            reasons.append(f"last run {last.name} {failed} and whether the reviewed data "
                           f"changed is unknown ({why})")
        elif total - before < spec.min_new_labels:
            reasons.append(f"last run {last.name} {failed} and the reviewed data has not "
                           f"changed: {total - before} new labels since, minNewLabels "
                           f"{spec.min_new_labels}")
    status.next_allowed_at = format_time(max(allowed)) if allowed else None
    later += allowed
    return "; ".join(reasons)


def decide(inputs: Inputs) -> Plan:
    now = format_time(inputs.now)
    status = (inputs.previous or RetrainingStatus()).model_copy(deep=True)
    _track(status, inputs.runs, inputs.stable_version, now, inputs.reviewed.labels_total)
    status.starts = [s for s in status.starts or []
                     if parse_time(s) + DAY > inputs.now][-100:] or None
    plan = Plan(status=status)
    holding, later = _triggers(inputs, status)
    verifying = _effectiveness(inputs, status, plan, later)
    ineffective = plan.effective is not None and plan.effective.status == "False" \
        and status.last_run is not None and status.last_run.promoted_at is not None
    blocked = "; ".join(filter(None, [verifying,
                                      _blocked(inputs, status, later, ineffective)]))
    status.triggered = "; ".join(f"{t.name}: {t.scores}" for t in holding)
    status.not_started = blocked if holding else ""
    if holding and not blocked:
        sequence = status.sequence + 1
        start = Start(name=run_name(inputs.deployment, sequence), sequence=sequence,
                      trigger=",".join(t.name for t in holding),
                      scores="; ".join(t.scores for t in holding),
                      labels_total=inputs.reviewed.labels_total,
                      window="; ".join(t.window for t in holding if t.window),
                      drift_since=next((t.since for t in holding if t.since), None))
        run = RetrainingRun(name=start.name, sequence=sequence, trigger=start.trigger,
                            scores=start.scores, labels_total=start.labels_total,
                            started_at=now)
        status.sequence, status.last_run = sequence, run
        status.starts = [*(status.starts or []), now]
        status.history = [run.model_copy(), *(status.history or [])][:HISTORY]
        status.next_allowed_at = format_time(
            inputs.now + timedelta(seconds=parse_duration(inputs.spec.cooldown)))
        plan.start = start
        plan.events.append(Event("Normal", "RetrainingStarted",
                                 f"TrainingRun {start.name} for {start.trigger}: "
                                 f"{start.scores}"))
    status.started_last_day = len(status.starts or [])
    waits = [(t - inputs.now).total_seconds() for t in later if t > inputs.now]
    plan.requeue_after = min(waits) if waits else None
    return plan
