"""config.pbtxt for the published model, per backend.

No version_policy here: the Triton pods the operator runs pin the version they serve.
"""

from __future__ import annotations

from typing import Literal

from modelship_trainer.export import INPUT_NAME, OUTPUT_NAME

WARMUP_COUNT = 8
Backend = Literal["onnxruntime", "tensorrt", "python"]
MODEL_FILES: dict[str, str] = {"onnxruntime": "model.onnx", "tensorrt": "model.plan",
                               "python": "model.py"}


def render(model: str, backend: Backend, max_batch_size: int, sample_shape: tuple[int, ...],
           num_classes: int, warmup: bool = True) -> str:
    # With max_batch_size 0 Triton does not add the batch axis, so the dims must carry it.
    batch = [] if max_batch_size > 0 else [-1]
    in_dims = ", ".join(str(d) for d in [*batch, *sample_shape])
    out_dims = ", ".join(str(d) for d in [*batch, num_classes])
    lines = [
        f'name: "{model}"',
        f'backend: "{backend}"',
        f"max_batch_size: {max_batch_size}",
        f'default_model_filename: "{MODEL_FILES[backend]}"',
        f'input [ {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: [ {in_dims} ] }} ]',
        f'output [ {{ name: "{OUTPUT_NAME}" data_type: TYPE_FP32 dims: [ {out_dims} ] }} ]',
    ]
    if backend == "python":
        # The runner is CPU-only (onnxruntime's CPU provider).
        lines.append("instance_group [ { kind: KIND_CPU count: 1 } ]")
    if not warmup:
        return "\n".join(lines) + "\n"
    # Triton runs these requests before it reports the version ready, so the first real
    # requests do not pay for lazy initialisation (tens of ms to over 100 ms measured on the
    # Python-backend runner): a canary's latency is its steady latency from the start. A
    # model that fails on them never becomes ready.
    warm_dims = ", ".join(str(d) for d in ([] if max_batch_size > 0 else [1]) + [*sample_shape])
    lines.append(
        f'model_warmup [ {{ name: "zeros" batch_size: {1 if max_batch_size > 0 else 0} '
        f"count: {WARMUP_COUNT} inputs {{ key: \"{INPUT_NAME}\" value: {{ "
        f"data_type: TYPE_FP32 dims: [ {warm_dims} ] zero_data: true }} }} }} ]")
    return "\n".join(lines) + "\n"
