"""The whole loop with every part real: TrainingRun Jobs whose pods are the real trainer
(processes run by the node agent) publish into a model repository on the node; the operator
serves each version with real Triton pods; clients send gRPC inference requests through a
real gateway (Envoy Gateway reading the operator's GRPCRoute); the Prometheus Operator
configures Prometheus from the chart's PodMonitor, ServiceMonitor and PrometheusRule, the
operator judges each rollout from it, and its alerts reach a real Alertmanager.

The tests share one namespace and run in order, each starting from the stable version the
previous one left (as a model's life goes: v1, a better v2, a slower v3 rolled back, v4 by
shadow, v5 by blue-green); each checks that starting point first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Kubectl, require_node_agent_host, wait_for, wait_for_status

from modelship import constants
from modelship_dev.cluster import LocalCluster
from modelship_dev.gateway import LocalGateway
from modelship_dev.helm import ChartOperator
from modelship_dev.monitoring import LocalMonitoring
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.stack import LocalStack
from modelship_dev.workload import InferenceLoad, model_deployment, node_folder, training_run

pytestmark = pytest.mark.e2e

MODEL = "surface-defects"
MD = "defects"
FOLLOW = {"pipeline": "defects"}
CANARY = {"canary": {"steps": [{"weight": 20, "pause": "5s"}, {"weight": 50, "pause": "5s"}]}}
# The chart's `for:` of the two slow alerts, short enough to see them fire here.
ALERT_FOR = {"monitoring.prometheusRule.notReadyFor": "3s",
             "monitoring.prometheusRule.operatorDownFor": "3s"}


@dataclass
class Loop:
    kubectl: Kubectl
    gateway: LocalGateway
    prometheus: PrometheusProcess
    operator: OperatorProcess | ChartOperator
    monitoring: LocalMonitoring
    repository: Path

    def train(self, name: str, seed: int, timeout: float = 300, **kwargs: Any
              ) -> dict[str, Any]:
        self.kubectl.apply(training_run(name, MODEL, self.repository, labels=FOLLOW,
                                        seed=seed, **kwargs))

        def finished() -> dict[str, Any] | None:
            status = (self.kubectl.get("trainingrun", name) or {}).get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed", "Rejected") \
                else None
        status: dict[str, Any] = wait_for(f"TrainingRun {name} finished", finished,
                                          timeout=timeout, interval=1)
        return status

    def deploy(self, rollout: dict[str, Any]) -> None:
        self.kubectl.apply(model_deployment(MD, MODEL, self.repository, follow=FOLLOW,
                                            parent_ref=self.gateway.parent_ref,
                                            prometheus_url=self.prometheus.url,
                                            rollout=rollout))

    def status(self) -> dict[str, Any]:
        return dict((self.kubectl.get("md", MD) or {}).get("status") or {})

    def wait(self, phase: str, stable: int, timeout: float = 240) -> dict[str, Any]:
        return wait_for_status(
            f"{phase} with stable v{stable}", self.status,
            lambda st: st.get("phase") == phase and st.get("stableVersion") == stable,
            timeout, interval=0.5, context=lambda: "operator:\n" + self.operator.log_tail())

    def route_weights(self) -> dict[str, int]:
        return self.route()[0]

    def route(self) -> tuple[dict[str, int], str | None]:
        """The GRPCRoute's backend weights and the backend it mirrors to, if any."""
        rule = (self.kubectl.get("grpcroute", MD) or {})["spec"]["rules"][0]
        weights = {ref["name"]: int(ref.get("weight", 1)) for ref in rule["backendRefs"]}
        mirrors = [f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters") or []
                   if f["type"] == "RequestMirror"]
        return weights, (mirrors[0] if mirrors else None)

    def replicas(self, version: int) -> int:
        dep = self.kubectl.get("deployment", f"{MD}-v{version}") or {}
        return int(dep.get("spec", {}).get("replicas", 0))

    def load(self, rate: float = 20) -> InferenceLoad:
        return InferenceLoad(self.gateway.url, MODEL, rate=rate, max_seconds=420)

    def alert_rule(self, name: str) -> dict[str, Any]:
        """The alerting rule as Prometheus evaluates it (state, health, active alerts)."""
        groups = httpx.get(f"{self.prometheus.url}/api/v1/rules", params={"type": "alert"},
                           timeout=5).json()["data"]["groups"]
        rules: list[dict[str, Any]] = [r for g in groups for r in g["rules"]
                                       if r["name"] == name]
        assert len(rules) == 1, f"{name}: {len(rules)} rules loaded"
        return rules[0]

    def paged(self, alert: str) -> list[dict[str, str]]:
        """Labels of the active alerts `alert` Alertmanager holds for this namespace."""
        return [a["labels"] for a in self.monitoring.alertmanager.alerts()
                if a["labels"].get("alertname") == alert
                and a["labels"].get("namespace") == self.kubectl.namespace]

    def served_by_prometheus(self, version: int) -> float:
        """Successful inferences Prometheus scraped from the pods of `version`."""
        query = (f'sum(nv_inference_request_success{{namespace="{self.kubectl.namespace}",'
                 f'model="{MODEL}",version="{version}"}})')
        data = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": query},
                         timeout=5).json()["data"]["result"]
        return float(data[0]["value"][1]) if data else 0.0


