"""``lineage verify --artifacts``: re-hash the local files of the registry against their
registered checksums, and record each outcome as an ``Artifact.Verified`` event.

Outcomes: ``verified`` (the digest matches), ``mismatch`` (the bytes changed), ``missing``
(nothing there, or unreadable: the detail says which). Remote uris (``s3://``,
``tinker://``...) and artifacts that are not live (retired or expired: their bytes may be
deleted on purpose) are left out: they are not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lineage.application.handles import Pending
from lineage.application.recording import Recorder
from lineage.application.recovery_select import _verify as check_bytes
from lineage.application.unit_of_work import UnitOfWork
from lineage.application.views import ArtifactView
from lineage.ports import ArtifactStorage

VERIFIED, MISMATCH, MISSING = "verified", "mismatch", "missing"


@dataclass(frozen=True)
class ArtifactCheck:
    artifact_id: str
    uri: str
    outcome: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact_id, "uri": self.uri, "outcome": self.outcome,
                "detail": self.detail}


Record = Callable[[UUID, tuple[bool, str | None, str]], Pending]  # (artifact, (ok, observed, detail))


def check_artifacts(artifacts: Iterable[ArtifactView], storage: ArtifactStorage,
                    record: Record) -> list[ArtifactCheck]:
    """Check every local, live artifact of ``artifacts`` and record the outcomes through
    ``record`` (waiting until they are committed). Returns the outcomes in the order given."""
    checks: list[ArtifactCheck] = []
    pending: list[Pending] = []
    for artifact in artifacts:
        if artifact.status != "live" or not storage.manages(artifact.uri):
            continue
        ok, observed, detail = check_bytes(artifact, storage)
        outcome = VERIFIED if ok else (MISSING if observed is None else MISMATCH)
        checks.append(ArtifactCheck(str(artifact.id), artifact.uri, outcome, detail))
        pending.append(record(artifact.id, (ok, observed, detail)))
    for each in pending:
        each.wait()
    return checks


def recorded_by(recorder: Recorder) -> Record:
    """``Record`` as one ``Artifact.Verified`` command through ``recorder``."""
    def record(artifact_id: UUID, verified: tuple[bool, str | None, str]) -> Pending:
        ok, observed, detail = verified

        def verify(uow: UnitOfWork) -> None:
            uow.artifact(artifact_id).verify(ok, observed, detail, uow.envelope(), uow.timestamp)

        return recorder.submit(f"verify {artifact_id}", verify, recorder.envelope())

    return record
