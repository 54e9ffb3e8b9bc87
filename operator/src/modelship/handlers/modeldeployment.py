"""Kopf handlers for ModelDeployment: create, resume, update, a timer and child events all
call one idempotent `reconcile`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from modelship import constants
from modelship.adapters import metrics
from modelship.adapters.kube import Kube
from modelship.api.common import Condition
from modelship.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from modelship.core import names, versions
from modelship.core.conditions import set_condition
from modelship.core.observations import observe_deployment, pod_problems
from modelship.core.serving import plan
from modelship.handlers import runtime

log = logging.getLogger(__name__)
KIND = constants.MODEL_DEPLOYMENT_KIND
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


async def _report_invalid(kube: Kube, body: dict[str, Any], message: str) -> None:
    old = ModelDeploymentStatus.model_validate(body.get("status") or {})
    new = old.model_copy(deep=True)
    gen = body["metadata"].get("generation", 0)
    new.phase, new.message, new.observed_generation = "Failed", message, gen
    now = utcnow()
    for type_ in ("InvalidSpec", "Ready"):
        new.conditions = set_condition(new.conditions, Condition(
            type=type_, status="True" if type_ == "InvalidSpec" else "False",
            reason="InvalidSpec", message=message, observed_generation=gen), now)
    meta = body["metadata"]
    await kube.patch_status(constants.API_VERSION, KIND, meta["name"], meta["namespace"],
                            old.to_api(), new.to_api())


async def _observe(kube: Kube, ns: str, name: str) -> dict[int, Any]:
    deployments = await kube.list("apps/v1", "Deployment", ns,
                                  {constants.LABEL_DEPLOYMENT: name})
    problems: dict[str, list[str]] = defaultdict(list)
    if any(not observe_deployment(0, d).ready for d in deployments):
        for pod in await kube.list("v1", "Pod", ns, {constants.LABEL_DEPLOYMENT: name}):
            version = pod["metadata"].get("labels", {}).get(constants.LABEL_MODEL_VERSION, "")
            problems[version] += pod_problems(pod)
    out = {}
    for dep in deployments:
        label = dep["metadata"].get("labels", {}).get(constants.LABEL_MODEL_VERSION, "")
        if label.isdigit():
            out[int(label)] = observe_deployment(int(label), dep, tuple(problems[label]))
    return out


async def reconcile(kube: Kube, body: dict[str, Any]) -> None:
    """Bring the cluster to what the spec asks and report it in status; idempotent."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    started = time.monotonic()
    async with _locks[(ns, name)]:
        # Read again under the lock: a concurrent pass may have moved status on.
        fresh = await kube.get(constants.API_VERSION, KIND, name, ns)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        try:
            md = ModelDeployment.model_validate(fresh)
        except ValidationError as err:
            await _report_invalid(kube, fresh, _validation_message(err))
            metrics.RECONCILES.labels(kind=KIND, result="invalid").inc()
            return
        runs: list[dict[str, Any]] = []
        if md.spec.model.from_training_runs is not None:
            runs = await kube.list(constants.API_VERSION, constants.TRAINING_RUN_KIND, ns,
                                   md.spec.model.from_training_runs.match_labels)
        resolution = versions.resolve(md.spec.model, runs)
        observed = await _observe(kube, ns, name)
        result = plan(md, resolution, observed, utcnow())
        for obj in result.apply:
            await kube.apply(obj)
        for version in result.delete_versions:
            child = names.version_name(name, version)
            await kube.delete("v1", "Service", child, ns)
            await kube.delete("apps/v1", "Deployment", child, ns)
        old_status = ModelDeploymentStatus.model_validate(fresh.get("status") or {})
        if await kube.patch_status(constants.API_VERSION, KIND, name, ns,
                                   old_status.to_api(), result.status.to_api()):
            await _phase_event(kube, fresh, old_status, result.status)
        for phase in ("Pending", "Progressing", "Paused", "Ready", "RolledBack", "Failed"):
            metrics.PHASE.labels(namespace=ns, name=name, phase=phase).set(
                1 if result.status.phase == phase else 0)
    metrics.RECONCILES.labels(kind=KIND, result="ok").inc()
    metrics.RECONCILE_SECONDS.labels(kind=KIND).observe(time.monotonic() - started)


async def _phase_event(kube: Kube, body: dict[str, Any], old: ModelDeploymentStatus,
                       new: ModelDeploymentStatus) -> None:
    if old.phase == new.phase and old.stable_version == new.stable_version:
        return
    type_ = "Warning" if new.phase in ("Failed", "RolledBack") else "Normal"
    await kube.event(body, type_, new.phase or "Unknown", new.message or "")


@kopf.on.resume(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL)
@kopf.on.create(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL)
@kopf.on.update(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL)
@kopf.timer(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL,
            interval=runtime.RESYNC_SECONDS, initial_delay=runtime.RESYNC_SECONDS)
async def on_model_deployment(body: kopf.Body, **_: Any) -> None:
    await reconcile(runtime.kube(), dict(body))


@kopf.on.event("apps", "v1", "deployments",
               labels={constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
                       constants.LABEL_DEPLOYMENT: kopf.PRESENT})
async def on_child_deployment(body: kopf.Body, **_: Any) -> None:
    """A Triton Deployment changed (pods became ready, or not): reconcile its owner now
    rather than at the next timer tick."""
    owner = body["metadata"]["labels"][constants.LABEL_DEPLOYMENT]
    ns = body["metadata"]["namespace"]
    parent = await runtime.kube().get(constants.API_VERSION, KIND, owner, ns)
    if parent is not None:
        await reconcile(runtime.kube(), parent)
