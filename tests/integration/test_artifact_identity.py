"""Artifact identity, on the real stores (SQLite file, PostgreSQL).

The rule (README, "Artifact identity"): an artifact is named by where it is (uri), what it
holds (checksum) and who produced it (run and step). Two runs' checkpoints are two artifacts
whatever their bytes; the registry still says which artifacts hold the same bytes; registering
the same thing twice is idempotent; registering it again with other details is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest

import lineage
from lineage.application.commands import register_in
from lineage.application.handles import ArtifactRef
from lineage.domain import Artifact, ids
from lineage.errors import ArtifactExistsError

MakeTracker = Callable[..., Any]
KEEP_1 = {"checkpoint_policy": {"strategy": "steps", "save_every": 10, "keep_last": 1}}
X = b"initial adapter weights"  # what a deterministic step-0 save writes in every run


def save(run: lineage.RunHandle, path: Path, step: int, content: bytes, *,
         wait: bool = True) -> ArtifactRef:
    run.log_step(step, {"loss": 1.0})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    ref = run.save_checkpoint(path, step=step, includes_optimizer=True)
    return ref.wait(60) if wait else ref


def sha256(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def registered(tracker: Any, artifact_id: UUID) -> int:
    return sum(isinstance(event, Artifact.Registered)
               for event in map(tracker.mapper.to_domain_event,
                                tracker.store.read_stream(artifact_id)))


def assert_own_checkpoint(tracker: Any, run: lineage.RunHandle, ref: ArtifactRef,
                          path: Path, step: int) -> None:
    view = tracker.artifact(ref.id)
    assert (view.run_id, view.step, view.uri, view.status) == (run.id, step, path.as_uri(), "live")
    assert (ref.id, step) in tracker.run(run.id).checkpoints


def recover_latest(tracker: Any, run: lineage.RunHandle) -> Any:
    run.record_failure("backend_corrupted", corrupted=True).wait(60)
    return tracker.recover(run.id, resume=lambda checkpoint, new_run: None,
                           sleep=lambda _: None)


# -- the tester's reproduction, both orders ------------------------------------------------------


def test_bytes_another_run_saved_and_retired_are_this_runs_own_checkpoint(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    a = tracker.start_run("a", job=KEEP_1)
    a_x = save(a, tmp_path / "a" / "step-0.bin", 0, X)
    save(a, tmp_path / "a" / "step-10.bin", 10, b"a trained")
    tracker.flush()
    assert tracker.artifact(a_x.id).status == "retired"

    b = tracker.start_run("b", job=KEEP_1)
    b_x = save(b, tmp_path / "b" / "step-0.bin", 0, X)  # used to raise ArtifactRetiredError

    assert b_x.id != a_x.id
    assert_own_checkpoint(tracker, b, b_x, tmp_path / "b" / "step-0.bin", 0)
    assert tracker.artifact(a_x.id).run_id == a.id
    result = recover_latest(tracker, b)
    assert result.status == "recovered", result.message
    assert result.checkpoint is not None and result.checkpoint.id == b_x.id


def test_bytes_another_run_holds_live_stay_two_artifacts_and_retire_apart(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    a, b = tracker.start_run("a", job=KEEP_1), tracker.start_run("b", job=KEEP_1)
    a_x = save(a, tmp_path / "a" / "step-0.bin", 0, X)
    b_x = save(b, tmp_path / "b" / "step-0.bin", 0, X)  # used to become a's artifact

    assert b_x.id != a_x.id
    assert_own_checkpoint(tracker, a, a_x, tmp_path / "a" / "step-0.bin", 0)
    assert_own_checkpoint(tracker, b, b_x, tmp_path / "b" / "step-0.bin", 0)
    assert [c for c, _ in tracker.run(b.id).checkpoints] == [b_x.id]

    save(a, tmp_path / "a" / "step-10.bin", 10, b"a trained")  # a retires its own copy only
    tracker.flush()
    assert [tracker.artifact(r.id).status for r in (a_x, b_x)] == ["retired", "live"]
    assert (tmp_path / "b" / "step-0.bin").read_bytes() == X
    assert recover_latest(tracker, b).checkpoint.id == b_x.id


def test_two_runs_saving_one_path_with_the_same_bytes_keep_the_file_while_one_holds_it(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    """A deterministic re-run writing into the same folder: two artifacts, one file. Retiring
    one of them must not delete the file the other one still holds."""
    tracker = make_tracker(durable_url)
    shared = tmp_path / "out" / "step-0.bin"
    a, b = tracker.start_run("a", job=KEEP_1), tracker.start_run("b", job=KEEP_1)
    a_x, b_x = save(a, shared, 0, X), save(b, shared, 0, X)
    assert a_x.id != b_x.id

    save(a, tmp_path / "out" / "a-10.bin", 10, b"a trained")
    tracker.flush()
    retired = tracker.artifact(a_x.id)
    assert (retired.status, retired.deletion) == ("retired", "in_use")
    assert shared.read_bytes() == X and tracker.artifact(b_x.id).status == "live"

    save(b, tmp_path / "out" / "b-10.bin", 10, b"b trained")  # now nobody holds it
    tracker.flush()
    assert tracker.artifact(b_x.id).deletion == "deleted" and not shared.exists()
    assert tracker.repair_retention() == [] and tracker.retention.errors == []


# -- one run ------------------------------------------------------------------------------------


def test_one_run_saving_the_same_bytes_at_two_paths_gets_two_artifacts(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    run = tracker.start_run("one")
    first = save(run, tmp_path / "first.bin", 0, X)
    second = save(run, tmp_path / "second.bin", 0, X)

    assert first.id != second.id
    assert [c for c, _ in tracker.run(run.id).checkpoints] == [first.id, second.id]
    assert {a.uri for a in tracker.artifacts(checksum=sha256(X))} == {
        (tmp_path / "first.bin").as_uri(), (tmp_path / "second.bin").as_uri()}


def test_a_retried_checkpoint_save_is_the_same_artifact_and_stores_nothing(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    run = tracker.start_run("one")
    first = save(run, tmp_path / "ckpt.bin", 5, X)
    tracker.flush()
    head = tracker.store.max_position()

    again = run.save_checkpoint(tmp_path / "ckpt.bin", step=5,
                                includes_optimizer=True).wait(60)  # the same command, retried
    tracker.flush()
    assert again.id == first.id
    assert tracker.store.max_position() == head
    assert registered(tracker, first.id) == 1


# -- same bytes ---------------------------------------------------------------------------------


def test_the_registry_says_which_artifacts_hold_the_same_bytes(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    a, b = tracker.start_run("a"), tracker.start_run("b")
    a_x = save(a, tmp_path / "a.bin", 0, X)
    b_x = save(b, tmp_path / "b.bin", 0, X)
    other = save(b, tmp_path / "other.bin", 1, b"other")
    (tmp_path / "model.bin").write_bytes(X)
    model = tracker.register_artifact(tmp_path / "model.bin", type="model")

    for checksum in (sha256(X), sha256(X).split(":")[1], sha256(X).upper().replace("SHA", "sha")):
        assert [v.id for v in tracker.artifacts(checksum=checksum)] == [a_x.id, b_x.id, model.id]
    assert tracker.artifacts(checksum="md5:" + sha256(X).split(":")[1]) == []
    assert tracker.artifact(a_x.id).same_content == [b_x.id, model.id]
    assert tracker.artifact(model.id).same_content == [a_x.id, b_x.id]
    assert tracker.artifact(other.id).same_content == []
    listed = {v.id: v.same_content for v in tracker.artifacts()}
    assert listed[b_x.id] == [a_x.id, model.id] and listed[other.id] == []


# -- registering again --------------------------------------------------------------------------


def test_registering_the_same_uri_and_content_twice_is_one_artifact(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"same content")
    tracker = make_tracker(durable_url)
    first = tracker.register_artifact(path, type="model", metadata={"lr": 0.1})
    head = tracker.store.max_position()
    second = tracker.register_artifact(path, type="model", metadata={"lr": 0.1})
    unstated = tracker.register_artifact(path, type="model")  # details left out: not compared
    tracker.close()
    assert first.id == second.id == unstated.id

    reopened = make_tracker(durable_url)
    assert reopened.register_artifact(path, type="model", metadata={"lr": 0.1}).id == first.id
    reopened.flush()
    assert reopened.store.max_position() == head
    assert [a.id for a in reopened.artifacts()] == [first.id]
    assert registered(reopened, first.id) == 1


def test_the_same_bytes_at_another_path_is_another_artifact(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.bin").write_bytes(b"same content")
    tracker = make_tracker(durable_url)
    first = tracker.register_artifact(tmp_path / "a" / "model.bin", type="model")
    copy = tracker.register_artifact(tmp_path / "b" / "model.bin", type="model")

    assert first.id != copy.id
    assert tracker.artifact(first.id).same_content == [copy.id]


@pytest.mark.parametrize(("change", "field"), [
    ({"type": "dataset"}, "type"),
    ({"metadata": {"lr": 0.2}}, "metadata"),
    ({"name": "renamed"}, "name"),
    ({"format": "gguf"}, "format"),
])
def test_registering_again_with_other_details_is_refused_and_stores_nothing(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path,
        change: dict[str, Any], field: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights")
    tracker = make_tracker(durable_url)
    given = {"type": "model", "metadata": {"lr": 0.1}, "name": "m", "format": "safetensors"}
    first = tracker.register_artifact(path, **given)
    head = tracker.store.max_position()

    with pytest.raises(ArtifactExistsError) as raised:
        tracker.register_artifact(path, **(given | change))
    tracker.flush()

    error = raised.value
    assert (error.artifact_id, error.field, error.uri) == (first.id, field, path.as_uri())
    assert (error.stored, error.given) == (given[field], change[field])
    assert field in str(error) and str(first.id) in str(error)
    assert tracker.store.max_position() == head
    view = tracker.artifact(first.id)
    assert (view.type, view.metadata, view.name, view.format) == (
        "model", {"lr": 0.1}, "m", "safetensors")


def test_a_checkpoint_saved_again_with_other_details_is_refused(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    run = tracker.start_run("one")
    first = save(run, tmp_path / "ckpt.bin", 5, X)
    head = tracker.store.max_position()

    with pytest.raises(ArtifactExistsError, match="includes_optimizer"):
        run.save_checkpoint(tmp_path / "ckpt.bin", step=5, includes_optimizer=False).wait(60)
    tracker.flush()  # the refusal was reported to the one who waited for it
    assert tracker.store.max_position() == head
    assert tracker.artifact(first.id).includes_optimizer is True


# -- stores written before the rule changed -----------------------------------------------------


def legacy_content_id(tenant_id: str, digest: str) -> UUID:
    """How artifact ids were derived before: from the content alone."""
    return uuid5(ids.NAMESPACE, f"artifact-content:{tenant_id}:sha256:{digest}")


def test_artifacts_registered_under_content_ids_still_load_and_are_found(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(X)
    digest = sha256(X).split(":")[1]
    old = make_tracker(durable_url)
    legacy = legacy_content_id(old.tenant_id, digest)
    fields = {"type": "model", "name": None, "format": None, "run_id": None, "step": None,
              "parents": [], "includes_optimizer": None, "metadata": {}, "uri": path.as_uri(),
              "size": len(X), "checksum": digest, "checksum_algorithm": "sha256"}
    old.submit("register as before", lambda uow: register_in(uow, legacy, fields),
               old.envelope()).wait(60)
    old.close()

    tracker = make_tracker(durable_url)
    assert tracker.artifact(legacy).uri == path.as_uri()
    assert [a.id for a in tracker.artifacts(checksum=sha256(X))] == [legacy]
    again = tracker.register_artifact(path, type="model")  # after the upgrade: a new id
    assert again.id != legacy
    assert [a.id for a in tracker.artifacts(checksum=sha256(X))] == [legacy, again.id]
    assert tracker.artifact(legacy).same_content == [again.id]
    assert tracker.register_artifact(path, type="model").id == again.id  # idempotent from now
    tracker.move_alias(legacy, "production").wait(60)  # old ids keep working everywhere
    assert tracker.artifacts(alias="production")[0].id == legacy


def test_a_remote_uri_without_checksum_keeps_the_id_it_had(
        durable_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    ref = tracker.register_artifact("hf://datasets/org/mix", type="dataset")
    assert ref.id == uuid5(ids.NAMESPACE, f"artifact-uri:{tracker.tenant_id}:hf://datasets/org/mix")
