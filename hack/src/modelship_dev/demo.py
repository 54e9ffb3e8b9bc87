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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelship_api import crdgen
from modelship_dev import demo_retraining, gateway_api, review_page, tools, workload
from modelship_dev.autoreview import AutoReviewer
from modelship_dev.chart import write_chart
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo_watch import (
    FOLLOW,
    MD,
    MODEL,
    NAMESPACE,
    Timeline,
    Watcher,
    expect,
    wait_md,
    wait_run,
    wait_status,
)
from modelship_dev.review_page import ReviewPage
from modelship_dev.stack import LocalStack
from modelship_dev.workload import InferenceLoad, model_deployment, training_run

KEEP_S = 3600
ROLLOUT = {"canary": {"steps": [{"weight": 20, "pause": "10s"}, {"weight": 50, "pause": "10s"}]}}
DARK = 0.2  # the dimmed factory's brightness; the models are trained at 0.5
REVIEW_SCRAPE = "2s"


def install_crds(cluster: LocalCluster) -> None:
    """Apply the CRDs as generated from this very version of the API models, and the
    Gateway API's (the gateway traffic provider writes GRPCRoutes)."""
    manifests = "---\n".join(crdgen.render(info) for info in crdgen.CRDS)
    cluster.kubectl("apply", "--server-side", "-f", "-", input_text=manifests)
    gateway_api.install(cluster)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def _apply(cluster: LocalCluster, obj: dict[str, Any]) -> None:
    cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps(obj))


def _train(cluster: LocalCluster, timeline: Timeline, repository: Path, name: str,
           seed: int, **kwargs: Any) -> dict[str, Any]:
    _apply(cluster, training_run(name, MODEL, repository, labels=FOLLOW, seed=seed, **kwargs))
    timeline(f"applied TrainingRun {name}")
    return wait_run(cluster, name, timeout=300)


def run(log: Callable[[str], None] = print, keep: bool = False,
        chart: Path = Path("modelship-demo.png")) -> None:
    timeline = Timeline(log)
    timeline("building what is missing from Go modules (cached after the first time)")
    tools.build_all(log=lambda line: timeline(f"  {line}"))
    workdir = Path(tempfile.mkdtemp(prefix="modelship-demo-"))
    cluster = LocalCluster(workdir / "cluster", log=timeline)
    repository = workload.node_folder(workdir / "model-repository")
    datasets = workload.node_folder(workdir / "datasets")
    # The operator as a user installs it: `helm install` of the chart (which brings the
    # CRDs), its pod run from the operator image by the node agent.
    stack = LocalStack(cluster, workdir, NAMESPACE, log=timeline, in_cluster=True)
    try:
        cluster.up()
        gateway_api.install(cluster)
        timeline("Gateway API CRDs installed (the gateway and the operator's GRPCRoutes)")
        stack.start()
        _story(cluster, stack, timeline, repository, datasets, chart)
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
           datasets: Path, chart: Path) -> None:
    with Watcher(cluster, timeline, prometheus_url=stack.prometheus.url) as watcher:
        st = _train(cluster, timeline, repository, "defects-1", seed=1)
        expect(st, "Succeeded")
        timeline(f"v{st['version']} published ({st.get('keyMetric')}) into {repository}")
        md = model_deployment(MD, MODEL, repository, follow=FOLLOW,
                              parent_ref=stack.gateway.parent_ref,
                              prometheus_url=stack.prometheus.url, rollout=ROLLOUT,
                              monitoring=demo_retraining.monitoring(datasets))
        md["spec"]["retraining"] = demo_retraining.retraining(repository, datasets)
        _apply(cluster, md)
        timeline(f"applied ModelDeployment {MD}: follows blessed TrainingRuns labelled "
                 "pipeline=defects, canary 20% -> 50% -> 100% judged by Prometheus, the "
                 "served model watched for drift from its training profile, samples of what "
                 f"it serves kept on the dataset volume {datasets}, retrained by the operator "
                 f"once DataDrift holds {demo_retraining.TRIGGER_FOR}")
        wait_md(cluster, "Ready", 1, timeout=240)
        area = demo_retraining.area(datasets)
        load = InferenceLoad(stack.gateway.url, MODEL, rate=20, max_seconds=1200)
        try:
            with load, AutoReviewer(area, load.truth,
                                    rate=demo_retraining.REVIEW_RATE) as reviewer:
                _acts(cluster, stack, timeline, watcher, repository, datasets, load, reviewer)
        finally:
            # Also after a failed act: what the clients saw and the chart tell what happened.
            _summary(timeline, watcher, load, chart)


