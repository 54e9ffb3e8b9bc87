"""Triton Python-backend model: runs the version's model.onnx with onnxruntime (CPU).

Published verbatim as `<model>/<version>/model.py` when the backend is `python`. It imports
only what Triton's Python backend stub offers (triton_python_backend_utils) plus numpy and
onnxruntime, never modelship.

Failed requests (non-finite pixels, failed inference) are counted in a custom family,
modelship_runner_errors_total{model,version,reason}, and made visible to Triton's own
counters, which rollout analysis reads. Measured on Triton 2.51 (nvidia-pytriton 0.7.0): an
error *response* returned from execute() is counted in nv_inference_request_success, with or
without a custom metric family registered; only an exception raised from execute() is
counted in nv_inference_request_failure{reason="BACKEND"}. So when every request of a call
fails (always the case without dynamic batching: one request per call) the runner raises;
in a mixed dynamic batch it answers the failing requests with errors so the others still
succeed, and only the custom counter sees them. tests/e2e/test_triton_serves_published.py
checks all of this against the real server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found,unused-ignore]

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
ERRORS_METRIC = "modelship_runner_errors_total"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model = args["model_name"]
        self.version = args["model_version"]
        path = Path(args["model_repository"]) / self.version / "model.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("MODELSHIP_RUNNER_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, OUTPUT_NAME)["data_type"])
        self.errors_family = pb_utils.MetricFamily(
            name=ERRORS_METRIC,
            description="Requests the modelship runner answered with an error",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.errors: dict[str, Any] = {}

    def _count(self, reason: str) -> None:
        metric = self.errors.get(reason)
        if metric is None:
            metric = self.errors_family.Metric(
                labels={"model": self.model, "version": self.version, "reason": reason})
            self.errors[reason] = metric
        metric.increment(1)

    def _run(self, request: Any) -> tuple[Any, str | None, str]:
        """(output tensor or None, error reason, error message) for one request."""
        x = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
        if not np.isfinite(x).all():
            return None, "invalid_input", "input contains NaN or infinity"
        try:
            (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})
        except Exception as exc:  # onnxruntime raises several types; all are this request's
            return None, "inference", f"inference failed: {exc}"
        return pb_utils.Tensor(OUTPUT_NAME, logits.astype(self.output_dtype)), None, ""

    def execute(self, requests: list[Any]) -> list[Any]:
        results = [self._run(request) for request in requests]
        for _, reason, message in results:
            if reason is not None:
                self._count(reason)
                pb_utils.Logger.log_error(f"{self.model} v{self.version}: {message}")
        if all(out is None for out, _, _ in results):
            # Raised, not returned: Triton then counts the requests as failures (see above).
            raise pb_utils.TritonModelException(results[0][2])
        return [pb_utils.InferenceResponse(output_tensors=[out]) if out is not None else
                pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(msg))
                for out, _, msg in results]

    def finalize(self) -> None:
        self.errors.clear()
