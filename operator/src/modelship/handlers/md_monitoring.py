"""Monitoring of a ModelDeployment's stable release, one evaluation per `interval`: read the
version's profile (from the release's pods), ask Prometheus for the live statistics, fold
the answers into status (core.drift.monitor). Never in the way of serving: every failure is
a status message, and the pass's rollout decision is applied before any of this runs."""

from __future__ import annotations

import os
from datetime import datetime

from modelship.adapters import metrics
from modelship.adapters.kube import Kube
from modelship.adapters.prometheus import query_vectors
from modelship.core import names, sampling
from modelship.core.analysis.queries import release_matchers
from modelship.core.analysis.verdicts import Measurement
from modelship.core.conditions import remove_condition
from modelship.core.drift import checks as drift_checks
from modelship.core.drift import monitor, profiles
from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship.core.rollout.clock import format_time
from modelship.core.rollout.decisions import Event
from modelship.core.rollout.tick import release_of
from modelship_api.modeldeployment import (
    Analysis,
    Check,
    ModelDeployment,
    ModelDeploymentStatus,
)

# The Prometheus of ModelDeployments that name none (chart value prometheusAddress).
DEFAULT_PROMETHEUS = os.environ.get("MODELSHIP_PROMETHEUS_ADDRESS", "")
# When each resource's stable release was last evaluated: only a schedule (an operator that
# restarts evaluates at once, which is harmless); what must survive lives in status.
_last: dict[tuple[str, str], tuple[Release, datetime]] = {}
NO_PROMETHEUS = ("no Prometheus to query: set spec.monitoring.prometheus.address (or "
                 "spec.rollout.analysis.prometheus, or the operator's "
                 "MODELSHIP_PROMETHEUS_ADDRESS)")


async def monitor_stable(kube: Kube, md: ModelDeployment, status: ModelDeploymentStatus,
                         now: datetime, matchers: dict[str, str]) -> tuple[list[Event],
                                                                           float | None]:
    """Update `status` (monitoring and its conditions) when an evaluation is due; the events
    of the transitions, and the seconds until the next evaluation."""
    spec = md.spec.monitoring
    ns, name = md.metadata.namespace, md.metadata.name
    stable = release_of(status.stable_version, status.stable_revision)
    if not spec.enabled or stable is None:
        _last.pop((ns, name), None)
        status.monitoring = None
        for type_ in (*monitor.CONDITIONS, sampling.CONDITION):
            status.conditions = remove_condition(status.conditions, type_) or None
        metrics.set_monitoring(ns, name, None, [])
        return [], None
    last = _last.get((ns, name))
    last_at = last[1] if last is not None and last[0] == stable else None
    if not monitor.due(spec, last_at, now):
        return [], monitor.seconds_to_next(spec, last_at, now)
    _last[(ns, name)] = (stable, now)
    pods = await kube.list("v1", "Pod", ns, names.version_selector(name, stable))
    read = profiles.from_pods(pods, stable.version)
    candidate = release_of(status.candidate_version, status.candidate_revision)
    target = monitor.Target(md.spec.model.name, stable.version,
                            {**matchers, **release_matchers(name, stable, candidate)})
    where = monitor.prometheus_address(md.spec, DEFAULT_PROMETHEUS)
    unmeasured = (monitor.not_exported(md.spec.runtime.backend)
                  or ("" if where is not None else NO_PROMETHEUS))
    answers = None
    if where is not None and not unmeasured:
        address, timeout_s = where
        queries = monitor.plan(spec, read, target)
        if spec.sampling.enabled:
            queries.append(sampling.stopped_query(target.model, target.version,
                                                  target.matchers))
        answers = await query_vectors(address, queries, timeout_s)
    evaluation = monitor.run(spec, status.monitoring, status.conditions, read, target, answers,
                             now, md.metadata.generation, unmeasured)
    status.monitoring = evaluation.status
    status.conditions, sampling_events = sampling.apply(
        evaluation.conditions, spec.sampling, target.model, answers, stable.version,
        format_time(now), md.metadata.generation)
    metrics.set_monitoring(ns, name, evaluation.status, status.conditions)
    metrics.MONITORING_EVALUATIONS.labels(namespace=ns, name=name).inc()
    return [*evaluation.events, *sampling_events], monitor.seconds_to_next(spec, now, now)


async def measure_distance_checks(kube: Kube, md: ModelDeployment,
                                  status: ModelDeploymentStatus, checks: list[Check],
                                  analysis: Analysis, matchers: dict[str, str]
                                  ) -> dict[str, Measurement]:
    """The rollout checks inputDrift and predictionDrift of the candidate: its profile from
    its pods, its (and for relative prediction drift, stable's) live statistics over the
    analysis window, each check's value or why it is Inconclusive."""
    ns, name = md.metadata.namespace, md.metadata.name
    candidate_release = release_of(status.candidate_version, status.candidate_revision)
    stable_release = release_of(status.stable_version, status.stable_revision)
    assert candidate_release is not None
    candidate = monitor.Target(
        md.spec.model.name, candidate_release.version,
        {**matchers, **release_matchers(name, candidate_release, stable_release)})
    stable = (monitor.Target(md.spec.model.name, stable_release.version,
                             {**matchers, **release_matchers(name, stable_release,
                                                             candidate_release)})
              if stable_release is not None else None)
    pods = await kube.list("v1", "Pod", ns, names.version_selector(name, candidate_release))
    read = profiles.from_pods(pods, candidate_release.version)
    plans = {c.name: drift_checks.plan(c, md.spec.monitoring, read, candidate, stable,
                                       analysis.window) for c in checks}
    queries = list({q.key: q for qs in plans.values() for q in qs}.values())
    answers = await query_vectors(analysis.prometheus.address, queries,
                                  parse_duration(analysis.prometheus.timeout)) \
        if queries else {}
    return {c.name: drift_checks.measure(c, md.spec.monitoring, read, stable is not None,
                                         answers) for c in checks}


def forget(namespace: str, name: str) -> None:
    """The resource is gone: drop its schedule."""
    _last.pop((namespace, name), None)
