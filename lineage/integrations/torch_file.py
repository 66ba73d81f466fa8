"""The bytes of a training checkpoint: one safetensors file, written once, hashed as written.

Layout: the model's state dict under its own names; every tensor of the optimizer, scheduler,
RNG and extra state under a name that starts with ``__lineage__/``; everything that is not a
tensor (param groups, step counters, the Python RNG...) as JSON in the header's
``__metadata__`` (``lineage.state``), where each tensor is ``{"__tensor__": name}``. Any
safetensors reader opens the file; ``weights_of`` gives the model's part alone.

``write`` streams the tensors one at a time (one on the CPU at a time: a GPU model is not copied
whole) through ``files.write_atomic``: hashed as written, fsynced, renamed over the target.
Needs torch.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Mapping
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


def read(path: Path) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256, in one read."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def metadata_of(data: bytes) -> dict[str, str]:
    (length,) = struct.unpack("<Q", data[:8])
    return dict(json.loads(data[8:8 + length]).get("__metadata__") or {})


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
