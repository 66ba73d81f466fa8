"""lineage.demo.safetensors: the file layout byte for byte, round trips, and malformed files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lineage.demo import safetensors
from lineage.demo.safetensors import SafetensorsError


def _header(data: bytes) -> tuple[int, dict[str, object]]:
    (length,) = struct.unpack("<Q", data[:8])
    return length, json.loads(data[8:8 + length])


def test_one_tensor_file_is_exactly_the_reference_layout() -> None:
    data = safetensors.serialize({"a": np.array([1.0, 2.0], dtype=np.float32)})

    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    padded = header + b" " * (-(8 + len(header)) % 8)
    expected = struct.pack("<Q", len(padded)) + padded + struct.pack("<2f", 1.0, 2.0)
    assert data == expected


def test_header_is_space_padded_to_eight_byte_alignment_with_metadata_first() -> None:
    data = safetensors.serialize({"w": np.zeros((3,), dtype=np.float32)}, {"step": "50"})

    length, header = _header(data)
    assert (8 + length) % 8 == 0
    raw = data[8:8 + length]
    assert raw.rstrip(b" ") == raw.strip() and raw.startswith(b'{"__metadata__":')
    assert header["__metadata__"] == {"step": "50"}


def test_tensors_are_contiguous_and_aligned_largest_item_size_first() -> None:
    tensors = {"b_i32": np.arange(3, dtype=np.int32), "a_f32": np.ones(5, dtype=np.float32),
               "z_f64": np.full((2, 2), 0.5), "c_i64": np.array(7, dtype=np.int64)}

    data = safetensors.serialize(tensors)

    length, header = _header(data)
    entries = sorted((v["data_offsets"], k, v) for k, v in header.items())  # type: ignore[union-attr]
    assert [name for _, name, _ in entries] == ["c_i64", "z_f64", "a_f32", "b_i32"]
    position = 0
    for (begin, end), name, entry in entries:
        assert begin == position
        assert begin % tensors[name].dtype.itemsize == 0
        assert entry["dtype"] == {"c_i64": "I64", "z_f64": "F64", "a_f32": "F32",
                                  "b_i32": "I32"}[name]
        assert entry["shape"] == list(tensors[name].shape)
        body = data[8 + length + begin:8 + length + end]
        assert body == tensors[name].astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        position = end
    assert 8 + length + position == len(data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.int8,
                                   np.uint8, np.float16, np.bool_])
def test_round_trip_keeps_values_dtype_and_shape(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(0)
    array = (rng.normal(0, 50, (3, 4, 2))).astype(dtype)
    scalar = np.array(3, dtype=dtype)
    empty = np.zeros((0, 5), dtype=dtype)

    safetensors.save(tmp_path / "t.safetensors", {"x": array, "s": scalar, "e": empty},
                     {"format": "pt"})
    loaded = safetensors.load(tmp_path / "t.safetensors")

    assert set(loaded) == {"x", "s", "e"}
    for name, original in (("x", array), ("s", scalar), ("e", empty)):
        assert loaded[name].dtype == original.dtype
        assert loaded[name].shape == original.shape
        np.testing.assert_array_equal(loaded[name], original)
    assert safetensors.metadata(tmp_path / "t.safetensors") == {"format": "pt"}


def test_big_endian_and_non_contiguous_inputs_are_written_little_endian(tmp_path: Path) -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    transposed = np.arange(6, dtype=np.int64).reshape(2, 3).T

    loaded = safetensors.deserialize(safetensors.serialize({"big": big, "t": transposed}))

    np.testing.assert_array_equal(loaded["big"], big)
    np.testing.assert_array_equal(loaded["t"], transposed)
    assert loaded["big"].dtype.isnative


def test_save_replaces_the_file_and_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    safetensors.save(path, {"a": np.zeros(2, dtype=np.float32)})
    safetensors.save(path, {"a": np.ones(2, dtype=np.float32)})

    np.testing.assert_array_equal(safetensors.load(path)["a"], [1.0, 1.0])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


@pytest.mark.parametrize("tensors, metadata", [
    ({"c": np.zeros(2, dtype=np.complex64)}, None),
    ({"__metadata__": np.zeros(2, dtype=np.float32)}, None),
    ({"a": np.zeros(2, dtype=np.float32)}, {"step": 5}),
])
def test_what_safetensors_cannot_hold_is_refused(tensors: dict[str, np.ndarray],
                                                 metadata: dict[str, str] | None) -> None:
    with pytest.raises(SafetensorsError):
        safetensors.serialize(tensors, metadata)


def _file(header: dict[str, object], body: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + body


@pytest.mark.parametrize("data, message", [
    (b"\x01\x02", "shorter than"),
    (struct.pack("<Q", 100) + b"{}", "truncated"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
     "past the end"),
    (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
     "starts at 4"),
    (_file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "do not fit"),
    (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 9),
     "trailing"),
    (_file({"a": {"dtype": "Q8", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
     "unsupported dtype"),
])
def test_malformed_files_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(SafetensorsError, match=message):
        safetensors.deserialize(data)
