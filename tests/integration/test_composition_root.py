"""The composition root builds every tracker on one database (DESIGN §10): whatever way a
tracker is constructed, its writes, replays and read-model queries all use the store it was
given or named, and it never opens, creates or changes any other database, in particular a
``./lineage.db`` in the working directory or the one ``LINEAGE_DATABASE_URL`` names.

The bait: a ``lineage.db`` in the working directory and another one named by the environment,
each holding an artifact of its own. A tracker that reads the wrong database sees it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.adapters.memory import MemoryEventStore
from lineage.bootstrap import open_store


def _digest(path: Path) -> str:
    """The bytes of a SQLite database and its WAL files (all that a touch would change)."""
    parts = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    return hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()


def _seed(path: Path, name: str) -> None:
    with lineage.Tracker(str(path)) as tracker:
        tracker.register_artifact(f"s3://bait/{name}", type="dataset", name=name)
        tracker.artifacts()  # read models built too: a reader would find tables to answer from


@pytest.fixture
def bait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], dict[str, str]]]:
    """Two other databases (cwd and environment); yields a function giving their digests."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    cwd_db, env_db = workdir / "lineage.db", tmp_path / "env.db"
    _seed(cwd_db, "cwd-bait")
    _seed(env_db, "env-bait")
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("LINEAGE_DATABASE_URL", f"sqlite:///{env_db}")

    def digests() -> dict[str, str]:
        return {"cwd": _digest(cwd_db), "env": _digest(env_db),
                "files": ",".join(sorted(p.name for p in workdir.iterdir()))}

    yield digests


def _use(tracker: Any) -> set[str]:
    """Write, replay and query through every read path; the artifact names it can see."""
    run = tracker.start_run("composition")
    run.log_step(1, {"loss": 1.0})
    ref = tracker.register_artifact("s3://mine/model", type="model", name="mine", run=run)
    run.finish()
    tracker.flush()
    assert tracker.artifact(ref.id).name == "mine"
    assert tracker.trace(run)["trace"]["id"] == str(run.id)
    assert [r["subject_id"] for r in tracker.audit(subject=ref.id)] == [str(ref.id)]
    assert [v.id for v in tracker.runs()] == [run.id]
    return {view.name for view in tracker.artifacts()}


CONSTRUCTIONS: dict[str, Callable[[Path], Any]] = {
    "url": lambda tmp: lineage.Tracker(str(tmp / "mine.db")),
    "sqlite url": lambda tmp: lineage.Tracker(f"sqlite:///{tmp / 'mine.db'}"),
    "memory url": lambda tmp: lineage.Tracker("memory://"),
    "sqlite store": lambda tmp: lineage.Tracker(store=open_store(str(tmp / "mine.db"))),
    "memory store": lambda tmp: lineage.Tracker(store=MemoryEventStore()),
    "store and url": lambda tmp: lineage.Tracker(str(tmp / "other.db"),
                                                 store=open_store(str(tmp / "mine.db"))),
}


@pytest.mark.parametrize("how", sorted(CONSTRUCTIONS))
def test_a_tracker_reads_and_writes_only_its_own_database(
        how: str, tmp_path: Path, bait: Callable[[], dict[str, str]]) -> None:
    before = bait()
    tracker = CONSTRUCTIONS[how](tmp_path)
    try:
        assert _use(tracker) == {"mine"}
    finally:
        tracker.close()
    assert bait() == before
    assert not (tmp_path / "other.db").exists()


def test_the_default_tracker_uses_the_environment_and_nothing_else(
        tmp_path: Path, bait: Callable[[], dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "env-mine.db"
    monkeypatch.setenv("LINEAGE_DATABASE_URL", f"sqlite:///{mine}")
    before = bait()
    with lineage.Tracker() as tracker:
        assert _use(tracker) == {"mine"}
    assert mine.exists() and bait() == before


def test_the_default_is_lineage_db_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINEAGE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with lineage.Tracker() as tracker:
        assert _use(tracker) == {"mine"}
        assert Path(tracker.location) == tmp_path / "lineage.db"


def test_two_memory_trackers_share_nothing() -> None:
    with lineage.Tracker("memory://") as first, lineage.Tracker("memory://") as second:
        first.register_artifact("s3://first/data", type="dataset", name="first")
        second.register_artifact("s3://second/data", type="dataset", name="second")
        assert [v.name for v in first.artifacts()] == ["first"]
        assert [v.name for v in second.artifacts()] == ["second"]


@pytest.mark.postgres
def test_a_postgres_store_keeps_its_read_models_in_its_own_schema(
        postgres_url: str, tmp_path: Path, bait: Callable[[], dict[str, str]]) -> None:
    before = bait()
    with lineage.Tracker(store=open_store(postgres_url)) as tracker:
        assert _use(tracker) == {"mine"}
    with lineage.Tracker(postgres_url) as again:
        assert {v.name for v in again.artifacts()} == {"mine"}
    assert bait() == before


def test_trackers_opening_read_models_at_once_on_a_fresh_database(durable_url: str) -> None:
    """Each tracker creates the read-model and position tables on its first query; eight doing
    it at the same moment (as eight processes would) must neither collide nor lock up."""
    import threading

    writer = lineage.Tracker(durable_url, export_otlp=False)
    writer.start_run("seed").finish().wait()
    trackers = [lineage.Tracker(durable_url, export_otlp=False) for _ in range(8)]
    start = threading.Barrier(len(trackers))
    answers: list[Any] = [None] * len(trackers)

    def first_query(index: int) -> None:
        start.wait()
        try:
            answers[index] = [v.name for v in trackers[index].runs()]
        except Exception as error:  # reported below, with the others
            answers[index] = error

    threads = [threading.Thread(target=first_query, args=(i,)) for i in range(len(trackers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for tracker in [writer, *trackers]:
        tracker.close()
    assert answers == [["seed"]] * len(trackers)
