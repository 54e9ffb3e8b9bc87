"""NumPy's .npy format, read with the stdlib: the operator's install has no numpy.

Only what sampled production inputs use: little-endian float32 or uint8, C order, format
versions 1 to 3 (the header is a Python dict literal). Callers read the header once, then
only the bytes of the rows they need (a row is one sample's image)."""

from __future__ import annotations

import ast
import math
import struct
import sys
from array import array
from dataclasses import dataclass

MAGIC = b"\x93NUMPY"
PREAMBLE = 12  # enough bytes to know the header's length, whatever the version
ITEM_SIZES = {"<f4": 4, "|u1": 1, "<u1": 1}


class NpyError(ValueError):
    """The bytes are not an .npy array this reader understands."""


@dataclass(frozen=True)
class NpyHeader:
    dtype: str  # "<f4" or "|u1"
    shape: tuple[int, ...]
    offset: int  # where the data starts

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.row_shape) * ITEM_SIZES[self.dtype]

    @property
    def data_bytes(self) -> int:
        return self.rows * self.row_bytes


def header_length(preamble: bytes) -> int:
    """From the first PREAMBLE bytes: the whole header's length (where the data starts)."""
    if len(preamble) < 10 or not preamble.startswith(MAGIC):
        raise NpyError("not an .npy file (no \\x93NUMPY magic)")
    major = preamble[6]
    if major == 1:
        return 10 + int(struct.unpack_from("<H", preamble, 8)[0])
    if major in (2, 3) and len(preamble) >= PREAMBLE:
        return 12 + int(struct.unpack_from("<I", preamble, 8)[0])
    raise NpyError(f".npy format version {major} is not supported (1, 2 or 3)")


def parse_header(header: bytes) -> NpyHeader:
    """The whole header (header_length bytes): dtype, shape and data offset."""
    start = 10 if header[6] == 1 else 12
    try:
        fields = ast.literal_eval(header[start:].decode("latin-1").strip())
        dtype, fortran, shape = fields["descr"], fields["fortran_order"], fields["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError) as err:
        raise NpyError(f".npy header does not parse: {err}") from None
    if dtype not in ITEM_SIZES:
        raise NpyError(f".npy dtype {dtype!r}: expected float32 ('<f4') or uint8 ('|u1')")
    if fortran:
        raise NpyError(".npy array is in Fortran order: expected C order")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise NpyError(f".npy shape {shape!r} is not a tuple of sizes")
    return NpyHeader("|u1" if dtype == "<u1" else dtype, shape, len(header))


def row_to_bytes(header: NpyHeader, data: bytes) -> list[int]:
    """One row's values as 0..255 intensities: uint8 as they are, float32 taken as 0..1
    (clipped; NaN is black) so that a dark input looks dark, as the model saw it."""
    if len(data) != header.row_bytes:
        raise NpyError(f"row has {len(data)} bytes, expected {header.row_bytes}")
    if header.dtype == "|u1":
        return list(data)
    values = array("f")
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return [0 if v != v else round(min(max(v, 0.0), 1.0) * 255) for v in values]
