"""The real gateway's verdict on the operator's GRPCRoute: Envoy Gateway refuses a route whose
parentRef names a listener its Gateway does not have. The ModelDeployment shows the gateway's
own reason and message, a Warning event marks it, and a rollout holds until the route is
fixed; then it goes on and promotes. Triton pods run on a simulated (kwok) node: the gateway
judges the route, not the backends' answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelship_dev.cluster import SIMULATED_TOLERATION
from modelship_dev.gateway import LocalGateway
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import Kubectl, wait_for_status
from tests.integration.test_gateway import gateway

pytestmark = pytest.mark.integration
__all__ = ["gateway"]  # test_gateway's module-scoped fixture

NAME = "routed"


def _md(version: int, parent_ref: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": "surface-defects", "version": version},
            "repository": {"hostPath": {"path": "/var/lib/modelship/model-repository"}},
            "runtime": {"backend": "python", "tolerations": [SIMULATED_TOLERATION]},
            "traffic": {"provider": "gateway", "gateway": {"parentRefs": [parent_ref]}},
            "rollout": {"canary": {"steps": [{"weight": 50, "pause": "1s"}]},
                        "abortScaleDownDelay": "0s"},
        },
    }


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _gateway_verdict(kubectl: Kubectl) -> dict[str, Any]:
    """The Accepted condition Envoy Gateway wrote on the route."""
    route = kubectl.get("grpcroute", NAME) or {}
    for parent in (route.get("status") or {}).get("parents") or []:
        for cond in parent.get("conditions") or []:
            if cond["type"] == "Accepted":
                return dict(cond)
    return {}


def test_a_refused_route_is_reported_and_holds_the_rollout(
        kubectl: Kubectl, operator: OperatorProcess, gateway: LocalGateway) -> None:
    def status() -> dict[str, Any]:
        return dict((kubectl.get("md", NAME) or {}).get("status") or {})

    def log() -> str:
        return "operator:\n" + operator.log_tail()

    wrong = {**gateway.parent_ref, "sectionName": "no-such-listener"}
    kubectl.apply(_md(1, wrong))
    st = wait_for_status("v1 serving, route refused", status, lambda s: s.get(
        "stableVersion") == 1 and _condition(s, "RouteAccepted").get("status") == "False",
        timeout=120, context=log)
    verdict = _gateway_verdict(kubectl)
    assert verdict.get("status") == "False", verdict
    cond = _condition(st, "RouteAccepted")
    assert cond["reason"] == verdict["reason"]  # the gateway's own words
    assert verdict["message"] in cond["message"]
    events = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    refused = [e for e in events if e["reason"] == "RouteRefused"]
    assert len(refused) == 1 and refused[0]["type"] == "Warning"
    assert verdict["reason"] in refused[0]["message"]

    # A new version is ready to take its first step, and holds for the route.
    kubectl.apply(_md(2, wrong))
    st = wait_for_status("rollout held for the route", status, lambda s: s.get(
        "candidateVersion") == 2 and "held: the gateway refused the GRPCRoute" in s.get(
        "message", ""), timeout=120, context=log)
    assert st["stableVersion"] == 1 and st["weights"]["candidate"] == 0
    assert st["rollout"]["stage"] == "Starting"

    # Fixed: the gateway accepts the route and the rollout goes on to promotion.
    kubectl.apply(_md(2, gateway.parent_ref))
    st = wait_for_status("promoted once the route is accepted", status, lambda s: s.get(
        "stableVersion") == 2 and s.get("phase") == "Ready", timeout=120, context=log)
    assert _condition(st, "RouteAccepted")["status"] == "True"
    assert st["history"][0]["outcome"] == "Promoted"
    reasons = [e["reason"] for e in json.loads(kubectl("get", "events", "-o", "json")
                                               .stdout)["items"]]
    assert "RouteAccepted" in reasons and reasons.count("RouteRefused") == 1
