"""The real kube-apiserver installs the generated CRDs, accepts every sample and refuses bad
input with a message that names the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev.cluster import LocalCluster
from tests.conftest import Kubectl

pytestmark = pytest.mark.integration
SAMPLES = sorted((Path(__file__).resolve().parents[2] / "crds" / "samples").glob("*.yaml"))


def test_crds_are_established_and_explained(cluster: LocalCluster) -> None:
    out = cluster.kubectl("get", "crd", "-o", "name").stdout
    assert "customresourcedefinition.apiextensions.k8s.io/modeldeployments.modelship.io" in out
    assert "customresourcedefinition.apiextensions.k8s.io/trainingruns.modelship.io" in out
    explain = cluster.kubectl("explain", "modeldeployment.spec.rollout.analysis").stdout
    assert "Consecutive failed runs that roll the candidate back" in explain
    assert "inconclusivePolicy" in explain
    short = cluster.kubectl("explain", "tr.spec.gate.baseline").stdout
    assert "Comparison with production" in short
    assert "Required gain over production" in short


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_every_sample_is_accepted(kubectl: Kubectl, sample: Path) -> None:
    doc = yaml.safe_load(sample.read_text())
    doc["metadata"].pop("namespace", None)
    out = kubectl.apply(doc, "--dry-run=server")
    assert "created (server dry run)" in out.stdout


def _md(**spec_overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "bad"},
        "spec": {
            "model": {"name": "defects", "version": 1},
            "repository": {"hostPath": {"path": "/models"}},
        },
    }
    base["spec"].update(spec_overrides)
    return base


def _tr(**spec_overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "bad"},
        "spec": {
            "model": "defects",
            "dataset": {"generated": {"seed": 1}},
            "publish": {"repository": {"hostPath": {"path": "/models"}}},
        },
    }
    base["spec"].update(spec_overrides)
    return base


_PROM = {"prometheus": {"address": "http://prometheus:9090"}}
_REPO = {"hostPath": {"path": "/models"}}

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("two-strategies", _md(rollout={"canary": {"steps": [{"weight": 10}]}, "blueGreen": {}}),
     "spec.rollout", "exactly one rollout strategy"),
    ("no-strategy", _md(rollout={"analysis": _PROM}), "spec.rollout",
     "exactly one rollout strategy"),
    ("weight-above-100", _md(rollout={"canary": {"steps": [{"weight": 120}]}}),
     "spec.rollout.canary.steps[0].weight", "less than or equal to 100"),
    ("weights-decrease",
     _md(rollout={"canary": {"steps": [{"weight": 50}, {"weight": 20}]}}),
     "spec.rollout.canary.steps", "must not decrease"),
    ("no-steps", _md(rollout={"canary": {"steps": []}}), "spec.rollout.canary.steps",
     "should have at least 1 items"),
    ("bad-duration", _md(rollout={"canary": {"steps": [{"weight": 10, "pause": "5 minutes"}]}}),
     "spec.rollout.canary.steps[0].pause", "should match"),
    ("interval-too-short",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {**_PROM, "interval": "500ms"}}),
     "spec.rollout.analysis.interval", "at least 1s"),
    ("zero-gpus", _md(runtime={"resources": {"limits": {"nvidia.com/gpu": 0}}}),
     "spec.runtime.resources", "positive whole number of GPUs"),
    ("fractional-gpus", _md(runtime={"resources": {"limits": {"nvidia.com/gpu": "500m"}}}),
     "spec.runtime.resources", "positive whole number of GPUs"),
    ("gpu-request-differs",
     _md(runtime={"resources": {"requests": {"nvidia.com/gpu": 2},
                                "limits": {"nvidia.com/gpu": 1}}}),
     "spec.runtime.resources", "must equal limits['nvidia.com/gpu']"),
    ("tensorrt-without-gpu", _md(runtime={"backend": "tensorrt"}), "spec.runtime.backend",
     "tensorrt needs a GPU"),
    ("gpu-instances-without-gpu", _md(runtime={"instanceGroups": [{"kind": "GPU"}]}),
     "spec.runtime.instanceGroups", "an instance group of kind GPU needs a GPU"),
    ("dynamic-batching-without-batching",
     _md(runtime={"maxBatchSize": 0, "dynamicBatching": {}}),
     "spec.runtime.dynamicBatching", "dynamicBatching needs batching"),
    ("preferred-batch-above-max",
     _md(runtime={"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [4, 16]}}),
     "spec.runtime.dynamicBatching.preferredBatchSizes", "must not exceed runtime.maxBatchSize"),
    ("instance-kind-unknown", _md(runtime={"instanceGroups": [{"kind": "TPU"}]}),
     "spec.runtime.instanceGroups[0].kind", "Unsupported value"),
    ("unknown-backend", _md(runtime={"backend": "pytorch"}), "spec.runtime.backend",
     "Unsupported value"),
    ("version-and-selector",
     _md(model={"name": "defects", "version": 2,
                "fromTrainingRuns": {"matchLabels": {"a": "b"}}}),
     "spec.model", "exactly one of version"),
    ("version-zero", _md(model={"name": "defects", "version": 0}), "spec.model.version",
     "greater than or equal to 1"),
    ("model-name-slash", _md(model={"name": "a/b", "version": 1}), "spec.model.name",
     "should match"),
    ("two-repositories", _md(repository={**_REPO, "persistentVolumeClaim": {"claimName": "x"}}),
     "spec.repository", "exactly one of persistentVolumeClaim or hostPath"),
    ("relative-host-path", _md(repository={"hostPath": {"path": "models"}}),
     "spec.repository.hostPath.path", "should match"),
    ("gateway-without-parents", _md(traffic={"provider": "gateway"}), "spec.traffic",
     "needs traffic.gateway.parentRefs"),
    ("shadow-on-replicas", _md(rollout={"shadow": {}}), "spec.rollout.shadow",
     "shadow needs traffic.provider gateway"),
    ("check-without-bound",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {**_PROM, "checks": [{"name": "e", "builtin": "errorRatio"}]}}),
     "spec.rollout.analysis.checks[0]", "set max, min or both"),
    ("check-builtin-and-query",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {**_PROM, "checks": [{"name": "e", "builtin": "errorRatio",
                                                    "query": "up", "max": 1}]}}),
     "spec.rollout.analysis.checks[0]", "exactly one of builtin or query"),
    ("prometheus-not-url",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {"prometheus": {"address": "prometheus:9090"}}}),
     "spec.rollout.analysis.prometheus.address", "should match"),
    ("unknown-statistic", _md(monitoring={"statistics": ["input_brigthness"]}),
     "spec.monitoring.statistics[0]", "Unsupported value"),
    ("unknown-threshold", _md(monitoring={"thresholds": {"kl": {"raiseAbove": 1,
                                                                "clearBelow": 0.5}}}),
     "spec.monitoring.thresholds.kl", "unknown field"),
    ("clear-above-raise", _md(monitoring={"thresholds": {"psi": {"raiseAbove": 0.1,
                                                                 "clearBelow": 0.2}}}),
     "spec.monitoring.thresholds.psi", "clearBelow must be below raiseAbove"),
    ("monitoring-interval-too-short", _md(monitoring={"interval": "100ms"}),
     "spec.monitoring.interval", "at least 1s"),
    ("min-samples-zero", _md(monitoring={"minSamples": 0}), "spec.monitoring.minSamples",
     "greater than or equal to 1"),
    ("sampling-without-volume",
     _md(runtime={"backend": "python"}, monitoring={"sampling": {"enabled": True}}),
     "spec.monitoring.sampling.volume", "sampling needs a volume"),
    ("sampling-volume-ambiguous",
     _md(runtime={"backend": "python"}, monitoring={"sampling": {
         "enabled": True, "volume": {"path": "data"}}}),
     "spec.monitoring.sampling.volume", "exactly one of persistentVolumeClaim or hostPath"),
    ("sampling-without-runner",
     _md(monitoring={"sampling": {"enabled": True, "volume": {"hostPath": "/data"}}}),
     "spec.monitoring.sampling.enabled", "set runtime.backend python"),
    ("sampling-without-monitoring",
     _md(runtime={"backend": "python"}, monitoring={"enabled": False, "sampling": {
         "enabled": True, "volume": {"hostPath": "/data"}}}),
     "spec.monitoring.sampling.enabled", "sampling is part of monitoring"),
    ("sampling-rate-zero",
     _md(runtime={"backend": "python"}, monitoring={"sampling": {
         "enabled": True, "volume": {"hostPath": "/data"}, "rate": 0}}),
     "spec.monitoring.sampling.rate", "greater than 0"),
    ("input-drift-relative",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {**_PROM, "checks": [{"name": "d", "builtin": "inputDrift",
                                                    "max": 0.25, "relativeToStable": True}]}}),
     "spec.rollout.analysis.checks[0].relativeToStable", "only predictionDrift compares"),
    ("statistics-check-without-runner",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {**_PROM, "checks": [
                      {"name": "e", "builtin": "errorRatio", "max": 0.01},
                      {"name": "p", "builtin": "predictionDrift", "max": 0.25}]}}),
     "spec.rollout.analysis.checks", "Triton's own backends export none: set "
     "runtime.backend python"),
    ("drift-trigger-without-runner",
     _md(model={"name": "defects", "fromTrainingRuns": {"matchLabels": {"p": "l"}}},
         runtime={"backend": "tensorrt"},
         retraining={"triggers": {"dataDrift": {"for": "10m"}}, "template": {
             "model": "defects", "dataset": {"generated": {}},
             "publish": {"repository": _REPO}}}),
     "spec.retraining.triggers.dataDrift", "or use the modelAge, reviewedAccuracy or "
     "schedule trigger"),
    ("unknown-builtin",
     _md(rollout={"canary": {"steps": [{"weight": 10}]},
                  "analysis": {**_PROM, "checks": [{"name": "d", "builtin": "dataDrift",
                                                    "max": 0.25}]}}),
     "spec.rollout.analysis.checks[0].builtin", "Unsupported value"),
    ("smoke-data-not-shape",
     _md(rollout={"blueGreen": {}, "analysis": _PROM, "smokeLoad": {"inputs": [
         {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}}),
     "spec.rollout.smokeLoad.inputs[0].data", "one value per element of shape"),
    ("smoke-without-analysis",
     _md(rollout={"blueGreen": {}, "smokeLoad": {"inputs": [
         {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}}),
     "spec.rollout.smokeLoad", "set rollout.analysis too"),
    ("smoke-rate-too-high",
     _md(rollout={"blueGreen": {}, "analysis": _PROM, "smokeLoad": {"rate": 500, "inputs": [
         {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}}),
     "spec.rollout.smokeLoad.rate", "less than or equal to 50"),
    ("smoke-too-long",
     _md(rollout={"blueGreen": {}, "analysis": _PROM, "smokeLoad": {"maxDuration": "2h",
                                                                     "inputs": [
         {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}}),
     "spec.rollout.smokeLoad.maxDuration", "at most 1h"),
    ("smoke-bytes",
     _md(rollout={"blueGreen": {}, "analysis": _PROM, "smokeLoad": {"inputs": [
         {"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}}),
     "spec.rollout.smokeLoad.inputs[0].datatype", "Unsupported value"),
    ("uppercase-name", {**_md(), "metadata": {"name": "Defects"}}, "metadata.name",
     "lowercase"),
    ("tr-two-datasets",
     _tr(dataset={"generated": {"seed": 1}, "volume": {"hostPath": "/data"}}),
     "spec.dataset", "exactly one of generated or volume"),
    ("tr-threshold-inverted", _tr(gate={"thresholds": [{"metric": "accuracy", "min": 0.9,
                                                         "max": 0.5}]}),
     "spec.gate.thresholds[0]", "min must not exceed max"),
    ("tr-gpu-zero", _tr(trainer={"resources": {"limits": {"nvidia.com/gpu": 0}}}),
     "spec.trainer.resources", "positive whole number of GPUs"),
    ("tr-missing-publish", {**_tr(), "spec": {"model": "m", "dataset": {"generated": {}}}},
     "spec.publish", "Required value"),
    ("tr-production-fraction",
     _tr(dataset={"generated": {}, "production": {"volume": {"hostPath": "/s"},
                                                   "heldOutFraction": 1}}),
     "spec.dataset.production.heldOutFraction", "less than 1"),
    ("tr-production-two-volumes",
     _tr(dataset={"generated": {}, "production": {"volume": {
         "hostPath": "/s", "persistentVolumeClaim": "s"}}}),
     "spec.dataset.production.volume", "exactly one of persistentVolumeClaim or hostPath"),
    ("tr-slice-two-selectors",
     _tr(gate={"slices": [{"name": "dark", "class": "ok", "min": 0.5,
                           "inputStatistic": {"statistic": "input_brightness", "max": 0.3}}]}),
     "spec.gate.slices[0]", "exactly one selector"),
    ("tr-slice-no-bound", _tr(gate={"slices": [{"name": "ok", "class": 0}]}),
     "spec.gate.slices[0]", "set min, maxRegression or both"),
    ("tr-slice-statistic-no-range",
     _tr(gate={"slices": [{"name": "dark", "min": 0.5,
                           "inputStatistic": {"statistic": "input_brightness"}}]}),
     "spec.gate.slices[0].inputStatistic", "set min, max or both"),
    ("tr-slice-duplicate-names",
     _tr(gate={"slices": [{"name": "a", "class": 0, "min": 0.5},
                          {"name": "a", "class": 1, "min": 0.5}]}),
     "spec.gate.slices", "slice names must be unique"),
    ("tr-slice-reviewed-without-production",
     _tr(gate={"slices": [{"name": "reviewed", "reviewedProduction": True, "min": 0.5}]}),
     "spec.gate.slices", "a reviewedProduction slice needs dataset.production"),
    ("tr-slice-reviewed-false",
     _tr(gate={"slices": [{"name": "r", "reviewedProduction": False, "min": 0.5}]}),
     "spec.gate.slices[0]", "set it to true"),
]


@pytest.mark.parametrize(("name", "obj", "field", "message"), INVALID,
                         ids=[case[0] for case in INVALID])
def test_invalid_resource_is_refused_naming_the_field(
        kubectl: Kubectl, name: str, obj: dict[str, Any], field: str, message: str) -> None:
    out = kubectl.apply(copy.deepcopy(obj), "--dry-run=server", check=False)
    assert out.returncode != 0, f"{name} was accepted"
    assert field in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


def test_production_data_and_every_slice_selector_are_admitted(kubectl: Kubectl) -> None:
    doc = _tr(dataset={"generated": {}, "production": {"volume": {"hostPath": "/samples"},
                                                       "heldOutFraction": 0.25}},
              gate={"baseline": {"maxRegression": 0.01}, "slices": [
                  {"name": "dark", "inputStatistic": {"statistic": "input_brightness",
                                                      "max": 0.3}, "maxRegression": 0.0},
                  {"name": "reviewed", "reviewedProduction": True, "min": 0.8},
                  {"name": "pits", "class": "pit", "min": 0.7, "minSamples": 30},
                  {"name": "first", "class": 0, "metric": "loss", "higherIsBetter": False,
                   "min": 0.5}]})
    out = kubectl.apply(doc, "--dry-run=server", "-o", "json")
    stored = json.loads(out.stdout)["spec"]
    assert stored["dataset"]["production"]["labelSet"] == "default"
    assert [s["minSamples"] for s in stored["gate"]["slices"]] == [20, 20, 30, 20]
