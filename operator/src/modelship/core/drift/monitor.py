"""Monitoring of the served version: what to ask Prometheus, and what the answers mean for
status.monitoring, the conditions DataDrift, PredictionDrift, Stale and NumericFault, and
the events on their transitions (pure: a function of spec, previous status, the profile,
the answers and now)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelship.core.conditions import get_condition, set_condition
from modelship.core.drift import hysteresis
from modelship.core.drift.profiles import SOURCE_TEXT, ProfileRead
from modelship.core.drift.queries import (
    NONFINITE,
    VectorAnswer,
    VectorQuery,
    nonfinite_query,
    statistic_query,
)
from modelship.core.drift.scores import Score, against_profile
from modelship.core.durations import parse_duration
from modelship.core.rollout.clock import elapsed, format_time
from modelship.core.rollout.decisions import Event
from modelship_api.common import Condition
from modelship_api.modeldeployment import ModelDeploymentSpec
from modelship_api.monitoring import Monitoring, MonitoringStatus, StatisticStatus
from modelship_api.profile import CategoricalStatistic, NumericStatistic, Profile

CONDITIONS = ("DataDrift", "PredictionDrift", "Stale", "NumericFault")
_SOURCE_CONDITION = {"input": "DataDrift", "output": "PredictionDrift"}
# The longest status.monitoring's figures go without a refresh while the judgement holds.
STATUS_REFRESH_S = 300.0
_CLEARED = {"DataDrift": "NoDataDrift", "PredictionDrift": "NoPredictionDrift",
            "Stale": "Fresh", "NumericFault": "Finite"}


@dataclass(frozen=True)
class Target:
    """The version to watch and where its series live."""

    model: str
    version: int
    matchers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    status: MonitoringStatus
    conditions: list[Condition]
    events: list[Event]


def prometheus_address(spec: ModelDeploymentSpec, default: str) -> tuple[str, float] | None:
    """The Prometheus to query and its timeout: spec.monitoring's, else the rollout
    analysis', else the operator's default; None when there is none."""
    own = spec.monitoring.prometheus
    if own is not None:
        return own.address, parse_duration(own.timeout)
    analysis = spec.rollout.analysis if spec.rollout else None
    if analysis is not None:
        return analysis.prometheus.address, parse_duration(analysis.prometheus.timeout)
    return (default, 2.0) if default else None


def not_exported(backend: str) -> str:
    """Why a version served with `backend` has no live statistics ('' when it has): only
    modelship's runner (runtime.backend python) exports them."""
    if backend == "python":
        return ""
    return (f"runtime.backend {backend} serves the version with Triton's own {backend} "
            "backend, which exports no model statistics: they come from modelship's runner "
            "(runtime.backend python); the model's age is still watched")


def due(spec: Monitoring, last_at: datetime | None, now: datetime) -> bool:
    """Whether an evaluation is due, `last_at` being the last one of this version (None:
    none yet, or the operator restarted since: evaluating at once is harmless)."""
    if not spec.enabled:
        return False
    return last_at is None or (now - last_at).total_seconds() >= parse_duration(spec.interval)


def seconds_to_next(spec: Monitoring, last_at: datetime | None, now: datetime) -> float | None:
    """Seconds until the next evaluation is due (None when monitoring is off)."""
    if not spec.enabled:
        return None
    if last_at is None:
        return 0.0
    return max(0.0, parse_duration(spec.interval) - (now - last_at).total_seconds())


def _judgement(status: MonitoringStatus) -> tuple[object, ...]:
    """What a status write must not wait for: everything but the live figures (scores,
    sample counts, age, the non-finite count), which change on every evaluation."""
    stats = tuple((s.name, s.source, s.result, s.drifted, s.since, s.streak)
                  for s in status.statistics or [])
    return (status.version, status.window, status.profile_digest, status.data_time,
            status.published_at, status.age_source, (status.non_finite or 0) > 0,
            status.non_finite is None, stats, tuple(status.unavailable or ()))


def settle(old: MonitoringStatus | None, new: MonitoringStatus, now: datetime) -> MonitoringStatus:
    """The status to store: `new` when the judgement changed or the stored figures are older
    than STATUS_REFRESH_S, else `old` as it is. A converged resource is then not rewritten
    on every evaluation; the live figures are in the operator's metrics meanwhile."""
    if old is None or old.evaluated_at is None or _judgement(old) != _judgement(new):
        return new
    return new if elapsed(old.evaluated_at, now) >= STATUS_REFRESH_S else old


