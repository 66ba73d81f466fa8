"""``resume_run`` commits the new run and its link to the run it resumes in one transaction.

Found by the SIGKILL fault suite (tests/faults/test_kill_background.py): the new run used to be
committed first and linked second, so a recovery executor killed between the two commits left
a pending run that resumed nothing, which no takeover could find and end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lineage.domain import Run
from tests.integration.test_recovery import corrupted_run


def test_the_resumed_run_and_its_link_commit_in_one_transaction(
        durable_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    run, (_, forty) = corrupted_run(tracker, tmp_path)
    tracker.flush()
    store = tracker.store
    commits: list[list[str]] = []
    append = store.append

    def recording(events: Sequence[Any], event_ids: Sequence[str], expect: Any = ()) -> None:
        append(events, event_ids, expect)
        commits.append([event.topic.rsplit(".", 1)[-1] for event in events])

    store.append = recording  # watch the transactions: one append is one commit
    new = tracker.resume_run(run.id, forty)
    (commit,) = [topics for topics in commits if "Started" in topics]
    assert "ResumedFrom" in commit, commits
    assert tracker.run(new.id).resumed_from == run.id
    assert any(isinstance(e, Run.ResumedFrom) for e in tracker.run_events(new.id, steps=False))
