"""Every config.pbtxt modelship writes is a valid Triton ModelConfig: parsed with the
protobuf definition tritonclient ships (model_config_pb2), so a typo in a field name, a
missing brace or a wrong enum fails here rather than when Triton loads the model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2  # type: ignore[import-untyped]

from modelship.core.triton_manifests import VIEW_MOUNT, view_script
from modelship_api.modeldeployment import Runtime
from modelship_dev.traffic import CONFIG as TRAFFIC_CONFIG
from modelship_dev.workload import ECHO_CONFIG
from modelship_trainer.export import INPUT_NAME, OUTPUT_NAME
from modelship_trainer.triton_config import MODEL_FILES, WARMUP_COUNT, Backend, render


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt", "python"])
@pytest.mark.parametrize("max_batch_size", [0, 64])
@pytest.mark.parametrize("warmup", [True, False])
def test_published_configs_parse(backend: Backend, max_batch_size: int, warmup: bool) -> None:
    config = parse(render("defects", backend, max_batch_size, (1, 32, 32), 3, warmup=warmup))
    assert (config.name, config.backend, config.max_batch_size) == (
        "defects", backend, max_batch_size)
    assert config.default_model_filename == MODEL_FILES[backend]
    (inp,), (out,) = config.input, config.output
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
    assert inp.data_type == out.data_type == model_config_pb2.TYPE_FP32
    batch = [] if max_batch_size else [-1]
    assert list(inp.dims) == [*batch, 1, 32, 32] and list(out.dims) == [*batch, 3]
    if backend == "python":
        (group,) = config.instance_group
        assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    if warmup:
        (warm,) = config.model_warmup
        assert warm.count == WARMUP_COUNT
        assert warm.inputs[INPUT_NAME].zero_data
        # The warmup request has the shape of a real one, batch axis included.
        shape = list(warm.inputs[INPUT_NAME].dims)
        assert shape == ([1] if not max_batch_size else []) + [1, 32, 32]
    else:
        assert not config.model_warmup


def test_local_environment_configs_parse() -> None:
    traffic = parse(TRAFFIC_CONFIG.format(model="m"))
    assert traffic.backend == "python" and list(traffic.input[0].dims) == [4]
    echo = parse(ECHO_CONFIG.format(model="echo"))
    assert echo.backend == "python" and echo.output[0].name == "VERSION"


@pytest.mark.parametrize("shared_policy", [
    "",
    "version_policy: { all: {} }\n",
    "version_policy {\n  latest {\n    num_versions: 2\n  }\n}\n",
])
def test_the_per_pod_view_pins_one_version_and_stays_valid(tmp_path: Path,
                                                            shared_policy: str) -> None:
    """The init container's script rewrites the shared config's version policy; what it
    writes must still parse and pin exactly the version the pod serves."""
    root, view = tmp_path / "repo", tmp_path / "view"
    (root / "defects" / "3").mkdir(parents=True)
    (root / "defects" / "3" / "model.onnx").write_text("")  # what backend onnxruntime serves
    text = render("defects", "onnxruntime", 8, (4,), 2) + shared_policy
    (root / "defects" / "config.pbtxt").write_text(text)
    script = view_script(str(root), "defects", 3).replace(VIEW_MOUNT, str(view))
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, text=True)
    config = parse((view / "defects" / "config.pbtxt").read_text())
    assert list(config.version_policy.specific.versions) == [3]
    assert config.max_batch_size == 8 and len(config.model_warmup) == 1
    assert (view / "defects" / "3").resolve() == (root / "defects" / "3").resolve()


def served(tmp_path: Path, published: str, runtime: dict[str, object],
           files: tuple[str, ...] = ("model.onnx", "model.plan", "model.py"),
           ) -> subprocess.CompletedProcess[str]:
    """Run the per-pod view script of a ModelDeployment runtime over version 3 of a model
    published with `published` as its config."""
    root, view = tmp_path / "repo", tmp_path / "view"
    (root / "defects" / "3").mkdir(parents=True)
    for name in files:
        (root / "defects" / "3" / name).write_text("")
    (root / "defects" / "3" / "config.pbtxt").write_text(published)
    script = view_script(str(root), "defects", 3, Runtime.model_validate(runtime))
    return subprocess.run(["sh", "-c", script.replace(VIEW_MOUNT, str(view))],
                          capture_output=True, text=True)


GPU_LIMITS = {"resources": {"limits": {"nvidia.com/gpu": 1}}}


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt", "python"])
@pytest.mark.parametrize("published_backend", ["onnxruntime", "python"])
@pytest.mark.parametrize("batching", [
    {},
    {"maxBatchSize": 32},
    {"maxBatchSize": 16, "dynamicBatching": {"maxQueueDelayMicroseconds": 250,
                                             "preferredBatchSizes": [4, 8]}},
    {"dynamicBatching": {}},
])
def test_the_served_config_is_the_model_deployments(
        tmp_path: Path, backend: Backend, published_backend: Backend,
        batching: dict[str, object]) -> None:
    """One published version (tensors, warmup) served with the ModelDeployment's backend,
    batching and instance groups: what the pod's view holds parses as Triton's ModelConfig."""
    runtime = {"backend": backend, **batching, **(GPU_LIMITS if backend == "tensorrt" else {})}
    published = render("defects", published_backend, 8, (1, 32, 32), 3)
    published += "dynamic_batching {\n  max_queue_delay_microseconds: 5\n}\n"
    done = served(tmp_path, published, runtime)
    assert done.returncode == 0, done.stderr
    config = parse((tmp_path / "view" / "defects" / "config.pbtxt").read_text())
    assert config.backend == backend and config.platform == ""
    assert config.default_model_filename == MODEL_FILES[backend]
    assert config.max_batch_size == batching.get("maxBatchSize", 8)
    assert list(config.input[0].dims) == [1, 32, 32] and len(config.model_warmup) == 1
    kind = model_config_pb2.ModelInstanceGroup
    (group,) = config.instance_group
    gpu = backend == "tensorrt"
    assert (group.kind, group.count) == (kind.KIND_GPU if gpu else kind.KIND_CPU, 1)
    if "dynamicBatching" in batching:
        asked = batching["dynamicBatching"]
        assert isinstance(asked, dict)
        assert config.dynamic_batching.max_queue_delay_microseconds == asked.get(
            "maxQueueDelayMicroseconds", 100)
        assert list(config.dynamic_batching.preferred_batch_size) == asked.get(
            "preferredBatchSizes", [])
    else:
        # The published config's dynamic batching is not served: the ModelDeployment decides.
        assert not config.HasField("dynamic_batching")
    assert list(config.version_policy.specific.versions) == [3]


def test_one_published_version_is_served_on_cpu_and_on_gpu(tmp_path: Path) -> None:
    published = render("defects", "onnxruntime", 8, (4,), 2)
    kinds = {}
    for name, runtime in (("cpu", {"backend": "onnxruntime"}),
                          ("gpu", {"backend": "onnxruntime", **GPU_LIMITS}),
                          ("two", {"backend": "onnxruntime", **GPU_LIMITS,
                                   "instanceGroups": [{"kind": "GPU", "count": 2},
                                                      {"kind": "CPU"}]})):
        done = served(tmp_path / name, published, runtime)
        assert done.returncode == 0, done.stderr
        config = parse((tmp_path / name / "view" / "defects" / "config.pbtxt").read_text())
        kinds[name] = [(g.kind, g.count) for g in config.instance_group]
    cpu, gpu = (model_config_pb2.ModelInstanceGroup.KIND_CPU,
                model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert kinds == {"cpu": [(cpu, 1)], "gpu": [(gpu, 1)], "two": [(gpu, 2), (cpu, 1)]}


def test_multi_line_owned_fields_are_replaced_whole(tmp_path: Path) -> None:
    published = (render("defects", "python", 4, (4,), 2, warmup=False)
                 + "instance_group [\n  {\n    kind: KIND_GPU\n    count: 3\n  }\n]\n"
                 + 'platform: "onnxruntime_onnx"\n')
    done = served(tmp_path, published, {"backend": "python", "maxBatchSize": 2})
    assert done.returncode == 0, done.stderr
    config = parse((tmp_path / "view" / "defects" / "config.pbtxt").read_text())
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert config.max_batch_size == 2 and config.platform == ""


@pytest.mark.parametrize(("published_batch", "runtime", "words"), [
    (0, {"maxBatchSize": 8}, "runtime.maxBatchSize/dynamicBatching need a version published "
                             "with batching"),
    (0, {"dynamicBatching": {}}, "need a version published with batching"),
    (8, {"maxBatchSize": 0}, "runtime.maxBatchSize 0 needs a version published without"),
])
def test_batching_the_tensors_cannot_take_is_refused_naming_the_field(
        tmp_path: Path, published_batch: int, runtime: dict[str, object], words: str) -> None:
    done = served(tmp_path, render("defects", "onnxruntime", published_batch, (4,), 2),
                  {"backend": "onnxruntime", **runtime})
    assert done.returncode == 1 and words in done.stderr, done.stderr


def test_a_backend_whose_file_was_not_published_is_refused(tmp_path: Path) -> None:
    done = served(tmp_path, render("defects", "onnxruntime", 8, (4,), 2),
                  {"backend": "tensorrt", **GPU_LIMITS}, files=("model.onnx",))
    assert done.returncode == 1
    assert "runtime.backend tensorrt serves model.plan, which version 3 has not" in done.stderr
