"""Monitoring of the served model, as a user sees it: the real operator on the real API
server, a real Prometheus scraping a small exporter that serves the live statistics under
the names Triton's modelship runner exports (model, version, statistic; histograms on the
profile's edges), and the chart's alert rules evaluated by that Prometheus.

The Triton pod is kwok's here, so what its init container would write into its termination
message is written into the pod's status as the kubelet would: a profile, or for a version
without one, what the init script of the operator's Deployment writes when run here on a
version folder (its cases are in tests/unit/test_triton_manifests.py)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.utils import floatToGoString

from modelship import constants
from modelship.adapters.kube import Kube
from modelship.core.drift.profiles import INIT_CONTAINER
from modelship.core.triton_manifests import VIEW_MOUNT
from modelship.handlers.md_reconcile import reconcile
from modelship_api.profile import (
    INPUT_METRIC,
    NONFINITE_METRIC,
    OUTPUT_METRIC,
    PREDICTIONS_METRIC,
    Profile,
    bucket_index,
    image_statistics,
)
from modelship_dev import alert_rules, tools
from modelship_dev.cluster import free_port
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from tests.conftest import Kubectl, wait_for
from tests.integration.test_modeldeployment import condition, ready, sample

pytestmark = pytest.mark.integration

NAME, MODEL, VERSION = "defects-dev", "surface-defects", 1
CLASSES = ["ok", "scratch", "dent"]
DEFINITIONS = image_statistics(CLASSES)


def draw(rng: random.Random, dark: bool) -> dict[str, float]:
    """One request's statistics: the lighting of the training data, or darker images."""
    confidence = rng.uniform(0.7, 0.99)
    return {"input_brightness": rng.uniform(0.08, 0.18) if dark else rng.uniform(0.4, 0.6),
            "input_contrast": rng.uniform(0.1, 0.15),
            "input_saturated_fraction": rng.uniform(0.0, 0.004),
            "output_confidence": confidence, "output_entropy": (1 - confidence) * 1.2,
            "predicted_class": float(rng.choices([0, 1, 2], [8, 1, 1])[0])}


def profile() -> Profile:
    rng = random.Random(1)
    samples = [draw(rng, dark=False) for _ in range(4000)]
    data_time = datetime.now(UTC) - timedelta(days=3)
    return Profile.build(DEFINITIONS, {d.name: [s[d.name] for s in samples]
                                       for d in DEFINITIONS}, len(samples), data_time,
                         data_time)


@dataclass
class Version:
    """One version's live statistics and Triton request counters."""

    dark: bool = False
    collapsed: bool = False  # predicts "ok" for everything
    nonfinite: int = 0
    requests: int = 0
    counts: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)

    def add(self, sample: dict[str, float]) -> None:
        self.requests += 1
        for d in DEFINITIONS:
            if d.kind == "numeric":
                counts = self.counts.setdefault(d.name, [0] * (len(d.edges or []) + 1))
                counts[bucket_index(d.edges or [], sample[d.name])] += 1
                self.sums[d.name] = self.sums.get(d.name, 0.0) + sample[d.name]
        label = "ok" if self.collapsed else CLASSES[int(sample["predicted_class"])]
        self.classes[label] = self.classes.get(label, 0) + 1