def _acts(cluster: LocalCluster, stack: LocalStack, timeline: Timeline, watcher: Watcher,
          repository: Path, datasets: Path, load: InferenceLoad, reviewer: AutoReviewer
          ) -> None:
    timeline(f"clients: 20 gRPC inferences/s through the gateway {stack.gateway.url}")
    timeline(f"the automated reviewer labels sampled production data with the generator's "
             f"ground truth, at most {demo_retraining.REVIEW_RATE:g} a second, each label "
             "marked source: automated (it stands in for people)")
    time.sleep(5)
    st = _train(cluster, timeline, repository, "defects-2", seed=2,
                hyperparameters={"epochs": "5"}, baseline_deployment=MD, max_regression=0.02)
    expect(st, "Succeeded")
    wait_md(cluster, "Ready", 2, timeout=240)
    page = _review_page(cluster, timeline, datasets, repository)
    try:
        _rejected_and_rolled_back(cluster, stack, timeline, repository)
        watcher.events.append((timeline.now(), "lights dim"))
        labelled = reviewer.labelled
        dimmed_at = _lights_dim(cluster, stack, timeline, load)
        demo_retraining.closed_loop(cluster, timeline, watcher, reviewer, dimmed_at,
                                    labelled, stable=2)
    finally:
        page.stop()


def _summary(timeline: Timeline, watcher: Watcher, load: InferenceLoad, chart: Path) -> None:
    answered: dict[int, int] = {}
    for _, ok, _, _ in load.series():
        for version, n in ok.items():
            answered[version] = answered.get(version, 0) + n
    failed = sum(f for _, _, f, _ in load.series())
    timeline(f"clients got {sum(answered.values())} answers "
             f"({', '.join(f'v{v}: {n}' for v, n in sorted(answered.items()))}) "
             f"and {failed} errors")
    write_chart(chart, load.series(), watcher.samples, watcher.events,
                load_offset=load.started - timeline.started, reviewed=watcher.reviewed,
                title="modelship demo: v2 promoted, v3 rolled back, the lights dim, "
                "v4 retrained by the operator and promoted")
    timeline(f"chart of weights, error ratio, latency and reviewed accuracy written to "
             f"{chart.resolve()}")


def _review_page(cluster: LocalCluster, timeline: Timeline, datasets: Path,
                 repository: Path) -> ReviewPage:
    """`modelship review` on the dataset volume, scraped by Prometheus: the reviewed-accuracy
    gauges the operator's retraining reads."""
    page = ReviewPage(datasets / demo_retraining.PLANT, MODEL, repository,
                      cluster.state_dir / "logs" / "review.log")
    page.start()
    try:
        cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps({
            "apiVersion": "v1", "kind": "List", "items": review_page.manifests(
                NAMESPACE, page.host, page.port, REVIEW_SCRAPE)}))
    except BaseException:
        page.stop()
        raise
    timeline(f"review page {page.url}: what was sampled and how it was labelled; Prometheus "
             f"scrapes its reviewed-accuracy gauges every {REVIEW_SCRAPE}")
    return page


def _rejected_and_rolled_back(cluster: LocalCluster, stack: LocalStack, timeline: Timeline,
                              repository: Path) -> None:
    st = _train(cluster, timeline, repository, "defects-3-rejected", seed=3,
                hyperparameters={"epochs": "1", "lr": "0.0005"},
                baseline_deployment=MD, max_regression=0.02)
    expect(st, "Rejected")
    timeline(f"gate vetoed defects-3-rejected: {st['gate']['reason']}")
    st = _train(cluster, timeline, repository, "defects-3", seed=4,
                hyperparameters={"width": "96", "epochs": "3"}, baseline_deployment=MD,
                max_regression=0.02)
    expect(st, "Succeeded")
    timeline(f"v{st['version']} passed the gate ({st.get('keyMetric')}): a network six "
             "times wider, about 36 times the compute per image")
    final = wait_md(cluster, "RolledBack", 2, timeout=240)
    last = (final.get("history") or [{}])[0]
    timeline(f"v{final.get('rolledBackVersion')} rolled back automatically: "
             f"{last.get('reason', '')}")
    page = stack.monitoring.wait_alert(
        "ModelRolledBack", lambda labels: labels.get("name") == MD, timeout=60)
    timeline(f"the SRE is paged: Alertmanager holds {page['labels']['alertname']} "
             f"({page['annotations'].get('summary', '')})")


def _lights_dim(cluster: LocalCluster, stack: LocalStack, timeline: Timeline,
                load: InferenceLoad) -> float:
    """The act "lights dim": the factory's lighting changes, the clients' images of the same
    parts get darker. Triton still answers every request, fast; only the comparison of the
    served version's live input statistics with its training profile sees it: DataDrift,
    and its alert in Alertmanager. Returns when (on the timeline) the lights changed."""
    dimmed = load.set_lighting(DARK)
    dimmed_at = timeline.now()
    timeline(f"the factory's lights dim: clients now send darker images (brightness "
             f"{load.lighting[-2][1]:g} -> {DARK:g}); error ratio and latency stay as they were")
    st = wait_status(cluster, "modeldeployment", MD, lambda st: any(
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
    return dimmed_at
