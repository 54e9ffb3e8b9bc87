"""Durations, conditions, version resolution and the API adapter's pure helpers."""

from __future__ import annotations

import pytest

from modelship.adapters.kube import contains, merge_patch
from modelship.core.api_errors import refused
from modelship.core.conditions import set_condition
from modelship.core.durations import parse_duration
from modelship.core.versions import resolve
from modelship_api.common import Condition
from modelship_api.modeldeployment import ModelRef


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("1m30s", 90), ("2h", 7200), ("1.5m", 90), ("0s", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "5 minutes", "1d", "s", "1m 30s"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"use e\.g\. 500ms"):
        parse_duration(text)


def test_condition_time_moves_only_on_status_change() -> None:
    first = set_condition(None, Condition(type="Ready", status="False"), "t1")
    same = set_condition(first, Condition(type="Ready", status="False", message="x"), "t2")
    assert same[0].last_transition_time == "t1" and same[0].message == "x"
    flipped = set_condition(same, Condition(type="Ready", status="True"), "t3")
    assert flipped[0].last_transition_time == "t3"


def _run(name: str, version: int, finished: str, phase: str = "Succeeded",
         verdict: str = "Blessed", model: str = "m") -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"model": model},
            "status": {"phase": phase, "version": version, "completionTime": finished,
                       "gate": {"verdict": verdict}}}


def test_follow_training_runs_picks_newest_blessed() -> None:
    ref = ModelRef.model_validate({"name": "m", "fromTrainingRuns": {"matchLabels": {"a": "b"}}})
    runs = [
        _run("a", 3, "2026-11-20T00:00:00Z"),
        _run("b", 5, "2026-11-21T00:00:00Z"),
        _run("c", 6, "2026-11-22T00:00:00Z", phase="Rejected", verdict="Rejected"),
        _run("d", 7, "2026-11-23T00:00:00Z", model="other"),
    ]
    assert resolve(ref, runs).version == 5
    none = resolve(ref, runs[2:])
    assert none.version is None and "a=b" in none.reason


def test_contains_ignores_server_added_fields() -> None:
    desired = {"spec": {"replicas": 1, "ports": [{"port": 80}]}}
    actual = {"spec": {"replicas": 1, "ports": [{"port": 80, "protocol": "TCP"}],
                       "clusterIP": "10.0.0.1"}, "status": {}}
    assert contains(actual, desired)
    assert not contains(actual, {"spec": {"replicas": 2}})
    assert not contains(actual, {"spec": {"ports": [{"port": 80}, {"port": 81}]}})


def test_merge_patch_nulls_removed_keys_and_skips_equal_ones() -> None:
    old = {"phase": "Progressing", "candidateVersion": 2, "weights": {"stable": 90,
                                                                      "candidate": 10}}
    new = {"phase": "Ready", "weights": {"stable": 100, "candidate": 10}}
    assert merge_patch(old, new) == {"candidateVersion": None, "phase": "Ready",
                                     "weights": {"stable": 100}}
    assert merge_patch(new, new) == {}


def test_a_refused_request_keeps_the_api_servers_words() -> None:
    message = ('jobs.batch "r-train" is forbidden: User "system:serviceaccount:ms:op" cannot '
               'patch resource "jobs" in API group "batch" in the namespace "ns"')
    cond = refused(403, "Forbidden", message, 3)
    assert (cond.type, cond.status, cond.reason, cond.observed_generation) == \
        ("ReconcileError", "True", "Forbidden", 3)
    assert cond.message.startswith(f"the Kubernetes API refused a request (403 Forbidden): "
                                   f"{message}; grant this to the operator's service account")
    assert refused(500, "", "etcd timeout", None).message == \
        "the Kubernetes API refused a request (500 HTTP500): etcd timeout"
