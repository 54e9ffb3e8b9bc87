"""Turn a traffic decision into objects, for both providers (pure).

- gateway: one GRPCRoute per ModelDeployment with weighted backendRefs (canary), a
  RequestMirror filter (shadow) and a backend swap (blue-green: weight 0 -> 100). While a
  candidate exists a second rule sends requests with the header
  `x-modelship-preview: true` to it alone: the preview route (a header match outranks the
  rule without matches in Gateway API's precedence, whatever the rules' order).
- replicas: one Service across versions; the candidate's share is approximated by pod
  counts (the rollout core sizes the candidate, `rollout.routing.candidate_replicas`).
  Weight 0 narrows the Service to stable and weight 100 to the candidate, so both ends are
  exact and switching them is a route change, never a scale change.
"""

from __future__ import annotations

from typing import Any

from modelship import constants
from modelship.core import names
from modelship.core.rollout import SetTraffic
from modelship.core.triton_manifests import owner_reference
from modelship_api.modeldeployment import ModelDeployment

GRPC_ROUTE_API = "gateway.networking.k8s.io/v1"


def grpc_route(md: ModelDeployment, traffic: SetTraffic) -> dict[str, Any]:
    gateway = md.spec.traffic.gateway
    assert gateway is not None  # the CRD's CEL rule requires it for provider gateway
    name = md.metadata.name
    weight = traffic.candidate_weight if traffic.candidate_version is not None else 0
    backends: list[dict[str, Any]] = [{
        "name": names.release_name(name, traffic.stable),
        "port": constants.PORT_GRPC,
        "weight": 100 - weight,
    }]
    rule: dict[str, Any] = {"backendRefs": backends}
    if traffic.candidate is not None:
        candidate = names.release_name(name, traffic.candidate)
        backends.append({"name": candidate, "port": constants.PORT_GRPC, "weight": weight})
        if traffic.mirror_percent > 0:
            rule["filters"] = [{
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": candidate, "port": constants.PORT_GRPC},
                    "percent": traffic.mirror_percent,
                },
            }]
    rules = [rule]  # first: readers that look at rules[0] see the weighted split
    if traffic.candidate is not None:
        rules.append(preview_rule(names.release_name(name, traffic.candidate)))
    spec: dict[str, Any] = {
        "parentRefs": [p.to_api() for p in gateway.parent_refs],
        "rules": rules,
    }
    if gateway.hostnames:
        spec["hostnames"] = list(gateway.hostnames)
    return {
        "apiVersion": GRPC_ROUTE_API,
        "kind": "GRPCRoute",
        "metadata": {
            "name": name,
            "namespace": md.metadata.namespace,
            "labels": names.common_labels(name, md.spec.model.name),
            "ownerReferences": [owner_reference(md)],
        },
        "spec": spec,
    }


def preview_rule(backend: str) -> dict[str, Any]:
    """Requests carrying the preview header go to `backend` (the candidate) only."""
    return {
        "matches": [{"headers": [{"type": "Exact", "name": constants.PREVIEW_HEADER,
                                  "value": constants.PREVIEW_HEADER_VALUE}]}],
        "backendRefs": [{"name": backend, "port": constants.PORT_GRPC, "weight": 1}],
    }


def stable_selector(md: ModelDeployment, traffic: SetTraffic) -> dict[str, str]:
    """Which pods the stable Service `<name>` selects.

    A selector cannot leave a version out, so at 0 < weight < 100 it selects every Triton
    pod of the ModelDeployment: the rollout core enters such a step only once no version
    but stable and candidate runs (`rollout.routing.weight_blocker`)."""
    name = md.metadata.name
    candidate, weight = traffic.candidate, traffic.candidate_weight
    if candidate is None or weight == 0 or md.spec.traffic.provider == "gateway":
        # With a gateway the route splits traffic; the Service is the stable fallback.
        return names.version_selector(name, traffic.stable)
    if weight >= 100:
        return names.version_selector(name, candidate)
    return names.all_versions_selector(name)
