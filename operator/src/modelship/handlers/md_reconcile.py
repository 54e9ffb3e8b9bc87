"""One reconcile pass of a ModelDeployment: observe, decide (core.rollout), act, report.

Idempotent and level-based: it reads everything it needs from the cluster and from the
resource's status each time, so an operator killed at any point resumes exactly there.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelship import constants
from modelship.adapters import metrics, smoke
from modelship.adapters.kube import Kube
from modelship.adapters.prometheus import measure_checks, parse_queries
from modelship.core import names, traffic, triton_manifests, versions
from modelship.core import smoke as smoke_plans
from modelship.core.analysis import check_errors, syntax
from modelship.core.analysis.queries import DISTANCE_BUILTINS
from modelship.core.analysis.verdicts import Measurement
from modelship.core.api_errors import RECONCILE_ERROR
from modelship.core.conditions import remove_condition, set_condition
from modelship.core.durations import parse_duration
from modelship.core.observations import VersionObservation, observe_deployment, pod_problems
from modelship.core.releases import Release, parse_label
from modelship.core.rollout import (
    Action,
    Command,
    Decision,
    EnsureVersion,
    Event,
    Observations,
    RemoveVersion,
    SetTraffic,
    due_queries,
    format_time,
    parse_command,
    step,
)
from modelship.core.route_status import RouteObservation, observe_route
from modelship.core.validation import SpecError, model_deployment_errors
from modelship.handlers import md_monitoring, md_retraining
from modelship.handlers.md_monitoring import monitor_stable
from modelship_api.common import Condition
from modelship_api.modeldeployment import ModelDeployment, ModelDeploymentStatus, QueryCheck

log = logging.getLogger(__name__)
KIND = constants.MODEL_DEPLOYMENT_KIND
PHASES = ("Pending", "Progressing", "Paused", "Ready", "RolledBack", "Failed")
# Label that the scrape configuration puts on Triton's series to say which namespace the
# pod ran in (PodMonitor and Kubernetes SD relabelling both produce `namespace`); empty
# disables the matcher for setups that scrape one namespace only.
NAMESPACE_LABEL = os.environ.get("MODELSHIP_ANALYSIS_NAMESPACE_LABEL", "namespace")
_warned_commands: set[tuple[str, str]] = set()
_templates = triton_manifests.TemplateHashes()


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


async def _report_invalid(kube: Kube, body: dict[str, Any], message: str, now: str,
                          query_check: QueryCheck | None = None) -> None:
    """InvalidSpec: whatever served before keeps serving; nothing is applied or removed."""
    old = ModelDeploymentStatus.model_validate(body.get("status") or {})
    new = old.model_copy(deep=True)
    new.query_check = query_check or new.query_check
    gen = body["metadata"].get("generation", 0)
    new.phase, new.message, new.observed_generation = "Failed", message, gen
    new.conditions = remove_condition(new.conditions, RECONCILE_ERROR) or None
    for type_ in ("InvalidSpec", "Ready"):
        new.conditions = set_condition(new.conditions, Condition(
            type=type_, status="True" if type_ == "InvalidSpec" else "False",
            reason="InvalidSpec", message=message, observed_generation=gen), now)
    meta = body["metadata"]
    model = ((body.get("spec") or {}).get("model") or {}).get("name")
    metrics.set_phase(metrics.PHASE, meta["namespace"], meta["name"],
                      model if isinstance(model, str) else "", "Failed", PHASES)
    if await kube.patch_status(constants.API_VERSION, KIND, meta["name"], meta["namespace"],
                               old.to_api(), new.to_api(), body) \
            and old.phase != "Failed":
        await kube.event(body, "Warning", "InvalidSpec", message)


async def _observe(kube: Kube, ns: str, name: str) -> dict[Release, VersionObservation]:
    deployments = await kube.list("apps/v1", "Deployment", ns,
                                  {constants.LABEL_DEPLOYMENT: name})
    problems: dict[str, list[str]] = defaultdict(list)
    if any(not (seen := observe_deployment(0, d)).ready and not seen.terminating
           for d in deployments):
        for pod in await kube.list("v1", "Pod", ns, {constants.LABEL_DEPLOYMENT: name}):
            version = pod["metadata"].get("labels", {}).get(constants.LABEL_MODEL_VERSION, "")
            problems[version] += pod_problems(pod)
    out = {}
    for dep in deployments:
        label = dep["metadata"].get("labels", {}).get(constants.LABEL_MODEL_VERSION, "")
        release = parse_label(label)
        if release is not None:
            out[release] = observe_deployment(release.version, dep, tuple(problems[label]),
                                              release.revision)
    return out


async def _observe_route(kube: Kube, md: ModelDeployment) -> RouteObservation | None:
    """The GRPCRoute and the gateway's verdict on it; None for the replicas provider, whose
    Service takes effect as written."""
    if md.spec.traffic.provider != "gateway":
        return None
    name = md.metadata.name
    return observe_route(await kube.get(traffic.GRPC_ROUTE_API, "GRPCRoute", name,
                                        md.metadata.namespace), name)


async def _command(kube: Kube, body: dict[str, Any]) -> Command | None:
    raw = (body["metadata"].get("annotations") or {}).get(constants.ANNOTATION_COMMAND)
    if not raw:
        return None
    try:
        return parse_command(raw)
    except ValueError as err:
        key = (body["metadata"]["uid"], raw)
        if key not in _warned_commands:  # one event per bad value, not one per tick
            _warned_commands.add(key)
            await kube.event(body, "Warning", "CommandInvalid", str(err))
        return None


async def _scale(kube: Kube, md: ModelDeployment, action: EnsureVersion) -> None:
    """A release of a template the spec no longer describes (the stable during the rollout
    of a new revision, a warm one): its Deployment keeps the template it runs, only its
    pod count follows the decision. The template lives nowhere else, so a Deployment
    deleted by hand is not recreated from the spec (that would be the new template without
    a rollout); the release then shows as not ready."""
    ns = md.metadata.namespace
    name = names.release_name(md.metadata.name, action.release)
    current = await kube.get("apps/v1", "Deployment", name, ns)
    if current is None:
        log.warning("%s/%s: Deployment %s is gone; its pod template (%s) is not the spec's, "
                    "so it is not recreated", ns, md.metadata.name, name, action.template)
        return
    meta = current["metadata"]
    await kube.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "ownerReferences")
                     if k in meta},
        "spec": {**current["spec"], "replicas": action.replicas},
    })


async def _apply(kube: Kube, md: ModelDeployment, actions: tuple[Action, ...],
                 template: str) -> None:
    """Apply the decision in order: scale-ups, then the route, then removals, then events."""
    ns, name = md.metadata.namespace, md.metadata.name
    for action in actions:
        if isinstance(action, EnsureVersion):
            if action.template in (None, template):
                await kube.apply(triton_manifests.deployment(md, action.version,
                                                             action.replicas, action.revision))
            else:
                await _scale(kube, md, action)
            service = names.release_name(name, action.release)
            await kube.apply(triton_manifests.version_service(
                md, action.version, action.revision,
                await kube.get("v1", "Service", service, ns)))
        elif isinstance(action, SetTraffic):
            if md.spec.traffic.provider == "gateway":
                await kube.apply(traffic.grpc_route(md, action))
            await kube.apply(triton_manifests.stable_service(
                md, traffic.stable_selector(md, action)))
            metrics.CANDIDATE_WEIGHT.labels(namespace=ns, name=name).set(
                action.candidate_weight if action.candidate_version is not None else 0)
        elif isinstance(action, RemoveVersion):
            child = names.release_name(name, action.release)
            await kube.delete("v1", "Service", child, ns)
            # Foreground: the Deployment stays (observed as terminating) until its pods are
            # gone, so no later step counts a version whose pods still serve as removed.
            await kube.delete("apps/v1", "Deployment", child, ns, foreground=True)
        elif isinstance(action, Event):
            pass  # after the status write, so `kubectl describe` never shows the future


async def _smoke_target(kube: Kube, md: ModelDeployment, status: ModelDeploymentStatus,
                        now: datetime) -> smoke.SmokeTarget | None:
    """The smoke load due after this pass (core.smoke), bound to the candidate's ready pods."""
    plan = smoke_plans.smoke_plan(md.spec, status, now)
    if plan is None:
        return None
    assert md.spec.rollout is not None and md.spec.rollout.smoke_load is not None
    pods = await kube.list("v1", "Pod", md.metadata.namespace,
                           names.version_selector(md.metadata.name, plan.release))
    path = smoke_plans.infer_path(md.spec.model.name, plan.version)
    urls = tuple(f"http://{ip}:{constants.PORT_HTTP}{path}"
                 for ip in smoke_plans.ready_addresses(pods))
    return smoke.SmokeTarget(plan, urls,
                             smoke.body_json(smoke_plans.infer_body(md.spec.rollout.smoke_load)))


