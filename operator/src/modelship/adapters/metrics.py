"""The operator's own Prometheus metrics (served on the operator's metrics endpoint).

Label sets stay bounded: a resource's series carry its namespace and name (removed with
the resource by `forget`), check names come from its spec, everything else is a fixed set
of words. Nothing per request, per pod or per timestamp. docs/metrics.md is generated from
this module (`python -m modelship.adapters.metrics`) and a unit test keeps the two equal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any, Self

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from modelship.core.drift.monitor import CONDITIONS as MONITORING_CONDITIONS
from modelship.core.rollout import Decision
from modelship_api.common import Condition
from modelship_api.monitoring import MonitoringStatus

# The image sets it from its org.opencontainers.image.revision build argument.
REVISION_ENV = "MODELSHIP_REVISION"

Owner = tuple[str, str]  # namespace, name


class _PerResource(MetricWrapperBase):
    """A metric whose first two labels are `namespace` and `name`, with its series indexed
    by them: every pass replaces one resource's series, and a scan of every resource's
    series there made each pass O(resources) (an idle operator of 1,000 resources kept
    most of a core busy with it)."""

    def _owned(self) -> dict[Owner, set[tuple[str, ...]]]:
        index: dict[Owner, set[tuple[str, ...]]] = self.__dict__.setdefault("_by_owner", {})
        return index

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Self:
        child = super().labels(*labelvalues, **labelkwargs)
        values: tuple[str, ...] = child._labelvalues
        self._owned().setdefault((values[0], values[1]), set()).add(values)
        return child

    def remove(self, *labelvalues: Any) -> None:
        super().remove(*labelvalues)
        values = tuple(str(v) for v in labelvalues)
        owned = self._owned().get((values[0], values[1]))
        if owned is not None:
            owned.discard(values)
            if not owned:
                del self._owned()[(values[0], values[1])]

    def clear(self) -> None:
        super().clear()
        self._owned().clear()

    def series_of(self, namespace: str, name: str) -> list[tuple[str, ...]]:
        """The label values of every series of one resource."""
        return list(self._owned().get((namespace, name), ()))


class ResourceGauge(_PerResource, Gauge):
    """A Gauge labelled namespace and name first (see _PerResource)."""


class ResourceCounter(_PerResource, Counter):
    """A Counter labelled namespace and name first (see _PerResource)."""

INFO = Gauge(
    "modelship_info",
    "Always 1; the operator's version and the source revision its image was built from.",
    ["version", "revision"],
)
KUBE_WRITES = Counter(
    "modelship_kube_writes_total",
    "Writes the operator made to the Kubernetes API, by verb (apply, delete, status, event) "
    "and kind.",
    ["verb", "kind"],
)
RECONCILES = Counter(
    "modelship_reconciles_total",
    "Reconcile passes by kind and result (ok, invalid, error: the API server refused a "
    "request, see the ReconcileError condition; timeout: cancelled after "
    "MODELSHIP_PASS_TIMEOUT_SECONDS).",
    ["kind", "result"],
)
EVENT_LOOP_STALLS = Counter(
    "modelship_event_loop_stalls_total",
    "Times the operator's event loop did not turn for MODELSHIP_LOOP_STALL_SECONDS (a call "
    "that blocks it stops every reconcile, watch and health check; the log has its stack).",
)
RECONCILE_SECONDS = Histogram(
    "modelship_reconcile_duration_seconds",
    "Duration of one reconcile pass.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PHASE = ResourceGauge(
    "modelship_modeldeployment_phase",
    "1 for the current phase of each ModelDeployment, 0 for the others; `model` is the "
    "Triton model it serves (joins Triton's nv_inference_* series).",
    ["namespace", "name", "model", "phase"],
)
CANDIDATE_WEIGHT = ResourceGauge(
    "modelship_candidate_weight_percent",
    "Percent of traffic the operator routes to the candidate version (0 without one); the "
    "stable version gets the rest.",
    ["namespace", "name"],
)
ROLLOUTS = ResourceCounter(
    "modelship_rollouts_total",
    "Finished rollouts by strategy and outcome (Promoted, RolledBack, Aborted, Superseded).",
    ["namespace", "name", "strategy", "outcome"],
)
ROLLBACKS = ResourceCounter(
    "modelship_rollbacks_total",
    "Automatic rollbacks; `check` names the failing analysis check(s), or the cause "
    "(ProgressDeadlineExceeded, NotReady, MirrorUnsupported). Alert on increase().",
    ["namespace", "name", "model", "check"],
)
ANALYSIS_RESULTS = ResourceCounter(
    "modelship_analysis_results_total",
    "Analysis check results by check and result (Successful, Failed, Inconclusive).",
    ["namespace", "name", "check", "result"],
)
ANALYSIS_VALUE = ResourceGauge(
    "modelship_analysis_value",
    "The latest measured value of each analysis check.",
    ["namespace", "name", "check"],
)
SMOKE_REQUESTS = ResourceCounter(
    "modelship_smoke_requests_total",
    "Sample requests the operator sent to a candidate at weight 0 (spec.rollout.smokeLoad), "
    "by result (ok, failed: an error answer, a timeout, no ready pod to send to).",
    ["namespace", "name", "result"],
)
TRAINING_RUNS = Counter(
    "modelship_training_runs_total",
    "Finished TrainingRuns by model and outcome (Succeeded, Rejected, Failed).",
    ["namespace", "model", "outcome"],
)
LEADER = Gauge(
    "modelship_leader",
    "1 while this replica holds the leader Lease and acts; 0 while it stands by.",
)
KUBE_REQUESTS = Counter(
    "modelship_kube_requests_total",
    "Requests the operator's client sent to the Kubernetes API (watches once per stream).",
    ["method", "watch"],
)
CACHE_EVENTS = Counter(
    "modelship_cache_events_total",
    "Changes the watch caches received, by kind and event type.",
    ["kind", "type"],
)
TRAINING_RUN_PHASE = ResourceGauge(
    "modelship_trainingrun_phase",
    "1 for the current phase of each TrainingRun, 0 for the others.",
    ["namespace", "name", "model", "phase"],
)
DRIFT_SCORE = ResourceGauge(
    "modelship_drift_score",
    "Population stability index of each statistic of the stable version against its "
    "profile.json, over spec.monitoring.window; absent while Inconclusive (too few samples).",
    ["namespace", "name", "statistic"],
)
MODEL_AGE = ResourceGauge(
    "modelship_model_age_seconds",
    "Age of the stable version's newest training data, from its profile.json or lineage.json "
    "dataTime (source ProfileDataTime, LineageDataTime); for a version that records neither, "
    "the time since it was published (source PublishTime), which the data's age is at least.",
    ["namespace", "name", "source"],
)
MONITORING_CONDITION = ResourceGauge(
    "modelship_monitoring_condition",
    "1 while a monitoring condition (DataDrift, PredictionDrift, Stale, NumericFault) is "
    "True, 0 while it is False or Unknown; the chart's model alerts fire on it.",
    ["namespace", "name", "condition"],
)
MONITORING_EVALUATIONS = ResourceCounter(
    "modelship_monitoring_evaluations_total",
    "Monitoring evaluations of each ModelDeployment's stable version (one every "
    "spec.monitoring.interval).",
    ["namespace", "name"],
)

# The series of one ModelDeployment or TrainingRun: every metric labelled namespace and name.
_PER_MODEL_DEPLOYMENT = (PHASE, CANDIDATE_WEIGHT, ROLLOUTS, ROLLBACKS, ANALYSIS_RESULTS,
                         ANALYSIS_VALUE, DRIFT_SCORE, MODEL_AGE, MONITORING_CONDITION,
                         MONITORING_EVALUATIONS, SMOKE_REQUESTS)
_PER_TRAINING_RUN = (TRAINING_RUN_PHASE,)


def set_info() -> None:
    try:
        version = metadata.version("modelship")
    except metadata.PackageNotFoundError:
        version = "unknown"
    INFO.labels(version=version, revision=os.environ.get(REVISION_ENV) or "unknown").set(1)


def _remove_where(metric: _PerResource, keep: dict[str, str],
                  drop: dict[str, str]) -> None:
    """Remove the series of the resource `drop` names (namespace, name) that differ from
    `keep` somewhere."""
    names = list(metric._labelnames)  # prometheus_client keeps no public accessor
    for values in metric.series_of(drop["namespace"], drop["name"]):
        labels = dict(zip(names, values, strict=True))
        if all(labels.get(k) == v for k, v in drop.items()) and (
                not keep or any(labels.get(k) != v for k, v in keep.items())):
            metric.remove(*values)


def set_phase(metric: ResourceGauge, namespace: str, name: str, model: str, phase: str,
              phases: tuple[str, ...]) -> None:
    """One series per phase (1 for `phase`); a changed model drops the old model's series."""
    where = {"namespace": namespace, "name": name}
    _remove_where(metric, {"model": model}, where)
    for p in phases:
        metric.labels(namespace=namespace, name=name, model=model, phase=p).set(
            1 if p == phase else 0)


