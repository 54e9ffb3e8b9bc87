"""Drift on the real data plane: a version trained by a real TrainingRun is served by real
Triton pods running modelship's runner, which export the live statistics; clients send the
recipe's generated camera images through the real gateway; the Prometheus Operator's
Prometheus scrapes the pods and the operator, and the chart's alerts reach a real
Alertmanager. Nothing is fed by hand: stationary traffic must raise nothing, and darker
images (the factory's lighting dims) must raise DataDrift and its alert.

The module's ModelDeployment is watched with short settings (spec.monitoring) so that the
tests take seconds, not minutes; every wait is on state, bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Kubectl, wait_for, wait_for_status
from tests.e2e.test_dashboard import DASHBOARD, needs_profile, queries, substitute

from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.stack import LocalStack
from modelship_dev.workload import (
    LIGHTING,
    InferenceLoad,
    model_deployment,
    node_folder,
    training_run,
)

pytestmark = pytest.mark.e2e

MODEL = "surface-defects"
MD = "defects"
FOLLOW = {"pipeline": "defects"}
# 20 requests/s of 8 images fill the 20 s window with about 3200 samples per statistic.
MONITORING = {"window": "20s", "interval": "2s", "minSamples": 400, "raiseAfter": 2,
              "clearAfter": 2}
INPUTS = ("input_brightness", "input_contrast", "input_saturated_fraction")
OUTPUTS = ("output_confidence", "output_entropy", "predicted_class")
STATIONARY_EVALUATIONS = 15  # conclusive evaluations of stationary traffic, 30 s of them
DARK = 0.3  # the dimmed factory's brightness (trained at LIGHTING, 0.5)
CANARY = {"canary": {"steps": [{"weight": 50, "pause": "5s"}]}}


@dataclass
class Served:
    kubectl: Kubectl
    stack: LocalStack

    @property
    def operator(self) -> OperatorProcess:
        assert isinstance(self.stack.operator, OperatorProcess)
        return self.stack.operator

    def status(self) -> dict[str, Any]:
        return dict((self.kubectl.get("md", MD) or {}).get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions") or [] if c["type"] == kind),
                    {})

    def load(self, brightness: float = LIGHTING) -> InferenceLoad:
        return InferenceLoad(self.stack.gateway.url, MODEL, rate=20, max_seconds=240,
                             brightness=brightness)

    def gauges(self) -> dict[tuple[str, str], float]:
        """The operator's monitoring gauges of this ModelDeployment: (metric, statistic or
        condition) -> value; the evaluations counter under ("evaluations", "")."""
        out: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(self.operator.metrics()):
            for s in family.samples:
                if (s.labels.get("namespace"), s.labels.get("name")) != (
                        self.kubectl.namespace, MD):
                    continue
                if s.name == "modelship_drift_score":
                    out[("score", s.labels["statistic"])] = s.value
                elif s.name == "modelship_monitoring_condition":
                    out[("condition", s.labels["condition"])] = s.value
                elif s.name == "modelship_monitoring_evaluations_total":
                    out[("evaluations", "")] = s.value
        return out

    def warnings(self) -> set[str]:
        """Reasons of the Warning events on the ModelDeployment."""
        events = self.kubectl.list("events")
        return {e["reason"] for e in events if e.get("type") == "Warning"
                and e["involvedObject"].get("name") == MD}

    def paged(self, alert: str) -> list[dict[str, str]]:
        return [a["labels"] for a in self.stack.monitoring.alertmanager.alerts()
                if a["labels"].get("alertname") == alert
                and a["labels"].get("namespace") == self.kubectl.namespace
                and a["labels"].get("name") == MD]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query to the stack's Prometheus (the one the dashboard reads)."""
        url = (f"{self.stack.prometheus.url}/api/v1/query?"
               f"{urllib.parse.urlencode({'query': promql})}")
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_judged(self, load: InferenceLoad) -> dict[str, Any]:
        """Until every statistic has a conclusive score of this load's traffic: DataDrift
        and PredictionDrift False."""
        def judged(st: dict[str, Any]) -> bool:
            conditions = {c["type"]: c for c in st.get("conditions") or []}
            stats = {s["name"]: s for s in (st.get("monitoring") or {}).get("statistics") or []}
            return (all(conditions.get(k, {}).get("status") == "False"
                        for k in ("DataDrift", "PredictionDrift"))
                    and all(stats.get(n, {}).get("result") == "Normal" for n in INPUTS + OUTPUTS)
                    and load.answered().get(1, 0) > 0)
        return wait_for_status("a conclusive judgement of the traffic", self.status, judged,
                               timeout=120, interval=0.5,
                               context=lambda: "operator:\n" + self.operator.log_tail())


