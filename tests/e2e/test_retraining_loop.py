"""The closed loop on the real data plane, with no human step: a version trained on a bright
factory serves through the gateway while its Triton pods keep sampled production data on a
dataset volume; the lights dim; DataDrift rises; the operator starts a retraining
TrainingRun; the real trainer trains on the original data plus the production samples the
automated reviewer labelled with the generator's ground truth, and its gate passes,
including the dark slice; the canary promotes it; the drift clears (RetrainingEffective).
Then the light changes again while the cooldown holds: the trigger holds, no second run
starts, and the status says why and until when.

Every part is real (node agent pods of the real trainer and Triton, Envoy Gateway,
Prometheus, the operator process); the monitoring windows are seconds long so that the loop
takes minutes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Kubectl, require_node_agent_host, wait_for, wait_for_status

from modelship_api import samples
from modelship_api.retraining import (
    ANNOTATION_SCORES,
    ANNOTATION_TRIGGER,
    EFFECTIVE_CONDITION,
    LABEL_RETRAINED_FOR,
)
from modelship_dev.autoreview import REVIEWER, AutoReviewer
from modelship_dev.cluster import LocalCluster
from modelship_dev.helm import ChartOperator
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.stack import LocalStack
from modelship_dev.workload import InferenceLoad, model_deployment, node_folder, training_run

pytestmark = pytest.mark.e2e

MODEL = "surface-defects"
MD = "defects"
FOLLOW = {"pipeline": "defects-loop"}
BRIGHT, DARK, GLARE = 0.5, 0.2, 0.85  # GeneratedDataset brightness: the factory's lighting
PLANT = "plant"  # the dataset volume's folder
CANARY = {"canary": {"steps": [{"weight": 50, "pause": "4s"}]}}
# Short windows, so the loop takes minutes; the default thresholds. The retrained version's
# drift reference is the dark production samples served since the drift was raised (the
# new normal), so dark traffic must clear against it.
MONITORING = {
    "window": "10s", "interval": "2s", "minSamples": 200, "raiseAfter": 2, "clearAfter": 2,
    # Dark images are a slice v1's profile barely holds: over-sampled 100 times.
    "sampling": {"enabled": True, "rate": 0.005, "oversampling": 100,
                 "lowConfidenceBelow": 0.05, "hourlyCap": 100000},
}


@dataclass
class Loop:
    kubectl: Kubectl
    operator: OperatorProcess | ChartOperator
    gateway_url: str
    repository: Path
    datasets: Path
    md: dict[str, Any]

    @property
    def area(self) -> Path:
        """The production area, as the runner writes it and the trainer reads it."""
        return samples.production_area(self.datasets / PLANT, MODEL)

    def status(self) -> dict[str, Any]:
        return dict((self.kubectl.get("md", MD) or {}).get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions") or []
                     if c["type"] == kind), {})

    def wait(self, what: str, reached: Any, timeout: float = 240) -> dict[str, Any]:
        return wait_for_status(what, self.status, reached, timeout, interval=0.5,
                               context=lambda: "operator:\n" + self.operator.log_tail())

    def retraining_runs(self) -> list[dict[str, Any]]:
        return self.kubectl.list("trainingrun", f"{LABEL_RETRAINED_FOR}={MD}")

    def trained(self, name: str) -> dict[str, Any]:
        """The TrainingRun's status once it finished."""
        def finished() -> dict[str, Any] | None:
            st = (self.kubectl.get("trainingrun", name) or {}).get("status") or {}
            return st if st.get("phase") in ("Succeeded", "Failed", "Rejected") else None
        status: dict[str, Any] = wait_for(f"TrainingRun {name} finished", finished,
                                          timeout=300, interval=1)
        return status

    def load(self) -> InferenceLoad:
        return InferenceLoad(self.gateway_url, MODEL, rate=20, max_seconds=900,
                             brightness=BRIGHT)


def _template(repository: Path, datasets: Path) -> dict[str, Any]:
    """The retraining TrainingRun: the original bright data, plus the reviewed production
    samples; gated on accuracy, against the serving version, and on the dark slice."""
    spec: dict[str, Any] = training_run("template", MODEL, repository, labels=FOLLOW, seed=1,
                                        samples=2000, min_accuracy=0.85,
                                        baseline_deployment=MD)["spec"]
    volume = {"hostPath": str(datasets), "path": PLANT}
    spec["dataset"]["production"] = {"volume": volume}
    spec["gate"]["slices"] = [
        {"name": "dark", "inputStatistic": {"statistic": "input_brightness", "max": 0.3},
         "min": 0.8, "maxRegression": 0.0, "minSamples": 20},
        {"name": "reviewed", "reviewedProduction": True, "min": 0.8},
    ]
    return spec