@dataclass(eq=False)  # a registry keeps its collectors in a dict
class Exporter:
    """The live statistics of each version, served at /metrics as the runner exports them,
    with Triton's request counters (no failures, 10 ms a request), fed by a thread at 50
    requests/s per version (500 in the tests' 10 s window)."""

    namespace: str
    versions: dict[int, Version] = field(default_factory=lambda: {VERSION: Version()})
    # The runner's modelship_sampling_stopped{reason} of version 1 (none: sampling off).
    sampling_stopped: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def feed(self, rate: float = 50.0) -> None:
        """`rate` samples a second on average, caught up after any stall of the thread (a
        busy machine): a window never holds too few samples because the test ran slowly."""
        rng = random.Random(2)
        started, fed = time.monotonic(), 0
        while not self.stop.wait(0.1):
            due = int((time.monotonic() - started) * rate) - fed
            fed += due
            with self.lock:
                for _ in range(due):
                    for version in self.versions.values():
                        version.add(draw(rng, version.dark))

    def collect(self) -> Iterator[Metric]:
        names = ["model", "version", "namespace"]
        families = {source: HistogramMetricFamily(metric, "live statistic",
                                                  labels=[*names, "statistic"])
                    for source, metric in (("input", INPUT_METRIC), ("output", OUTPUT_METRIC))}
        predictions = CounterMetricFamily(PREDICTIONS_METRIC.removesuffix("_total"),
                                          "predictions", labels=[*names, "class"])
        nonfinite = CounterMetricFamily(NONFINITE_METRIC.removesuffix("_total"),
                                        "non-finite outputs", labels=names)
        # Triton's counters have no _total suffix, which prometheus_client would add to a
        # counter family: untyped families spell the names as Triton does.
        triton = {name: UnknownMetricFamily(name, "Triton", labels=names) for name in (
            "nv_inference_request_success", "nv_inference_request_failure",
            "nv_inference_request_duration_us")}
        stopped = GaugeMetricFamily("modelship_sampling_stopped", "sampling stopped",
                                    labels=[*names, "reason"])
        with self.lock:
            for reason, value in self.sampling_stopped.items():
                stopped.add_metric([MODEL, str(VERSION), self.namespace, reason], value)
            for number, version in self.versions.items():
                labels = [MODEL, str(number), self.namespace]
                for d in DEFINITIONS:
                    if d.kind != "numeric" or d.name not in version.counts:
                        continue
                    cumulative, total = [], 0
                    for edge, count in zip([*(d.edges or []), float("inf")],
                                           version.counts[d.name], strict=True):
                        total += count
                        cumulative.append((floatToGoString(edge), float(total)))
                    families[d.source].add_metric([*labels, d.name], cumulative,
                                                  version.sums[d.name])
                for label, n in version.classes.items():
                    predictions.add_metric([*labels, label], n)
                nonfinite.add_metric(labels, version.nonfinite)
                triton["nv_inference_request_success"].add_metric(labels, version.requests)
                triton["nv_inference_request_failure"].add_metric(labels, 0)
                triton["nv_inference_request_duration_us"].add_metric(
                    labels, version.requests * 10_000)
        yield from (*families.values(), predictions, nonfinite, *triton.values(), stopped)


@pytest.fixture
def exporter(kubectl: Kubectl) -> Iterator[tuple[Exporter, int]]:
    live = Exporter(kubectl.namespace)
    registry = CollectorRegistry()
    registry.register(live)  # type: ignore[arg-type]
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry)
    feeder = threading.Thread(target=live.feed, daemon=True)
    feeder.start()
    try:
        yield live, port
    finally:
        live.stop.set()
        feeder.join(timeout=10)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def prometheus(operator: OperatorProcess, exporter: tuple[Exporter, int],
               tmp_path: Path) -> Iterator[PrometheusProcess]:
    """Scrapes the exporter and the operator (as the chart's ServiceMonitor does, keeping
    the operator's own namespace label), and evaluates the chart's alert rules."""
    tools.build(tools.PROMETHEUS)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(alert_rules.rule_groups(alert_rules.render())))
    operator_job = {"job_name": "operator", "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{operator.metrics_port}"]}]}
    with PrometheusProcess(tmp_path / "prometheus", static_targets=[f"127.0.0.1:{exporter[1]}"],
                           scrape_configs=[operator_job], rule_files=[rules]) as prom:
        yield prom


def status(kubectl: Kubectl) -> dict[str, Any]:
    return dict(((kubectl.get("md", NAME) or {}).get("status")) or {})


def conditions(kubectl: Kubectl, **wanted: str) -> dict[str, Any] | None:
    """The status once every named condition has the wanted status, else None."""
    st = status(kubectl)
    ok = all(condition({"status": st}, t).get("status") == v for t, v in wanted.items())
    return st if ok else None