def watched(spec: Monitoring, profile: Profile
            ) -> tuple[list[tuple[str, NumericStatistic | CategoricalStatistic]], list[str]]:
    """The profile's statistics to compare, and why those named in spec cannot be."""
    names = list(spec.statistics) if spec.statistics else sorted(profile.statistics)
    found = [(n, profile.statistics[n]) for n in names if n in profile.statistics]
    missing = [f"{n}: the profile has no such statistic (it has "
               f"{', '.join(sorted(profile.statistics))})"
               for n in names if n not in profile.statistics]
    return found, missing


def plan(spec: Monitoring, read: ProfileRead, target: Target) -> list[VectorQuery]:
    """One query per watched statistic, and the non-finite count (needs no profile)."""
    queries = [nonfinite_query(target.model, target.version, spec.window, target.matchers)]
    if read.profile is not None:
        stats, _ = watched(spec, read.profile)
        queries += [statistic_query(name, stat, target.model, target.version, spec.window,
                                    target.matchers) for name, stat in stats]
    return queries


def _stored(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else None


def _statistic(spec: Monitoring, name: str, stat: NumericStatistic | CategoricalStatistic,
               score: Score, previous: StatisticStatus | None, now: str) -> StatisticStatus:
    t = spec.thresholds
    state = hysteresis.State(previous.drifted, previous.streak, previous.since) \
        if previous is not None else hysteresis.State()
    if score.psi is None or score.js is None:
        towards: hysteresis.Direction = "none"
        result = "Unavailable" if score.unavailable else "Inconclusive"
        message = score.unavailable or score.inconclusive
    else:
        towards = hysteresis.direction(score.psi, score.js, t.psi.raise_above,
                                       t.psi.clear_below, t.js.raise_above, t.js.clear_below)
        result = "Drift" if towards == "raise" else "Normal"
        message = (f"psi {score.psi:.3g} (raise above {t.psi.raise_above:g}), js "
                   f"{score.js:.3g} (raise above {t.js.raise_above:g})"
                   if towards == "raise" else "")
    new = hysteresis.advance(state, towards, spec.raise_after, spec.clear_after, now)
    return StatisticStatus(name=name, source=stat.source, result=result, drifted=new.drifted,
                           since=new.since, streak=new.streak, psi=_stored(score.psi),
                           js=_stored(score.js), samples=round(score.samples)
                           if score.psi is not None or score.samples else None,
                           message=message)


def _drift_condition(type_: str, stats: Sequence[StatisticStatus], read: ProfileRead,
                     gen: int | None, unmeasured: str) -> Condition:
    source = "input" if type_ == "DataDrift" else "output"
    if unmeasured and read.profile is not None:
        return Condition(type=type_, status="Unknown", reason="NotMeasured",
                         message=unmeasured, observed_generation=gen)
    mine = [s for s in stats if s.source == source]
    drifted = [s for s in mine if s.drifted]
    if drifted:
        detail = "drift in " + ", ".join(f"{s.name} since {s.since}" for s in drifted) + \
            " (scores in status.monitoring)"
        return Condition(type=type_, status="True", reason=type_, message=detail,
                         observed_generation=gen)
    if any(s.result in ("Normal", "Drift") for s in mine):
        return Condition(type=type_, status="False", reason=_CLEARED[type_],
                         message=f"{len(mine)} {source} statistics within the thresholds",
                         observed_generation=gen)
    if read.profile is None:
        return Condition(type=type_, status="Unknown", reason="NoProfile",
                         message=read.missing, observed_generation=gen)
    why = ("no conclusive evaluation: " + ", ".join(f"{s.name} {s.result}" for s in mine)
           + " (why in status.monitoring)") if mine else f"no {source} statistic watched"
    return Condition(type=type_, status="Unknown", reason="Inconclusive", message=why,
                     observed_generation=gen)


def _span(seconds: float) -> str:
    """Whole days, or whole hours under two days: a message that names an age changes at
    most hourly, not on every evaluation."""
    if seconds >= 2 * 86400:
        return f"{seconds // 86400:.0f} days"
    hours = seconds // 3600
    return "under an hour" if hours < 1 else "1 hour" if hours == 1 else f"{hours:.0f} hours"


def _age(spec: Monitoring, read: ProfileRead, now: datetime,
         gen: int | None) -> tuple[float | None, Condition]:
    """The version's age (a lower bound from the publish time when no data time is
    recorded) and the Stale condition."""
    basis = read.age_basis
    if basis is None:
        return None, Condition(type="Stale", status="Unknown", reason="NoProfile",
                               message="the training-data time is unknown: "
                               f"{read.undated or read.missing}", observed_generation=gen)
    age = max(0.0, (now - basis.at).total_seconds())
    limit = parse_duration(spec.max_model_age)
    when = format_time(basis.at)
    if basis.exact:
        data = f"training data from {when} ({SOURCE_TEXT[basis.source]})"
        if age > limit:
            return age, Condition(
                type="Stale", status="True", reason="Stale",
                message=f"{data} is {age // 86400:.0f} days old, older than maxModelAge "
                f"{spec.max_model_age}: train on newer data", observed_generation=gen)
        return age, Condition(type="Stale", status="False", reason="Fresh",
                              message=f"{data}, maxModelAge {spec.max_model_age}",
                              observed_generation=gen)
    # Only the publish time: the data is at least as old as the version, maybe much older.
    unknown = f"the training-data time is unknown ({read.undated})"
    if age > limit:
        return age, Condition(
            type="Stale", status="True", reason="Stale",
            message=f"version published {when}, {_span(age)} ago: its training data is at "
            f"least that old, older than maxModelAge {spec.max_model_age}: train on newer "
            f"data; {unknown}", observed_generation=gen)
    due = format_time(basis.at + timedelta(seconds=limit))
    return age, Condition(
        type="Stale", status="Unknown", reason="AgeLowerBound",
        message=f"version published {when}, {_span(age)} ago: its training data is at "
        f"least that old, and {unknown}; Stale turns True at {due}, maxModelAge "
        f"{spec.max_model_age} after the publish time", observed_generation=gen)


def _numeric(spec: Monitoring, answer: VectorAnswer | None, version: int,
             gen: int | None, unmeasured: str = "") -> tuple[int | None, Condition]:
    if unmeasured:
        return None, Condition(type="NumericFault", status="Unknown", reason="NotMeasured",
                               message=unmeasured, observed_generation=gen)
    if answer is None or answer.error:
        why = answer.error if answer is not None else "no Prometheus to query"
        return None, Condition(type="NumericFault", status="Unknown", reason="NoData",
                               message=f"non-finite outputs: {why}", observed_generation=gen)
    if not answer.values:
        return None, Condition(type="NumericFault", status="Unknown", reason="NoData",
                               message=f"version {version} exports no "
                               "modelship_nonfinite_outputs_total series",
                               observed_generation=gen)
    count = sum(v for v in answer.values.values() if math.isfinite(v))
    if count >= 0.5:  # increase() extrapolates: a fraction of a sample is no sample
        return round(count), Condition(
            type="NumericFault", status="True", reason="NonFiniteOutputs",
            message=f"outputs with NaN or infinity in the last {spec.window} (the count is in "
            "status.monitoring.nonFinite)",
            observed_generation=gen)
    return 0, Condition(type="NumericFault", status="False", reason="Finite",
                        message=f"no NaN or infinite output in the last {spec.window}",
                        observed_generation=gen)


def evaluate(spec: Monitoring, previous: MonitoringStatus | None, read: ProfileRead,
             target: Target, answers: Mapping[str, VectorAnswer] | None, now: datetime,
             generation: int | None = None, unmeasured: str = "") -> MonitoringStatus:
    """The monitoring status after one evaluation. `answers` None: nothing was asked
    (`unmeasured` says why); the previous status of another version is not carried."""
    at = format_time(now)
    before = {s.name: s for s in (previous.statistics or [])} \
        if previous is not None and previous.version == target.version else {}
    unavailable = []
    if unmeasured:
        unavailable.append(f"drift and non-finite outputs: {unmeasured}")
    stats: list[StatisticStatus] = []
    basis = read.age_basis
    if read.profile is None:
        unavailable.append(f"drift against the profile: {read.missing}")
    if basis is None:
        unavailable.append(f"model age: {read.undated or read.missing}")
    elif not basis.exact:
        unavailable.append(f"exact model age: {read.undated}; the age counts from the "
                           "version's publish time, a lower bound")
    if read.profile is not None:
        found, missing = watched(spec, read.profile)
        unavailable += missing
        for name, stat in found:
            answer = answers.get(name) if answers is not None else None
            score = (against_profile(name, stat, answer, spec.min_samples)
                     if answers is not None else Score(inconclusive=f"{name}: not queried"))
            stats.append(_statistic(spec, name, stat, score, before.get(name), at))
        unavailable += [s.message for s in stats if s.result == "Unavailable"]
    age, _ = _age(spec, read, now, generation)
    nonfinite, _ = _numeric(spec, answers.get(NONFINITE) if answers is not None else None,
                            target.version, generation)
    return MonitoringStatus(
        version=target.version, evaluated_at=at, window=spec.window,
        profile_digest=read.digest,
        data_time=format_time(basis.at) if basis is not None and basis.exact else None,
        published_at=format_time(basis.at) if basis is not None and not basis.exact else None,
        age_source=basis.source if basis is not None else None,
        model_age_seconds=round(age) if age is not None else None, non_finite=nonfinite,
        statistics=stats or None, unavailable=unavailable or None)


def conditions(spec: Monitoring, status: MonitoringStatus, read: ProfileRead,
               answers: Mapping[str, VectorAnswer] | None, now: datetime,
               generation: int | None = None, unmeasured: str = "") -> list[Condition]:
    """The four monitoring conditions for `status` (as evaluate produced it); `unmeasured`:
    why the live statistics were not asked for (the three that need them say so)."""
    stats = status.statistics or []
    _, stale = _age(spec, read, now, generation)
    _, numeric = _numeric(spec, answers.get(NONFINITE) if answers is not None else None,
                          status.version or 0, generation, unmeasured)
    return [_drift_condition("DataDrift", stats, read, generation, unmeasured),
            _drift_condition("PredictionDrift", stats, read, generation, unmeasured),
            stale, numeric]


def apply(existing: list[Condition] | None, new: Sequence[Condition], version: int,
          now: str) -> tuple[list[Condition], list[Event]]:
    """Set the conditions; an event for each that turned True, or turned False from True."""
    events = []
    out = list(existing or [])
    for cond in new:
        old = get_condition(out, cond.type)
        was = old.status if old is not None else "Unknown"
        if cond.status == "True" and was != "True":
            events.append(Event("Warning", cond.reason, f"version {version}: {cond.message}"))
        elif cond.status == "False" and was == "True":
            events.append(Event("Normal", _CLEARED[cond.type],
                                f"version {version}: {cond.message}"))
        if old is not None and (old.status, old.reason, old.message) == (
                cond.status, cond.reason, cond.message):
            # The same verdict stands: keep it as written (its observedGeneration too), so
            # a re-evaluation after an unrelated spec change, or by a new leader whose
            # schedule starts empty, writes nothing.
            continue
        out = set_condition(out, cond, now)
    return out, events


def run(spec: Monitoring, previous: MonitoringStatus | None, existing: list[Condition] | None,
        read: ProfileRead, target: Target, answers: Mapping[str, VectorAnswer] | None,
        now: datetime, generation: int | None = None, unmeasured: str = "") -> Evaluation:
    """One evaluation: the new status.monitoring, the conditions and the events."""
    status = evaluate(spec, previous, read, target, answers, now, generation, unmeasured)
    new = conditions(spec, status, read, answers, now, generation, unmeasured)
    merged, events = apply(existing, new, target.version, format_time(now))
    scores = {s.name: s for s in status.statistics or [] if s.psi is not None}
    events = [Event(e.type, e.reason, e.message + _scores(e.reason, scores.values()))
              for e in events]
    return Evaluation(settle(previous, status, now), merged, events)


def _scores(reason: str, stats: Iterable[StatisticStatus]) -> str:
    """The scores behind a drift event (the condition's message names no live figures)."""
    source = {"DataDrift": "input", "PredictionDrift": "output"}.get(reason)
    shown = [f"{s.name} psi {s.psi:.3g} js {s.js:.3g} over {s.samples} samples"
             for s in stats if s.source == source and s.drifted and s.psi is not None
             and s.js is not None]
    return f" ({'; '.join(shown)})" if shown else ""
