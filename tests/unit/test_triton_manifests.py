"""Renderers: the Triton Deployment and Services for one model version."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelship.core import serving_config, triton_manifests
from modelship.core.drift import profiles
from modelship_api.modeldeployment import ModelDeployment, Runtime


def md(**spec: Any) -> ModelDeployment:
    base: dict[str, Any] = {
        "metadata": {"name": "defects", "namespace": "vision", "uid": "u-1", "generation": 3},
        "spec": {"model": {"name": "surface-defects", "version": 4},
                 "repository": {"persistentVolumeClaim": {"claimName": "repo"},
                                "subPath": "triton"}},
    }
    base["spec"].update(spec)
    return ModelDeployment.model_validate(base)


def test_deployment_runs_only_the_requested_version() -> None:
    dep = triton_manifests.deployment(md(), 4, replicas=2)
    assert dep["metadata"]["name"] == "defects-v4"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert "--load-model=surface-defects" in triton["args"]
    assert "--model-control-mode=explicit" in triton["args"]
    assert triton["readinessProbe"]["httpGet"]["path"] == \
        "/v2/models/surface-defects/versions/4/ready"
    script = pod["initContainers"][0]["command"][2]
    assert "/models/triton/surface-defects" in script
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "repo", "readOnly": True}
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "u-1"


@pytest.mark.parametrize("runtime", [
    {"backend": "onnxruntime"}, {"backend": "python"},
    {"backend": "tensorrt", "resources": {"limits": {"nvidia.com/gpu": 1}}},
])
def test_every_backend_exports_the_latency_summary_the_p99_check_reads(
        runtime: dict[str, Any]) -> None:
    dep = triton_manifests.deployment(md(runtime=runtime), 4, 1)
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--metrics-config=summary_latencies=true" in args
    quantiles = next(a for a in args if a.startswith("--metrics-config=summary_quantiles="))
    assert "0.99:0.001" in quantiles.split("=", 2)[2].split(",")


def test_triton_sleeps_before_stopping_so_endpoints_go_first() -> None:
    pod = triton_manifests.deployment(md(), 4, 1)["spec"]["template"]["spec"]
    sleep = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 1
    assert pod["terminationGracePeriodSeconds"] > sleep  # Triton still gets its SIGTERM


def test_startup_budget_follows_the_spec() -> None:
    dep = triton_manifests.deployment(md(runtime={"startupTimeout": "30m"}), 4, 1)
    probe = dep["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 1800


def test_gpu_and_placement_pass_through() -> None:
    dep = triton_manifests.deployment(md(runtime={
        "resources": {"limits": {"nvidia.com/gpu": 2}},
        "nodeSelector": {"gpu": "h100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    }), 4, 1)
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]


def test_services_select_what_they_are_given() -> None:
    svc = triton_manifests.version_service(md(), 4)
    assert svc["spec"]["selector"] == {"modelship.io/modeldeployment": "defects",
                                       "modelship.io/model-version": "4"}
    stable = triton_manifests.stable_service(md(), {"modelship.io/modeldeployment": "defects"})
    assert stable["metadata"]["name"] == "defects"
    assert stable["spec"]["selector"] == {"modelship.io/modeldeployment": "defects"}


def test_version_services_are_headless_and_the_stable_address_is_not() -> None:
    """The API server hands out ClusterIPs one at a time: only the Service clients call
    (`<name>`) takes one; a version's is a route backend and a DNS name for its pods."""
    assert triton_manifests.version_service(md(), 4)["spec"]["clusterIP"] == "None"
    stable = triton_manifests.stable_service(md(), {"modelship.io/modeldeployment": "defects"})
    assert "clusterIP" not in stable["spec"]
    # A headless Service forwards no ports: the ones it names are the pods' own.
    dep = triton_manifests.deployment(md(), 4, replicas=1)
    container_ports = {p["name"]: p["containerPort"]
                       for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["name"]: p["port"] for p in triton_manifests.version_service(md(), 4)[
        "spec"]["ports"]} == container_ports