def evaluations(operator: OperatorProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in operator.metrics().splitlines()
               if line.startswith("modelship_monitoring_evaluations_total{")
               and f'name="{NAME}"' in line)


def events(kubectl: Kubectl, reason: str) -> list[dict[str, Any]]:
    out = json.loads(kubectl("get", "events", "--field-selector",
                             f"involvedObject.name={NAME},reason={reason}",
                             "-o", "json").stdout)
    return list(out["items"])


def firing(prom: PrometheusProcess, alert: str) -> bool:
    with urllib.request.urlopen(f"{prom.url}/api/v1/alerts", timeout=5) as resp:
        alerts = json.loads(resp.read())["data"]["alerts"]
    return any(a["labels"].get("alertname") == alert and a["state"] == "firing"
               and a["labels"].get("name") == NAME for a in alerts)


def carry_profile(kubectl: Kubectl, text: str) -> None:
    """What the kubelet does with the init container's termination message."""
    (pod,) = kubectl.list("pod", f"modelship.io/modeldeployment={NAME}")
    inits = pod["status"]["initContainerStatuses"]
    for init in inits:
        if init["name"] == INIT_CONTAINER:
            init["state"]["terminated"]["message"] = text
    kubectl("patch", "pod", pod["metadata"]["name"], "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"initContainerStatuses": inits}}))


def init_message(kubectl: Kubectl, folder: Path, published: datetime) -> str:
    """The termination message the init container of the operator's Deployment writes for
    a version folder of the local sample (backend python) published at `published`, with
    neither profile.json nor lineage.json: its script, run on `folder` as the repository."""
    (dep,) = kubectl.list("deployment", f"modelship.io/modeldeployment={NAME}")
    (init,) = dep["spec"]["template"]["spec"]["initContainers"]
    version = folder / "repository" / MODEL / str(VERSION)
    version.mkdir(parents=True)
    (version / "config.pbtxt").write_text('backend: "python"\n')
    (version / "model.py").write_text("")
    for path in (version / "model.py", version):
        os.utime(path, (published.timestamp(), published.timestamp()))
    script = init["command"][2].replace(constants.MODEL_REPOSITORY_MOUNT + "/",
                                        f"{folder / 'repository'}/")
    script = script.replace(VIEW_MOUNT, str(folder / "view"))
    script = script.replace("/dev/termination-log", str(folder / "termination-log"))
    assert str(folder / "repository" / MODEL) in script, script
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return (folder / "termination-log").read_text()


def test_drift_staleness_and_numeric_health_of_the_served_version(
        kubectl: Kubectl, operator: OperatorProcess, exporter: tuple[Exporter, int],
        prometheus: PrometheusProcess, tmp_path: Path) -> None:
    live = exporter[0].versions[VERSION]
    md = sample(version=VERSION)
    md["spec"]["monitoring"] = {"prometheus": {"address": prometheus.url}, "window": "10s",
                                "interval": "1s", "minSamples": 300, "raiseAfter": 2,
                                "clearAfter": 2}
    kubectl.apply(md)
    wait_for("Ready", lambda: ready(kubectl, NAME, VERSION), timeout=90)

    # Published without profile.json: only the non-finite count runs, and status says why.
    st = wait_for("no profile", lambda: conditions(kubectl, NumericFault="False"), timeout=60)
    assert condition({"status": st}, "DataDrift")["reason"] == "NoProfile"
    assert condition({"status": st}, "Stale")["status"] == "Unknown"
    assert any("version 1 has no profile.json" in u for u in st["monitoring"]["unavailable"])

    # The operator's own init container on a version folder published 40 days ago without
    # profile.json or lineage.json: its publish time dates it, the data is at least as old,
    # so the model is Stale, with its event and alert, though the data time is unknown.
    published = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    carry_profile(kubectl, init_message(kubectl, tmp_path / "version", published))
    st = wait_for("Stale from the publish time", lambda: conditions(kubectl, Stale="True"),
                  timeout=60)
    when = published.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert condition({"status": st}, "Stale")["message"].startswith(
        f"version published {when}, 40 days ago: its training data is at least that old, "
        "older than maxModelAge 720h"), condition({"status": st}, "Stale")
    mon = st["monitoring"]
    assert (mon["ageSource"], mon["publishedAt"]) == ("PublishTime", when)
    assert mon["modelAgeSeconds"] >= 40 * 86400 and "dataTime" not in mon
    assert "exact model age: version 1 has no lineage.json; the age counts from the " \
        "version's publish time, a lower bound" in mon["unavailable"]
    assert condition({"status": st}, "DataDrift")["reason"] == "NoProfile"
    (event,) = wait_for("Stale event", lambda: events(kubectl, "Stale"))
    assert event["type"] == "Warning" and f"version published {when}" in event["message"]
    assert any(line.startswith("modelship_model_age_seconds{") and f'name="{NAME}"' in line
               and 'source="PublishTime"' in line for line in operator.metrics().splitlines())
    wait_for("ModelStale firing in Prometheus", lambda: firing(prometheus, "ModelStale"))

    # The profile arrives: every statistic is judged, stationary traffic raises nothing.
    reference = profile()
    carry_profile(kubectl, reference.dumps())
    st = wait_for("judged against the profile", lambda: conditions(
        kubectl, DataDrift="False", PredictionDrift="False", Stale="False",
        NumericFault="False"), timeout=60)
    stats = {s["name"]: s for s in st["monitoring"]["statistics"]}
    assert set(stats) == {d.name for d in DEFINITIONS}
    assert all(s["result"] == "Normal" and s["samples"] >= 300 for s in stats.values()), \
        json.dumps(stats, indent=1)
    assert st["monitoring"]["profileDigest"] == reference.digest()
    assert st["monitoring"]["ageSource"] == "ProfileDataTime"
    wait_for("ModelStale resolved", lambda: not firing(prometheus, "ModelStale"))
    start = evaluations(operator)
    wait_for("15 more evaluations", lambda: evaluations(operator) >= start + 15, timeout=60)
    assert condition({"status": status(kubectl)}, "DataDrift")["status"] == "False"
    assert events(kubectl, "DataDrift") == [] and not firing(prometheus, "ModelDataDrift")

    # The lighting changes: DataDrift, its event, its score and its alert; outputs unchanged.
    live.dark = True
    st = wait_for("DataDrift", lambda: conditions(kubectl, DataDrift="True"), timeout=60)
    assert "input_brightness" in condition({"status": st}, "DataDrift")["message"]
    assert condition({"status": st}, "PredictionDrift")["status"] == "False"
    (event,) = wait_for("DataDrift event", lambda: events(kubectl, "DataDrift"))
    assert event["type"] == "Warning" and "input_brightness psi" in event["message"]
    score = next(float(line.rsplit(" ", 1)[1]) for line in operator.metrics().splitlines()
                 if line.startswith("modelship_drift_score{")
                 and 'statistic="input_brightness"' in line and f'name="{NAME}"' in line)
    assert score > 0.25
    wait_for("ModelDataDrift firing in Prometheus", lambda: firing(prometheus,
                                                                   "ModelDataDrift"))

    # Non-finite outputs: NumericFault at once.
    live.nonfinite += 3
    wait_for("NumericFault", lambda: conditions(kubectl, NumericFault="True"))

    # The lighting comes back: the drift clears once the window holds normal images.
    live.dark = False
    wait_for("DataDrift cleared", lambda: conditions(kubectl, DataDrift="False"))
    wait_for("cleared event", lambda: events(kubectl, "NoDataDrift"))

    # Deleted: the operator's series of the resource leave /metrics.
    kubectl("delete", "md", NAME)
    wait_for("series gone", lambda: f'name="{NAME}"' not in "\n".join(
        line for line in operator.metrics().splitlines()
        if line.startswith(("modelship_drift_score", "modelship_monitoring_condition",
                            "modelship_model_age_seconds"))))


def test_a_full_sampling_volume_is_a_condition_and_never_stops_serving(
        kubectl: Kubectl, operator: OperatorProcess, exporter: tuple[Exporter, int],
        prometheus: PrometheusProcess) -> None:
    """The runner's stopped gauge (its real behaviour: tests/e2e/test_triton_samples.py)
    becomes the condition Sampling, with an event on each change; serving is untouched."""
    live = exporter[0]
    with live.lock:
        live.sampling_stopped.update({"VolumeFull": 0, "ReadOnly": 0})
    md = sample(version=VERSION)
    md["spec"]["monitoring"] = {"prometheus": {"address": prometheus.url}, "interval": "1s",
                                "sampling": {"enabled": True, "volume": {
                                    "hostPath": "/var/lib/modelship/datasets",
                                    "path": "plant-a"}}}
    kubectl.apply(md)
    wait_for("Ready", lambda: ready(kubectl, NAME, VERSION), timeout=90)
    st = wait_for("Sampling True", lambda: conditions(kubectl, Sampling="True"), timeout=60)
    cond = condition({"status": st}, "Sampling")
    assert cond["reason"] == "Writing"
    assert "hostPath /var/lib/modelship/datasets, plant-a/production/surface-defects" in \
        cond["message"]
    (dep,) = kubectl.list("deployment", f"modelship.io/modeldeployment={NAME}")
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "production-samples", "hostPath": {
        "path": "/var/lib/modelship/datasets", "type": "DirectoryOrCreate"}} in pod["volumes"]

    with live.lock:
        live.sampling_stopped["VolumeFull"] = 1
    st = wait_for("Sampling False", lambda: conditions(kubectl, Sampling="False"), timeout=60)
    cond = condition({"status": st}, "Sampling")
    assert cond["reason"] == "VolumeFull" and "the volume is full" in cond["message"]
    (event,) = wait_for("VolumeFull event", lambda: events(kubectl, "SamplingVolumeFull"))
    assert event["type"] == "Warning"
    assert ready(kubectl, NAME, VERSION) is not None  # serving goes on
    (after,) = kubectl.list("deployment", f"modelship.io/modeldeployment={NAME}")
    assert after["spec"]["template"] == dep["spec"]["template"]  # nor are the pods replaced

    with live.lock:
        live.sampling_stopped["VolumeFull"] = 0
    wait_for("Sampling True again", lambda: conditions(kubectl, Sampling="True"), timeout=60)
    wait_for("resumed event", lambda: events(kubectl, "SamplingResumed"))

    md["spec"]["monitoring"]["sampling"] = {"enabled": False}
    kubectl.apply(md)
    wait_for("Sampling absent", lambda: not condition({"status": status(kubectl)},
                                                       "Sampling"), timeout=60)