def _record_metrics(md: ModelDeployment, decision: Decision) -> None:
    ns, name = md.metadata.namespace, md.metadata.name
    metrics.set_phase(metrics.PHASE, ns, name, md.spec.model.name,
                      decision.status.phase or "", PHASES)
    for result in decision.analysis_run or ():
        metrics.ANALYSIS_RESULTS.labels(namespace=ns, name=name, check=result.name,
                                        result=result.result).inc()
        if result.value is not None:
            metrics.ANALYSIS_VALUE.labels(namespace=ns, name=name,
                                          check=result.name).set(result.value)
    if decision.finished is not None:
        metrics.ROLLOUTS.labels(namespace=ns, name=name, strategy=decision.finished.strategy,
                                outcome=decision.finished.outcome).inc()
        if decision.finished.outcome == "RolledBack":
            metrics.ROLLBACKS.labels(namespace=ns, name=name, model=md.spec.model.name,
                                     check=metrics.rollback_cause(decision)).inc()


async def _query_check(md: ModelDeployment, now: str) -> QueryCheck | None:
    """Prometheus' verdict on the user checks' PromQL: the one in status while the queries
    are unchanged, else asked now; None while Prometheus gives none (asked again next pass)."""
    analysis = md.spec.rollout.analysis if md.spec.rollout else None
    if analysis is None:
        return None
    queries = syntax.user_queries(analysis, md.spec.model.name, md.metadata.namespace)
    address = analysis.prometheus.address
    if not queries or syntax.known(md.status.query_check, address, queries):
        return md.status.query_check if queries else None
    answers = await parse_queries(address, [q.promql for q in queries],
                                  parse_duration(analysis.prometheus.timeout))
    if syntax.unanswered(answers):
        log.warning("%s/%s: PromQL of the checks not verified yet: %s", md.metadata.namespace,
                    md.metadata.name, syntax.unanswered(answers))
    return syntax.record(address, queries, answers, now)


