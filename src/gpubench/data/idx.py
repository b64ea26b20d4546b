"""IDX files (the format MNIST ships in), read and written with numpy.

Layout: two zero bytes, a type byte, the number of dimensions, one big-endian uint32
per dimension, then the values in C order. Files may be gzipped; that is told from the
gzip magic bytes, not the name (mirrors and users rename files). Only unsigned bytes
(type 0x08) are supported: every MNIST-family file uses them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from gpubench.atomic_io import write_bytes_atomic
from gpubench.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
# The other IDX types, only to name them when refusing one.
_TYPE_NAMES = {0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
               0x0E: "float64"}

PathLike = Union[str, Path]


class DataError(UserError):
    """A dataset is missing, malformed or could not be downloaded: one line that names
    the file (or folder) and what is wrong."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_idx(path: PathLike) -> np.ndarray:
    """The array an IDX file holds (uint8, its own shape; writable, not a view of the
    file). DataError for a file that cannot be read, a corrupt gzip stream, a wrong
    magic number, an unsupported type, or a payload of the wrong length."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {_one_line(exc.strerror or exc)}") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise DataError(f"{path}: corrupt gzip stream (it ends early: the file is "
                            f"truncated)") from None
        except (OSError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt gzip stream ({_one_line(exc)})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file: {len(raw)} bytes, shorter than the "
                        f"4-byte magic number")
    if raw[:2] != b"\0\0":
        raise DataError(f"{path}: not an IDX file: wrong magic number 0x{raw[:4].hex()} "
                        f"(an IDX file starts with 00 00, a type byte and its dimension count)")
    kind, ndim = raw[2], raw[3]
    if kind != UBYTE:
        name = _TYPE_NAMES.get(kind, "unknown")
        raise DataError(f"{path}: IDX type 0x{kind:02x} ({name}) is not supported: only "
                        f"0x08 (unsigned byte)")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, shorter than its "
                        f"{header_bytes}-byte header ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_bytes = int(np.prod(shape, dtype=object))  # object: no overflow on bad dims
    payload_bytes = len(raw) - header_bytes
    dims = "x".join(map(str, shape))
    if payload_bytes < expected_bytes:
        raise DataError(f"{path}: truncated: {payload_bytes:,} bytes of data, the header "
                        f"({dims}) needs {expected_bytes:,}")
    if payload_bytes > expected_bytes:
        raise DataError(f"{path}: {payload_bytes - expected_bytes:,} extra bytes after "
                        f"the {expected_bytes:,} bytes its header ({dims}) declares")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes).reshape(shape).copy()


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (uncompressed)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writing supports uint8 only, not {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"an IDX array has 1 to 255 dimensions, not {array.ndim}")
    header = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: PathLike, array: np.ndarray, compress: bool) -> None:
    """Writes `array` (uint8) as an IDX file, gzipped when `compress`, atomically (a
    temporary file in the same folder, then os.replace). mtime=0 in the gzip header:
    the same array always gives the same bytes (and SHA-256). Level 6 (zlib's default):
    level 9 is ~10x slower on MNIST for 2% smaller files."""
    data = idx_bytes(array)
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_bytes_atomic(Path(path), data)
