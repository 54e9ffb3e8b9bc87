"""`modelship demo`: the whole loop on one machine, every part real.

It builds what is missing, brings up the control plane, a node whose pods run from modelship's
images, the gateway, the Prometheus Operator's Prometheus with Alertmanager, and installs the
operator with `helm install` of the chart (its pod runs from the operator image, as on a
cluster); trains v1 through a TrainingRun and serves it; sends gRPC traffic through the
gateway; trains a better v2 that a canary promotes, a run the gate rejects, and a v3 that
passes the gate but is too slow in production, is rolled back automatically and pages through
Alertmanager. Then the factory's lights dim: the clients' images get darker, the model still
answers fast and without errors, and the ModelDeployment shows DataDrift against the served
version's training profile, which reaches Alertmanager too. It prints a timeline, writes a
chart, and tears everything down.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelship_api import crdgen
from modelship_dev import gateway_api, tools, workload
from modelship_dev.background import Background
from modelship_dev.chart import Sample, write_chart
from modelship_dev.cluster import LocalCluster
from modelship_dev.stack import LocalStack
from modelship_dev.workload import InferenceLoad, model_deployment, training_run

NAMESPACE = "modelship-demo"
MODEL = "surface-defects"
MD = "defects"
FOLLOW = {"pipeline": "defects"}
KEEP_S = 3600
ROLLOUT = {"canary": {"steps": [{"weight": 20, "pause": "10s"}, {"weight": 50, "pause": "10s"}]}}
# Drift judged every 5 s over the last 30 s (defaults: 15 s over 1 m), so the act is short;
# 20 requests/s of 8 images give 4800 samples a window.
MONITORING = {"window": "30s", "interval": "5s"}
DARK = 0.3  # the dimmed factory's brightness; the models are trained at 0.5
MONITORING_CONDITIONS = ("DataDrift", "PredictionDrift", "Stale", "NumericFault")


def install_crds(cluster: LocalCluster) -> None:
    """Apply the CRDs as generated from this very version of the API models, and the
    Gateway API's (the gateway traffic provider writes GRPCRoutes)."""
    manifests = "---\n".join(crdgen.render(info) for info in crdgen.CRDS)
    cluster.kubectl("apply", "--server-side", "-f", "-", input_text=manifests)
    gateway_api.install(cluster)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@dataclass
class Timeline:
    """Timestamped lines, printed as they happen and kept for the summary."""

    log: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, text: str) -> None:
        line = f"[{self.now():6.1f}s] {text}"
        with self.lock:
            self.lines.append(line)
        self.log(line)


