"""Rollouts judged by a real Prometheus scraping a real Triton, driven by the real operator
against the real API server: canary, shadow and blue-green, each promoting a good version
and rolling back a bad one; Prometheus lost mid-analysis; the operator killed mid-rollout.

The traffic generator plays the gateway's part (see rollout_harness): it honours the
weights and the mirror in the GRPCRoute that the operator wrote.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Kubectl, wait_for, wait_for_status

from modelship.core import triton_manifests
from modelship_dev.cluster import SIMULATED_TOLERATION, LocalCluster
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.traffic import Behaviour, TrafficGenerator, read_route, write_model
from modelship_dev.triton import TritonServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rollout-repo")


@pytest.fixture(scope="module")
def triton(repository: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TritonServer]:
    """One Triton for the module; each test loads models of its own (explicit control).
    It exports the latency summary as the Tritons the operator renders do."""
    with TritonServer(repository, tmp_path_factory.mktemp("triton"),
                      extra_args=["--model-control-mode=explicit",
                                  *triton_manifests.LATENCY_SUMMARY_ARGS]) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusProcess]:
    prom = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), scrape_interval="1s",
                             static_targets=[f"127.0.0.1:{triton.metrics_port}"])
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture
def rollout_operator(cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path
                     ) -> Iterator[OperatorProcess]:
    # One Triton serves every test's models, so series carry no namespace label.
    op = OperatorProcess(cluster.kubeconfig, tmp_path, kubectl.namespace,
                         env={"MODELSHIP_ANALYSIS_NAMESPACE_LABEL": ""})
    op.start()
    try:
        yield op
    finally:
        op.stop()


class Scenario:
    """One ModelDeployment `md` of a model of its own, loaded into the shared Triton."""

    def __init__(self, kubectl: Kubectl, triton: TritonServer, repository: Path,
                 prometheus: PrometheusProcess, behaviours: dict[int, Behaviour]) -> None:
        self.kubectl, self.triton, self.prometheus = kubectl, triton, prometheus
        self.model = f"m{uuid.uuid4().hex[:8]}"
        write_model(repository, self.model, behaviours)
        url = f"http://127.0.0.1:{triton.http_port}/v2/repository/models/{self.model}/load"
        response = httpx.post(url, timeout=120)
        assert response.status_code == 200, response.text

    def apply(self, version: int, rollout: dict[str, Any],
              monitoring: dict[str, Any] | None = None) -> None:
        self.kubectl.apply({
            "apiVersion": "modelship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "md"},
            "spec": {
                "model": {"name": self.model, "version": version},
                "repository": {"hostPath": {"path": "/models"}},
                # Its pods run on kwok's simulated node; Triton is this module's process.
                "runtime": {"backend": "python", "tolerations": [SIMULATED_TOLERATION]},
                "traffic": {"provider": "gateway",
                            "gateway": {"parentRefs": [{"name": "inference-gateway"}]}},
                "rollout": rollout,
                **({"monitoring": monitoring} if monitoring is not None else {}),
            },
        })

    def status(self) -> dict[str, Any]:
        md = self.kubectl.get("md", "md") or {}
        return dict(md.get("status") or {})

    def wait_phase(self, phase: str, timeout: float = 90,
                   stable: int | None = None) -> dict[str, Any]:
        """Wait for `phase` (and, when given, that `stable` is the stable version)."""
        return wait_for_status(
            f"phase {phase} (stable {stable})", self.status,
            lambda st: st.get("phase") == phase and (
                stable is None or st.get("stableVersion") == stable), timeout)

    def traffic(self, **kwargs: Any) -> TrafficGenerator:
        return TrafficGenerator(self.kubectl.cluster, self.kubectl.namespace, "md", self.model,
                                self.triton.grpc_url, **kwargs)


def analysis(prometheus: PrometheusProcess, *checks: dict[str, Any],
             **extra: Any) -> dict[str, Any]:
    return {
        "prometheus": {"address": prometheus.url, "timeout": "2s"},
        "interval": "1s",
        "window": "4s",
        "failureLimit": 2,
        "inconclusiveLimit": 3,
        "checks": list(checks) or [{"name": "errors", "builtin": "errorRatio", "max": 0.05}],
        **extra,
    }


ERRORS = {"name": "errors", "builtin": "errorRatio", "max": 0.05}
# Far from both sides: the slow version is ~100x stable, a loaded machine adds noise.
LATENCY = {"name": "latency", "builtin": "meanLatency", "relativeToStable": True, "max": 5}
P99 = {"name": "p99", "builtin": "p99Latency", "relativeToStable": True, "max": 3}


@pytest.fixture
def scenario(kubectl: Kubectl, triton: TritonServer, repository: Path,
             prometheus: PrometheusProcess, rollout_operator: OperatorProcess
             ) -> Iterator[Any]:
    made: list[Scenario] = []

    def make(behaviours: dict[int, Behaviour]) -> Scenario:
        sc = Scenario(kubectl, triton, repository, prometheus, behaviours)
        made.append(sc)
        return sc

    yield make
    for sc in made:
        httpx.post(f"http://127.0.0.1:{triton.http_port}/v2/repository/models/"
                   f"{sc.model}/unload", timeout=60)


def _start_stable(sc: Scenario, rollout: dict[str, Any]) -> None:
    sc.apply(1, rollout)
    sc.wait_phase("Ready", stable=1)


def test_canary_promotes_a_good_version(scenario: Any, prometheus: PrometheusProcess) -> None:
    sc = scenario({1: "good", 2: "good"})
    rollout = {"canary": {"steps": [{"weight": 20, "pause": "3s"}, {"weight": 50,
                                                                      "pause": "3s"}]},
               "analysis": analysis(prometheus, ERRORS, LATENCY)}
    _start_stable(sc, rollout)
    with sc.traffic() as gen:
        sc.apply(2, rollout)
        st = sc.wait_phase("Ready", timeout=120, stable=2)
    assert st.get("candidateVersion") is None
    assert st["history"][0]["outcome"] == "Promoted"
    seen = {w.get(2) for w in gen.stats.weights_seen if 2 in w and 1 in w}
    assert {20, 50} <= seen, seen  # the route really went through the steps
    assert gen.stats.failed.get(2, 0) == 0
    route = read_route(sc.kubectl.cluster, sc.kubectl.namespace, "md")
    assert route is not None and route.weights == {2: 100}


def test_canary_rolls_back_a_version_that_errors(
        scenario: Any, prometheus: PrometheusProcess,
        rollout_operator: OperatorProcess) -> None:
    sc = scenario({1: "good", 2: "failing"})
    rollout = {"canary": {"steps": [{"weight": 30, "pause": "30s"}]},
               "analysis": analysis(prometheus, ERRORS), "abortScaleDownDelay": "2s"}
    _start_stable(sc, rollout)
    with sc.traffic() as gen:
        sc.apply(2, rollout)
        st = sc.wait_phase("RolledBack", timeout=90)
        rolled_back_at = time.monotonic()
        # The route went back first; the candidate goes once the (stand-in) gateway
        # confirmed that route, and abortScaleDownDelay later.
        wait_for("candidate scaled down", lambda: sc.kubectl.get("deployment", "md-v2") is None)
    assert st["stableVersion"] == 1 and st.get("candidateVersion") is None
    assert "errors" in st["message"] or "errors" in st["history"][0]["reason"]
    assert gen.stats.failed.get(2, 0) > 0 and gen.stats.failed.get(1, 0) == 0
    route = read_route(sc.kubectl.cluster, sc.kubectl.namespace, "md")
    assert route is not None and route.weights.get(2, 0) == 0
    assert sc.status().get("draining") is None
    degraded = [c for c in st["conditions"] if c["type"] == "Degraded"]
    assert degraded and degraded[0]["status"] == "True"
    events = sc.kubectl("get", "events", "-o", "json").stdout
    assert "RolledBack" in events
    assert (f'modelship_rollbacks_total{{check="errors",model="{sc.model}",name="md",'
            f'namespace="{sc.kubectl.namespace}"}} 1.0') in rollout_operator.metrics()
    # The spec still names the bad version: it stays RolledBack, no new attempt.
    time.sleep(3)
    assert sc.status()["phase"] == "RolledBack"
    assert time.monotonic() - rolled_back_at >= 3
    # Reverting the spec to the stable version takes effect at once.
    sc.apply(1, rollout)
    st = sc.wait_phase("Ready", timeout=30, stable=1)
    assert not [c for c in st["conditions"] if c["type"] == "Degraded" and c["status"] == "True"]


def test_canary_rolls_back_a_version_slower_than_stable(
        scenario: Any, prometheus: PrometheusProcess) -> None:
    sc = scenario({1: "good", 2: "slow"})
    rollout = {"canary": {"steps": [{"weight": 50, "pause": "30s"}]},
               "analysis": analysis(prometheus, ERRORS, LATENCY)}
    _start_stable(sc, rollout)
    with sc.traffic():
        sc.apply(2, rollout)
        st = sc.wait_phase("RolledBack", timeout=90)
    assert "latency" in st["history"][0]["reason"]
    checks = {c["name"]: c for c in st["analysis"]["checks"]}
    assert checks["latency"]["result"] == "Failed"
    assert checks["latency"]["value"] > 5


def test_canary_rolls_back_a_slow_tail_on_p99_while_the_mean_passes(
        scenario: Any, prometheus: PrometheusProcess) -> None:
    """Both versions take 20 ms; the candidate takes 200 ms more on every 50th request. Its
    mean stays near stable's; Triton's p99 (about 8x stable's) rolls it back, one minute of
    Triton's window after its first failed run."""
    sc = scenario({1: "steady", 2: "tail"})
    rollout = {"canary": {"steps": [{"weight": 50, "pause": "150s"}]},
               "analysis": analysis(prometheus, ERRORS, LATENCY, P99)}
    _start_stable(sc, rollout)
    with sc.traffic():
        sc.apply(2, rollout)
        st = sc.wait_phase("RolledBack", timeout=180)
    assert st["history"][0]["reason"].startswith("p99="), st["history"][0]
    checks = {c["name"]: c for c in st["analysis"]["checks"]}
    assert checks["p99"]["result"] == "Failed" and checks["p99"]["value"] > 3, checks
    assert checks["latency"]["result"] == "Successful", checks


def test_canary_that_predicts_one_class_is_rolled_back_by_prediction_drift(
        scenario: Any, prometheus: PrometheusProcess) -> None:
    """Version 2 answers every request, without errors and as fast as version 1, but its
    predictions (the class counter a modelship runner exports) are all "ok": only the check
    of its class distribution against stable's, over the same traffic, catches it."""
    sc = scenario({1: "good", 2: "collapsed"})
    drift = {"name": "predictions", "builtin": "predictionDrift", "relativeToStable": True,
             "max": 0.25}
    rollout = {"canary": {"steps": [{"weight": 50, "pause": "60s"}]},
               "analysis": analysis(prometheus, ERRORS, LATENCY, drift, window="10s",
                                    inconclusiveLimit=100)}
    monitoring = {"minSamples": 100}
    sc.apply(1, rollout, monitoring)
    sc.wait_phase("Ready", stable=1)
    with sc.traffic() as gen:
        sc.apply(2, rollout, monitoring)
        st = sc.wait_phase("RolledBack", timeout=120)
    assert st["stableVersion"] == 1
    assert st["history"][0]["reason"].startswith("predictions="), st["history"][0]
    checks = {c["name"]: c for c in st["analysis"]["checks"]}
    assert checks["predictions"]["result"] == "Failed" and checks["predictions"]["value"] > 0.25
    assert checks["errors"]["result"] == "Successful", checks["errors"]
    assert checks["latency"]["result"] == "Successful", checks["latency"]
    assert gen.stats.failed.get(2, 0) == 0 and gen.stats.sent.get(2, 0) > 0


@pytest.mark.parametrize(("behaviour", "outcome"), [("good", "Ready"),
                                                    ("failing", "RolledBack")])
def test_shadow(scenario: Any, prometheus: PrometheusProcess, behaviour: Behaviour,
                outcome: str) -> None:
    sc = scenario({1: "good", 2: behaviour})
    rollout = {"shadow": {"mirrorPercent": 100, "duration": "5s"},
               "analysis": analysis(prometheus, ERRORS)}
    _start_stable(sc, rollout)
    with sc.traffic() as gen:
        sc.apply(2, rollout)
        st = sc.wait_phase(outcome, timeout=90, stable=2 if outcome == "Ready" else 1)
    assert gen.stats.mirrored > 0
    # Clients only ever saw stable's answers while the candidate was shadowed.
    assert gen.stats.failed.get(1, 0) == 0
    assert st["stableVersion"] == (2 if outcome == "Ready" else 1)


@pytest.mark.parametrize(("behaviour", "outcome"), [("good", "Ready"),
                                                    ("failing", "RolledBack")])
def test_blue_green(scenario: Any, prometheus: PrometheusProcess, behaviour: Behaviour,
                    outcome: str) -> None:
    sc = scenario({1: "good", 2: behaviour})
    rollout = {"blueGreen": {"previewDuration": "4s", "postSwitchDuration": "3s"},
               "analysis": analysis(prometheus, ERRORS), "scaleDownDelay": "5s"}
    _start_stable(sc, rollout)
    with sc.traffic(preview_percent=30) as gen:
        sc.apply(2, rollout)
        st = sc.wait_phase(outcome, timeout=90, stable=2 if outcome == "Ready" else 1)
    weights = {w.get(2, 0) for w in gen.stats.weights_seen}
    if outcome == "Ready":
        assert weights <= {0, 100}  # all at once: never a split
        assert st["stableVersion"] == 2
        assert st["warmVersions"][0]["version"] == 1  # old stays warm for a switch-back
    else:
        assert st["stableVersion"] == 1
        assert 100 not in weights  # the bad preview never took traffic


def test_prometheus_lost_mid_analysis_never_promotes(
        scenario: Any, prometheus: PrometheusProcess) -> None:
    sc = scenario({1: "good", 2: "good"})
    rollout = {"canary": {"steps": [{"weight": 20, "pause": "2s"}, {"weight": 60,
                                                                      "pause": "2s"}]},
               "analysis": analysis(prometheus, ERRORS, inconclusivePolicy="Hold")}
    _start_stable(sc, rollout)
    with sc.traffic():
        sc.apply(2, rollout)
        wait_for("first step", lambda: (sc.status().get("weights") or {}).get(
            "candidate") == 20, timeout=60)
        prometheus.stop()
        try:
            time.sleep(8)  # several analysis intervals without Prometheus
            st = sc.status()
            assert st["weights"]["candidate"] == 20, st
            assert st["stableVersion"] == 1
            assert st["analysis"]["lastResult"] == "Inconclusive"
            assert st["rollout"]["paused"] is True  # held by the inconclusive policy
        finally:
            prometheus.start()


def _reconciled_since_start(op: OperatorProcess) -> bool:
    """The (re)started operator has finished a reconcile of a ModelDeployment."""
    return any(line.startswith("modelship_reconciles_total{")
               and 'kind="ModelDeployment"' in line and not line.endswith(" 0.0")
               for line in op.metrics().splitlines())


def test_operator_killed_mid_rollout_resumes_where_it_was(
        scenario: Any, prometheus: PrometheusProcess,
        rollout_operator: OperatorProcess) -> None:
    """SIGKILL during the second canary step. Whenever the restarted operator first acts
    (the step's pause may even run out while it is down), it carries on from the stored
    stage: the rollout is not begun again, the route never goes back to the first step,
    the pause is timed from when the step began (not from the restart), and exactly one
    rollout of version 2 is recorded."""
    sc = scenario({1: "good", 2: "good"})
    pause_s = 12
    rollout = {"canary": {"steps": [{"weight": 25, "pause": "2s"},
                                    {"weight": 75, "pause": f"{pause_s}s"}]},
               "analysis": analysis(prometheus, ERRORS)}
    _start_stable(sc, rollout)
    with sc.traffic() as gen:
        sc.apply(2, rollout)
        before = wait_for_status("second step", sc.status, lambda st: (
            st.get("weights") or {}).get("candidate") == 75, timeout=60)
        rollout_operator.kill()
        seen_before_restart = len(gen.stats.weights_seen)
        rollout_operator.start()
        wait_for("a reconcile by the restarted operator",
                 lambda: _reconciled_since_start(rollout_operator), timeout=60)
        after = sc.status()
        if after.get("rollout") is not None:  # still mid-rollout: it is the same one
            assert after["rollout"]["startedAt"] == before["rollout"]["startedAt"]
            assert after["rollout"]["stageStartedAt"] == before["rollout"]["stageStartedAt"]
            assert after["weights"]["candidate"] == 75
        st = sc.wait_phase("Ready", timeout=90, stable=2)
    after_restart = gen.stats.weights_seen[seen_before_restart:]
    assert after_restart, "the route was never read after the restart"
    assert all(w.get(2, 0) in (75, 100) for w in after_restart), after_restart
    assert [h["outcome"] for h in st["history"]] == ["Promoted"]
    assert st["history"][0]["startedAt"] == before["rollout"]["startedAt"]
    # The pause ran from when the step began: promotion is not a whole pause after restart.
    step_began = datetime.fromisoformat(before["rollout"]["stageStartedAt"])
    promoted = datetime.fromisoformat(st["history"][0]["finishedAt"])
    assert (promoted - step_began).total_seconds() >= pause_s
    started_events = [e for e in json.loads(sc.kubectl("get", "events", "-o", "json").stdout)[
        "items"] if e["reason"] == "RolloutStarted"]
    assert len(started_events) == 1 and (started_events[0].get("count") or 1) == 1
