"""spec.monitoring.sampling on the operator's side: the volume the Triton pods write to, the
config.pbtxt parameters the runner reads (the same names, a config Triton parses), and the
condition Sampling with its events from the runner's stopped gauge."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2  # type: ignore[import-untyped]

from modelship.core import sampling, triton_manifests
from modelship.core.drift.queries import VectorAnswer
from modelship_api.modeldeployment import ModelDeployment
from modelship_api.monitoring import Sampling
from modelship_trainer import triton_runner
from modelship_trainer.triton_config import render

ON = {"enabled": True, "volume": {"hostPath": "/var/lib/data", "path": "/plant-a/"},
      "rate": 0.05, "hourlyCap": 500, "lowConfidenceBelow": 0.7, "oversampling": 4}


def md(sampled: dict[str, Any] | None) -> ModelDeployment:
    return ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision", "uid": "u-1", "generation": 3},
        "spec": {"model": {"name": "surface-defects", "version": 4},
                 "repository": {"hostPath": {"path": "/models"}},
                 "runtime": {"backend": "python"},
                 **({"monitoring": {"sampling": sampled}} if sampled else {})}})


def test_triton_pods_mount_the_volume_read_write_only_when_sampling() -> None:
    pod = triton_manifests.deployment(md(ON), 4, 1)["spec"]["template"]["spec"]
    assert {"name": sampling.VOLUME, "hostPath": {"path": "/var/lib/data",
                                                  "type": "DirectoryOrCreate"}} in pod["volumes"]
    (triton,), (init,) = pod["containers"], pod["initContainers"]
    assert {"name": sampling.VOLUME, "mountPath": sampling.MOUNT} in triton["volumeMounts"]
    assert all(m["name"] != sampling.VOLUME for m in init["volumeMounts"])
    claim = md({**ON, "volume": {"persistentVolumeClaim": "samples"}})
    pod = triton_manifests.deployment(claim, 4, 1)["spec"]["template"]["spec"]
    assert {"name": sampling.VOLUME, "persistentVolumeClaim": {"claimName": "samples"}} \
        in pod["volumes"]  # not readOnly
    off = triton_manifests.deployment(md(None), 4, 1)["spec"]["template"]["spec"]
    assert all(v["name"] != sampling.VOLUME for v in off["volumes"])
    assert triton_manifests.template_hash(md(ON)) != triton_manifests.template_hash(md(None))


def test_the_served_config_tells_the_runner_where_and_how_to_sample(tmp_path: Path) -> None:
    root, view = tmp_path / "repo", tmp_path / "view"
    (root / "surface-defects" / "4").mkdir(parents=True)
    (root / "surface-defects" / "4" / "model.py").write_text("")
    published = render("surface-defects", "python", 8, (1, 32, 32), 3)
    published += 'parameters { key: "modelship_statistics" value: { string_value: "on" } }\n'
    (root / "surface-defects" / "4" / "config.pbtxt").write_text(published)
    spec = md({**ON, "volume": {"hostPath": "/d", "path": 'odd "name"\\x'}}).spec
    script = triton_manifests.view_script(str(root), "surface-defects", 4, spec.runtime,
                                          spec.monitoring.sampling)
    subprocess.run(["sh", "-c", script.replace(triton_manifests.VIEW_MOUNT, str(view))],
                   check=True, capture_output=True, text=True, timeout=30)
    config = text_format.Parse((view / "surface-defects" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["modelship_statistics"] == "on"  # the published parameters stay
    policy = triton_runner.sampling_policy(
        {k: {"string_value": v} for k, v in params.items()}, instances=1)
    assert policy == triton_runner.SamplingPolicy(
        Path(f'{sampling.MOUNT}/odd "name"\\x/production/surface-defects'), 0.05, 500, 0.7, 4.0)


def test_operator_and_runner_agree_on_the_names() -> None:
    assert (sampling.AREA_PARAMETER, sampling.RATE_PARAMETER, sampling.HOURLY_CAP_PARAMETER,
            sampling.LOW_CONFIDENCE_PARAMETER, sampling.OVERSAMPLING_PARAMETER,
            sampling.STOPPED_METRIC) == (
        triton_runner.SAMPLING_AREA, triton_runner.SAMPLING_RATE,
        triton_runner.SAMPLING_HOURLY_CAP, triton_runner.SAMPLING_LOW_CONFIDENCE,
        triton_runner.SAMPLING_OVERSAMPLING, triton_runner.STOPPED_METRIC)
    assert sampling.parameters(Sampling(), "m") == ""


def _apply(existing: list[Any] | None, values: dict[str, float] | None, error: str = "",
           spec: dict[str, Any] = ON) -> tuple[list[Any], list[Any]]:
    answers = None if values is None else {sampling.QUERY_KEY: VectorAnswer(values, error)}
    return sampling.apply(existing, Sampling.model_validate(spec), "surface-defects", answers,
                          4, "2026-12-02T20:00:00Z", 3)


def test_the_condition_follows_the_stopped_gauge_with_an_event_on_each_transition() -> None:
    writing, events = _apply(None, {"VolumeFull": 0, "ReadOnly": 0})
    (cond,) = writing
    assert (cond.type, cond.status, cond.reason) == ("Sampling", "True", "Writing")
    assert "hostPath /var/lib/data, plant-a/production/surface-defects" in cond.message
    assert events == []
    full, events = _apply(writing, {"VolumeFull": 1, "ReadOnly": 0})
    (cond,) = full
    assert (cond.status, cond.reason) == ("False", "VolumeFull")
    assert "the volume is full" in cond.message and "Serving goes on" in cond.message
    assert [(e.type, e.reason) for e in events] == [("Warning", "SamplingVolumeFull")]
    assert _apply(full, {"VolumeFull": 1, "ReadOnly": 0}) == (full, [])  # no rewrite
    back, events = _apply(full, {"VolumeFull": 0, "ReadOnly": 0})
    assert back[0].status == "True"
    assert [(e.type, e.reason) for e in events] == [("Normal", "SamplingResumed")]


def test_without_an_answer_the_state_is_unknown_and_without_sampling_absent() -> None:
    (cond,), _ = _apply(None, {})
    assert (cond.status, cond.reason) == ("Unknown", "NoData")
    assert "exports no modelship_sampling_stopped" in cond.message
    (cond,), _ = _apply(None, {}, error="connection refused")
    assert "connection refused" in cond.message
    writing, _ = _apply(None, {"VolumeFull": 0})
    assert _apply(writing, {"VolumeFull": 0}, spec={"enabled": False}) == ([], [])


def test_the_query_asks_per_reason_for_the_version() -> None:
    q = sampling.stopped_query("m", 4, {"namespace": "vision"})
    assert q.promql == ('max by (reason) (modelship_sampling_stopped{model="m",version="4",'
                        'namespace="vision"})')
    assert q.by == "reason"
