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
    text = render("defects", "onnxruntime", 8, (4,), 2) + shared_policy
    (root / "defects" / "config.pbtxt").write_text(text)
    script = view_script(str(root), "defects", 3).replace(VIEW_MOUNT, str(view))
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, text=True)
    config = parse((view / "defects" / "config.pbtxt").read_text())
    assert list(config.version_policy.specific.versions) == [3]
    assert config.max_batch_size == 8 and len(config.model_warmup) == 1
    assert (view / "defects" / "3").resolve() == (root / "defects" / "3").resolve()
