"""The gateway's verdict on a GRPCRoute, as the rollout core sees it."""

from __future__ import annotations

from typing import Any

from modelship.core.releases import Release
from modelship.core.rollout import SetTraffic
from modelship.core.route_status import observe_route
from modelship.core.traffic import grpc_route
from tests.unit.test_traffic import md

PARENT = {"name": "gw", "namespace": "infra", "sectionName": "grpc"}


def cond(type_: str, status: str, generation: int, reason: str = "", message: str = ""
         ) -> dict[str, Any]:
    return {"type": type_, "status": status, "observedGeneration": generation,
            "reason": reason or type_, "message": message}


def route(traffic: SetTraffic, generation: int = 3,
          parents: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj = grpc_route(md(), traffic)
    obj["metadata"]["generation"] = generation
    if parents is not None:
        obj["status"] = {"parents": parents}
    return obj


def parent(*conditions: dict[str, Any], ref: dict[str, str] | None = None
           ) -> dict[str, Any]:
    return {"parentRef": ref or PARENT, "controllerName": "example.com/gateway",
            "conditions": list(conditions)}


def test_accepted_with_refs_resolved_for_the_current_generation() -> None:
    seen = observe_route(route(SetTraffic(1, 2, 30, 0), parents=[parent(
        cond("Accepted", "True", 3), cond("ResolvedRefs", "True", 3))]), "defects")
    assert seen.state == "Accepted" and seen.generation == 3
    assert dict(seen.weights) == {Release(1): 70, Release(2): 30} and not seen.mirrors
    assert seen.sends_to(Release(2)) and seen.sends_to(Release(1))


def test_a_verdict_on_an_older_generation_is_pending() -> None:
    seen = observe_route(route(SetTraffic(1, None, 0, 0), parents=[parent(
        cond("Accepted", "True", 2), cond("ResolvedRefs", "True", 2))]), "defects")
    assert seen.state == "Pending" and seen.generation == 3
    assert not seen.sends_to(Release(2))


def test_no_status_and_no_route_are_pending() -> None:
    assert observe_route(route(SetTraffic(1, 2, 0, 0)), "defects").state == "Pending"
    missing = observe_route(None, "defects")
    assert missing.state == "Pending" and missing.generation == 0


def test_refusal_carries_the_gateways_reason_and_message() -> None:
    seen = observe_route(route(SetTraffic(1, 2, 10, 0), parents=[parent(
        cond("Accepted", "False", 3, "NoMatchingParent", "No listeners match this parent"),
        cond("ResolvedRefs", "True", 3))]), "defects")
    assert (seen.state, seen.reason) == ("Refused", "NoMatchingParent")
    assert seen.message == "Accepted=False: No listeners match this parent"
    unresolved = observe_route(route(SetTraffic(1, 2, 10, 0), parents=[parent(
        cond("Accepted", "True", 3),
        cond("ResolvedRefs", "False", 3, "BackendNotFound", "service defects-v2 not found"))]),
        "defects")
    assert (unresolved.state, unresolved.reason) == ("Refused", "BackendNotFound")


def test_every_parent_must_accept_and_others_verdicts_do_not_count() -> None:
    other = {"name": "gw2", "namespace": "infra"}
    obj = route(SetTraffic(1, 2, 0, 40), parents=[
        parent(cond("Accepted", "True", 3), cond("ResolvedRefs", "True", 3), ref=other)])
    assert observe_route(obj, "defects").state == "Pending"
    obj["status"]["parents"].append(parent(cond("Accepted", "True", 3),
                                           cond("ResolvedRefs", "True", 3)))
    seen = observe_route(obj, "defects")
    assert seen.state == "Accepted"
    assert dict(seen.mirrors) == {Release(2): 40} and seen.sends_to(Release(2))
    assert dict(seen.weights) == {Release(1): 100, Release(2): 0}


def test_backends_of_two_revisions_of_one_version_are_told_apart() -> None:
    """`<name>-v3` and `<name>-v3-r1` are two releases of version 3 (a new pod template)."""
    obj = route(SetTraffic(3, 3, 20, 0, stable_revision=0, candidate_revision=1),
                parents=[parent(cond("Accepted", "True", 3), cond("ResolvedRefs", "True", 3))])
    names = [b["name"] for b in obj["spec"]["rules"][0]["backendRefs"]]
    assert names == ["defects-v3", "defects-v3-r1"]
    seen = observe_route(obj, "defects")
    assert dict(seen.weights) == {Release(3, 0): 80, Release(3, 1): 20}
    assert seen.sends_to(Release(3, 1)) and not seen.sends_to(Release(3, 2))
    assert seen.preview == Release(3, 1)


def test_the_preview_rule_is_no_weight_but_still_sends_to_the_candidate() -> None:
    """Weights come from the weighted rule only; the header-matched rule is the preview,
    and a release it names is still reachable (not yet drained)."""
    seen = observe_route(route(SetTraffic(1, 2, 0, 0)), "defects")
    assert dict(seen.weights) == {Release(1): 100, Release(2): 0}
    assert seen.preview == Release(2) and seen.sends_to(Release(2))
    gone = observe_route(route(SetTraffic(1, None, 0, 0)), "defects")
    assert gone.preview is None and not gone.sends_to(Release(2))


def test_a_preview_of_the_stable_version_is_not_the_candidate_revision() -> None:
    """The route blocker compares the preview with the candidate release: a preview on
    `<name>-v3` while revision 1 of version 3 is the candidate is not the route asked for."""
    obj = route(SetTraffic(3, 3, 0, 0, candidate_revision=1),
                parents=[parent(cond("Accepted", "True", 3), cond("ResolvedRefs", "True", 3))])
    assert observe_route(obj, "defects").preview == Release(3, 1)
    obj["spec"]["rules"][1]["backendRefs"][0]["name"] = "defects-v3"
    seen = observe_route(obj, "defects")
    assert seen.preview == Release(3, 0) and not seen.sends_to(Release(3, 1))
