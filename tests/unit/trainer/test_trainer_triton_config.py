"""config.pbtxt warms each version up with requests shaped like real ones."""

from __future__ import annotations

from modelship_trainer.triton_config import WARMUP_COUNT, render


def test_warmup_requests_match_the_input_shape_in_both_batching_modes() -> None:
    batched = render("m", "python", 64, (1, 32, 32), 3)
    assert "model_warmup" in batched
    assert "batch_size: 1" in batched and "dims: [ 1, 32, 32 ] zero_data: true" in batched
    assert f"count: {WARMUP_COUNT}" in batched
    unbatched = render("m", "onnxruntime", 0, (1, 32, 32), 3)
    # Without Triton's batching the dims carry the batch axis, so the warmup names it.
    assert "dims: [ -1, 1, 32, 32 ]" in unbatched
    assert "batch_size: 0" in unbatched and "dims: [ 1, 1, 32, 32 ] zero_data: true" in unbatched


def test_warmup_can_be_left_out() -> None:
    assert "model_warmup" not in render("m", "python", 8, (4,), 3, warmup=False)