def test_a_version_service_that_holds_a_cluster_ip_keeps_it() -> None:
    """clusterIP is immutable: a Service made with an address (before version Services
    were headless) is applied without the field, so the apply neither fails nor recreates
    a serving release's backend; one that is gone or headless gets the headless spec."""
    made_before = {"spec": {"clusterIP": "10.96.3.4", "clusterIPs": ["10.96.3.4"]}}
    kept = triton_manifests.version_service(md(), 4, current=made_before)
    assert "clusterIP" not in kept["spec"]
    assert kept["spec"]["selector"] == {"modelship.io/modeldeployment": "defects",
                                        "modelship.io/model-version": "4"}
    for current in (None, {"spec": {"clusterIP": "None", "clusterIPs": ["None"]}}):
        assert triton_manifests.version_service(md(), 4, current=current)[
            "spec"]["clusterIP"] == "None"


PYTHON = Runtime(backend="python")


def _run_view(tmp_path: Path, config: str | None, version_config: str | None,
              version: int = 4, profile: str | None = None, lineage: str | None = None,
              published: tuple[float, float] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """The init container's script on a version folder; `published`: the modification
    times of the folder and of its model file."""
    root = tmp_path / "repo"
    model = root / "m"
    (model / "4").mkdir(parents=True, exist_ok=True)
    (model / "4" / "model.py").write_text("")  # what backend python serves
    if profile is not None:
        (model / "4" / "profile.json").write_text(profile)
    if lineage is not None:
        (model / "4" / "lineage.json").write_text(lineage)
    if config is not None:
        (model / "config.pbtxt").write_text(config)
    if version_config is not None:
        (model / "4" / "config.pbtxt").write_text(version_config)
    if published is not None:
        os.utime(model / "4" / "model.py", (published[1], published[1]))
        os.utime(model / "4", (published[0], published[0]))
    script = triton_manifests.view_script(str(root), "m", version, PYTHON)
    script = script.replace(triton_manifests.VIEW_MOUNT, str(tmp_path / "view"))
    script = script.replace("/dev/termination-log", str(tmp_path / "termination-log"))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)


def test_view_pins_the_version_and_replaces_any_policy(tmp_path: Path) -> None:
    config = ('name: "m"\nbackend: "python"\nversion_policy: {\n  latest: { num_versions: 2 }\n'
              '}\nmax_batch_size: 8\n')
    out = _run_view(tmp_path, config, None)
    assert out.returncode == 0, out.stderr
    written = (tmp_path / "view" / "m" / "config.pbtxt").read_text()
    assert "latest" not in written
    assert "max_batch_size: 8" in written
    assert written.strip().endswith("version_policy: { specific: { versions: [ 4 ] } }")
    assert (tmp_path / "view" / "m" / "4").resolve() == (tmp_path / "repo" / "m" / "4")


def test_view_prefers_the_version_folder_config(tmp_path: Path) -> None:
    out = _run_view(tmp_path, 'name: "shared"\n', 'name: "own"\n')
    assert out.returncode == 0, out.stderr
    assert 'name: "own"' in (tmp_path / "view" / "m" / "config.pbtxt").read_text()


@pytest.mark.parametrize(("version", "config", "message"), [
    (5, 'backend: "python"\n', "model repository has no version 5"),
    (4, None, "no config.pbtxt"),
])
def test_view_explains_what_is_missing(tmp_path: Path, version: int, config: str | None,
                                       message: str) -> None:
    out = _run_view(tmp_path, config, None, version)
    assert out.returncode == 1
    assert message in out.stderr
    assert message in (tmp_path / "termination-log").read_text()


def test_view_strips_a_one_line_policy(tmp_path: Path) -> None:
    config = 'version_policy: { latest: { num_versions: 1 } }\nbackend: "python"\n'
    out = _run_view(tmp_path, config, None)
    assert out.returncode == 0, out.stderr
    # Nothing is left of the published fields the ModelDeployment owns: only its own.
    assert (tmp_path / "view" / "m" / "config.pbtxt").read_text() == (
        serving_config.render(PYTHON, 4))


