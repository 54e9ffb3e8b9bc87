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
