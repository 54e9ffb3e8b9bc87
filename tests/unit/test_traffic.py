"""Traffic providers' objects: the GRPCRoute and the stable Service's selector."""

from __future__ import annotations

from typing import Any

import pytest

from modelship.core.rollout import SetTraffic
from modelship.core.traffic import grpc_route, stable_selector
from modelship_api.modeldeployment import ModelDeployment


def md(provider: str = "gateway") -> ModelDeployment:
    traffic: dict[str, Any] = {"provider": provider}
    if provider == "gateway":
        traffic["gateway"] = {"parentRefs": [{"name": "gw", "namespace": "infra",
                                              "sectionName": "grpc"}],
                              "hostnames": ["defects.internal"]}
    return ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "ns", "uid": "u"},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}, "traffic": traffic},
    })


def test_canary_route_splits_by_weight() -> None:
    route = grpc_route(md(), SetTraffic(1, 2, 30, 0))
    assert route["kind"] == "GRPCRoute"
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra",
                                            "sectionName": "grpc"}]
    assert route["spec"]["hostnames"] == ["defects.internal"]
    rule = route["spec"]["rules"][0]
    assert rule["backendRefs"] == [
        {"name": "defects-v1", "port": 8001, "weight": 70},
        {"name": "defects-v2", "port": 8001, "weight": 30}]
    assert "filters" not in rule


def test_shadow_route_mirrors_to_candidate_without_weight() -> None:
    rule = grpc_route(md(), SetTraffic(1, 2, 0, 25))["spec"]["rules"][0]
    assert [b["weight"] for b in rule["backendRefs"]] == [100, 0]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "defects-v2", "port": 8001}, "percent": 25}}]


def test_route_without_candidate_sends_all_to_stable() -> None:
    rule = grpc_route(md(), SetTraffic(3, None, 0, 0))["spec"]["rules"][0]
    assert rule["backendRefs"] == [{"name": "defects-v3", "port": 8001, "weight": 100}]


@pytest.mark.parametrize(("provider", "weight", "versions"), [
    ("gateway", 50, {"1"}),
    ("replicas", 0, {"1"}),
    ("replicas", 40, None),
    ("replicas", 100, {"2"}),
])
def test_stable_service_selector(provider: str, weight: int, versions: set[str] | None) -> None:
    """A weighted step of the replicas provider selects every version's pods: the rollout
    core guarantees only stable and candidate run then (tests/unit/rollout/
    test_rollout_routing.py); at 0 and 100 the selector is exact."""
    selector = stable_selector(md(provider), SetTraffic(1, 2, weight, 0))
    assert selector["modelship.io/modeldeployment"] == "defects"
    if versions is None:
        assert "modelship.io/model-version" not in selector
    else:
        assert {selector["modelship.io/model-version"]} == versions


def test_preview_rule_sends_the_header_to_the_candidate_at_any_weight() -> None:
    """While a candidate exists, `x-modelship-preview: true` reaches it even at weight 0
    (blue-green's preview, a shadow): the weighted rule stays first and unchanged."""
    for weight, mirror in ((0, 0), (0, 50), (30, 0), (100, 0)):
        rules = grpc_route(md(), SetTraffic(1, 2, weight, mirror))["spec"]["rules"]
        assert len(rules) == 2
        assert "matches" not in rules[0]
        assert rules[1] == {
            "matches": [{"headers": [{"type": "Exact", "name": "x-modelship-preview",
                                      "value": "true"}]}],
            "backendRefs": [{"name": "defects-v2", "port": 8001, "weight": 1}],
        }


def test_no_preview_rule_without_a_candidate() -> None:
    rules = grpc_route(md(), SetTraffic(1, None, 0, 0))["spec"]["rules"]
    assert len(rules) == 1 and "matches" not in rules[0]


def test_preview_rule_sends_the_header_to_a_candidate_revision() -> None:
    """A new pod template of the stable version: the header reaches the candidate
    release's Service, not the stable's of the same version."""
    rules = grpc_route(md(), SetTraffic(2, 2, 0, 0, candidate_revision=1))["spec"]["rules"]
    assert [b["name"] for b in rules[0]["backendRefs"]] == ["defects-v2", "defects-v2-r1"]
    assert rules[1]["backendRefs"] == [{"name": "defects-v2-r1", "port": 8001, "weight": 1}]
