"""The chart's PrometheusRule, rendered by the built helm, unit-tested by the built promtool:
each alert fires on the series the operator and the ServiceMonitor's scrape really produce,
and stays quiet when it should. `promtool check rules` on the same groups is in `make lint`
(modelship_dev.alert_rules)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev import alert_rules
from tests.integration.test_chart import of_kind

pytestmark = pytest.mark.integration

NS = "modelship"  # the release's namespace
# What the ServiceMonitor's scrape adds to every operator series; with honorLabels the
# operator's own `namespace` (the resource's) wins over the Service's.
SCRAPE = 'instance="10.0.0.7:8080",pod="modelship-operator-5d9c7",endpoint="metrics"'
MD = 'namespace="prod",name="defects",model="surface-defects"'


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return alert_rules.render(namespace=NS)


@pytest.fixture(scope="module")
def job(rendered: list[dict[str, Any]]) -> str:
    """The ServiceMonitor's targets get job=<the Service's name>: the metrics Service that
    the ServiceMonitor selects."""
    (monitor,) = of_kind(rendered, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [s for s in of_kind(rendered, "Service")
                  if wanted.items() <= s["metadata"]["labels"].items()
                  and any(p["name"] == monitor["spec"]["endpoints"][0]["port"]
                          for p in s["spec"]["ports"])]
    return str(service["metadata"]["name"])


@pytest.fixture(scope="module")
def rule_file(rendered: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
              ) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(alert_rules.rule_groups(rendered)))
    return path


def values(*runs: tuple[str, int]) -> str:
    """promtool's sample notation, one sample a minute: ("1", 3) is three samples of 1,
    ("_", 2) two missing ones."""
    return " ".join(v for v, n in runs for _ in range(n))


def firing(alert: str, at: str, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": list(expected)}


def rolled_back(check: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": "page", "namespace": "prod", "name": "defects",
                           "model": "surface-defects", "check": check},
            "exp_annotations": {
                "summary": "ModelDeployment prod/defects rolled a candidate of model "
                           f"surface-defects back: {check} failed",
                "description": "Traffic is back on the stable version. `modelship status "
                               "defects -n prod` shows the failing check and its value; the "
                               "resource stays Degraded until spec names another version."}}


def not_ready() -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", "namespace": "prod", "name": "defects",
                           "model": "surface-defects"},
            "exp_annotations": {
                "summary": "ModelDeployment prod/defects is not Ready",
                "description": "kubectl describe md -n prod defects shows the conditions and "
                               "events."}}


MODEL_ALERTS = {
    "ModelDataDrift": ("DataDrift", "warning",
                       "sees inputs unlike its training data (DataDrift)",
                       "Input statistics of the stable version drifted from its profile.json. "
                       "`modelship status defects -n prod` shows each statistic's PSI and JS "
                       "distance; the model may answer quickly and wrongly."),
    "ModelPredictionDrift": ("PredictionDrift", "warning",
                             "predicts unlike it did on its held-out data (PredictionDrift)",
                             "Output statistics (classes, confidence, entropy) of the stable "
                             "version drifted from its profile.json. `modelship status defects "
                             "-n prod` shows each statistic's score."),
    "ModelStale": ("Stale", "warning",
                   "serves a model trained on data older than maxModelAge (Stale)",
                   "Train on newer data. `modelship status defects -n prod` shows the model's "
                   "age and what it counts from: its training-data time, or for a version "
                   "that records none, its publish time (the age is then a lower bound)."),
    "ModelNonFiniteOutputs": ("NumericFault", "page",
                              "returns NaN or infinite outputs (NumericFault)",
                              "The stable version answered with non-finite outputs in the last "
                              "spec.monitoring.window. `modelship status defects -n prod` shows "
                              "the count."),
}


def model_alert(alert: str) -> dict[str, Any]:
    _, severity, summary, description = MODEL_ALERTS[alert]
    return {"exp_labels": {"severity": severity, "namespace": "prod", "name": "defects"},
            "exp_annotations": {"summary": f"ModelDeployment prod/defects {summary}",
                                "description": description}}


def model_alert_cases(job: str) -> list[dict[str, Any]]:
    """Each model alert fires while its condition is True (the operator's
    modelship_monitoring_condition), and only its own: another condition, another resource
    quiet, a resource deleted (series gone) quiet."""
    out = []
    for alert, (condition, *_) in MODEL_ALERTS.items():
        def series(cond: str, name: str = "defects") -> str:
            return (f'modelship_monitoring_condition{{namespace="prod",name="{name}",'
                    f'condition="{cond}",{SCRAPE},job="{job}"}}')
        others = [c for c, *_ in MODEL_ALERTS.values() if c != condition]
        out.append({
            "name": f"{alert} while {condition} is True",
            "interval": "1m",
            "input_series": [
                {"series": series(condition), "values": values(("0", 5), ("1", 5), ("0", 5),
                                                               ("1", 3))},
                {"series": series(condition, "other"), "values": values(("0", 20))},
                *({"series": series(c), "values": values(("1", 20))} for c in others)],
            "alert_rule_test": [firing(alert, "3m"), firing(alert, "6m", model_alert(alert)),
                                firing(alert, "12m"),
                                firing(alert, "16m", model_alert(alert)),
                                firing(alert, "25m")],  # gone: the resource was deleted
        })
    return out


def cases(job: str) -> list[dict[str, Any]]:
    # Which operator is down: its release's namespace and metrics job.
    operator_down = {"exp_labels": {"severity": "critical", "namespace": NS, "job": job},
                     "exp_annotations": {
                         "summary": "The modelship operator is not running: rollouts are not "
                                    "judged"}}
    rollbacks = f"modelship_rollbacks_total{{{MD},{SCRAPE},job=\"{job}\""
    phase = f"modelship_modeldeployment_phase{{{MD},{SCRAPE},job=\"{job}\""
    up = f'up{{job="{job}",namespace="{NS}",{SCRAPE}}}'
    # What the PodMonitor's scrape of a Triton pod carries.
    stopped = ('modelship_sampling_stopped{namespace="prod",modeldeployment="defects",'
               'model="surface-defects",version="2",job="triton"')
    sampling_stopped = {
        "exp_labels": {"severity": "warning", "namespace": "prod", "modeldeployment": "defects",
                       "model": "surface-defects", "version": "2", "reason": "VolumeFull"},
        "exp_annotations": {
            "summary": "ModelDeployment prod/defects stopped sampling production data of "
                       "surface-defects version 2 (VolumeFull)",
            "description": "Serving goes on, but no production samples are kept, so review "
                           "and retraining get no new data. `kubectl describe md -n prod "
                           "defects` shows the Sampling condition and what to do (free space "
                           "on the dataset volume, or make it writable)."}}
    return [
        {   # The first rollback: the series is born at 1 (no rise for increase() to see).
            "name": "ModelRolledBack on a resource's first rollback",
            "interval": "1m",
            "input_series": [
                {"series": rollbacks + ',check="errors"}', "values": values(("_", 5),
                                                                            ("1", 25))},
                {"series": up, "values": values(("1", 30))}],
            "alert_rule_test": [firing("ModelRolledBack", "4m"),
                                firing("ModelRolledBack", "6m", rolled_back("errors")),
                                firing("ModelRolledBack", "14m", rolled_back("errors")),
                                firing("ModelRolledBack", "16m")],
        },
        {   # A later rollback of the same resource, this time by latency.
            "name": "ModelRolledBack on a rollback of a resource that rolled back before",
            "interval": "1m",
            "input_series": [
                {"series": rollbacks + ',check="errors"}', "values": values(("1", 30))},
                {"series": rollbacks + ',check="latency"}',
                 "values": values(("1", 15), ("2", 15))}],
            "alert_rule_test": [firing("ModelRolledBack", "12m"),
                                firing("ModelRolledBack", "16m", rolled_back("latency"))],
        },
        {   # Deleted: its series leave /metrics (and Prometheus marks them stale).
            "name": "ModelRolledBack ends once the resource is deleted",
            "interval": "1m",
            "input_series": [
                {"series": rollbacks + ',check="errors"}', "values": values(("_", 5),
                                                                            ("1", 3))}],
            "alert_rule_test": [firing("ModelRolledBack", "6m", rolled_back("errors")),
                                firing("ModelRolledBack", "20m")],
        },
        {   # Stuck outside Ready, moving between the phases that are not Ready.
            "name": "ModelDeploymentNotReady after 10 minutes outside Ready",
            "interval": "1m",
            "input_series": [
                {"series": phase + ',phase="Pending"}', "values": values(("1", 4),
                                                                         ("0", 26))},
                {"series": phase + ',phase="Failed"}', "values": values(("0", 4),
                                                                        ("1", 26))},
                {"series": phase + ',phase="Ready"}', "values": values(("0", 30))}],
            "alert_rule_test": [firing("ModelDeploymentNotReady", "9m"),
                                firing("ModelDeploymentNotReady", "11m", not_ready())],
        },
        {   # Pending while Triton loads the model, then Ready: no page.
            "name": "ModelDeploymentNotReady quiet for a resource that became Ready",
            "interval": "1m",
            "input_series": [
                {"series": phase + ',phase="Pending"}', "values": values(("1", 3),
                                                                         ("0", 27))},
                {"series": phase + ',phase="Ready"}', "values": values(("0", 3),
                                                                       ("1", 27))}],
            "alert_rule_test": [firing("ModelDeploymentNotReady", "15m")],
        },
        {   # Scraped and up: quiet. Then the target is down, then gone altogether.
            "name": "ModelshipOperatorDown",
            "interval": "1m",
            "input_series": [
                {"series": up, "values": values(("1", 10), ("0", 10))}],
            "alert_rule_test": [firing("ModelshipOperatorDown", "9m"),
                                firing("ModelshipOperatorDown", "14m"),
                                firing("ModelshipOperatorDown", "16m", operator_down),
                                firing("ModelshipOperatorDown", "30m", operator_down)],
        },
        {   # Prometheus scrapes Triton but nothing scrapes the operator: that is down too.
            "name": "ModelshipOperatorDown when only other targets are up",
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="triton",namespace="prod"}', "values": values(("1", 10))}],
            "alert_rule_test": [firing("ModelshipOperatorDown", "6m", operator_down)],
        },
        *model_alert_cases(job),
        {   # A Triton pod's dataset volume fills up, then is freed; another pod keeps writing.
            "name": "ModelSamplingStopped while a pod's sampling stays stopped",
            "interval": "1m",
            "input_series": [
                {"series": stopped + ',reason="VolumeFull",pod="defects-v2-a"}',
                 "values": values(("0", 5), ("1", 10), ("0", 10))},
                {"series": stopped + ',reason="VolumeFull",pod="defects-v2-b"}',
                 "values": values(("0", 25))},
                {"series": stopped + ',reason="ReadOnly",pod="defects-v2-a"}',
                 "values": values(("0", 25))}],
            "alert_rule_test": [firing("ModelSamplingStopped", "8m"),
                                firing("ModelSamplingStopped", "11m", sampling_stopped),
                                firing("ModelSamplingStopped", "20m")],
        },
    ]


def test_promtool_accepts_the_rendered_rules(rendered: list[dict[str, Any]]) -> None:
    out = alert_rules.check(alert_rules.rule_groups(rendered))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 8 rules found" in out.stdout + out.stderr


def test_the_lint_check_refuses_a_broken_expression(rendered: list[dict[str, Any]]) -> None:
    rules = copy.deepcopy(alert_rules.rule_groups(rendered))
    rules["groups"][0]["rules"][0]["expr"] = "increase(modelship_rollbacks_total[10m] > 0"
    out = alert_rules.check(rules)
    assert out.returncode != 0
    assert "unclosed left parenthesis" in out.stdout + out.stderr, out.stdout + out.stderr


def test_the_lint_check_passes_on_every_ci_values_file(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    alert_rules.main([])
    printed = capsys.readouterr().out
    assert printed.count("SUCCESS") >= 1, printed


def test_each_alert_fires_and_stays_quiet_as_it_should(rule_file: Path, job: str) -> None:
    tests = rule_file.parent / "tests.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rule_file.name],
                                     "evaluation_interval": "1m", "tests": cases(job)}))
    out = alert_rules.promtool("test", "rules", str(tests))
    assert out.returncode == 0, out.stdout + out.stderr