class Watcher(Background):
    """Polls the ModelDeployment and the TrainingRuns (bounded by `stop`), reports each
    change to the timeline and samples the traffic split for the chart."""

    def __init__(self, cluster: LocalCluster, timeline: Timeline) -> None:
        super().__init__("demo-watcher")
        self.cluster, self.timeline = cluster, timeline
        self.samples: list[Sample] = []
        self.events: list[tuple[float, str]] = []
        self._seen: dict[str, tuple[Any, ...]] = {}

    def _get(self, kind: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("-n", NAMESPACE, "get", kind, "-o", "json", check=False)
        return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []

    def _changed(self, key: str, value: tuple[Any, ...]) -> bool:
        if self._seen.get(key) == value:
            return False
        self._seen[key] = value
        return True

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for run in self._get("trainingruns"):
                st = run.get("status") or {}
                name = run["metadata"]["name"]
                if st.get("phase") and self._changed(name, (st.get("phase"),)):
                    detail = st.get("message") or ""
                    self.timeline(f"TrainingRun {name}: {st['phase']}"
                                  + (f" - {detail}" if detail else ""))
            for md in self._get("modeldeployments"):
                self._deployment(md.get("status") or {})

    def _deployment(self, st: dict[str, Any]) -> None:
        weights = st.get("weights") or {}
        stable, candidate = st.get("stableVersion"), st.get("candidateVersion")
        stage = (st.get("rollout") or {}).get("stage", "")
        self.samples.append(Sample(self.timeline.now(), stable, candidate,
                                   int(weights.get("candidate", 0))))
        self._conditions(st)
        state = (st.get("phase"), stable, candidate, weights.get("candidate"), stage)
        if st.get("phase") and self._changed("md", state):
            split = "no version serving yet" if stable is None else (
                f"v{stable} {weights.get('stable', 100)}%"
                + (f" / v{candidate} {weights.get('candidate', 0)}%" if candidate else ""))
            text = f"ModelDeployment {MD}: {st['phase']}{' ' + stage if stage else ''}, {split}"
            if st.get("phase") in ("RolledBack", "Ready") and st.get("message"):
                text += f" - {st['message']}"
            self.timeline(text)
            self.events.append((self.timeline.now(), f"{st['phase']} {stage}".strip()))

    def _conditions(self, st: dict[str, Any]) -> None:
        """Each monitoring condition's turns to True, and back once it was True."""
        for c in st.get("conditions") or []:
            if c["type"] not in MONITORING_CONDITIONS:
                continue
            was = self._seen.get(c["type"])
            if self._changed(c["type"], (c["status"],)) and (
                    c["status"] == "True" or was == ("True",)):
                self.timeline(f"ModelDeployment {MD}: {c['type']}={c['status']} "
                              f"({c.get('reason')}) - {c.get('message', '')}")
                self.events.append((self.timeline.now(), f"{c['type']}={c['status']}"))


def _wait_status(cluster: LocalCluster, kind: str, name: str,
                 reached: Callable[[dict[str, Any]], bool], what: str, timeout: float
                 ) -> dict[str, Any]:
    """Poll the status of `kind/name` until `reached` holds (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = cluster.kubectl("-n", NAMESPACE, "get", kind, name, "-o", "json", check=False)
        st = (json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}
        if reached(st):
            return dict(st)
        time.sleep(0.5)
    raise TimeoutError(f"{kind} {name} {what} after {timeout:.0f}s; "
                       f"status: {json.dumps(st)[:2000]}")


def _wait_run(cluster: LocalCluster, name: str, timeout: float) -> dict[str, Any]:
    return _wait_status(cluster, "trainingrun", name, lambda st: st.get("phase") in (
        "Succeeded", "Failed", "Rejected"), "did not finish", timeout)


def _wait_md(cluster: LocalCluster, phase: str, stable: int, timeout: float
             ) -> dict[str, Any]:
    return _wait_status(cluster, "modeldeployment", MD, lambda st: st.get(
        "phase") == phase and st.get("stableVersion") == stable,
        f"not {phase} with stable v{stable}", timeout)


def _apply(cluster: LocalCluster, obj: dict[str, Any]) -> None:
    cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps(obj))


def _train(cluster: LocalCluster, timeline: Timeline, repository: Path, name: str,
           seed: int, **kwargs: Any) -> dict[str, Any]:
    _apply(cluster, training_run(name, MODEL, repository, labels=FOLLOW, seed=seed, **kwargs))
    timeline(f"applied TrainingRun {name}")
    st = _wait_run(cluster, name, timeout=300)
    return st


def run(log: Callable[[str], None] = print, keep: bool = False,
        chart: Path = Path("modelship-demo.png")) -> None:
    timeline = Timeline(log)
    timeline("building what is missing from Go modules (cached after the first time)")
    tools.build_all(log=lambda line: timeline(f"  {line}"))
    workdir = Path(tempfile.mkdtemp(prefix="modelship-demo-"))
    cluster = LocalCluster(workdir / "cluster", log=timeline)
    repository = workload.node_folder(workdir / "model-repository")
    # The operator as a user installs it: `helm install` of the chart (which brings the
    # CRDs), its pod run from the operator image by the node agent.
    stack = LocalStack(cluster, workdir, NAMESPACE, log=timeline, in_cluster=True)
    try:
        cluster.up()
        gateway_api.install(cluster)
        timeline("Gateway API CRDs installed (the gateway and the operator's GRPCRoutes)")
        stack.start()
        _story(cluster, stack, timeline, repository, chart)
        if keep:
            log(f"still running for up to {KEEP_S // 60} minutes; look around with "
                f"`export KUBECONFIG={cluster.kubeconfig}`, `modelship status {MD} "
                f"-n {NAMESPACE}`; Ctrl-C tears everything down")
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(KEEP_S)
    finally:
        stack.close()
        cluster.down()
        shutil.rmtree(workdir, ignore_errors=True)
        timeline("torn down: no process and no state left")


def _story(cluster: LocalCluster, stack: LocalStack, timeline: Timeline, repository: Path,
           chart: Path) -> None:
    with Watcher(cluster, timeline) as watcher:
        st = _train(cluster, timeline, repository, "defects-1", seed=1)
        _expect(st, "Succeeded")
        timeline(f"v{st['version']} published ({st.get('keyMetric')}) into {repository}")
        _apply(cluster, model_deployment(MD, MODEL, repository, follow=FOLLOW,
                                         parent_ref=stack.gateway.parent_ref,
                                         prometheus_url=stack.prometheus.url,
                                         rollout=ROLLOUT, monitoring=MONITORING))
        timeline(f"applied ModelDeployment {MD}: follows blessed TrainingRuns labelled "
                 "pipeline=defects, canary 20% -> 50% -> 100% judged by Prometheus, the "
                 "served model watched for drift from its training profile")
        _wait_md(cluster, "Ready", 1, timeout=240)
        with InferenceLoad(stack.gateway.url, MODEL, rate=20, max_seconds=540) as load:
            timeline(f"clients: 20 gRPC inferences/s through the gateway {stack.gateway.url}")
            time.sleep(5)
            st = _train(cluster, timeline, repository, "defects-2", seed=2,
                        hyperparameters={"epochs": "5"}, baseline_deployment=MD,
                        max_regression=0.02)
            _expect(st, "Succeeded")
            _wait_md(cluster, "Ready", 2, timeout=240)
            st = _train(cluster, timeline, repository, "defects-3-rejected", seed=3,
                        hyperparameters={"epochs": "1", "lr": "0.0005"},
                        baseline_deployment=MD, max_regression=0.02)
            _expect(st, "Rejected")
            timeline(f"gate vetoed defects-3-rejected: {st['gate']['reason']}")
            st = _train(cluster, timeline, repository, "defects-3", seed=4,
                        hyperparameters={"width": "96", "epochs": "3"}, baseline_deployment=MD,
                        max_regression=0.02)
            _expect(st, "Succeeded")
            timeline(f"v{st['version']} passed the gate ({st.get('keyMetric')}): a network six "
                     "times wider, about 36 times the compute per image")
            final = _wait_md(cluster, "RolledBack", 2, timeout=240)
            last = (final.get("history") or [{}])[0]
            timeline(f"v{final.get('rolledBackVersion')} rolled back automatically: "
                     f"{last.get('reason', '')}")
            page = stack.monitoring.wait_alert(
                "ModelRolledBack", lambda labels: labels.get("name") == MD, timeout=60)
            timeline(f"the SRE is paged: Alertmanager holds {page['labels']['alertname']} "
                     f"({page['annotations'].get('summary', '')})")
            watcher.events.append((timeline.now(), "lights dim"))
            _lights_dim(cluster, stack, timeline, load)
        answered: dict[int, int] = {}
        for _, ok, _, _ in load.series():
            for version, n in ok.items():
                answered[version] = answered.get(version, 0) + n
        failed = sum(f for _, _, f, _ in load.series())
        timeline(f"clients got {sum(answered.values())} answers "
                 f"({', '.join(f'v{v}: {n}' for v, n in sorted(answered.items()))}) "
                 f"and {failed} errors")
        write_chart(chart, load.series(), watcher.samples, watcher.events,
                    load_offset=load.started - timeline.started)
        timeline(f"chart of weights, error ratio and latency written to {chart.resolve()}")


def _lights_dim(cluster: LocalCluster, stack: LocalStack, timeline: Timeline,
                load: InferenceLoad) -> dict[str, Any]:
    """The act "lights dim": the factory's lighting changes, the clients' images of the same
    parts get darker. Triton still answers every request, fast; only the comparison of the
    served version's live input statistics with its training profile sees it: DataDrift,
    and its alert in Alertmanager. Returns the ModelDeployment's status with DataDrift."""
    dimmed = load.set_lighting(DARK)
    timeline(f"the factory's lights dim: clients now send darker images (brightness "
             f"{load.lighting[-2][1]:g} -> {DARK:g}); error ratio and latency stay as they were")
    st = _wait_status(cluster, "modeldeployment", MD, lambda st: any(
        c["type"] == "DataDrift" and c["status"] == "True" for c in st.get("conditions") or []),
        "shows no DataDrift", timeout=90)
    scores = {s["name"]: s.get("psi") for s in (st.get("monitoring") or {}).get("statistics")
              or [] if s.get("drifted") and s["source"] == "input"}
    timeline(f"DataDrift {load.now_s() - dimmed:.0f} s after the lights dimmed, "
             f"{load.failed()} client errors: "
             + ", ".join(f"{n} PSI {v:.2f}" for n, v in scores.items() if v is not None)
             + " against v" + str((st.get("monitoring") or {}).get("version"))
             + "'s profile.json")
    page = stack.monitoring.wait_alert(
        "ModelDataDrift", lambda labels: labels.get("name") == MD, timeout=60)
    timeline(f"Alertmanager holds {page['labels']['alertname']} "
             f"({page['annotations'].get('summary', '')})")
    return st


def _expect(status: dict[str, Any], phase: str) -> None:
    if status.get("phase") != phase:
        raise RuntimeError(f"expected {phase}, got {status.get('phase')}: "
                           f"{status.get('message')}")