def _spec_errors(md: ModelDeployment, version: int | None) -> list[SpecError]:
    errors = model_deployment_errors(md, version)
    rollout = md.spec.rollout
    if rollout is not None and rollout.analysis is not None:
        errors += [SpecError("spec.rollout.analysis.checks", e)
                   for e in check_errors(rollout.analysis)]
    return errors


async def reconcile(kube: Kube, namespace: str, name: str) -> float | None:
    """One pass; returns the seconds after which time alone could change the decision."""
    started = time.monotonic()
    now_dt = datetime.now(UTC)
    now = format_time(now_dt)
    body = await kube.get(constants.API_VERSION, KIND, name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        smoke.stop((namespace, name))
        metrics.forget_model_deployment(namespace, name)
        md_monitoring.forget(namespace, name)
        _templates.forget(namespace, name)
        return None
    try:
        md = ModelDeployment.model_validate(body)
    except ValidationError as err:
        await _report_invalid(kube, body, _validation_message(err), now)
        metrics.RECONCILES.labels(kind=KIND, result="invalid").inc()
        return None
    runs: list[dict[str, Any]] = []
    if md.spec.model.from_training_runs is not None:
        runs = await kube.list(constants.API_VERSION, constants.TRAINING_RUN_KIND, namespace,
                               md.spec.model.from_training_runs.match_labels)
    resolution = versions.resolve(md.spec.model, runs)
    errors = _spec_errors(md, resolution.version)
    query_check = None if errors else await _query_check(md, now)
    errors += syntax.parse_errors(query_check)
    if errors:
        await _report_invalid(kube, body, "; ".join(str(e) for e in errors), now, query_check)
        metrics.RECONCILES.labels(kind=KIND, result="invalid").inc()
        return None

    status = md.status.model_copy(deep=True)
    status.query_check = query_check
    status.conditions = remove_condition(
        remove_condition(status.conditions, "InvalidSpec"), RECONCILE_ERROR) or None
    matchers = {NAMESPACE_LABEL: namespace} if NAMESPACE_LABEL else {}
    queries = due_queries(md.spec, status, namespace, now_dt, matchers, deployment=name)
    measurements = None
    if queries:
        analysis = md.spec.rollout.analysis if md.spec.rollout else None
        assert analysis is not None
        scalar = [q for q in queries if q.check.builtin not in DISTANCE_BUILTINS]
        measurements = await measure_checks(analysis.prometheus.address, scalar,
                                            parse_duration(analysis.prometheus.timeout)) \
            if scalar else {}
        distance = [q.check for q in queries if q.check.builtin in DISTANCE_BUILTINS]
        if distance:
            try:
                measurements.update(await md_monitoring.measure_distance_checks(
                    kube, md, status, distance, analysis, matchers))
            except Exception as err:  # an Inconclusive check, never a stuck rollout
                log.exception("%s/%s: drift checks failed", namespace, name)
                measurements.update({c.name: Measurement(error=f"{type(err).__name__}: {err}")
                                     for c in distance})
    template = _templates.get(md)
    decision = step(md.spec, status, Observations(
        desired_version=resolution.version,
        versions=await _observe(kube, namespace, name),
        generation=md.metadata.generation,
        measurements=measurements,
        command=await _command(kube, body),
        mirroring_supported=md.spec.traffic.provider == "gateway",
        pending_reason=resolution.reason,
        route=await _observe_route(kube, md),
        template=template,
    ), now_dt)
    await _apply(kube, md, decision.actions, template)
    # After the rollout's actions: monitoring never delays or blocks serving.
    try:
        monitoring_events, next_evaluation = await monitor_stable(kube, md, decision.status,
                                                                  now_dt, matchers)
    except Exception:  # the rollout's status is written whatever happens here
        log.exception("%s/%s: monitoring failed; trying again next pass", namespace, name)
        monitoring_events, next_evaluation = [], None
    # After monitoring, whose conditions it reads; a failure leaves status.retraining as it
    # was (a run created before the failure is adopted from the cluster next pass).
    try:
        retraining_events, next_retraining = await md_retraining.retrain(kube, md,
                                                                         decision.status)
    except Exception:
        log.exception("%s/%s: retraining failed; trying again next pass", namespace, name)
        decision.status.retraining = md.status.retraining
        retraining_events, next_retraining = [], None
    await kube.patch_status(constants.API_VERSION, KIND, name, namespace,
                            md.status.to_api(), decision.status.to_api(), body)
    for action in (*decision.actions, *monitoring_events, *retraining_events):
        if isinstance(action, Event):
            await kube.event(body, action.type, action.reason, action.message)
    smoke.ensure((namespace, name), await _smoke_target(kube, md, decision.status, now_dt))
    _record_metrics(md, decision)
    metrics.RECONCILES.labels(kind=KIND, result="ok").inc()
    metrics.RECONCILE_SECONDS.labels(kind=KIND).observe(time.monotonic() - started)
    waits = [t for t in (decision.requeue_after, next_evaluation, next_retraining)
             if t is not None]
    return min(waits) if waits else None