@pytest.fixture(scope="module")
def loop(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    require_node_agent_host()
    work = tmp_path_factory.mktemp("loop")
    repository = node_folder(work / "model-repository")
    with LocalStack(cluster, work, f"loop-{uuid.uuid4().hex[:6]}",
                    chart_values=ALERT_FOR) as stack:
        yield Loop(Kubectl(cluster, stack.namespace), stack.gateway, stack.prometheus,
                   stack.operator, stack.monitoring, repository)
    assert stack.gateway.processes() == []


def test_trained_versions_are_served_and_a_better_one_is_promoted(loop: Loop) -> None:
    st = loop.train("defects-1", seed=1)
    assert st["phase"] == "Succeeded", st
    assert st["version"] == 1
    assert (loop.repository / MODEL / "1" / "model.onnx").is_file()

    loop.deploy(CANARY)
    loop.wait("Ready", stable=1)
    with loop.load() as load:
        wait_for("answers through the gateway", lambda: load.answered().get(1, 0) >= 20,
                 timeout=60)
        # Prometheus found the Triton pod through the API server and scrapes it.
        wait_for("Prometheus scraping v1 by discovery",
                 lambda: loop.served_by_prometheus(1) > 0, timeout=30)

        st = loop.train("defects-2", seed=2, hyperparameters={"epochs": "4"},
                        baseline_deployment=MD, max_regression=0.05)
        assert st["phase"] == "Succeeded", st
        assert st["version"] == 2
        started = load.now_s()
        loop.wait("Ready", stable=2)
        promoted = load.now_s()
        # Clients saw both versions while the canary ran, then only v2, and no failure.
        during = load.answered(started)
        assert during.get(1, 0) > 0 and during.get(2, 0) > 0, during
        time.sleep(3)
        after = load.answered(promoted + 2)
        assert set(after) == {2}, after
        assert load.failed() == 0, dict(load.errors)

    history = loop.status()["history"]
    assert history[0]["version"] == 2 and history[0]["outcome"] == "Promoted"
    assert loop.route_weights() == {f"{MD}-v2": 100}
    wait_for("v1 scaled down after the delay", lambda: loop.replicas(1) == 0, timeout=60)

    # A run the gate rejects publishes nothing and changes nothing.
    st = loop.train("defects-rejected", seed=9, min_accuracy=0.999)
    assert st["phase"] == "Rejected", st
    assert "accuracy" in st["gate"]["reason"]
    assert sorted(p.name for p in (loop.repository / MODEL).iterdir()
                  if p.is_dir()) == ["1", "2"]
    assert loop.status()["stableVersion"] == 2


def test_a_version_that_passed_the_gate_but_is_slow_is_rolled_back(loop: Loop) -> None:
    assert loop.status().get("stableVersion") == 2
    with loop.load() as load:
        # Six times wider: as accurate offline, about 36 times the compute per image.
        st = loop.train("defects-3", seed=3, hyperparameters={"width": "96", "epochs": "3"},
                        baseline_deployment=MD, max_regression=0.05)
        assert st["phase"] == "Succeeded", st
        assert st["version"] == 3
        st = loop.wait("RolledBack", stable=2)
        rolled_back = load.now_s()
        time.sleep(3)
        assert set(load.answered(rolled_back + 1)) == {2}
        assert load.failed() == 0, dict(load.errors)

    assert st["rolledBackVersion"] == 3
    assert st["history"][0]["outcome"] == "RolledBack"
    assert "latency" in st["history"][0]["reason"]
    checks = {c["name"]: c for c in st["analysis"]["checks"]}
    assert checks["latency"]["result"] == "Failed" and checks["latency"]["value"] > 2.0
    assert loop.route_weights() == {f"{MD}-v2": 100}
    # Once the gateway confirmed the route back, abortScaleDownDelay (5s), then the pods'
    # preStop sleep.
    wait_for("v3 scaled to zero", lambda: loop.replicas(3) == 0, timeout=60)

    # The SRE is paged: the alert reached Alertmanager, naming the resource and the check.
    page = wait_for("ModelRolledBack in Alertmanager",
                    lambda: [a for a in loop.paged("ModelRolledBack") if a["name"] == MD],
                    timeout=30, interval=0.5)
    assert len(page) == 1, page
    assert {k: page[0].get(k) for k in ("namespace", "name", "model", "severity")} == {
        "namespace": loop.kubectl.namespace, "name": MD, "model": MODEL, "severity": "page"}
    assert "latency" in page[0]["check"].split(","), page[0]
    # The spec still follows the pipeline whose newest version was rolled back: the
    # resource stays RolledBack, outside Ready, past the chart's notReadyFor.
    not_ready = wait_for("ModelDeploymentNotReady in Alertmanager",
                         lambda: [a for a in loop.paged("ModelDeploymentNotReady")
                                  if a["name"] == MD], timeout=30, interval=0.5)
    assert not_ready[0]["model"] == MODEL and not_ready[0]["severity"] == "warning"
    assert loop.status()["phase"] == "RolledBack"
    # The operator runs and is scraped: its alert is evaluated and not firing.
    down = loop.alert_rule("ModelshipOperatorDown")
    assert (down["health"], down["state"], down["alerts"]) == ("ok", "inactive", []), down
    assert loop.paged("ModelshipOperatorDown") == []


def test_shadow_mirrors_to_the_candidate_then_promotes(loop: Loop) -> None:
    assert loop.status().get("stableVersion") == 2
    loop.deploy({"shadow": {"mirrorPercent": 100, "duration": "8s"}})
    with loop.load() as load:
        st = loop.train("defects-4", seed=4, hyperparameters={"epochs": "4"},
                        baseline_deployment=MD, max_regression=0.05)
        assert st["phase"] == "Succeeded", st
        assert st["version"] == 4

        def shadowing() -> bool:
            weights, mirror = loop.route()
            return weights.get(f"{MD}-v4", 0) == 0 and mirror == f"{MD}-v4"
        wait_for("the route mirroring to v4", shadowing, timeout=180, interval=0.3)
        shadow_from = load.now_s()
        # The last time the route was read still mirroring (taken before the read).
        still_shadowing = shadow_from

        def mirrored() -> bool:
            nonlocal still_shadowing
            asked = load.now_s()
            if shadowing():
                still_shadowing = asked
            return (loop.served_by_prometheus(4) >= 20
                    and still_shadowing - shadow_from >= 2)
        wait_for("mirrored requests served by v4 during 2 s of shadow", mirrored,
                 timeout=60, interval=0.3)
        # Clients are answered by the stable version only; v4 got copies.
        assert set(load.answered(shadow_from, still_shadowing - 1)) == {2}
        loop.wait("Ready", stable=4)
        assert load.failed() == 0, dict(load.errors)
    assert loop.status()["history"][0]["strategy"] == "shadow"


def test_blue_green_previews_then_switches(loop: Loop) -> None:
    assert loop.status().get("stableVersion") == 4
    loop.deploy({"blueGreen": {"previewDuration": "6s", "postSwitchDuration": "4s"}})
    with loop.load() as load:
        st = loop.train("defects-5", seed=5, hyperparameters={"epochs": "4"},
                        baseline_deployment=MD, max_regression=0.05)
        assert st["phase"] == "Succeeded", st
        assert st["version"] == 5
        preview = wait_for("the preview stage", lambda: (loop.status().get("rollout") or {})
                           .get("stage") == "Preview", timeout=180, interval=0.5)
        assert preview
        # A smoke tester sends requests to the preview directly; clients still get v4.
        smoke = InferenceLoad(f"{_pod_ip(loop, 5)}:{constants.PORT_GRPC}", MODEL, rate=20,
                              max_seconds=120)
        with smoke:
            preview_from = load.now_s()
            # The last time the route was read still sending everything to v4 (taken before
            # the read, so the gateway cannot have had the switch yet).
            before_switch = preview_from

            def switched() -> bool:
                nonlocal before_switch
                asked = load.now_s()
                weights = loop.route_weights()
                if weights.get(f"{MD}-v5", 0) == 0:
                    before_switch = asked
                return weights == {f"{MD}-v5": 100}
            wait_for("the switch", switched, timeout=120, interval=0.2)
            switch_seen = load.now_s()
            assert before_switch - preview_from > 3, "the preview was too short to judge"
            assert set(load.answered(preview_from, before_switch - 1)) == {4}
        loop.wait("Ready", stable=5)
        time.sleep(max(0.0, switch_seen + 4 - load.now_s()))
        assert set(load.answered(switch_seen + 2)) == {5}
        assert load.failed() == 0, dict(load.errors)
    assert smoke.failed() == 0 and smoke.answered().get(5, 0) > 0
    assert loop.status()["history"][0]["strategy"] == "blueGreen"


def _pod_ip(loop: Loop, version: int) -> str:
    selector = f"{constants.LABEL_DEPLOYMENT}={MD},{constants.LABEL_MODEL_VERSION}={version}"

    def ready_ip() -> str | None:
        for pod in loop.kubectl.list("pods", selector):
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(pod["status"]["podIP"])
        return None
    ip: str = wait_for(f"a Ready v{version} pod", ready_ip, timeout=180, interval=0.5)
    return ip


def test_a_stopped_operator_pages(loop: Loop) -> None:
    """Last in the module: the operator stops (its metrics endpoint stays listed, as a
    crashed pod's does until it is replaced), ModelshipOperatorDown fires once the chart's
    operatorDownFor has passed, and clears when the operator is back."""
    assert loop.alert_rule("ModelshipOperatorDown")["state"] == "inactive"
    loop.operator.stop()
    try:
        page = wait_for("ModelshipOperatorDown in Alertmanager",
                        lambda: loop.paged("ModelshipOperatorDown"), timeout=30, interval=0.5)
        assert page[0]["severity"] == "critical"
    finally:
        loop.operator.start()
    wait_for("ModelshipOperatorDown resolved",
             lambda: loop.alert_rule("ModelshipOperatorDown")["state"] == "inactive"
             and not loop.paged("ModelshipOperatorDown"), timeout=30, interval=0.5)
