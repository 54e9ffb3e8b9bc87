"""The serving config a ModelDeployment owns, rendered as config.pbtxt fields (pure).

A published version carries a config.pbtxt (the TrainingRun's, or one written by hand):
its tensors and warmup belong to the model. How it is served belongs to the
ModelDeployment: backend and model file, batching, instance groups, and the version pinned.
Each Triton pod's repository view (core.triton_manifests.view_script) drops those fields
from the published config and appends the ones rendered here, so one published version can
be served with the onnxruntime backend on a CPU pod and on a GPU pod, or batched
differently, without touching what was published.
"""

from __future__ import annotations

from modelship_api.modeldeployment import Runtime

GPU = "nvidia.com/gpu"
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": "model.py"}
# Top-level fields of Triton's ModelConfig the ModelDeployment decides (max_batch_size only
# when it sets one; otherwise the published value stays).
OWNED = ("backend", "platform", "default_model_filename", "dynamic_batching",
         "instance_group", "version_policy")


def owned_fields(runtime: Runtime) -> tuple[str, ...]:
    return (*OWNED, "max_batch_size") if runtime.max_batch_size is not None else OWNED


def has_gpu(runtime: Runtime) -> bool:
    limits = runtime.resources.limits if runtime.resources is not None else None
    return bool(limits) and GPU in (limits or {})


def instance_groups(runtime: Runtime) -> list[tuple[str, int]]:
    """(KIND_CPU | KIND_GPU, count) per group."""
    if runtime.instance_groups:
        return [(f"KIND_{g.kind}", g.count) for g in runtime.instance_groups]
    gpu = has_gpu(runtime) and runtime.backend != "python"
    return [("KIND_GPU" if gpu else "KIND_CPU", 1)]


def render(runtime: Runtime, version: int) -> str:
    """The owned fields, one per line, as Triton's text format of ModelConfig."""
    lines = [f'backend: "{runtime.backend}"',
             f'default_model_filename: "{MODEL_FILES[runtime.backend]}"']
    if runtime.max_batch_size is not None:
        lines.append(f"max_batch_size: {runtime.max_batch_size}")
    batching = runtime.dynamic_batching
    if batching is not None:
        preferred = ""
        if batching.preferred_batch_sizes:
            sizes = ", ".join(str(b) for b in batching.preferred_batch_sizes)
            preferred = f" preferred_batch_size: [ {sizes} ]"
        lines.append("dynamic_batching { max_queue_delay_microseconds: "
                     f"{batching.max_queue_delay_microseconds}{preferred} }}")
    groups = ", ".join(f"{{ kind: {kind} count: {count} }}"
                       for kind, count in instance_groups(runtime))
    lines.append(f"instance_group [ {groups} ]")
    lines.append(f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}")
    return "\n".join(lines) + "\n"


def batching_required(runtime: Runtime) -> bool | None:
    """Whether the published config must batch (max_batch_size > 0): True with batching or
    dynamic batching asked for, False with max_batch_size 0, None when either will do."""
    if runtime.max_batch_size is not None:
        return runtime.max_batch_size > 0
    return True if runtime.dynamic_batching is not None else None
