"""Reading a checkpoint file: one pass that fills the tensors and hashes every byte, any
safetensors file read as safetensors' own reader reads it, a file that is not one refused with
what is wrong (after its checksum, so a changed file is reported as changed), and the file's
bytes never held beside the tensors."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

import lineage  # noqa: E402
from lineage.integrations import torch_file  # noqa: E402
from lineage.integrations.torch import load_checkpoint, save_checkpoint, write_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def odd_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"f32": torch.randn(3, 5), "bf16": torch.randn(7).to(torch.bfloat16),
            "f16": torch.randn(2, 2, 2).half(), "i64": torch.arange(-4, 4),
            "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
            "flags": torch.tensor([True, False, True]), "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 4), "u8": torch.arange(256, dtype=torch.uint8)}


def test_any_safetensors_file_reads_as_its_own_reader_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_file(odd_tensors(), str(path), metadata={"who": "safetensors"})
    contents = torch_file.read(path)
    expected = load_file(str(path))
    assert contents.problem is None
    assert contents.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert contents.metadata == {"who": "safetensors"}
    assert contents.tensors.keys() == expected.keys()
    for name, tensor in expected.items():
        got = contents.tensors[name]
        assert (got.dtype, got.shape) == (tensor.dtype, tensor.shape), name
        assert torch.equal(got, tensor), name


def test_bytes_between_and_after_the_tensors_are_hashed_too(tmp_path: Path) -> None:
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                         "b": {"dtype": "I8", "shape": [1], "data_offsets": [16, 17]}}).encode()
    data = (b"gap!" + struct.pack("<2f", 1.5, -2.0) + b"pad." + b"\x07" + b"trailing")
    raw = struct.pack("<Q", len(header)) + header + data
    path = tmp_path / "gaps.safetensors"
    path.write_bytes(raw)
    contents = torch_file.read(path)
    assert contents.problem is None
    assert contents.digest == hashlib.sha256(raw).hexdigest()
    assert contents.tensors["a"].tolist() == [1.5, -2.0] and contents.tensors["b"].tolist() == [7]


def raw_file(tmp_path: Path, raw: bytes) -> Path:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    return path


def header_file(tmp_path: Path, header: Any, data: bytes = b"") -> Path:
    encoded = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return raw_file(tmp_path, struct.pack("<Q", len(encoded)) + encoded + data)


@pytest.mark.parametrize(("make", "says"), [
    (lambda d: raw_file(d, b"abc"), "ends early"),
    (lambda d: raw_file(d, struct.pack("<Q", 1 << 60) + b"{}"), "header length"),
    (lambda d: header_file(d, b"{not json"), "not JSON"),
    (lambda d: header_file(d, b"\xff\xfe"), "not JSON"),
    (lambda d: header_file(d, [1, 2]), "not a JSON object"),
    (lambda d: header_file(d, {"__metadata__": {"n": 1}}), "__metadata__"),
    (lambda d: header_file(d, {"t": {"dtype": "F32", "shape": [2]}}), "data_offsets"),
    (lambda d: header_file(d, {"t": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
                           b"\0" * 8), "no dtype torch reads"),
    (lambda d: header_file(d, {"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
                           b"\0" * 4), "bad shape"),
    (lambda d: header_file(d, {"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                           b"\0" * 8), "8 bytes for shape [3]"),
    (lambda d: header_file(d, {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "u": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
                           b"\0" * 8), "overlaps"),
    (lambda d: header_file(d, {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                           b"\0" * 8), "runs past the file"),
])
def test_a_file_that_is_not_safetensors_is_refused_saying_why(tmp_path: Path, make: Any,
                                                              says: str) -> None:
    path = make(tmp_path)
    contents = torch_file.read(path)
    assert contents.problem is not None and says in contents.problem
    assert contents.digest == hashlib.sha256(path.read_bytes()).hexdigest()  # all of it hashed
    model = torch.nn.Linear(2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(lineage.ValidationError) as caught:
        load_checkpoint(None, path, model)
    assert caught.value.field == "source" and says in caught.value.rule
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_registered_checkpoint_cut_short_is_reported_as_changed(tmp_path: Path) -> None:
    """The checksum is compared before the parse error is raised: the file changed, and the
    error says so (with both digests), not only that it no longer parses."""
    path = tmp_path / "c.safetensors"
    model = torch.nn.Linear(4, 4)
    with lineage.Tracker(f"sqlite:///{tmp_path / 'lineage.db'}") as tracker:
        with tracker.start_run("cut") as run:
            checkpoint = save_checkpoint(run, path, model=model, step=1).wait()
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - 9])
        for source in (checkpoint.id, path):
            with pytest.raises(lineage.ChecksumMismatchError) as caught:
                load_checkpoint(tracker, source, torch.nn.Linear(4, 4))
            assert caught.value.uri == path.as_uri()
        assert len(tracker.runs()) == 1  # nothing resumed


PEAK = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from lineage.integrations.torch import load_checkpoint
model = torch.nn.Linear({width}, {width}, bias=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
load_checkpoint(None, {path!r}, model)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert torch.equal(model.weight, torch.load({expected!r}))
print((after - before) * 1024)
"""


def test_loading_holds_the_tensors_not_the_file_as_well(tmp_path: Path) -> None:
    """Peak memory of a load beyond the model: about one file's size (the tensors read), not
    two (the file's bytes and the tensors made from them)."""
    width = 3072  # a 36 MiB weight
    model = torch.nn.Linear(width, width, bias=False)
    path = tmp_path / "big.safetensors"
    write_checkpoint(path, model=model, rng=False)
    torch.save(model.weight.detach(), tmp_path / "expected.pt")
    size = path.stat().st_size
    code = PEAK.format(root=str(ROOT), width=width, path=str(path),
                       expected=str(tmp_path / "expected.pt"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    grew = int(done.stdout.split()[-1])
    assert grew < 1.25 * size, f"a load of a {size}-byte file grew the peak by {grew} bytes"


def test_the_load_bench_runs_both_ways_side_by_side() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "checkpoint_load.py"),
                           "--width", "256", "--layers", "1", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for line in ("load_checkpoint: peak growth", "baseline: peak growth",
                 "load_checkpoint: time", "peak growth, new / baseline", "time, new / baseline"):
        assert line in done.stdout, done.stdout
