"""One reconcile pass of a TrainingRun: make its Job exist, derive status from the Job and
its pods (the trainer's termination message carries the result), report transitions."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import get_args

from pydantic import ValidationError

from modelship import constants
from modelship.adapters import metrics
from modelship.adapters.kube import Kube, StatusConflictError
from modelship.core import training_manifests, training_status
from modelship.core.api_errors import RECONCILE_ERROR
from modelship.core.conditions import remove_condition
from modelship_api.trainingrun import TrainingPhase, TrainingRun, TrainingRunStatus

KIND = constants.TRAINING_RUN_KIND
PHASES: tuple[str, ...] = get_args(TrainingPhase)
# The run, its Job and its pod each trigger a pass; one at a time per run.
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
# Passes after a refused (stale) status write; the timer retries beyond that.
CONFLICT_RETRIES = 3


async def _production_version(kube: Kube, run: TrainingRun) -> int | None:
    baseline = run.spec.gate.baseline if run.spec.gate is not None else None
    if baseline is None or baseline.model_deployment is None:
        return None
    md = await kube.get(constants.API_VERSION, constants.MODEL_DEPLOYMENT_KIND,
                        baseline.model_deployment, run.metadata.namespace)
    stable = ((md or {}).get("status") or {}).get("stableVersion")
    return int(stable) if isinstance(stable, int) else None


async def reconcile(kube: Kube, namespace: str, name: str) -> None:
    async with _locks[(namespace, name)]:
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                await _reconcile(kube, namespace, name)
                return
            except StatusConflictError:
                if attempt == CONFLICT_RETRIES:
                    raise


async def _reconcile(kube: Kube, namespace: str, name: str) -> None:
    started = time.monotonic()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = await kube.get(constants.API_VERSION, KIND, name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.forget_training_run(namespace, name)
        return
    try:
        run = TrainingRun.model_validate(body)
    except ValidationError as err:
        # Admission validates the schema; this only happens across incompatible versions.
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                            for e in err.errors()[:5])
        old = TrainingRunStatus.model_validate(body.get("status") or {})
        new = old.model_copy(update={"phase": "Failed", "message": message, "conditions":
                                     remove_condition(old.conditions, RECONCILE_ERROR) or None})
        await kube.patch_status(constants.API_VERSION, KIND, name, namespace,
                                old.to_api(), new.to_api(), body)
        return
    job_name = training_manifests.job_name(name)
    job = await kube.get("batch/v1", "Job", job_name, namespace)
    pods = await kube.list("v1", "Pod", namespace, {constants.LABEL_TRAINING_RUN: name}) \
        if job is not None else []
    result = training_status.plan(run, job, pods, now)
    if result.create_job:
        await kube.apply(training_manifests.job(run, await _production_version(kube, run)))
    # This pass got through: a refused request reported earlier is over.
    result.status.conditions = remove_condition(result.status.conditions,
                                                RECONCILE_ERROR) or None
    if await kube.patch_status(constants.API_VERSION, KIND, name, namespace,
                               run.status.to_api(), result.status.to_api(), body):
        for type_, reason, message in result.events:
            await kube.event(body, type_, reason, message)
        if result.status.phase in training_status.FINISHED:
            metrics.TRAINING_RUNS.labels(namespace=namespace, model=run.spec.model,
                                         outcome=result.status.phase or "").inc()
    metrics.set_phase(metrics.TRAINING_RUN_PHASE, namespace, name, run.spec.model,
                      result.status.phase or "", PHASES)
    metrics.RECONCILES.labels(kind=KIND, result="ok").inc()
    metrics.RECONCILE_SECONDS.labels(kind=KIND).observe(time.monotonic() - started)
