"""``tracker.retire_artifact``: retiring by hand or in a policy's name, with the bytes already
deleted elsewhere (a framework's own checkpoint rotation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lineage


def test_retire_by_hand_and_for_a_policy(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with tracker.start_run("r") as run:
        run.log_step(1, {"loss": 1.0})
        a = run.save_checkpoint(tmp_path / "a", step=1).wait()
        b = run.save_checkpoint(tmp_path / "b", step=1).wait()
    with pytest.raises(lineage.ValidationError, match="reason"):
        tracker.retire_artifact(a, "")
    (tmp_path / "a").unlink()
    tracker.retire_artifact(a, "rotated by the trainer", bytes_gone=True).wait()
    tracker.retire_artifact(a, "again", bytes_gone=True).wait()  # a no-op
    view = tracker.artifact(a.id)
    assert (view.status, view.deletion) == ("retired", "already_gone")
    tracker.move_alias(b, "prod", protected=True).wait()
    with pytest.raises(lineage.InvariantError, match="must be kept"):
        tracker.retire_artifact(b, "keep_last", policy="keep_last=1").wait()
    assert tracker.artifact(b.id).status == "live"
    assert (tmp_path / "b").exists()  # retiring deletes nothing by itself
