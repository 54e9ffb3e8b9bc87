"""High availability end to end: two operator processes with leader election, a canary under
way, the leader SIGKILLed (as when its node dies). The standby takes over and the rollout
carries on from the stage stored in status; nothing is done twice.

The canary uses the `replicas` traffic provider on kwok's simulated nodes, so neither the
gateway nor Triton is needed: what is under test is who acts, and when.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Kubectl, wait_for, wait_for_status
from tests.integration.test_leader_election import LEASE, holder, metric
from tests.integration.test_modeldeployment import ready, sample

from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

NAME = "defects-dev"
# The second step has no pause: it waits for `modelship promote`, so the stage the leader
# dies in is still the stage when the standby first acts, however long the failover takes.
ROLLOUT = {"canary": {"steps": [{"weight": 25, "pause": "1s"}, {"weight": 50},
                                {"weight": 75, "pause": "2s"}]}}


def _doc(version: int) -> dict[str, Any]:
    doc = sample(version=version)
    doc["spec"]["rollout"] = ROLLOUT
    return doc


def _events(kubectl: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(kubectl("get", "events", "-o", "json").stdout)[
        "items"]
    return [e for e in items if e["involvedObject"]["kind"] == "ModelDeployment"]


def test_standby_takes_over_a_canary_when_the_leader_is_killed(
        cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path) -> None:
    ops = {name: OperatorProcess(cluster.kubeconfig, tmp_path / name, kubectl.namespace,
                                 leader_election=True, name=name)
           for name in ("op-a", "op-b")}
    leader, standby = ops["op-a"], ops["op-b"]
    try:
        leader.start()
        wait_for("op-a leads", lambda: holder(kubectl).startswith("op-a-"), timeout=30)
        standby.start()
        assert standby.health()["role"] == "standby"

        kubectl.apply(_doc(1))
        wait_for("Ready v1", lambda: ready(kubectl, NAME, 1), timeout=60)
        kubectl.apply(_doc(2))

        def status() -> dict[str, Any]:
            return dict(((kubectl.get("md", NAME) or {}).get("status")) or {})

        before = wait_for_status("the second canary step, waiting for promote", status,
                                 lambda st: (st.get("rollout") or {}).get("step") == 1
                                 and (st.get("weights") or {}).get("candidate") == 50,
                                 timeout=60, context=leader.log_tail)
        candidate = kubectl.get("deployment", f"{NAME}-v2")
        assert candidate is not None
        assert metric(standby, "modelship_reconciles_total") == 0
        assert metric(standby, "modelship_kube_writes_total") == 0

        killed_at = time.time()
        leader.kill()
        lease = wait_for("op-b holds the Lease", lambda: (
            kubectl.get("lease", LEASE) if holder(kubectl).startswith("op-b-") else None),
            timeout=40, interval=0.1)
        wait_for("op-b's first reconcile", lambda: metric(
            standby, "modelship_reconciles_total") > 0, timeout=30, interval=0.1)
        reconciled_at = time.time()
        acquired_at = datetime.fromisoformat(lease["spec"]["acquireTime"]).timestamp()
        print(f"\nfailover: Lease taken {acquired_at - killed_at:.1f}s after SIGKILL, "
              f"first reconcile by the new leader within {reconciled_at - killed_at:.1f}s "
              f"(Lease {lease['spec']['leaseDurationSeconds']}s)")
        assert lease["spec"]["leaseTransitions"] == 1

        # The new leader found everything where the old one left it: same rollout, same
        # stage, the candidate untouched, and nothing to write.
        after = status()
        assert after["rollout"]["startedAt"] == before["rollout"]["startedAt"]
        assert after["rollout"]["stageStartedAt"] == before["rollout"]["stageStartedAt"]
        assert after["rollout"]["step"] == 1 and after["weights"]["candidate"] == 50
        still = kubectl.get("deployment", f"{NAME}-v2")
        assert still is not None
        assert still["metadata"]["resourceVersion"] == candidate["metadata"]["resourceVersion"]
        assert metric(standby, "modelship_kube_writes_total") == 0, standby.log_tail()

        # It carries on from there: promote past the waiting step, then the timed one.
        kubectl("annotate", "--overwrite", "md", NAME, "modelship.io/command=promote@failover")
        done = wait_for_status("promoted by the new leader", status,
                               lambda st: st.get("phase") == "Ready"
                               and st.get("stableVersion") == 2,
                               timeout=60, context=standby.log_tail)
    finally:
        for op in ops.values():
            op.stop()
    assert [h["outcome"] for h in done["history"]] == ["Promoted"]
    assert done["history"][0]["startedAt"] == before["rollout"]["startedAt"]
    events = _events(kubectl)
    reasons = Counter(e["reason"] for e in events)
    assert reasons["RolloutStarted"] == 1 and reasons["Promoted"] == 1, reasons
    # Each stage began once, and no event was emitted twice (by either leader).
    assert reasons["StageStarted"] == len(ROLLOUT["canary"]["steps"]), reasons
    repeated = [(e["reason"], e["message"]) for e in events if (e.get("count") or 1) > 1]
    assert not repeated, repeated
    messages = Counter((e["reason"], e["message"]) for e in events)
    assert all(n == 1 for n in messages.values()), messages
