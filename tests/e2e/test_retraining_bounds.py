"""The bound a person relies on after the gate says no, on the real data plane: the stable
version grows Stale (maxModelAge), the operator starts a retraining run and its gate rejects
it; while the trigger still holds and the reviewed data has not changed, no second run
starts, once the cooldown is over too, and the status says why; once the review page counts
minNewLabels new labels (the automated reviewer labelling sampled production traffic,
scraped by Prometheus through a ServiceMonitor), the next run starts, recording the count it
started from.

Every part is real: node agent pods of the real trainer and Triton, Envoy Gateway, the
Prometheus Operator's Prometheus, `modelship review` and the operator process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Kubectl, require_node_agent_host, wait_for, wait_for_status

from modelship_api import samples
from modelship_api.retraining import ANNOTATION_LABELS, ANNOTATION_TRIGGER, LABEL_RETRAINED_FOR
from modelship_dev.autoreview import AutoReviewer
from modelship_dev.cluster import LocalCluster
from modelship_dev.review_page import ReviewPage
from modelship_dev.review_page import manifests as review_page_objects
from modelship_dev.stack import LocalStack
from modelship_dev.workload import InferenceLoad, model_deployment, node_folder, training_run

pytestmark = pytest.mark.e2e

MODEL = "surface-defects"
MD = "inspector"
FOLLOW = {"pipeline": "inspector-bounds"}
PLANT = "plant"
MAX_AGE_S = 30  # v1 turns Stale this long after its data was generated
MIN_NEW_LABELS = 30
COOLDOWN = "5s"


@dataclass
class Bounds:
    kubectl: Kubectl
    stack: LocalStack
    repository: Path
    datasets: Path
    work: Path

    def status(self) -> dict[str, Any]:
        return dict((self.kubectl.get("md", MD) or {}).get("status") or {})

    def wait(self, what: str, reached: Any, timeout: float = 240) -> dict[str, Any]:
        return wait_for_status(what, self.status, reached, timeout, interval=0.5,
                               context=lambda: "operator:\n" + self.stack.operator.log_tail())

    def runs(self) -> list[dict[str, Any]]:
        return sorted(self.kubectl.list("trainingrun", f"{LABEL_RETRAINED_FOR}={MD}"),
                      key=lambda r: r["metadata"]["name"])

    def finished(self, name: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            st = (self.kubectl.get("trainingrun", name) or {}).get("status") or {}
            return st if st.get("phase") in ("Succeeded", "Failed", "Rejected") else None
        status: dict[str, Any] = wait_for(f"TrainingRun {name} finished", done, timeout=300,
                                          interval=1)
        return status

    def labels_total(self) -> float | None:
        """The review page's modelship_reviewed_labels_total, as Prometheus has scraped it."""
        answer = httpx.get(f"{self.stack.prometheus.url}/api/v1/query", timeout=5, params={
            "query": f'max(modelship_reviewed_labels_total{{model="{MODEL}"}})'}).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None


def _model_deployment(bounds: Bounds) -> dict[str, Any]:
    volume = {"hostPath": str(bounds.datasets), "path": PLANT}
    md = model_deployment(
        MD, MODEL, bounds.repository, follow=FOLLOW,
        parent_ref=bounds.stack.gateway.parent_ref, prometheus_url=bounds.stack.prometheus.url,
        rollout={"canary": {"steps": [{"weight": 50, "pause": "4s"}]}},
        monitoring={"window": "10s", "interval": "2s", "maxModelAge": f"{MAX_AGE_S}s",
                    "sampling": {"enabled": True, "rate": 0.5, "hourlyCap": 100000,
                                 "volume": volume}})
    # A template whose gate cannot pass: one epoch at a learning rate that barely moves the
    # weights, against 99% accuracy.
    template = training_run("template", MODEL, bounds.repository, labels=FOLLOW, seed=2,
                            samples=1000, min_accuracy=0.99,
                            hyperparameters={"epochs": "1", "lr": "0.00001"})["spec"]
    template["dataset"]["production"] = {"volume": volume}
    md["spec"]["retraining"] = {"triggers": {"modelAge": True}, "cooldown": COOLDOWN,
                                "maxPerDay": 4, "minNewLabels": MIN_NEW_LABELS,
                                "template": template}
    return md