def set_monitoring(namespace: str, name: str, status: MonitoringStatus | None,
                   conditions: Sequence[Condition]) -> None:
    """The monitoring series of one resource, as its status says (none when it is off)."""
    where = {"namespace": namespace, "name": name}
    for metric in (DRIFT_SCORE, MODEL_AGE, MONITORING_CONDITION):
        _remove_where(metric, {}, where)
    if status is None:
        return
    for stat in status.statistics or []:
        if stat.psi is not None:
            DRIFT_SCORE.labels(namespace=namespace, name=name, statistic=stat.name).set(stat.psi)
    if status.model_age_seconds is not None:
        MODEL_AGE.labels(namespace=namespace, name=name, source=status.age_source or ""
                         ).set(status.model_age_seconds)
    for cond in conditions:
        if cond.type in MONITORING_CONDITIONS:
            MONITORING_CONDITION.labels(namespace=namespace, name=name, condition=cond.type
                                        ).set(1 if cond.status == "True" else 0)


def rollback_cause(decision: Decision) -> str:
    """The failing check(s) of a rollback, or a word for a rollback without analysis."""
    failed = sorted({r.name for r in decision.analysis_run or () if r.result == "Failed"})
    if failed:
        return ",".join(failed)
    reason = decision.finished.reason if decision.finished is not None else ""
    if reason.startswith("ProgressDeadlineExceeded"):
        return "ProgressDeadlineExceeded"
    if "not ready" in reason:
        return "NotReady"
    if "mirror" in reason:
        return "MirrorUnsupported"
    return "Other"