def test_a_later_revision_has_its_own_names_and_selectors() -> None:
    """Two revisions of version 4 run side by side: neither's selector takes the other's
    pods, and revision 0 renders exactly as before revisions existed."""
    first = triton_manifests.deployment(md(), 4, 1)
    later = triton_manifests.deployment(md(), 4, 1, revision=2)
    assert first["metadata"]["name"] == "defects-v4"
    assert later["metadata"]["name"] == "defects-v4-r2"
    assert first["spec"]["selector"]["matchLabels"] == {
        "modelship.io/modeldeployment": "defects", "modelship.io/model-version": "4"}
    assert later["spec"]["selector"]["matchLabels"] == {
        "modelship.io/modeldeployment": "defects", "modelship.io/model-version": "4-r2"}
    assert later["spec"]["template"]["metadata"]["labels"]["modelship.io/model-version"] == "4-r2"
    service = triton_manifests.version_service(md(), 4, revision=2)
    assert service["metadata"]["name"] == "defects-v4-r2"
    assert service["spec"]["selector"] == later["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("runtime", [
    {"args": ["--log-verbose=1"]},
    {"image": "nvcr.io/nvidia/tritonserver:25.02-py3"},
    {"resources": {"requests": {"cpu": "2"}}},
    {"nodeSelector": {"pool": "gpu"}},
    {"startupTimeout": "20m"},
    {"maxBatchSize": 16},
    {"dynamicBatching": {"maxQueueDelayMicroseconds": 300}},
    {"instanceGroups": [{"kind": "CPU", "count": 2}]},
    {"backend": "python"},
])
def test_the_template_hash_follows_the_pod_template(runtime: dict[str, Any]) -> None:
    base = triton_manifests.template_hash(md())
    assert triton_manifests.template_hash(md(runtime=runtime)) != base


def test_the_template_hash_ignores_replicas_and_the_version_served() -> None:
    base = triton_manifests.template_hash(md())
    assert triton_manifests.template_hash(md(runtime={"replicas": 5})) == base
    assert triton_manifests.template_hash(md(model={"name": "surface-defects",
                                                    "version": 9})) == base


