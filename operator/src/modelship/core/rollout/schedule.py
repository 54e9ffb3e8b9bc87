"""When the next analysis run is due, and which queries it makes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from modelship.core import names
from modelship.core.analysis import CheckQuery, QueryContext, analysis_checks, check_errors
from modelship.core.analysis import check_query as build_check_query
from modelship.core.analysis.queries import ANY_POD, judged_seconds, release_matchers
from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship.core.rollout.clock import after, parse_time
from modelship.core.rollout.stages import STARTING
from modelship.core.rollout.tick import release_of
from modelship_api.modeldeployment import Analysis, ModelDeploymentSpec, ModelDeploymentStatus


def active_analysis(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> Analysis | None:
    """The analysis that judges the rollout now: configured, valid, and past the start."""
    analysis = spec.rollout.analysis if spec.rollout is not None else None
    rollout = status.rollout
    if (analysis is None or rollout is None or status.candidate_version is None
            or rollout.stage == STARTING or rollout.traffic_since is None
            or check_errors(analysis)):
        return None
    return analysis


def analysis_due_at(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> datetime | None:
    """initialDelay after the first stage began, then every interval after the last run.

    After a failed run the next waits a whole window (when the window is longer than the
    interval): windows of runs one interval apart overlap, so one slow moment (a cold start,
    a stalled core) would otherwise fail several runs in a row and roll a good version back.
    Each failure that counts toward failureLimit is then judged on requests the previous
    one never saw. A failed p99Latency check waits at least 60 s: Triton's quantile covers
    its own last minute, so a cold start stays in it that long."""
    analysis = active_analysis(spec, status)
    if analysis is None:
        return None
    assert status.rollout is not None and status.rollout.traffic_since is not None
    due = after(status.rollout.traffic_since, parse_duration(analysis.initial_delay))
    last = status.analysis.last_run_at if status.analysis is not None else None
    if last is not None:
        gap = parse_duration(analysis.interval)
        if status.analysis is not None and status.analysis.last_result == "Failed":
            failed = {r.name for r in status.analysis.checks or () if r.result == "Failed"}
            gap = max([gap, parse_duration(analysis.window),
                       *(judged_seconds(c, analysis.window)
                         for c in analysis_checks(analysis) if c.name in failed)])
        due = max(due, after(last, gap))
    return due


def analysis_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus,
                 now: datetime | str) -> bool:
    due = analysis_due_at(spec, status)
    return due is not None and parse_time(now) >= due


def pods(deployment: str, release: Release | None) -> str:
    """{{pods}} of user templates for `release` (any pod when it is not known)."""
    if not deployment or release is None:
        return ANY_POD
    return names.release_pods(deployment, release)


def due_queries(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, namespace: str,
                now: datetime | str,
                matchers: Mapping[str, str] | None = None,
                deployment: str = "") -> list[CheckQuery]:
    """The queries to run before calling `step` at `now`: one per check, or none when no
    run is due. Pass their answers as `Observations.measurements`, keyed by check name.

    When candidate and stable are two revisions of one version, the built-in queries tell
    them apart by the pod names of the ModelDeployment `deployment` (the `pod` label that
    Kubernetes service discovery and the chart's PodMonitor put on Triton's series)."""
    if not analysis_due(spec, status, now):
        return []
    analysis = active_analysis(spec, status)
    candidate = release_of(status.candidate_version, status.candidate_revision)
    stable = release_of(status.stable_version, status.stable_revision)
    assert analysis is not None and candidate is not None
    sides = (release_matchers(deployment, candidate, stable),
             release_matchers(deployment, stable, candidate) if stable is not None else {})
    ctx = QueryContext(model=spec.model.name, namespace=namespace,
                       candidate=candidate.version, stable=status.stable_version,
                       window=analysis.window, matchers=dict(matchers or {}),
                       min_requests=analysis.min_requests, candidate_matchers=sides[0],
                       stable_matchers=sides[1], candidate_pods=pods(deployment, candidate),
                       stable_pods=pods(deployment, stable))
    return [build_check_query(check, ctx) for check in analysis_checks(analysis)]
