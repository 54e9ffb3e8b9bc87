"""PNG encoding with the stdlib (zlib + struct): a sample's image for the review page."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAY, RGB = 0, 2  # PNG colour types


@dataclass(frozen=True)
class Image:
    """8-bit pixels, row by row, `channels` values per pixel (1 gray, 3 RGB)."""

    width: int
    height: int
    channels: int
    pixels: bytes


def from_row(values: list[int], row_shape: tuple[int, ...]) -> Image:
    """A sample's row of images.npy, (C, H, W) or (H, W), as an image: one channel is gray,
    three are RGB, any other count shows the first channel."""
    if len(row_shape) == 2:
        height, width = row_shape
        return Image(width, height, 1, bytes(values))
    if len(row_shape) != 3:
        raise ValueError(f"a sample of shape {row_shape} is not an image (C, H, W)")
    channels, height, width = row_shape
    plane = height * width
    if channels != 3:
        return Image(width, height, 1, bytes(values[:plane]))
    interleaved = bytearray(3 * plane)
    for c in range(3):
        interleaved[c::3] = bytes(values[c * plane:(c + 1) * plane])
    return Image(width, height, 3, bytes(interleaved))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode(image: Image) -> bytes:
    if image.width <= 0 or image.height <= 0:
        raise ValueError(f"an image of {image.width}x{image.height} pixels has nothing to show")
    if image.channels not in (1, 3):
        raise ValueError(f"{image.channels} channels: PNG here is gray (1) or RGB (3)")
    stride = image.width * image.channels
    if len(image.pixels) != stride * image.height:
        raise ValueError(f"{len(image.pixels)} bytes for {image.width}x{image.height}"
                         f"x{image.channels} pixels")
    raw = b"".join(b"\x00" + image.pixels[y * stride:(y + 1) * stride]  # filter: none
                   for y in range(image.height))
    kind = GRAY if image.channels == 1 else RGB
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, kind, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6))
            + _chunk(b"IEND", b""))
