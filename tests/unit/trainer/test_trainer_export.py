"""ONNX export (dynamic batch, checker), parity with PyTorch, and the TensorRT policy."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from modelship_trainer.errors import ParityError, TrainerError
from modelship_trainer.export import (
    build_tensorrt,
    check_parity,
    export_onnx,
    onnx_logits,
    onnx_session,
    tensorrt_unavailable,
)
from modelship_trainer.surface_defects import SmallCNN


@pytest.fixture
def exported(tmp_path: Path) -> tuple[SmallCNN, Path]:
    torch.manual_seed(0)
    model = SmallCNN(1, 3, 8).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, (1, 16, 16), path, opset=17)
    return model, path


def test_onnx_has_dynamic_batch_and_requested_opset(exported: tuple[SmallCNN, Path]) -> None:
    _, path = exported
    proto = onnx.load(str(path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    session = onnx_session(path)
    for batch in (1, 5, 33):
        x = np.random.default_rng(batch).random((batch, 1, 16, 16), dtype=np.float32)
        assert onnx_logits(session, x).shape == (batch, 3)


def test_parity_holds_for_the_exported_model(exported: tuple[SmallCNN, Path]) -> None:
    model, path = exported
    x = np.random.default_rng(0).random((64, 1, 16, 16), dtype=np.float32)
    assert check_parity(model, path, x, tolerance=1e-4) < 1e-4


def test_parity_fails_when_outputs_differ(exported: tuple[SmallCNN, Path]) -> None:
    model, path = exported
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.bias.add_(0.01)
    x = np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32)
    with pytest.raises(ParityError, match=r"differs from PyTorch by 0\.01"):
        check_parity(other, path, x, tolerance=1e-3)


def test_tensorrt_policy(exported: tuple[SmallCNN, Path], tmp_path: Path) -> None:
    _, path = exported
    never = build_tensorrt(path, tmp_path / "p", (1, 16, 16), 8, "Never")
    assert (never.built, never.detail) == (False, "skipped: export.tensorrt is Never")
    missing = tensorrt_unavailable()
    auto = build_tensorrt(path, tmp_path / "model.plan", (1, 16, 16), 8, "Auto")
    if missing is None:
        assert auto.built and auto.compute_capability is not None
        assert (tmp_path / "model.plan").stat().st_size > 0
    else:
        assert (auto.built, auto.detail) == (False, missing)
        with pytest.raises(TrainerError, match=r"export\.tensorrt is Always but"):
            build_tensorrt(path, tmp_path / "p", (1, 16, 16), 8, "Always")
