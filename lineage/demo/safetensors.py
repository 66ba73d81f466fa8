"""A small, dependency-free (NumPy only) writer and reader for the safetensors format.

The layout (https://github.com/huggingface/safetensors), which files written here follow:

    8 bytes   N, the header length, unsigned little-endian
    N bytes   JSON header: {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
              "data_offsets": [begin, end]}, ...}, padded with spaces so that 8 + N is a
              multiple of 8
    rest      the tensors' raw little-endian bytes, back to back; offsets are relative to the
              start of this section and cover it entirely (no holes, no overlaps)

Tensors are laid out by decreasing item size, then by name (as the reference writer does), so
every tensor starts at an offset aligned to its item size. ``save`` writes to a temporary file
and renames it into place, so a reader never sees a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

METADATA_KEY = "__metadata__"
ALIGNMENT = 8
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference reader's limit

DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items()}


class SafetensorsError(ValueError):
    """The file is not valid safetensors, or a tensor cannot be stored in it."""


def dtype_name(array: np.ndarray) -> str:
    """The safetensors dtype name of an array (``F32``...); SafetensorsError if unsupported."""
    name = _NAMES.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise SafetensorsError(f"dtype {array.dtype} is not supported by safetensors")
    return name


def serialize(tensors: Mapping[str, np.ndarray],
              metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (and string ``metadata``)."""
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("metadata keys and values must be strings")
        header[METADATA_KEY] = dict(metadata)
    arrays = {name: np.asarray(value) for name, value in tensors.items()}
    for name in arrays:
        if not isinstance(name, str) or not name or name == METADATA_KEY:
            raise SafetensorsError(f"invalid tensor name {name!r}")
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    chunks: list[bytes] = []
    offset = 0
    for name in order:
        array = arrays[name]
        kind = dtype_name(array)
        data = np.ascontiguousarray(array, dtype=DTYPES[kind]).tobytes()
        header[name] = {"dtype": kind, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    encoded += b" " * (-(8 + len(encoded)) % ALIGNMENT)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


def save(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray],
         metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` to ``path`` atomically (temporary file, fsync, rename); return it."""
    target = Path(path)
    data = serialize(tensors, metadata)
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    return target


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON header of a file (tensor entries and ``__metadata__``), unvalidated."""
    with Path(path).open("rb") as handle:
        return _parse_header(handle.read(8), handle.read)


def metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The file's ``__metadata__`` (empty when it has none)."""
    return dict(read_header(path).get(METADATA_KEY) or {})


def deserialize(data: bytes) -> dict[str, np.ndarray]:
    """The tensors in the bytes of a safetensors file, as native-endian NumPy arrays."""
    view = memoryview(data)
    header = _parse_header(bytes(view[:8]), lambda n: bytes(view[8:8 + n]))
    start = 8 + struct.unpack("<Q", view[:8])[0]
    body = view[start:]
    entries = sorted(((name, entry) for name, entry in header.items() if name != METADATA_KEY),
                     key=lambda item: _offsets(item[0], item[1])[0])
    result: dict[str, np.ndarray] = {}
    position = 0
    for name, entry in entries:
        begin, end = _offsets(name, entry)
        if begin != position:
            raise SafetensorsError(f"tensor {name!r} starts at {begin}, expected {position}")
        dtype, shape = _dtype_and_shape(name, entry)
        if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise SafetensorsError(f"tensor {name!r}: {end - begin} bytes do not fit "
                                   f"shape {shape} of {entry['dtype']}")
        if end > len(body):
            raise SafetensorsError(f"tensor {name!r} ends past the end of the file")
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        result[name] = array.astype(dtype.newbyteorder("="), copy=True)
        position = end
    if position != len(body):
        raise SafetensorsError(f"{len(body) - position} trailing bytes after the last tensor")
    return result


def load(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file. Raises SafetensorsError when it is malformed."""
    return deserialize(Path(path).read_bytes())


def _parse_header(prefix: bytes, read: Any) -> dict[str, Any]:
    if len(prefix) != 8:
        raise SafetensorsError("file is shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise SafetensorsError(f"header length {length} is larger than {MAX_HEADER_BYTES}")
    raw = read(length)
    if len(raw) != length:
        raise SafetensorsError(f"header is truncated ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"header is not UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    return header


def _offsets(name: str, entry: Any) -> tuple[int, int]:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise SafetensorsError(f"tensor {name!r} has invalid data_offsets {offsets!r}")
    return offsets[0], offsets[1]


def _dtype_and_shape(name: str, entry: dict[str, Any]) -> tuple[np.dtype[Any], tuple[int, ...]]:
    dtype = DTYPES.get(entry.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise SafetensorsError(f"tensor {name!r} has unsupported dtype {entry.get('dtype')!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise SafetensorsError(f"tensor {name!r} has invalid shape {shape!r}")
    return dtype, tuple(shape)
