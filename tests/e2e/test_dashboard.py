"""The chart's Grafana dashboard against a live Prometheus: it scraped a real Triton under
traffic and the real operator through a canary that rolled back and a TrainingRun that
failed; every variable's and every panel's and annotation's PromQL (variables substituted
as Grafana would) parses and returns data. Grafana itself is not needed.

Prometheus scrapes as the chart's monitors do: Triton's series get the `namespace` label
(the PodMonitor's relabelling), the operator's keep their own (the ServiceMonitor's
honorLabels), and the operator's job is named after its metrics Service.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO, Kubectl, wait_for
from tests.e2e.test_rollouts import ERRORS, Scenario, analysis, repository, triton
from tests.integration.test_trainingrun import finish_pod, running_pod, training_run

from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from modelship_dev.triton import TritonServer

pytestmark = pytest.mark.e2e
__all__ = ["repository", "triton"]  # module-scoped fixtures shared with test_rollouts

DASHBOARD = REPO / "charts" / "modelship" / "files" / "dashboard.json"
RATE_INTERVAL = "10s"  # what Grafana's $__rate_interval is at a 1 s scrape and short ranges
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")
# Series only a version with a profile.json, served by Triton pods running modelship's
# runner, gives: the stand-in models here export none. tests/e2e/test_drift.py checks the
# queries that read them on the real data plane.
PROFILE_METRICS = ("modelship_drift_score",)


def needs_profile(expr: str) -> bool:
    return any(metric in expr for metric in PROFILE_METRICS)


@pytest.fixture
def monitored(cluster: LocalCluster, kubectl: Kubectl, triton: TritonServer, tmp_path: Path
              ) -> Iterator[tuple[OperatorProcess, PrometheusProcess]]:
    op = OperatorProcess(cluster.kubeconfig, tmp_path / "operator", kubectl.namespace,
                         env={"MODELSHIP_ANALYSIS_NAMESPACE_LABEL": "namespace"})
    op.start()
    prom = PrometheusProcess(tmp_path / "prometheus", scrape_interval="1s", scrape_configs=[
        {"job_name": "triton", "static_configs": [{
            "targets": [f"127.0.0.1:{triton.metrics_port}"],
            "labels": {"namespace": kubectl.namespace}}]},
        {"job_name": "modelship-operator-metrics", "honor_labels": True,
         "static_configs": [{"targets": [f"127.0.0.1:{op.metrics_port}"],
                             "labels": {"namespace": "modelship"}}]},
    ])
    try:
        prom.start()
        prom.wait_scraping(2)
        yield op, prom
    finally:
        prom.stop()
        op.stop()


def substitute(expr: str, namespace: str, name: str) -> str:
    for var, value in (("$__rate_interval", RATE_INTERVAL), ("$namespace", namespace),
                       ("$modeldeployment", name)):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def api(prom: PrometheusProcess, path: str, **params: Any) -> Any:
    """A Prometheus API call; a refused query (parse error) fails with Prometheus' words."""
    url = f"{prom.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{params}: {err.code} {err.read().decode()}") from None
    assert body["status"] == "success", body
    return body["data"]


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and annotation."""
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"])
             for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a["expr"])
              for a in dashboard["annotations"]["list"]]
    return found


def test_every_dashboard_query_returns_data_after_a_canary_rollback(
        kubectl: Kubectl, triton: TritonServer, repository: Path,
        monitored: tuple[OperatorProcess, PrometheusProcess]) -> None:
    _, prom = monitored
    ns = kubectl.namespace
    dashboard = json.loads(DASHBOARD.read_text())
    started = time.time()

    sc = Scenario(kubectl, triton, repository, prom, {1: "good", 2: "failing"})
    try:  # the model stays loaded in the module's Triton until unloaded
        rollout = {"canary": {"steps": [{"weight": 40, "pause": "30s"}]},
                   "analysis": analysis(prom, ERRORS)}
        sc.apply(1, rollout)
        sc.wait_phase("Ready", stable=1)
        run = training_run("dash-v1")
        run["spec"]["model"] = sc.model
        kubectl.apply(run)
        with sc.traffic():
            sc.apply(2, rollout)
            sc.wait_phase("RolledBack", timeout=90)
            # The TrainingRun's trainer stops with an error (kwok finishes its pod).
            finish_pod(kubectl, running_pod(kubectl, "dash-v1"), 1, "stopped by the test")
            wait_for("TrainingRun Failed", lambda: ((kubectl.get("tr", "dash-v1") or {})
                                                    .get("status") or {}).get("phase")
                     == "Failed")
            # Prometheus has scraped what the operator reports now, and a range query
            # ending now sees it: its 1 s steps are aligned to `started`, so the last step
            # may fall before a sample scraped in the final second.
            def scraped_up_to_now() -> float | None:
                end = time.time()
                return end if all(
                    api(prom, "query_range", query=q, start=started, end=end,
                        step="1s")["result"] for q in (
                        f'modelship_rollbacks_total{{namespace="{ns}",name="md"}}',
                        f'modelship_training_runs_total{{namespace="{ns}",outcome="Failed"}}'
                    )) else None
            ended = wait_for("the rollback and the TrainingRun in Prometheus",
                             scraped_up_to_now, timeout=30)

        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            m = _LABEL_VALUES.match(substitute(variable["query"]["query"], ns, "md"))
            assert m, variable["query"]
            values = api(prom, f"label/{m.group(2)}/values", **{"match[]": m.group(1)})
            assert {"namespace": ns, "modeldeployment": "md"}[variable["name"]] in values, (
                variable["name"], values)

        empty = []
        checked_in_test_drift = [where for where, expr in queries(dashboard)
                                 if needs_profile(expr)]
        assert checked_in_test_drift == [
            "panel 'Drift from the training profile (PSI) per statistic' A"]
        for where, expr in queries(dashboard):
            if needs_profile(expr):
                continue
            data = api(prom, "query_range", query=substitute(expr, ns, "md"),
                       start=started, end=ended, step="1s")
            if not data["result"]:
                empty.append(f"{where}: {expr}")
        assert not empty, "no data for:\n" + "\n".join(empty)
    finally:
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{triton.http_port}/v2/repository/models/{sc.model}/unload",
            method="POST"), timeout=60).read()
