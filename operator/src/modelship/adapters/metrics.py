"""The operator's own Prometheus metrics (served on the operator's metrics endpoint)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

KUBE_WRITES = Counter(
    "modelship_kube_writes_total",
    "Writes the operator made to the Kubernetes API.",
    ["verb", "kind"],
)
RECONCILES = Counter(
    "modelship_reconciles_total",
    "Reconcile passes by kind and result.",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "modelship_reconcile_duration_seconds",
    "Duration of one reconcile pass.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PHASE = Gauge(
    "modelship_modeldeployment_phase",
    "1 for the current phase of each ModelDeployment.",
    ["namespace", "name", "phase"],
)
CANDIDATE_WEIGHT = Gauge(
    "modelship_candidate_weight_percent",
    "Percent of traffic routed to the candidate version.",
    ["namespace", "name"],
)
ROLLOUTS = Counter(
    "modelship_rollouts_total",
    "Finished rollouts by strategy and outcome (Promoted, RolledBack, Aborted, Superseded).",
    ["namespace", "name", "strategy", "outcome"],
)
ROLLBACKS = Counter(
    "modelship_rollbacks_total",
    "Automatic and manual rollbacks; alert on increase().",
    ["namespace", "name"],
)
ANALYSIS_RESULTS = Counter(
    "modelship_analysis_results_total",
    "Analysis check results by check and result (Successful, Failed, Inconclusive).",
    ["namespace", "name", "check", "result"],
)
ANALYSIS_VALUE = Gauge(
    "modelship_analysis_value",
    "The latest measured value of each analysis check.",
    ["namespace", "name", "check"],
)
TRAINING_RUNS = Counter(
    "modelship_training_runs_total",
    "Finished TrainingRuns by outcome (Succeeded, Rejected, Failed).",
    ["namespace", "outcome"],
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
