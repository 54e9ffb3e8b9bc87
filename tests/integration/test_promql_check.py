"""User PromQL that Prometheus cannot parse is an InvalidSpec at once: the adapter against a
real Prometheus (upstream build, no targets: parsing needs no data), then the real operator
on the real API server, as a user sees it with `kubectl get modeldeployment -o yaml`."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship.adapters.prometheus import parse_queries
from modelship.core.analysis.syntax import ParseAnswer
from modelship_dev import tools
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess
from tests.conftest import Kubectl, wait_for
from tests.integration.test_modeldeployment import condition, ready, sample

pytestmark = pytest.mark.integration

GOOD = ('histogram_quantile(0.99, sum by (le) (rate(x_bucket{model="{{model}}",'
        'version="{{candidate}}"}[{{window}}])))')
TYPO = "sum(rate(y[{{window}}])"  # one parenthesis short


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    tools.build(tools.PROMETHEUS)  # cached after the first build
    with PrometheusProcess(tmp_path_factory.mktemp("prometheus")) as prom:
        yield prom


def parse_requests(prom: PrometheusProcess) -> float:
    """How often Prometheus was asked to parse (its own request counter)."""
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{")
               and 'handler="/api/v1/parse_query"' in line)


def passes(operator: OperatorProcess, result: str) -> float:
    """Reconcile passes of the operator process so far that ended in `result`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in operator.metrics().splitlines()
               if line.startswith("modelship_reconciles_total{")
               and 'kind="ModelDeployment"' in line and f'result="{result}"' in line)


def test_prometheus_parser_verdicts(prometheus: PrometheusProcess, tmp_path: Path) -> None:
    answers = asyncio.run(parse_queries(prometheus.url, [
        'sum(rate(x{model="m",version="1"}[60s]))', "sum(rate(y[60s])", 'up{a="b"} +',
    ], 5.0))
    assert answers[0] == ParseAnswer()
    assert re.fullmatch(r'invalid parameter "query": 1:\d+: parse error: .+',
                        answers[1].error), answers[1]
    assert "parse error" in answers[2].error and not answers[2].unavailable, answers[2]

    gone = PrometheusProcess(tmp_path / "never-started")  # a free port nobody listens on
    [down] = asyncio.run(parse_queries(gone.url, ["up"], 2.0))
    assert not down.error and "unreachable" in down.unavailable, down


def md_with_checks(address: str, *queries: str) -> dict[str, Any]:
    doc = sample(version=1)
    checks: list[dict[str, Any]] = [{"name": "errors", "builtin": "errorRatio", "max": 0.01}]
    checks += [{"name": f"user-{i}", "query": q, "max": 1.5, "relativeToStable": True}
               for i, q in enumerate(queries)]
    doc["spec"]["rollout"] = {"canary": {"steps": [{"weight": 50, "pause": "30s"}]},
                              "analysis": {"prometheus": {"address": address},
                                           "checks": checks}}
    return doc


def user_view(kubectl: Kubectl, name: str) -> dict[str, Any]:
    """What `kubectl get modeldeployment NAME -o yaml` shows."""
    shown: dict[str, Any] = yaml.safe_load(
        kubectl("get", "modeldeployment", name, "-o", "yaml").stdout)
    return shown


def test_unparsable_query_is_invalid_spec_at_once_and_prometheus_is_asked_once(
        kubectl: Kubectl, operator: OperatorProcess, prometheus: PrometheusProcess) -> None:
    asked_before = parse_requests(prometheus)
    kubectl.apply(md_with_checks(prometheus.url, GOOD, TYPO))

    def invalid() -> dict[str, Any] | None:
        md = user_view(kubectl, "defects-dev")
        return md if condition(md, "InvalidSpec").get("status") == "True" else None

    md = wait_for("InvalidSpec", invalid, timeout=30)
    shown = condition(md, "InvalidSpec")
    assert shown["reason"] == "InvalidSpec"
    assert re.fullmatch(
        r"spec\.rollout\.analysis\.checks\[2\]\.query: check user-1: Prometheus at "
        + re.escape(prometheus.url) + r" cannot parse it \(placeholders filled in\): "
        r"1:\d+: parse error: .+; fix the PromQL", shown["message"]), shown["message"]
    assert md["status"]["phase"] == "Failed" and md["status"]["message"] == shown["message"]
    assert md["status"]["queryCheck"]["errors"] == [shown["message"]]
    assert condition(md, "Ready")["status"] == "False"
    assert not kubectl.list("deployment", "modelship.io/modeldeployment=defects-dev")
    asked = parse_requests(prometheus)
    assert asked - asked_before == 2  # both user queries, once each

    # Later passes, and a restarted operator, read the verdict from status: Prometheus is
    # not asked again and the resource is not rewritten.
    version = md["metadata"]["resourceVersion"]
    seen = passes(operator, "invalid")
    wait_for("three more passes", lambda: passes(operator, "invalid") >= seen + 3)
    operator.stop()
    operator.start()
    wait_for("passes after the restart", lambda: passes(operator, "invalid") >= 2)
    assert parse_requests(prometheus) == asked
    assert user_view(kubectl, "defects-dev")["metadata"]["resourceVersion"] == version

    kubectl.apply(md_with_checks(prometheus.url, GOOD, TYPO.replace("])", "]))")))
    md = wait_for("Ready after the fix", lambda: ready(kubectl, "defects-dev", 1))
    assert condition(md, "InvalidSpec") == {}
    assert md["status"]["queryCheck"].get("errors") is None
    assert parse_requests(prometheus) == asked + 2  # the changed spec, asked about once


def test_unreachable_prometheus_never_makes_a_valid_spec_invalid_and_is_asked_again(
        kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    later = PrometheusProcess(tmp_path / "prometheus")  # its port is fixed, not listening yet
    kubectl.apply(md_with_checks(later.url, GOOD))
    md = wait_for("Ready without Prometheus", lambda: ready(kubectl, "defects-dev", 1))
    assert condition(md, "InvalidSpec") == {}
    assert "queryCheck" not in md["status"]
    assert "PromQL of the checks not verified yet" in operator.log_tail()

    with later:
        def recorded() -> dict[str, Any] | None:
            check = (user_view(kubectl, "defects-dev")["status"]).get("queryCheck")
            return check if check else None

        check = wait_for("the check asked again once Prometheus is up", recorded)
        assert check.get("errors") is None and check["digest"], check
        assert parse_requests(later) == 1
    md = user_view(kubectl, "defects-dev")
    assert condition(md, "InvalidSpec") == {} and md["status"]["phase"] == "Ready"
