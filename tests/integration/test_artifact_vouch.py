"""A file whose writer hashed it while writing (``vouch_sha256``) is registered with that digest
and not read again; once the file changes it is hashed as usual."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from lineage.application.artifacts import vouch_sha256


def test_a_vouched_file_is_not_read_again_until_it_changes(tmp_path: Path,
                                                           make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    vouch_sha256(path, "ab" * 32)  # a digest the bytes do not have: only trust can give it
    assert tracker.register_artifact(path, type="model").checksum == "ab" * 32
    path.write_bytes(b"weightz")  # same size, new bytes, new mtime
    os.utime(path, ns=(1, 1))  # even an mtime set back: the ctime still moved
    again = tracker.register_artifact(path, type="model")
    assert again.checksum == hashlib.sha256(b"weightz").hexdigest()
