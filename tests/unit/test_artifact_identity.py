"""The artifact identity rule and the re-registration check, on the id function and the
aggregate directly (the stores: tests/integration/test_artifact_identity.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4, uuid5

import pytest

from lineage.domain import Artifact, ids
from lineage.domain.envelope import Envelope
from lineage.errors import ArtifactExistsError, InvariantError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DIGEST = ("sha256", "ab" * 32)
RUN, OTHER_RUN = uuid4(), uuid4()


def test_the_id_depends_on_uri_content_run_and_step_and_on_nothing_else() -> None:
    base = ids.artifact_id("t", "file:///a.bin", DIGEST, RUN, 0)
    assert base == ids.artifact_id("t", "file:///a.bin", DIGEST, RUN, 0)
    variants = [ids.artifact_id("t2", "file:///a.bin", DIGEST, RUN, 0),
                ids.artifact_id("t", "file:///b.bin", DIGEST, RUN, 0),
                ids.artifact_id("t", "file:///a.bin", ("sha256", "cd" * 32), RUN, 0),
                ids.artifact_id("t", "file:///a.bin", ("md5", "ab" * 32), RUN, 0),
                ids.artifact_id("t", "file:///a.bin", DIGEST, OTHER_RUN, 0),
                ids.artifact_id("t", "file:///a.bin", DIGEST, None, 0),
                ids.artifact_id("t", "file:///a.bin", DIGEST, RUN, 1),
                ids.artifact_id("t", "file:///a.bin", None, RUN, 0)]
    assert len({base, *variants}) == len(variants) + 1


def test_a_bare_uri_keeps_the_id_it_always_had() -> None:
    assert ids.artifact_id("t", "hf://org/data", None, None, None) == uuid5(
        ids.NAMESPACE, "artifact-uri:t:hf://org/data")


def registered(**change: Any) -> Artifact:
    fields = {"type": "model", "uri": "s3://b/m", "name": "m", "size": 5,
              "checksum_algorithm": None, "checksum": None, "format": "gguf", "run_id": None,
              "step": 3, "parents": [], "includes_optimizer": False,
              "metadata": {"lr": float("nan"), "tags": {"a": 1, "b": 2}}} | change
    return Artifact.register(uuid4(), fields, Envelope(uuid4(), NOW, None, "t", "t", "t"), NOW)


def test_restating_the_same_details_or_leaving_them_out_is_accepted() -> None:
    artifact = registered()
    artifact.require_registered_as({
        "type": "model", "name": "m", "size": 5, "format": "gguf", "step": 3,
        "includes_optimizer": False, "parents": [uuid4()],  # parents are not compared
        "metadata": {"tags": {"b": 2, "a": 1}, "lr": float("nan")}})
    artifact.require_registered_as({"type": "model", "name": None, "format": None,
                                    "includes_optimizer": None, "metadata": {}})


@pytest.mark.parametrize(("field", "given"), [
    ("type", "dataset"), ("name", "other"), ("size", 6), ("format", "onnx"), ("step", 4),
    ("includes_optimizer", True), ("metadata", {"lr": 0.1})])
def test_another_value_is_refused_naming_the_field(field: str, given: Any) -> None:
    artifact = registered()
    with pytest.raises(ArtifactExistsError) as raised:
        artifact.require_registered_as({"type": "model", field: given})
    error = raised.value
    assert isinstance(error, InvariantError)
    assert (error.artifact_id, error.uri, error.field, error.given) == (
        artifact.id, "s3://b/m", field, given)
    assert f"{field}=" in str(error)
    assert artifact.pending_events[1:] == []  # nothing recorded beyond the registration