def forget_model_deployment(namespace: str, name: str) -> None:
    """The resource is gone: its series leave /metrics (a deleted one must not alert)."""
    for metric in _PER_MODEL_DEPLOYMENT:
        _remove_where(metric, {}, {"namespace": namespace, "name": name})


def forget_training_run(namespace: str, name: str) -> None:
    for metric in _PER_TRAINING_RUN:
        _remove_where(metric, {}, {"namespace": namespace, "name": name})


def markdown() -> str:
    """docs/metrics.md: every modelship_* metric registered with its type and labels."""
    lines = [
        "# The operator's metrics",
        "",
        "Served on the operator's metrics port (`MODELSHIP_METRICS_PORT`, chart value "
        "`metricsPort`) at `/metrics`; the chart's ServiceMonitor scrapes them. Series "
        "labelled `namespace` and `name` belong to one ModelDeployment or TrainingRun and "
        "are removed when it is deleted. Generated from `operator/src/modelship/adapters/"
        "metrics.py` by `python -m modelship.adapters.metrics > docs/metrics.md`; a unit test "
        "fails when they differ.",
        "",
        "| Metric | Type | Labels | Meaning |",
        "|---|---|---|---|",
    ]
    for metric in defined():
        name = metric._name + ("_total" if metric._type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames)
        lines.append(f"| `{name}` | {metric._type} | {labels} | {metric._documentation} |")
    lines += ["", "Python's process and platform collectors add the usual `process_*` and "
              "`python_*` series.", ""]
    return "\n".join(lines)


def defined() -> list[MetricWrapperBase]:
    """The modelship_* metrics registered in this process, by name."""
    found = {id(c): c for c in REGISTRY._names_to_collectors.values()
             if isinstance(c, MetricWrapperBase) and c._name.startswith("modelship_")}
    return sorted(found.values(), key=lambda m: m._name)


if __name__ == "__main__":
    sys.stdout.write(markdown())
