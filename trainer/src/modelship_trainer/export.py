"""ONNX export with a dynamic batch axis, its checks, and the optional TensorRT plan."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import torch
from torch import nn

from modelship_trainer.data import FloatArray
from modelship_trainer.errors import ParityError, TrainerError
from modelship_trainer.training import predict_logits

INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, sample_shape: tuple[int, ...], path: Path, opset: int) -> None:
    """Export and validate with onnx.checker; the batch axis stays dynamic for Triton."""
    model.eval()
    example = torch.zeros((2, *sample_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise TrainerError(f"exported ONNX model is invalid: {exc}", "ExportFailed") from exc


def onnx_session(path: Path, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session: ort.InferenceSession, images: FloatArray,
                batch_size: int = 512) -> FloatArray:
    name = session.get_inputs()[0].name
    outs: list[FloatArray] = [session.run(None, {name: images[i:i + batch_size]})[0]
                              for i in range(0, len(images), batch_size)]
    return np.concatenate(outs).astype(np.float32)


def check_parity(model: nn.Module, path: Path, images: FloatArray, tolerance: float) -> float:
    """Largest |onnxruntime - PyTorch| over `images`; ParityError beyond the tolerance."""
    diff = float(np.max(np.abs(onnx_logits(onnx_session(path), images)
                               - predict_logits(model, images))))
    if not diff <= tolerance:  # also catches NaN
        raise ParityError(f"onnxruntime differs from PyTorch by {diff:.3g} "
                          f"(tolerance {tolerance:g})")
    return diff


@dataclass(frozen=True)
class TensorRTOutcome:
    built: bool
    detail: str  # "built for sm_90" or why it was skipped
    compute_capability: str | None = None


def tensorrt_unavailable() -> str | None:
    """Why no plan can be built here, or None when a GPU and tensorrt are present."""
    if not torch.cuda.is_available():
        return "skipped: no GPU visible"
    if importlib.util.find_spec("tensorrt") is None:
        return "skipped: the tensorrt module is not installed"
    return None


def build_tensorrt(onnx_path: Path, plan_path: Path, sample_shape: tuple[int, ...],
                   max_batch_size: int, policy: Literal["Auto", "Always", "Never"]
                   ) -> TensorRTOutcome:
    if policy == "Never":
        return TensorRTOutcome(False, "skipped: export.tensorrt is Never")
    missing = tensorrt_unavailable()
    if missing:
        if policy == "Always":
            raise TrainerError(f"export.tensorrt is Always but {missing[9:]}",
                               "TensorRTUnavailable")
        return TensorRTOutcome(False, missing)
    major, minor = torch.cuda.get_device_capability()
    capability = f"{major}.{minor}"
    plan_path.write_bytes(_build_plan(onnx_path, sample_shape, max(1, max_batch_size)))
    return TensorRTOutcome(True, f"built for compute capability {capability}", capability)


def _build_plan(onnx_path: Path, sample_shape: tuple[int, ...], max_batch: int) -> bytes:
    import tensorrt as trt  # type: ignore[import-not-found,import-untyped,unused-ignore]

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrainerError(f"TensorRT could not parse the ONNX model: {errors}",
                           "TensorRTFailed")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *sample_shape), (max(1, max_batch // 2), *sample_shape),
                      (max_batch, *sample_shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TrainerError("TensorRT failed to build the plan", "TensorRTFailed")
    return bytes(plan)
