"""The demo's checkpoint files: real safetensors that round-trip, and corruption is caught."""

from __future__ import annotations

import hashlib
from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import lineage
from lineage.application.handles import ArtifactRef
from lineage.demo.scenario import Trainer, load_verified, make_data, save_tensors


def _checkpoint(tmp_path: Path) -> tuple[Trainer, ArtifactRef]:
    trainer = Trainer(make_data())
    for step in (1, 2, 3):
        trainer.step(step, 10)
    path = save_tensors(tmp_path / "step-000003.safetensors", trainer.state(3),
                        {"run_id": "r", "step": "3"})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return trainer, ArtifactRef(uuid4(), path.as_uri(), "checkpoint", path.stat().st_size,
                                "sha256", digest, 3)


def test_checkpoint_round_trips_through_safetensors(tmp_path: Path) -> None:
    trainer, ref = _checkpoint(tmp_path)
    path = tmp_path / "step-000003.safetensors"

    loaded = safetensors.numpy.load_file(path)
    with safetensors.safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()

    assert metadata == {"run_id": "r", "step": "3"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left
    for name, value in trainer.state(3).items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)
    restored = Trainer(make_data())
    assert restored.restore(load_verified(ref)) == 3
    for name, value in trainer.params.items():
        np.testing.assert_allclose(restored.params[name], value, rtol=1e-6)


def test_a_changed_file_fails_the_checksum_before_it_is_parsed(tmp_path: Path) -> None:
    _, ref = _checkpoint(tmp_path)
    path = tmp_path / "step-000003.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(lineage.ChecksumMismatchError) as caught:
        load_verified(ref)
    assert caught.value.uri == ref.uri


def test_a_truncated_file_is_not_valid_safetensors(tmp_path: Path) -> None:
    _, ref = _checkpoint(tmp_path)
    path = tmp_path / "step-000003.safetensors"
    path.write_bytes(path.read_bytes()[:-4])

    with pytest.raises(safetensors.SafetensorError):
        safetensors.numpy.load_file(path)
    with pytest.raises(lineage.ChecksumMismatchError):
        load_verified(ref)
