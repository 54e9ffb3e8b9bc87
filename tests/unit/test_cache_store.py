"""The watch caches' store: a write's response is never undone by an older watch event,
lookups by owner label see exactly the owner's objects, and a relist reports what changed."""

from __future__ import annotations

from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod

from modelship import constants
from modelship.adapters.cache import Kind, Store
from modelship.adapters.kube import WATCHED

OWNER = constants.LABEL_DEPLOYMENT


def dep(name: str, rv: int, owner: str = "a", ns: str = "ns",
        replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv),
                         "labels": {OWNER: owner}, "managedFields": [{"manager": "x"}]},
            "spec": {"replicas": replicas}}


def store() -> Store:
    return Store(Kind(Deployment, index=(OWNER,)))


def test_an_older_event_does_not_overwrite_what_a_write_returned() -> None:
    s = store()
    assert s.put(dep("a-v1", 10, replicas=2))  # the write's response
    assert not s.put(dep("a-v1", 9, replicas=1))  # the watch catching up
    got = s.get("ns", "a-v1")
    assert got is not None and got["spec"]["replicas"] == 2
    assert "managedFields" not in got["metadata"]
    assert s.put(dep("a-v1", 10, replicas=2))  # the same version again: still stored


def test_lookup_by_owner_sees_only_the_owners_objects_and_follows_relabels() -> None:
    s = store()
    s.put(dep("a-v1", 1, owner="a"))
    s.put(dep("a-v2", 2, owner="a"))
    s.put(dep("b-v1", 3, owner="b"))
    s.put(dep("a-v1", 1, owner="a", ns="other"))
    assert [d["metadata"]["name"] for d in s.select("ns", {OWNER: "a"})] == ["a-v1", "a-v2"]
    s.put(dep("a-v2", 4, owner="b"))
    assert [d["metadata"]["name"] for d in s.select("ns", {OWNER: "a"})] == ["a-v1"]
    assert [d["metadata"]["name"] for d in s.select("ns", {OWNER: "b"})] == ["a-v2", "b-v1"]
    s.remove("ns", "b-v1")
    assert [d["metadata"]["name"] for d in s.select("ns")] == ["a-v1", "a-v2"]


def test_relist_reports_changes_and_drops_what_is_gone_in_its_scope_only() -> None:
    s = store()
    assert not s.covers("ns")
    assert s.replace("ns", [dep("a-v1", 1), dep("a-v2", 2)]) == [
        ("ADDED", dep("a-v1", 1)), ("ADDED", dep("a-v2", 2))]
    assert s.covers("ns") and not s.covers("other")
    s.replace("other", [dep("x", 3, ns="other")])
    changes = s.replace("ns", [dep("a-v1", 1), dep("a-v3", 5)])
    assert [(event, obj["metadata"]["name"]) for event, obj in changes] == [
        ("ADDED", "a-v3"), ("DELETED", "a-v2")]
    assert s.get("other", "x") is not None


def test_a_kind_leaves_the_fields_it_drops_out_of_the_store() -> None:
    s = Store(Kind(Deployment, index=(OWNER,), drop=("spec",)))
    assert s.put(dep("a-v1", 1))
    got = s.get("ns", "a-v1")
    assert got is not None and "spec" not in got
    assert got["metadata"]["labels"] == {OWNER: "a"}
    assert [d["metadata"]["name"] for d in s.select("ns", {OWNER: "a"})] == ["a-v1"]


def test_the_operators_pod_cache_keeps_labels_and_status_only() -> None:
    pods = next(k for k in WATCHED if k.res is Pod)
    s = Store(pods)
    s.put({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "1",
                        "labels": {OWNER: "a"}},
           "spec": {"containers": [{"name": "triton"}]},
           "status": {"podIP": "10.0.0.1"}})
    got = s.get("ns", "p")
    assert got is not None and "spec" not in got and got["status"] == {"podIP": "10.0.0.1"}