def check_results(kubectl: Kubectl) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in (status(kubectl).get("analysis") or {}).get("checks") or []}


def test_a_canary_that_predicts_one_class_is_rolled_back_by_prediction_drift_alone(
        kubectl: Kubectl, operator: OperatorProcess, exporter: tuple[Exporter, int],
        prometheus: PrometheusProcess) -> None:
    """Version 2 answers every request, without errors and as fast as version 1, but says
    "ok" for everything; version 3 predicts like version 1. Same checks, same traffic."""
    live = exporter[0]
    with live.lock:
        live.versions[2] = Version(collapsed=True)
        live.versions[3] = Version()
    md = sample(version=1)
    md["spec"]["monitoring"] = {"minSamples": 300}
    md["spec"]["rollout"] = {
        "canary": {"steps": [{"weight": 50, "pause": "30s"}]},
        "analysis": {"prometheus": {"address": prometheus.url}, "interval": "1s",
                     "window": "10s", "failureLimit": 2, "minRequests": 100,
                     "inconclusiveLimit": 1000, "checks": [
                         {"name": "error-ratio", "builtin": "errorRatio", "max": 0.01},
                         {"name": "latency", "builtin": "meanLatency", "max": 1.5,
                          "relativeToStable": True},
                         {"name": "non-finite", "builtin": "nonFinite", "max": 0},
                         {"name": "predictions", "builtin": "predictionDrift", "max": 0.25,
                          "relativeToStable": True}]}}
    kubectl.apply(md)
    wait_for("Ready", lambda: ready(kubectl, NAME, 1), timeout=90)

    md["spec"]["model"]["version"] = 2
    kubectl.apply(md)
    st = wait_for("rolled back", lambda: (s := status(kubectl)).get("phase") == "RolledBack"
                  and s, timeout=120)
    assert st["stableVersion"] == 1
    entry = st["history"][0]
    assert (entry["version"], entry["outcome"]) == (2, "RolledBack")
    assert entry["reason"].startswith("predictions="), entry["reason"]
    checks = check_results(kubectl)
    assert checks["predictions"]["result"] == "Failed" and checks["predictions"]["value"] > 0.25
    assert checks["predictions"]["threshold"] == "max 0.25 psi vs stable"
    for name in ("error-ratio", "latency", "non-finite"):
        assert checks[name]["result"] == "Successful", checks[name]

    # The same rollout of a version that predicts like stable is promoted.
    md["spec"]["model"]["version"] = 3
    kubectl.apply(md)
    wait_for("version 3 promoted", lambda: ready(kubectl, NAME, 3), timeout=150)
    assert status(kubectl)["history"][0]["outcome"] == "Promoted"


