"""Retraining as a user sees it: the real operator on the real API server, a real Prometheus
scraping the live statistics (test_monitoring's exporter) and `modelship review`'s gauges (a
small exporter here, in the format the review server exports), TrainingRuns whose pods kwok
runs and the test finishes with the trainer's result, as test_trainingrun does."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from modelship.core.drift.profiles import INIT_CONTAINER
from modelship_api.profile import Profile
from modelship_api.retraining import (
    ANNOTATION_LABELS,
    ANNOTATION_SCORES,
    ANNOTATION_SEQUENCE,
    ANNOTATION_TRIGGER,
    ANNOTATION_WINDOW,
    LABEL_RETRAINED_FOR,
)
from modelship_api.training_result import EXIT_REJECTED, EXIT_SUCCEEDED, TrainingResult
from modelship_api.trainingrun import GateStatus
from modelship_dev import tools
from modelship_dev.cluster import free_port
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from tests.conftest import Kubectl, wait_for, wait_for_status
from tests.integration.test_modeldeployment import condition, ready, sample
from tests.integration.test_monitoring import (
    DEFINITIONS,
    MODEL,
    NAME,
    Exporter,
    Version,
    carry_profile,
    conditions,
    draw,
    exporter,
    profile,
    status,
)
from tests.integration.test_trainingrun import finish_pod, running_pod, training_run

pytestmark = pytest.mark.integration
__all__ = ["exporter"]  # the live statistics' fixture, shared with test_monitoring
LABELS = {"pipeline": NAME}
MIN_NEW_LABELS = 20


@dataclass(eq=False)
class Review:
    """`modelship review`'s gauges for the model (LOOP's contract): labels so far."""

    labels_total: int = 100
    # version -> (accuracy, samples) over the last labels of that version, source="all"
    accuracy: dict[int, tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self) -> Iterator[Metric]:
        total = GaugeMetricFamily("modelship_reviewed_labels_total", "resolved labels",
                                  labels=["model"])
        names = ["model", "version", "source"]
        accuracy = GaugeMetricFamily("modelship_reviewed_accuracy", "reviewed accuracy",
                                     labels=names)
        samples = GaugeMetricFamily("modelship_reviewed_samples", "labels it is over",
                                    labels=names)
        with self.lock:
            total.add_metric([MODEL], self.labels_total)
            for version, (value, count) in self.accuracy.items():
                for source, share in (("all", 1.0), ("human", 0.5)):
                    # The human-only series is better: only source="all" may count.
                    accuracy.add_metric([MODEL, str(version), source], value + 1 - share)
                    samples.add_metric([MODEL, str(version), source], round(count * share))
        yield from (total, accuracy, samples)


@pytest.fixture
def review() -> Iterator[tuple[Review, int]]:
    live = Review()
    registry = CollectorRegistry()
    registry.register(live)  # type: ignore[arg-type]
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry)
    try:
        yield live, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def prometheus(exporter: tuple[Exporter, int], review: tuple[Review, int],
               tmp_path: Path) -> Iterator[PrometheusProcess]:
    tools.build(tools.PROMETHEUS)
    with PrometheusProcess(tmp_path / "prometheus", static_targets=[
            f"127.0.0.1:{exporter[1]}", f"127.0.0.1:{review[1]}"]) as prom:
        yield prom


def result(outcome: str, version: int | None = None) -> str:
    verdict = "Blessed" if outcome == "Succeeded" else "Rejected"
    return TrainingResult(
        outcome=outcome,  # type: ignore[arg-type]
        reason="Published" if version else "GateRejected", model=MODEL, version=version,
        gate=GateStatus(verdict=verdict, reason="" if version else "dark slice below 0.9"),
    ).to_termination_message()


def template() -> dict[str, Any]:
    spec: dict[str, Any] = training_run()["spec"]
    return spec


def dark_profile() -> Profile:
    """The profile of a version trained on the darker images."""
    rng = random.Random(3)
    samples = [draw(rng, dark=True) for _ in range(4000)]
    now = datetime.now(UTC)
    return Profile.build(DEFINITIONS, {d.name: [s[d.name] for s in samples]
                                       for d in DEFINITIONS}, len(samples), now, now)


def carry_version_profile(kubectl: Kubectl, version: int, text: str) -> None:
    """carry_profile for the pod of one version."""
    (pod,) = kubectl.list("pod", f"modelship.io/modeldeployment={NAME},"
                          f"modelship.io/model-version={version}")
    inits = pod["status"]["initContainerStatuses"]
    for init in inits:
        if init["name"] == INIT_CONTAINER:
            init["state"]["terminated"]["message"] = text
    kubectl("patch", "pod", pod["metadata"]["name"], "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"initContainerStatuses": inits}}))


def retraining_md(prometheus_url: str, cooldown: str = "1h",
                  verify_within: str = "30m") -> dict[str, Any]:
    md = sample()
    md["spec"]["model"] = {"name": MODEL, "fromTrainingRuns": {"matchLabels": LABELS}}
    md["spec"]["monitoring"] = {"prometheus": {"address": prometheus_url}, "window": "10s",
                                "interval": "1s", "minSamples": 300, "raiseAfter": 2,
                                "clearAfter": 2}
    md["spec"]["retraining"] = {"template": template(),
                                "triggers": {"dataDrift": {"for": "2s"}},
                                "cooldown": cooldown, "maxPerDay": 5,
                                "verifyWithin": verify_within,
                                "minNewLabels": MIN_NEW_LABELS}
    return md


def retraining_runs(kubectl: Kubectl) -> list[dict[str, Any]]:
    return kubectl.list("tr", f"{LABEL_RETRAINED_FOR}={NAME}")


def retraining(kubectl: Kubectl) -> dict[str, Any]:
    return dict(status(kubectl).get("retraining") or {})


def not_started(kubectl: Kubectl, words: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for_status(f"no run: {words}", lambda: retraining(kubectl),
                           lambda r: words in r.get("notStarted", ""), timeout=timeout)


def serve_version_1(kubectl: Kubectl, md: dict[str, Any]) -> None:
    """Version 1 comes from a Blessed TrainingRun that fromTrainingRuns follows."""
    first = training_run(name="defects-v1")
    first["metadata"]["labels"] = LABELS
    kubectl.apply(first)
    finish_pod(kubectl, running_pod(kubectl, "defects-v1"), EXIT_SUCCEEDED,
               result("Succeeded", 1))
    kubectl.apply(md)
    wait_for("Ready", lambda: ready(kubectl, NAME, 1), timeout=90)


def test_sustained_drift_starts_one_bounded_retraining_run(
        kubectl: Kubectl, operator: OperatorProcess, exporter: tuple[Exporter, int],
        review: tuple[Review, int], prometheus: PrometheusProcess) -> None:
    serve_version_1(kubectl, retraining_md(prometheus.url))
    carry_profile(kubectl, profile().dumps())
    wait_for("judged against the profile", lambda: conditions(kubectl, DataDrift="False"),
             timeout=60)
    assert retraining_runs(kubectl) == [] and retraining(kubectl).get("sequence", 0) == 0

    # The lighting changes: DataDrift holds for 2 s, one run starts, with its provenance.
    exporter[0].versions[1].dark = True
    (run,) = wait_for("retraining run", lambda: retraining_runs(kubectl), timeout=90)
    meta = run["metadata"]
    assert meta["name"] == f"{NAME}-retrain-1"
    assert meta["labels"] == {**LABELS, LABEL_RETRAINED_FOR: NAME}
    notes = meta["annotations"]
    assert notes[ANNOTATION_TRIGGER] == "DataDrift" and notes[ANNOTATION_SEQUENCE] == "1"
    assert "input_brightness psi=" in notes[ANNOTATION_SCORES]
    assert notes[ANNOTATION_LABELS] == "100"
    assert "monitoring window 10s of version 1" in notes[ANNOTATION_WINDOW]
    stored = kubectl.get("md", NAME)
    assert stored is not None and run["spec"] == stored["spec"]["retraining"]["template"]
    assert "ownerReferences" not in meta
    st = wait_for_status("retraining status", lambda: retraining(kubectl),
                         lambda r: r.get("lastRun", {}).get("name") == meta["name"],
                         timeout=30)
    assert st["sequence"] == 1 and st["startedLastDay"] == 1
    assert st["history"][0]["trigger"] == "DataDrift"
    events = json.loads(kubectl("get", "events", "--field-selector",
                                f"involvedObject.name={NAME},reason=RetrainingStarted",
                                "-o", "json").stdout)["items"]
    assert len(events) == 1 and meta["name"] in events[0]["message"]

    # While it runs the trigger still holds, and no second run starts.
    pod = running_pod(kubectl, meta["name"])
    not_started(kubectl, f"retraining run {meta['name']} is")
    assert len(retraining_runs(kubectl)) == 1

    # A restart that lost the status write of the pass that created the run: the new
    # process adopts the run from the cluster and creates none.
    operator.stop()
    kubectl("patch", "md", NAME, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"retraining": None}}))
    operator.start()
    st = not_started(kubectl, f"retraining run {meta['name']} is")
    assert st["sequence"] == 1 and st["lastRun"]["name"] == meta["name"]
    assert [r["metadata"]["name"] for r in retraining_runs(kubectl)] == [meta["name"]]

    # Rejected by its gate: the cooldown holds the next one back.
    finish_pod(kubectl, pod, EXIT_REJECTED, result("Rejected"))
    st = wait_for_status("Rejected, in the cooldown", lambda: retraining(kubectl),
                         lambda r: r.get("lastRun", {}).get("phase") == "Rejected"
                         and "cooldown 1h until" in r.get("notStarted", ""), timeout=60)
    assert " is " not in st["notStarted"]  # nothing running
    assert len(retraining_runs(kubectl)) == 1

    # Without the cooldown: still none while the reviewed data is unchanged.
    md = retraining_md(prometheus.url, cooldown="0s", verify_within="5s")
    kubectl.apply(md)
    not_started(kubectl, "Rejected and the reviewed data has not changed")
    assert len(retraining_runs(kubectl)) == 1
    with review[0].lock:
        review[0].labels_total += MIN_NEW_LABELS - 1
    not_started(kubectl, f"{MIN_NEW_LABELS - 1} new labels since")
    assert len(retraining_runs(kubectl)) == 1

    # New labels reviewed: the data changed, the next run starts.
    with review[0].lock:
        review[0].labels_total += 1
    second = wait_for("second run", lambda: next(
        (r for r in retraining_runs(kubectl)
         if r["metadata"]["name"] == f"{NAME}-retrain-2"), None), timeout=60)
    assert second["metadata"]["annotations"][ANNOTATION_LABELS] == str(100 + MIN_NEW_LABELS)
    assert len(retraining_runs(kubectl)) == 2
    assert condition(kubectl.get("md", NAME), "DataDrift")["status"] == "True"

    # It is Blessed and replaces version 1. Until its own evaluation (here: its profile has
    # not arrived) clears the drift, it is unverified; after verifyWithin, a person is needed.
    with exporter[0].lock:
        exporter[0].versions[2] = Version(dark=True)
    finish_pod(kubectl, running_pod(kubectl, f"{NAME}-retrain-2"), EXIT_SUCCEEDED,
               result("Succeeded", 2))
    wait_for("version 2 stable", lambda: ready(kubectl, NAME, 2), timeout=90)
    st = wait_for("RetrainingEffective False", lambda: conditions(
        kubectl, RetrainingEffective="False"), timeout=60)
    effective = condition({"status": st}, "RetrainingEffective")
    assert effective["reason"] == "DriftPersists"
    assert "version 2 (retraining run defects-dev-retrain-2" in effective["message"]
    assert "a person is needed" in effective["message"]
    assert st["retraining"]["lastRun"]["promotedAt"]
    # The drift of version 1 is no trigger for version 2: no third run.
    assert len(retraining_runs(kubectl)) == 2

    # Its profile (of the darker images it was trained on) arrives: the drift clears.
    carry_version_profile(kubectl, 2, dark_profile().dumps())
    st = wait_for("RetrainingEffective True", lambda: conditions(
        kubectl, RetrainingEffective="True", DataDrift="False"), timeout=60)
    assert condition({"status": st}, "RetrainingEffective")["reason"] == "DriftCleared"
    assert st["monitoring"]["version"] == 2
    assert len(retraining_runs(kubectl)) == 2


def test_low_reviewed_accuracy_of_the_stable_version_starts_a_run(
        kubectl: Kubectl, operator: OperatorProcess, exporter: tuple[Exporter, int],
        review: tuple[Review, int], prometheus: PrometheusProcess) -> None:
    md = retraining_md(prometheus.url)
    md["spec"]["retraining"]["triggers"] = {"reviewedAccuracy": {"below": 0.9,
                                                                 "minSamples": 100}}
    with review[0].lock:
        review[0].accuracy = {1: (0.8, 99), 2: (0.5, 500)}  # too few; not the stable one
    serve_version_1(kubectl, md)
    st = wait_for_status("accuracy read", lambda: kubectl.get("md", NAME) or {},
                         lambda m: bool(m.get("status", {}).get("retraining")), timeout=30)
    assert st["status"]["retraining"]["triggered"] == ""
    with review[0].lock:
        review[0].accuracy[1] = (0.8, 100)
    (run,) = wait_for("retraining run", lambda: retraining_runs(kubectl), timeout=60)
    notes = run["metadata"]["annotations"]
    assert notes[ANNOTATION_TRIGGER] == "ReviewedAccuracy"
    assert notes[ANNOTATION_SCORES] == "reviewed accuracy 0.800 < 0.9 over 100 labels"
    assert notes[ANNOTATION_WINDOW] == "last 100 reviewed labels of version 1"
    assert notes[ANNOTATION_LABELS] == "100"


def test_an_invalid_retraining_template_is_refused_at_admission(
        kubectl: Kubectl) -> None:
    md = retraining_md("http://127.0.0.1:9")
    md["spec"]["retraining"]["template"]["dataset"]["volume"] = {"hostPath": "/data"}
    out = kubectl.apply(md, check=False)
    assert out.returncode != 0
    assert "spec.retraining.template.dataset" in out.stderr
    assert "set exactly one of generated or volume" in out.stderr

    md = retraining_md("http://127.0.0.1:9")
    md["spec"]["retraining"]["template"]["trainer"]["resources"] = {
        "limits": {"nvidia.com/gpu": "0.5"}}
    out = kubectl.apply(md, check=False)
    assert "spec.retraining.template.trainer.resources" in out.stderr, out.stderr

    md = retraining_md("http://127.0.0.1:9")
    del md["spec"]["retraining"]["template"]["publish"]
    out = kubectl.apply(md, check=False)
    assert "spec.retraining.template.publish: Required value" in out.stderr, out.stderr

    md = retraining_md("http://127.0.0.1:9")
    md["spec"]["retraining"]["template"]["model"] = "another"
    out = kubectl.apply(md, check=False)
    assert "spec.retraining.template.model" in out.stderr
    assert "must be model.name" in out.stderr

    md = retraining_md("http://127.0.0.1:9")
    md["spec"]["model"] = {"name": MODEL, "version": 1}
    out = kubectl.apply(md, check=False)
    assert "retraining needs model.fromTrainingRuns" in out.stderr, out.stderr

    md = retraining_md("http://127.0.0.1:9")
    md["spec"]["retraining"]["triggers"] = {}
    out = kubectl.apply(md, check=False)
    assert "set at least one trigger" in out.stderr, out.stderr

    # A valid one is accepted, and its template may change later (unlike a TrainingRun's
    # spec, which is immutable).
    md = retraining_md("http://127.0.0.1:9")
    kubectl.apply(md)
    md["spec"]["retraining"]["template"]["dataset"]["generated"]["seed"] = 4
    kubectl.apply(md)
    got = kubectl.get("md", NAME)
    assert got is not None
    assert got["spec"]["retraining"]["template"]["dataset"]["generated"]["seed"] == 4