@pytest.fixture(scope="module")
def loop(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    require_node_agent_host()
    work = tmp_path_factory.mktemp("retraining-loop")
    repository = node_folder(work / "model-repository")
    datasets = node_folder(work / "datasets")
    with LocalStack(cluster, work, f"retrain-{uuid.uuid4().hex[:6]}") as stack:
        md = model_deployment(MD, MODEL, repository, follow=FOLLOW,
                              parent_ref=stack.gateway.parent_ref,
                              prometheus_url=stack.prometheus.url, rollout=CANARY,
                              monitoring={**MONITORING, "sampling": {
                                  **MONITORING["sampling"],  # type: ignore[dict-item]
                                  "volume": {"hostPath": str(datasets), "path": PLANT}}})
        md["spec"]["retraining"] = {
            "triggers": {"dataDrift": {"for": "15s"}},
            "cooldown": "1h", "maxPerDay": 4, "verifyWithin": "5m",
            "template": _template(repository, datasets)}
        yield Loop(Kubectl(cluster, stack.namespace), stack.operator, stack.gateway.url,
                   repository, datasets, md)
    assert stack.gateway.processes() == []


def test_dim_lights_retrain_on_reviewed_samples_promote_and_clear_then_cooldown(
        loop: Loop) -> None:
    loop.kubectl.apply(training_run("defects-1", MODEL, loop.repository, labels=FOLLOW,
                                    seed=1, samples=2000))
    first = loop.trained("defects-1")
    assert first["phase"] == "Succeeded", first
    loop.kubectl.apply(loop.md)
    loop.wait("Ready with stable v1", lambda st: st.get("phase") == "Ready"
              and st.get("stableVersion") == 1)

    with loop.load() as load, AutoReviewer(loop.area, load.truth, rate=50) as reviewer:
        # Under the light it was trained in, v1 does not drift.
        loop.wait("v1 evaluated without drift", lambda st: (st.get("monitoring") or {})
                  .get("version") == 1 and any(c["type"] == "DataDrift" and
                                               c["status"] == "False"
                                               for c in st.get("conditions") or []))
        assert loop.retraining_runs() == []

        dimmed = time.monotonic()
        load.set_lighting(DARK)
        loop.wait("DataDrift on v1", lambda st: any(
            c["type"] == "DataDrift" and c["status"] == "True"
            for c in st.get("conditions") or []), timeout=120)
        raised = loop.condition("DataDrift")
        run = wait_for("a retraining run", loop.retraining_runs, timeout=120)[0]
        name = run["metadata"]["name"]
        annotations = run["metadata"]["annotations"]
        assert annotations[ANNOTATION_TRIGGER] == "DataDrift"
        assert "input_brightness" in annotations[ANNOTATION_SCORES]
        assert run["metadata"]["labels"]["pipeline"] == FOLLOW["pipeline"]
        trained = loop.trained(name)
        assert trained["phase"] == "Succeeded", trained
        assert trained["version"] == 2
        # It trained on reviewed production samples and was judged on held-out ones.
        production = trained["lineage"]["production"]
        assert production["train"] > 0 and production["heldOut"] > 0, production
        # Its drift reference is what it will serve: samples from since the drift was raised.
        since = loop.kubectl.get("trainingrun", name)["spec"]["dataset"]["production"][
            "referenceSince"]
        assert since == raised["lastTransitionTime"]
        assert f"production samples not trained on served since {since}" in production[
            "reference"], production
        checks = {c["name"]: c for c in trained["gate"]["checks"]}
        dark = [c for n, c in checks.items() if n.startswith("slice dark")]
        assert dark and all(c["passed"] for c in dark), checks

        st = loop.wait("v2 promoted", lambda st: st.get("phase") == "Ready"
                       and st.get("stableVersion") == 2, timeout=300)
        cycle = time.monotonic() - dimmed
        assert st["history"][0]["version"] == 2
        assert st["history"][0]["outcome"] == "Promoted"
        assert st["history"][0]["strategy"] == "canary"
        st = loop.wait("RetrainingEffective", lambda st: any(
            c["type"] == EFFECTIVE_CONDITION and c["status"] == "True"
            for c in st.get("conditions") or []), timeout=180)
        assert loop.condition("DataDrift")["status"] == "False"
        assert (st["retraining"]["lastRun"]["name"], st["retraining"]["lastRun"]["version"]) \
            == (name, 2)
        print(f"\ncycle time, lights dimmed to v2 at 100%: {cycle:.0f} s; v2's drift "
              f"reference: {production['reference']}")

        # The reviewer labelled production samples, as automated ground truth.
        labels, bad = samples.read_labels(loop.area, samples.DEFAULT_LABEL_SET)
        assert bad == 0 and reviewer.labelled == len(labels) > 0
        assert {(label.reviewer, label.source) for label in labels} == {
            (REVIEWER, "automated")}

        # The light changes again while the cooldown holds: no second run.
        load.set_lighting(GLARE)
        st = loop.wait("the trigger holding, blocked by the cooldown", lambda st: "cooldown"
                       in ((st.get("retraining") or {}).get("notStarted") or ""),
                       timeout=120)
        assert st["retraining"]["triggered"].startswith("DataDrift"), st["retraining"]
        started = datetime.fromisoformat(st["retraining"]["lastRun"]["startedAt"])
        allowed = datetime.fromisoformat(st["retraining"]["nextAllowedAt"])
        assert allowed - started == timedelta(hours=1)
        assert [r["metadata"]["name"] for r in loop.retraining_runs()] == [name]
        assert st["retraining"]["sequence"] == 1
        assert load.failed() == 0, dict(load.errors)
