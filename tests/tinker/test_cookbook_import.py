"""Importing a tinker-cookbook log directory written by the cookbook's own code: the crashed
first process, the off-by-one resume (#935) and the mislabelled final record (#367)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lineage.adapters.tinker.cookbook import CookbookImporter, import_cookbook_log, segments_of
from lineage.errors import ValidationError
from tests.tinker.cookbook_fixture import write_cookbook_log


@pytest.fixture
def log_dir(service: Any, tmp_path: Path) -> Path:
    path = tmp_path / "sl-run"
    write_cookbook_log(service, str(path), n_batches=10, crash_after=8)
    return path


def test_a_resumed_cookbook_run_becomes_a_resume_in_the_lineage(log_dir: Path,
                                                                tracker: Any) -> None:
    result = import_cookbook_log(tracker, log_dir)
    first, second = (tracker.run(run) for run in result.runs)
    assert first.job_status == "superseded" and second.job_status == "completed"
    assert first.job["metadata"]["config"]["lora_rank"] == 8
    assert [s.step for s in tracker.steps(first.id)] == [0, 1, 2, 3, 4, 5, 6]
    assert [s.step for s in tracker.steps(second.id)] == [6, 7, 8, 9]  # batch 6 redone
    steps = tracker.steps(first.id)
    assert steps[0].metrics["train_mean_nll"] == 2.0 and steps[0].tokens == 3
    assert steps[0].durations["step"] > 0
    by_uri = {a.uri: a for a in tracker.artifacts(type="checkpoint")}
    resumed = by_uri[next(u for u in by_uri if u.endswith(":train:0/weights/000006"))]
    assert (second.resumed_from, second.resumed_checkpoint) == (first.id, resumed.id)
    assert resumed.step == 6 and resumed.includes_optimizer
    assert second.job["metadata"]["cookbook"]["resume"] == {"checkpoint_batch": 6,
                                                            "steps_redone": [6, 6]}
    final = by_uri[next(u for u in by_uri if u.endswith("/weights/final"))]
    assert final.step == 9  # the record says batch 0
    assert "says batch 0, epoch 1; it follows step 9" in final.metadata["label_mismatch"]
    sampler = by_uri[next(u for u in by_uri if u.endswith(":train:0/sampler_weights/000003"))]
    assert sampler.includes_optimizer is False and sampler.step == 3


def test_importing_twice_changes_nothing(log_dir: Path, tracker: Any) -> None:
    first = import_cookbook_log(tracker, log_dir)
    position = tracker.store.max_position()
    again = import_cookbook_log(tracker, log_dir)
    assert again.runs == first.runs
    assert tracker.store.max_position() == position


class ReadSpy:
    """A cookbook ``Storage`` that remembers each ``read_range`` (file, offset)."""

    def __init__(self, storage: Any) -> None:
        self.storage, self.reads = storage, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def read_range(self, name: str, offset: int, length: int | None = None) -> bytes:
        self.reads.append((name, offset))
        return self.storage.read_range(name, offset, length)


def test_follow_reads_only_what_a_live_directory_appends(service: Any, tmp_path: Path,
                                                        tracker: Any) -> None:
    import asyncio

    from tests.tinker.cookbook_fixture import sl_process

    path = tmp_path / "live"
    asyncio.run(sl_process(service, str(path), 10, crash_after=5))
    importer = CookbookImporter(tracker, path)
    spy = ReadSpy(importer.storage)
    for tail in importer.tails.values():
        tail.storage = spy
    early = importer.import_once()
    tracker.flush()
    assert [s.step for s in tracker.steps(early.runs[0])] == [0, 1, 2, 3]
    read = importer.tails["metrics.jsonl"].offset
    assert read == (path / "metrics.jsonl").stat().st_size
    assert importer.import_once().runs == early.runs  # nothing new: nothing read
    assert [r for r in spy.reads if r[0] == "metrics.jsonl"] == [("metrics.jsonl", 0)]
    asyncio.run(sl_process(service, str(path), 10))
    late = importer.import_once()
    tracker.flush()
    assert [r for r in spy.reads if r[0] == "metrics.jsonl"][-1] == ("metrics.jsonl", read)
    assert late.runs[0] == early.runs[0] and len(late.runs) == 2
    assert [s.step for s in tracker.steps(late.runs[1])] == [3, 4, 5, 6, 7, 8, 9]
    assert tracker.run(late.runs[0]).job_status == "superseded"


def test_a_cloud_log_path_is_read_through_the_cookbooks_storage(service: Any, tmp_path: Path,
                                                                tracker: Any) -> None:
    import asyncio

    from tests.tinker.cookbook_fixture import sl_process

    uri = f"memory://bucket-{tmp_path.name}/sl-run"  # fsspec, as s3:// or gs:// would be
    asyncio.run(sl_process(service, uri, 4))  # the cookbook writes it through fsspec
    [run_id] = import_cookbook_log(tracker, uri).runs
    run = tracker.run(run_id)
    assert [s.step for s in tracker.steps(run_id)] == [0, 1, 2, 3]
    assert run.job_status == "completed" and run.job["metadata"]["cookbook"]["log_path"] == uri
    assert import_cookbook_log(tracker, uri).runs == [run_id]  # idempotent there too
    with pytest.raises(ValidationError, match="log_path"):
        CookbookImporter(tracker, f"memory://bucket-{tmp_path.name}/nothing-here")


def test_a_torn_last_line_waits_and_a_bad_record_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "loss": 1}\n{"step": 1, "lo')
    [segment] = segments_of(tmp_path)
    assert [s["step"] for s in segment.steps] == [0]
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1}\n')
    with pytest.raises(ValidationError, match="step"):
        segments_of(tmp_path)