def test_the_init_container_serves_the_model_deployments_config() -> None:
    """What the view writes after the published config: the runtime's serving config."""
    dep = triton_manifests.deployment(md(runtime={
        "backend": "onnxruntime", "maxBatchSize": 16,
        "resources": {"limits": {"nvidia.com/gpu": 1}}}), 4, 1)
    script = dep["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    assert "max_batch_size: 16" in script and "kind: KIND_GPU count: 1" in script
    assert 'default_model_filename: "model.onnx"' in script




def _profile_json(classes: int = 3) -> str:
    from datetime import UTC, datetime

    from modelship_api.profile import Profile, image_statistics
    names = [f"c{i}" for i in range(classes)]
    definitions = image_statistics(names)
    values: dict[str, list[float]] = {d.name: [0.5, 0.2] for d in definitions}
    values["predicted_class"] = [0, 1]
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    return Profile.build(definitions, values, 2, moment, moment).dumps() + "\n"


def test_view_carries_the_versions_profile_to_the_operator(tmp_path: Path) -> None:
    out = _run_view(tmp_path, 'backend: "python"\n', None, profile=_profile_json())
    assert out.returncode == 0, out.stderr
    message = (tmp_path / "termination-log").read_text()
    read = profiles.parse(message, 4)
    assert read.profile is not None and read.missing == ""
    assert read.digest is not None and read.digest.startswith("sha256:")


FOLDER_TIME = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
MODEL_FILE_TIME = datetime(2026, 10, 2, 12, 0, tzinfo=UTC)
PUBLISHED = (FOLDER_TIME.timestamp(), MODEL_FILE_TIME.timestamp())


def _carried(tmp_path: Path, **files: Any) -> tuple[str, profiles.ProfileRead]:
    out = _run_view(tmp_path, 'backend: "python"\n', None, published=PUBLISHED, **files)
    assert out.returncode == 0, out.stderr
    message = (tmp_path / "termination-log").read_text()
    assert len(message.encode()) <= profiles.MAX_MESSAGE_BYTES
    return message, profiles.parse(message, 4)


def test_view_dates_a_version_without_profile_by_its_publish_time(tmp_path: Path) -> None:
    message, read = _carried(tmp_path)
    assert json.loads(message) == {"publishedAt": str(int(FOLDER_TIME.timestamp()))}
    assert read.profile is None and "version 4 has no profile.json" in read.missing
    # The older of the folder's and the model file's modification times.
    assert read.age_basis == profiles.AgeBasis(FOLDER_TIME, "PublishTime")
    assert read.undated == "version 4 has no lineage.json"
    later = (MODEL_FILE_TIME.timestamp(), FOLDER_TIME.timestamp())
    out = _run_view(tmp_path, 'backend: "python"\n', None, published=later)
    assert out.returncode == 0, out.stderr
    read = profiles.parse((tmp_path / "termination-log").read_text(), 4)
    assert read.age_basis == profiles.AgeBasis(FOLDER_TIME, "PublishTime")


def test_view_dates_a_version_without_profile_by_its_lineage_data_time(
        tmp_path: Path) -> None:
    lineage = json.dumps({"datasetDigest": "sha256:ab", "recipe": "image-classifier",
                          "dataTime": "2026-09-30T08:00:00Z", "classes": ["ok"]}, indent=2)
    _, read = _carried(tmp_path, lineage=lineage)
    assert read.age_basis == profiles.AgeBasis(datetime(2026, 9, 30, 8, tzinfo=UTC),
                                               "LineageDataTime")
    # lineage.json of an earlier trainer, without dataTime: the publish time it is.
    _, read = _carried(tmp_path, lineage=json.dumps({"datasetDigest": "sha256:ab"}))
    assert read.age_basis == profiles.AgeBasis(FOLDER_TIME, "PublishTime")
    assert read.undated == "lineage.json of version 4 records no dataTime"


def test_view_keeps_the_note_json_and_small_whatever_lineage_holds(tmp_path: Path) -> None:
    for hostile in ('{"dataTime": "2026\\", "x": "' + "y" * 5000 + '"}',
                    '{"dataTime": "' + "1" * 5000 + '"}', "not json"):
        message, read = _carried(tmp_path, lineage=hostile)
        assert read.age_basis == profiles.AgeBasis(FOLDER_TIME, "PublishTime"), message


def test_view_notes_a_profile_too_large_to_carry_and_none_without_one(tmp_path: Path) -> None:
    assert "version 4 has no profile.json" in profiles.parse("", 4).missing
    big = _profile_json(classes=400)
    assert len(big) > 4096
    _, read = _carried(tmp_path, profile=big)
    assert read.profile is None
    assert f"is {len(big.encode())} bytes, more than the 4096" in read.missing
    # The profile's own dataTime still dates the version.
    assert read.age_basis == profiles.AgeBasis(datetime(2026, 11, 1, tzinfo=UTC),
                                               "ProfileDataTime")


def test_template_hashes_render_once_per_generation() -> None:
    """The API server raises the generation on every spec change: within one generation the
    hash is the one already rendered; a new generation or a new object renders again."""
    hashes = triton_manifests.TemplateHashes()
    first = md()
    assert hashes.get(first) == triton_manifests.template_hash(first)
    changed = md(runtime={"args": ["--log-verbose=1"]})
    assert triton_manifests.template_hash(changed) != triton_manifests.template_hash(first)
    assert hashes.get(changed) == hashes.get(first)  # same uid and generation: not rendered
    changed.metadata.generation = 4
    assert hashes.get(changed) == triton_manifests.template_hash(changed)
    recreated = md()  # deleted and made again: generation 4 again, another uid
    recreated.metadata.uid, recreated.metadata.generation = "u-2", 4
    assert hashes.get(recreated) == triton_manifests.template_hash(first)
    hashes.forget("vision", "defects")  # a pass found it gone
    changed.metadata.uid = "u-2"
    assert hashes.get(changed) == triton_manifests.template_hash(changed)
