"""The review page's stdlib codecs agree with numpy (reading .npy) and Pillow (reading PNG)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from modelship.core.review import npy, png


def _header(path: Path) -> npy.NpyHeader:
    data = path.read_bytes()
    return npy.parse_header(data[:npy.header_length(data[:npy.PREAMBLE])])


def _row(path: Path, header: npy.NpyHeader, index: int) -> list[int]:
    data = path.read_bytes()
    start = header.offset + index * header.row_bytes
    return npy.row_to_bytes(header, data[start:start + header.row_bytes])


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_float32_rows_read_as_numpy_wrote_them(tmp_path: Path, version: tuple[int, int]) -> None:
    images = np.random.default_rng(1).uniform(-0.2, 1.2, (3, 1, 5, 4)).astype(np.float32)
    images[2, 0, 0, 0] = np.nan
    path = tmp_path / "images.npy"
    with path.open("wb") as f:
        np.lib.format.write_array(f, images, version=version)
    header = _header(path)
    assert (header.dtype, header.shape, header.rows, header.row_shape) == (
        "<f4", (3, 1, 5, 4), 3, (1, 5, 4))
    for i in range(3):
        want = np.round(np.clip(np.nan_to_num(images[i], nan=0.0), 0, 1) * 255).astype(int)
        assert _row(path, header, i) == want.ravel().tolist()


def test_uint8_rows_are_taken_as_they_are(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    np.save(tmp_path / "images.npy", images)
    header = _header(tmp_path / "images.npy")
    assert header.dtype == "|u1" and header.row_bytes == 12
    assert _row(tmp_path / "images.npy", header, 1) == images[1].ravel().tolist()


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((2, 3), dtype=np.float64), "dtype '<f8': expected float32"),
    (np.asfortranarray(np.zeros((2, 3), dtype=np.float32)), "Fortran order"),
])
def test_arrays_it_cannot_show_are_refused_by_name(tmp_path: Path, array: np.ndarray,
                                                   message: str) -> None:
    np.save(tmp_path / "images.npy", array)
    with pytest.raises(npy.NpyError, match=message):
        _header(tmp_path / "images.npy")
    with pytest.raises(npy.NpyError, match="magic"):
        npy.header_length(b"PK\x03\x04 not numpy")


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def test_gray_and_rgb_rows_become_the_pngs_pillow_reads() -> None:
    gray = np.random.default_rng(2).integers(0, 256, (1, 7, 5)).astype(np.uint8)
    image = png.from_row(gray.ravel().tolist(), (1, 7, 5))
    np.testing.assert_array_equal(_decoded(png.encode(image)), gray[0])

    rgb = np.random.default_rng(3).integers(0, 256, (3, 4, 6)).astype(np.uint8)
    image = png.from_row(rgb.ravel().tolist(), (3, 4, 6))
    np.testing.assert_array_equal(_decoded(png.encode(image)), rgb.transpose(1, 2, 0))

    two = png.from_row(list(range(2 * 2 * 2)), (2, 2, 2))  # neither gray nor RGB: channel 0
    assert (two.channels, two.pixels) == (1, bytes([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="not an image"):
        png.from_row([0] * 8, (8,))