class PodsUnreadable(Kube):
    """The real adapter, except that reading a version's pods (for its profile) fails."""

    async def list(self, api_version: str, kind: str, namespace: str,
                   labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        if kind == "Pod" and labels and constants.LABEL_MODEL_VERSION in labels:
            raise RuntimeError("pods unreadable")
        return await super().list(api_version, kind, namespace, labels)


def test_a_version_served_by_triton_own_backend_is_watched_for_its_age_and_says_why_not_more(
        kubectl: Kubectl, operator: OperatorProcess, prometheus: PrometheusProcess) -> None:
    """runtime.backend onnxruntime: Triton's own backend exports no model statistics, so
    drift and non-finite outputs say so instead of staying inconclusive; the age is judged."""
    md = sample(version=VERSION, backend="onnxruntime")
    md["spec"]["monitoring"] = {"prometheus": {"address": prometheus.url}, "interval": "1s"}
    kubectl.apply(md)
    wait_for("Ready", lambda: ready(kubectl, NAME, VERSION), timeout=90)
    carry_profile(kubectl, profile().dumps())
    st = wait_for("judged", lambda: conditions(kubectl, Stale="False"), timeout=60)
    for type_ in ("DataDrift", "PredictionDrift", "NumericFault"):
        c = condition({"status": st}, type_)
        assert (c["status"], c["reason"]) == ("Unknown", "NotMeasured"), c
        assert c["message"].startswith("runtime.backend onnxruntime serves the version with "
                                       "Triton's own onnxruntime backend, which exports no "
                                       "model statistics"), c
    assert st["monitoring"]["unavailable"][0].startswith(
        "drift and non-finite outputs: runtime.backend onnxruntime"), st["monitoring"]


def test_a_monitoring_failure_never_holds_up_serving(kubectl: Kubectl) -> None:
    """Passes whose monitoring raises still create the version and write the rollout's
    status: the resource becomes Ready, only its monitoring block is missing."""
    kubectl.apply(sample(version=VERSION))
    config = KubeConfig.from_file(kubectl.cluster.kubeconfig)

    async def passes() -> None:
        client = AsyncClient(config=config, field_manager=constants.FIELD_MANAGER)
        try:
            kube = PodsUnreadable(client)
            for _ in range(40):  # kwok reports the Triton pod ready within moments
                await reconcile(kube, kubectl.namespace, NAME)
                if ready(kubectl, NAME, VERSION) is not None:
                    return
                await asyncio.sleep(0.5)
            raise AssertionError(f"not Ready: {kubectl.get('md', NAME)}")
        finally:
            await client.close()

    asyncio.run(passes())
    assert "monitoring" not in status(kubectl)
