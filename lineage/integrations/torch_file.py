"""The bytes of a training checkpoint: one safetensors file, written once, hashed as written.

Layout: the model's state dict under its own names; every tensor of the optimizer, scheduler,
RNG and extra state under a name that starts with ``__lineage__/``; everything that is not a
tensor (param groups, step counters, the Python RNG...) as JSON in the header's
``__metadata__`` (``lineage.state``), where each tensor is ``{"__tensor__": name}``. Any
safetensors reader opens the file; ``weights_of`` gives the model's part alone.

``write`` streams the tensors one at a time (one on the CPU at a time: a GPU model is not copied
whole) through ``files.write_atomic``: hashed as written, fsynced, renamed over the target.
``read`` reads any safetensors file in one pass, each tensor's bytes straight into a new tensor,
hashed as read. Needs torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lineage.errors import ValidationError
from lineage.integrations.files import write_atomic

PREFIX = "__lineage__/"
FORMAT = "lineage-torch-checkpoint/1"
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
           torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
           torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
for _name, _code in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"),
                     ("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64")):
    if hasattr(torch, _name):
        _DTYPES[getattr(torch, _name)] = _code
_CODES = {code: dtype for dtype, code in _DTYPES.items()}
HEADER_MAX = 100_000_000  # the longest header safetensors' own reader accepts
READ_CHUNK = 8 << 20  # bytes read, then hashed while still in the CPU's caches


_PLAIN = {int, float, str, bool, type(None)}


# -- nested state <-> (JSON, tensors) ------------------------------------------------------------

def flatten(value: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as JSON with its tensors moved into ``tensors`` (named after their place).
    Tuples, dicts with non-string keys and arrays are marked so ``unflatten`` restores them;
    anything else that JSON cannot hold is a ValidationError naming its place."""
    if isinstance(value, torch.Tensor):
        tensors[PREFIX + where] = value
        return {"__tensor__": PREFIX + where}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: flatten(item, f"{where}/{key}", tensors) for key, item in value.items()}
        return {"__dict__": [[flatten(key, f"{where}/key{i}", tensors),
                              flatten(item, f"{where}/{i}", tensors)]
                             for i, (key, item) in enumerate(value.items())]}
    if isinstance(value, tuple | list):
        if all(type(item) in _PLAIN for item in value):  # the Python RNG's 625 ints, fast
            items: list[Any] = list(value)
        else:
            items = [flatten(item, f"{where}/{i}", tensors) for i, item in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # a NumPy array or scalar
        tensors[PREFIX + where] = torch.as_tensor(value)
        return {"__array__": PREFIX + where}
    raise ValidationError(where, f"cannot be stored in a checkpoint: a {type(value).__name__} "
                                 "is neither a tensor nor plain data", repr(value)[:200])


def unflatten(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of ``flatten``."""
    if isinstance(value, list):
        return [unflatten(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__array__" in value:
        return tensors[value["__array__"]].numpy()
    if "__tuple__" in value:
        return tuple(unflatten(item, tensors) for item in value["__tuple__"])
    if "__dict__" in value:
        return {unflatten(key, tensors): unflatten(item, tensors) for key, item in value["__dict__"]}
    return {key: unflatten(item, tensors) for key, item in value.items()}


# -- the file --------------------------------------------------------------------------------

def write(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[int, str]:
    """Write ``tensors`` and ``metadata`` to ``path`` atomically; returns (size, SHA-256 hex)
    of the bytes written, hashed while writing (the file is never read back). On any error
    the target is left as it was (``files.write_atomic``)."""
    header = _header(tensors, metadata)

    def chunks() -> Iterator[bytes | memoryview]:
        yield struct.pack("<Q", len(header)) + header
        for tensor in tensors.values():
            yield _tensor_bytes(tensor)

    return write_atomic(path, chunks())


@dataclass
class Contents:
    """What ``read`` found in a file: its tensors and metadata, the SHA-256 of all its bytes,
    and ``problem``: None, or why the bytes are not a safetensors file (the rest of the file
    was still hashed, so its checksum can be compared first)."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    digest: str
    problem: str | None = None


def read(path: Path) -> Contents:
    """The file's tensors and metadata and the SHA-256 of its bytes, in one pass: each
    tensor's bytes are read straight into the tensor and hashed there, so the file's bytes
    are never held beside the tensors (peak memory: the tensors)."""
    digest = hashlib.sha256()
    contents = Contents({}, {}, "")
    with path.open("rb", buffering=0) as handle:
        try:
            entries, end_of_data = _read_header(handle, digest, contents)
            _read_tensors(handle, entries, end_of_data, digest, contents.tensors)
        except ValidationError as error:  # what does not fit, as _read_header/_tensors say
            contents.problem, contents.tensors = error.rule, {}
        _hash_rest(handle, digest)
    contents.digest = digest.hexdigest()
    return contents


_Entry = tuple[str, torch.dtype, list[int], int, int]  # name, dtype, shape, begin, end


def _read_header(handle: io.FileIO, digest: Any, contents: Contents) -> tuple[list[_Entry], int]:
    """Read the header, put its metadata in ``contents``; returns its tensors' entries in the
    order of their bytes, and where the data ends (from the data's start)."""
    size = os.fstat(handle.fileno()).st_size
    (length,) = struct.unpack("<Q", _read_exactly(handle, 8, digest))
    if length > min(HEADER_MAX, size - 8):
        raise _unreadable(f"its header length {length} does not fit a {size}-byte file")
    try:
        header = json.loads(_read_exactly(handle, length, digest))
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError
        raise _unreadable(f"its header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise _unreadable("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(value, str) for value in metadata.values()):
        raise _unreadable("its __metadata__ is not an object of strings")
    contents.metadata = metadata
    entries = sorted(map(_entry, header.items()), key=lambda entry: (entry[3], entry[4]))
    return entries, size - 8 - length


def _unreadable(problem: str) -> ValidationError:
    return ValidationError("source", problem)


def _entry(item: tuple[str, Any]) -> _Entry:
    name, spec = item
    try:
        dtype, shape, (begin, end) = _CODES[spec["dtype"]], spec["shape"], spec["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise _unreadable(f"tensor {name!r} has no dtype torch reads, shape and "
                          "data_offsets") from None
    if (type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape)
            or not (type(begin) is int and type(end) is int and 0 <= begin <= end)):
        raise _unreadable(f"tensor {name!r} has a bad shape or data_offsets")
    if math.prod(shape) * dtype.itemsize != end - begin:
        raise _unreadable(f"tensor {name!r}: {end - begin} bytes for shape {shape}")
    return name, dtype, shape, begin, end


def _read_tensors(handle: io.FileIO, entries: list[_Entry], end_of_data: int, digest: Any,
                  tensors: dict[str, torch.Tensor]) -> None:
    """Read each tensor's bytes straight into a new tensor in ``tensors``."""
    position = 0
    for name, dtype, shape, begin, end in entries:
        if begin < position or end > end_of_data:
            raise _unreadable(f"tensor {name!r} overlaps another or runs past the file")
        _skip(handle, begin - position, digest)  # bytes between tensors, if any
        tensor = torch.empty(shape, dtype=dtype)
        _read_into(handle, memoryview(tensor.reshape(-1).view(torch.uint8).numpy()), digest)
        tensors[name] = tensor
        position = end


def _read_into(handle: io.FileIO, buffer: memoryview, digest: Any) -> None:
    """Fill ``buffer`` from ``handle`` and hash it, a chunk at a time (hashed while the chunk
    is still in the CPU's caches); at the file's end, hash what came and raise."""
    done = 0
    while done < len(buffer):
        chunk = buffer[done:done + READ_CHUNK]
        got = 0
        while got < len(chunk):
            count = handle.readinto(chunk[got:])
            if not count:
                digest.update(chunk[:got])
                raise _unreadable("it ends early")
            got += count
        digest.update(chunk)
        done += got


def _read_exactly(handle: io.FileIO, count: int, digest: Any) -> bytes:
    buffer = bytearray(count)
    _read_into(handle, memoryview(buffer), digest)
    return bytes(buffer)


def _skip(handle: io.FileIO, count: int, digest: Any) -> None:
    """Read and hash ``count`` bytes that belong to no tensor."""
    while count:
        chunk = handle.read(min(count, READ_CHUNK))
        if not chunk:
            raise _unreadable("it ends early")
        digest.update(chunk)
        count -= len(chunk)


def _hash_rest(handle: io.FileIO, digest: Any) -> None:
    while chunk := handle.read(READ_CHUNK):
        digest.update(chunk)


def weights_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's own tensors (those not under ``__lineage__/``)."""
    return {name: tensor for name, tensor in tensors.items() if not name.startswith(PREFIX)}


def _header(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    entries: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, tensor in tensors.items():
        code = _DTYPES.get(tensor.dtype)
        if code is None:
            raise ValidationError(name, f"has dtype {tensor.dtype}, which safetensors cannot hold")
        nbytes = tensor.numel() * tensor.element_size()
        entries[name] = {"dtype": code, "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = json.dumps(entries, separators=(",", ":")).encode()
    return header + b" " * (-len(header) % 8)  # the data starts 8-byte aligned


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    cpu = tensor.detach().to("cpu").contiguous().reshape(-1)
    buffer: Any = cpu.view(torch.uint8).numpy()
    return memoryview(buffer)