@pytest.fixture(scope="module")
def served(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    """v1 of the recipe, trained by a TrainingRun and served behind the gateway."""
    if os.geteuid() != 0:
        pytest.fail("the node agent and the gateway need root (network and mount namespaces)")
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is required (iproute2, util-linux)")
    work = tmp_path_factory.mktemp("drift")
    repository = node_folder(work / "model-repository")
    with LocalStack(cluster, work, f"drift-{uuid.uuid4().hex[:6]}") as stack:
        kubectl = Kubectl(cluster, stack.namespace)
        kubectl.apply(training_run("defects-1", MODEL, repository, labels=FOLLOW, seed=1))
        run = wait_for_status(
            "TrainingRun defects-1 finished",
            lambda: (kubectl.get("trainingrun", "defects-1") or {}).get("status") or {},
            lambda st: st.get("phase") in ("Succeeded", "Failed", "Rejected"), timeout=300)
        assert run["phase"] == "Succeeded", run
        kubectl.apply(model_deployment(
            MD, MODEL, repository, follow=FOLLOW, parent_ref=stack.gateway.parent_ref,
            prometheus_url=stack.prometheus.url, rollout=CANARY,
            monitoring=MONITORING))
        served = Served(kubectl, stack)
        wait_for_status("Ready with stable v1", served.status,
                        lambda st: st.get("phase") == "Ready" and st.get("stableVersion") == 1,
                        timeout=240, context=lambda: "operator:\n" + served.operator.log_tail())
        yield served
    assert stack.gateway.processes() == []


def test_stationary_traffic_raises_nothing(served: Served) -> None:
    """Clients send images of the training distribution; over STATIONARY_EVALUATIONS
    conclusive evaluations of full windows, no drift condition ever turns True, no Warning
    event is raised and no drift alert fires."""
    with served.load() as load:
        st = served.wait_judged(load)
        assert st["monitoring"]["version"] == 1
        samples = {s["name"]: s["samples"] for s in st["monitoring"]["statistics"]}
        assert all(n >= MONITORING["minSamples"] for n in samples.values()), samples
        last = served.gauges()[("evaluations", "")]
        conclusive = 0
        seen: dict[str, float] = {}  # the highest score of each statistic

        def enough_stationary_evaluations() -> bool:
            nonlocal last, conclusive
            gauges = served.gauges()
            raised = [k for (kind, k), v in gauges.items() if kind == "condition" and v == 1]
            assert raised == [], f"{raised} raised by stationary traffic; scores {gauges}"
            scores = {k: v for (kind, k), v in gauges.items() if kind == "score"}
            for k, v in scores.items():
                seen[k] = max(seen.get(k, 0.0), v)
            # Counted only while every statistic is conclusive (a score is absent while
            # Inconclusive, e.g. a Prometheus query that timed out).
            if set(scores) == set(INPUTS + OUTPUTS):
                conclusive += int(gauges[("evaluations", "")] - last)
            last = gauges[("evaluations", "")]
            return conclusive >= STATIONARY_EVALUATIONS
        wait_for(f"{STATIONARY_EVALUATIONS} conclusive evaluations of stationary traffic",
                 enough_stationary_evaluations, timeout=120, interval=0.5)
        assert load.failed() == 0, dict(load.errors)
    print(f"highest PSI of each statistic over {conclusive} evaluations: {seen}")
    assert max(seen.values()) < 0.25, seen  # PSI: not one evaluation towards a drift
    for kind in ("DataDrift", "PredictionDrift"):
        assert served.condition(kind)["status"] == "False", served.condition(kind)
    assert not served.warnings() & {"DataDrift", "PredictionDrift"}, served.warnings()
    assert served.paged("ModelDataDrift") == [] and served.paged("ModelPredictionDrift") == []


def test_darker_images_raise_data_drift_and_its_alert(served: Served) -> None:
    """The factory's lighting dims: the same parts, darker. Error ratio and latency stay
    perfect; the input brightness histogram leaves the profile's, DataDrift turns True with
    a Warning event, and ModelDataDrift reaches Alertmanager."""
    with served.load() as load:
        served.wait_judged(load)
        dimmed = load.set_lighting(DARK)
        st = wait_for_status(
            "DataDrift True", served.status,
            lambda st: any(c["type"] == "DataDrift" and c["status"] == "True"
                           for c in st.get("conditions") or []),
            timeout=90, interval=0.5, context=lambda: "operator:\n" + served.operator.log_tail())
        detected = load.now_s() - dimmed
        page = wait_for("ModelDataDrift in Alertmanager", lambda: served.paged("ModelDataDrift"),
                        timeout=30, interval=0.5)
        panel = drift_panel_scores(served)
        assert load.failed() == 0, dict(load.errors)  # serving was never blocked
        assert load.answered(dimmed).get(1, 0) > 0
    assert set(panel) == set(INPUTS + OUTPUTS), panel
    condition = next(c for c in st["conditions"] if c["type"] == "DataDrift")
    assert condition["reason"] == "DataDrift" and "input_brightness" in condition["message"], (
        condition)
    stats = {s["name"]: s for s in st["monitoring"]["statistics"]}
    brightness = stats["input_brightness"]
    assert brightness["drifted"] and brightness["result"] == "Drift", brightness
    assert brightness["psi"] > 0.25 and brightness["samples"] >= MONITORING["minSamples"]
    assert "DataDrift" in served.warnings()
    assert page[0]["severity"] == "warning", page
    print(f"DataDrift {detected:.1f} s after the lighting changed; PSI {panel}")



def drift_panel_scores(served: Served) -> dict[str, float]:
    """What the chart's dashboard panel on drift scores (which the stand-in models of
    test_dashboard cannot feed) shows now, read through Prometheus, once it shows
    input_brightness above the raise threshold."""
    dashboard = json.loads(DASHBOARD.read_text())
    (expr,) = [substitute(expr, served.kubectl.namespace, MD)
               for _, expr in queries(dashboard) if needs_profile(expr)]

    def brightness_drifted() -> dict[str, float]:
        scores = {r["metric"].get("statistic", ""): float(r["value"][1])
                  for r in served.query(expr)}
        return scores if scores.get("input_brightness", 0.0) > 0.25 else {}
    scores: dict[str, float] = wait_for("the drift panel showing input_brightness drifted",
                                        brightness_drifted, timeout=30, interval=0.5)
    return scores
