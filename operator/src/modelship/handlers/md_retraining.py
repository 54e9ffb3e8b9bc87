"""Retraining of a ModelDeployment (spec.retraining): read its retraining TrainingRuns (from
the watch cache) and the review metrics of its stable version (from Prometheus), let
core.retraining decide, create the run it asks for. The run's name depends only on the
ModelDeployment and the sequence number, and the create is idempotent, so a pass repeated
after a restart or a refused status write never makes a second run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from modelship import constants
from modelship.adapters.kube import Kube
from modelship.adapters.prometheus import PrometheusClient, QueryResult
from modelship.core import retraining, retraining_manifest
from modelship.core.conditions import remove_condition, set_condition
from modelship.core.drift import monitor
from modelship.core.rollout.clock import format_time
from modelship.core.rollout.decisions import Event
from modelship.handlers.md_monitoring import DEFAULT_PROMETHEUS, NO_PROMETHEUS
from modelship_api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from modelship_api.retraining import EFFECTIVE_CONDITION, LABEL_RETRAINED_FOR

log = logging.getLogger(__name__)
# `modelship review`'s gauges (operator/api/src/modelship_api/samples.py and LOOP's contract).
ACCURACY = "modelship_reviewed_accuracy"
SAMPLES = "modelship_reviewed_samples"
LABELS_TOTAL = "modelship_reviewed_labels_total"


def _selector(model: str, version: int | None = None) -> str:
    quoted = model.replace("\\", "\\\\").replace('"', '\\"')
    if version is None:
        return f'{{model="{quoted}"}}'
    return f'{{model="{quoted}",version="{version}",source="all"}}'


async def reviewed(md: ModelDeployment, stable: int | None) -> retraining.Reviewed:
    """The stable version's reviewed accuracy and sample count, and the model's reviewed
    labels so far; one series each is expected (max() where a review server is scraped
    twice)."""
    where = monitor.prometheus_address(md.spec, DEFAULT_PROMETHEUS)
    if where is None:
        return retraining.Reviewed(error=NO_PROMETHEUS)
    address, timeout_s = where
    model = md.spec.model.name
    queries = [f"max({LABELS_TOTAL}{_selector(model)})"]
    if stable is not None:
        queries += [f"max({metric}{_selector(model, stable)})" for metric in (ACCURACY, SAMPLES)]
    async with PrometheusClient(address) as prometheus:
        answers = await asyncio.gather(*(prometheus.query(q, timeout_s) for q in queries))
    none = QueryResult()
    labels, accuracy, samples = (*answers, none, none)[:3]
    error = next((a.error for a in answers if a.error), "")

    def whole(result: QueryResult) -> int | None:
        return round(result.value) if result.value is not None and result.value >= 0 \
            else None
    return retraining.Reviewed(accuracy=accuracy.value, samples=whole(samples),
                               labels_total=whole(labels), error=error)


async def retrain(kube: Kube, md: ModelDeployment, status: ModelDeploymentStatus
                  ) -> tuple[list[Event], float | None]:
    """Update `status` (retraining and RetrainingEffective), creating the run the decision
    asks for; the events, and the seconds after which time alone could change it."""
    spec = md.spec.retraining
    if spec is None:
        status.retraining = None
        status.conditions = remove_condition(status.conditions, EFFECTIVE_CONDITION) or None
        return [], None
    ns, name = md.metadata.namespace, md.metadata.name
    now = datetime.now(UTC)
    runs = await kube.list(constants.API_VERSION, constants.TRAINING_RUN_KIND, ns,
                           {LABEL_RETRAINED_FOR: name})
    plan = retraining.decide(retraining.Inputs(
        spec=spec, deployment=name, created_at=md.metadata.creation_timestamp or format_time(now),
        conditions=status.conditions, monitoring=status.monitoring,
        stable_version=status.stable_version, candidate_version=status.candidate_version,
        rollouts_ended=frozenset(h.version for h in status.history or []),
        previous=status.retraining, runs=runs,
        reviewed=await reviewed(md, status.stable_version), now=now))
    if plan.start is not None:
        obj, created = await kube.create(retraining_manifest.training_run(md, plan.start))
        owner = (obj["metadata"].get("labels") or {}).get(LABEL_RETRAINED_FOR)
        if owner != name:
            raise RuntimeError(f"TrainingRun {plan.start.name} exists and was not made by "
                               f"the retraining of {name}: rename or delete it")
        log.info("%s/%s: retraining run %s %s for %s", ns, name, plan.start.name,
                 "created" if created else "existed already", plan.start.trigger)
    status.retraining = plan.status
    if plan.effective is None:
        status.conditions = remove_condition(status.conditions, EFFECTIVE_CONDITION) or None
    else:
        plan.effective.observed_generation = md.metadata.generation
        status.conditions = set_condition(status.conditions, plan.effective, format_time(now))
    return plan.events, plan.requeue_after