@pytest.fixture(scope="module")
def bounds(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bounds]:
    require_node_agent_host()
    work = tmp_path_factory.mktemp("retraining-bounds")
    repository = node_folder(work / "model-repository")
    datasets = node_folder(work / "datasets")
    with LocalStack(cluster, work, f"bounds-{uuid.uuid4().hex[:6]}") as stack:
        yield Bounds(Kubectl(cluster, stack.namespace), stack, repository, datasets, work)
    assert stack.gateway.processes() == []


@contextmanager
def review_page(bounds: Bounds) -> Iterator[ReviewPage]:
    """`modelship review` on the production area, scraped by the stack's Prometheus."""
    page = ReviewPage(node_folder(bounds.datasets / PLANT), MODEL, bounds.repository,
                      bounds.work / "review.log")
    page.start()
    try:
        bounds.kubectl.apply({"apiVersion": "v1", "kind": "List", "items": review_page_objects(
            bounds.stack.namespace, page.host, page.port, "1s")})
        yield page
    finally:
        page.stop()


def test_a_rejected_run_is_not_repeated_until_the_reviewed_data_changes(bounds: Bounds) -> None:
    bounds.kubectl.apply(training_run("inspector-1", MODEL, bounds.repository, labels=FOLLOW,
                                      seed=1, samples=2000))
    trained = bounds.finished("inspector-1")
    assert trained["phase"] == "Succeeded", trained
    md = _model_deployment(bounds)
    retraining = md["spec"].pop("retraining")
    bounds.kubectl.apply(md)
    bounds.wait("Ready with stable v1", lambda st: st.get("phase") == "Ready"
                and st.get("stableVersion") == 1)
    # The runner makes the production area with the first samples it keeps; the review
    # page serves an existing area only.
    area = samples.production_area(bounds.datasets / PLANT, MODEL)
    with InferenceLoad(bounds.stack.gateway.url, MODEL, rate=20, max_seconds=120):
        wait_for("the production area the runner makes", area.is_dir, timeout=60)
    with review_page(bounds):
        # The review page's count is scraped before retraining is turned on: the first run
        # records it, and later counts are measured against it.
        wait_for("the review page scraped", lambda: bounds.labels_total() is not None,
                 timeout=60)
        assert bounds.labels_total() == 0
        md["spec"]["retraining"] = retraining
        bounds.kubectl.apply(md)
        _rejected_then_retried(bounds, area)


def _rejected_then_retried(bounds: Bounds, area: Path) -> None:
    first = wait_for("a retraining run for the Stale version", bounds.runs, timeout=120)[0]
    name = first["metadata"]["name"]
    assert first["metadata"]["annotations"][ANNOTATION_TRIGGER] == "ModelAge"
    assert first["metadata"]["annotations"][ANNOTATION_LABELS] == "0"
    rejected = bounds.finished(name)
    assert rejected["phase"] == "Rejected", rejected
    assert "accuracy" in rejected["gate"]["reason"]

    # The cooldown over, the trigger holding: only the rejection keeps a run from starting.
    held = (f"last run {name} was Rejected and the reviewed data has not changed: 0 new "
            f"labels since, minNewLabels {MIN_NEW_LABELS}")
    st = bounds.wait("no new run, for the rejection alone", lambda st: (
        st.get("retraining") or {}).get("notStarted") == held, timeout=120)
    assert st["retraining"]["triggered"].startswith("ModelAge"), st["retraining"]
    assert st["retraining"]["lastRun"]["phase"] == "Rejected"
    assert st["retraining"]["sequence"] == 1
    assert [r["metadata"]["name"] for r in bounds.runs()] == [name]
    assert st["stableVersion"] == 1

    # People (here the automated reviewer) label sampled production traffic: the data changed.
    with InferenceLoad(bounds.stack.gateway.url, MODEL, rate=20, max_seconds=600) as load, \
            AutoReviewer(area, load.truth, rate=20) as reviewer:
        def two_runs() -> list[dict[str, Any]] | None:
            runs = bounds.runs()
            return runs if len(runs) > 1 else None
        runs = wait_for("a second run once the reviewed data changed", two_runs, timeout=240)
        assert reviewer.labelled >= MIN_NEW_LABELS
    second = runs[1]["metadata"]
    assert second["annotations"][ANNOTATION_TRIGGER] == "ModelAge"
    assert int(second["annotations"][ANNOTATION_LABELS]) >= MIN_NEW_LABELS
    st = bounds.status()
    assert st["retraining"]["sequence"] == 2
    assert [r["name"] for r in st["retraining"]["history"]][:2] == [second["name"], name]
    assert load.failed() == 0, dict(load.errors)
