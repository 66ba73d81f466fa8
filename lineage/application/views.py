"""What queries hand back: ``RunView`` and ``ArtifactView``, built from read-model rows.

Plain frozen dataclasses; ``run_view`` and ``artifact_view`` turn the rows of
``lineage.projections`` (dicts of strings and numbers) into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class LostSteps:
    """Steps a run logged after the checkpoint it was recovered from (redone by its successor)."""

    first_step: int
    last_step: int
    count: int


@dataclass(frozen=True)
class RunView:
    id: UUID
    name: str
    status: str
    job: dict[str, Any]
    tags: dict[str, str]
    started_at: datetime
    finished_at: datetime | None
    start_step: int
    steps: int
    last_step: int | None
    last_metrics: dict[str, float]
    checkpoints: list[tuple[UUID, int]]
    evaluations: int
    failures: int
    corrupted: bool
    resumed_from: UUID | None
    superseded_by: UUID | None
    inputs: list[UUID] = field(default_factory=list)
    job_status: str = "running"  # lineage.application.job_status: pending, running, ..., superseded
    status_reason: str | None = None
    failure_retryable: bool = False  # the last failure recorded says a retry may help
    recovering: bool = False
    recovery_attempts: int = 0
    best_checkpoint: UUID | None = None
    best_value: float | None = None
    resumed_checkpoint: UUID | None = None
    lost_steps: LostSteps | None = None
    last_activity_at: datetime | None = None  # the latest recorded time of any of its events


@dataclass(frozen=True)
class ArtifactView:
    id: UUID
    type: str
    uri: str
    name: str | None
    size: int | None
    checksum_algorithm: str | None
    checksum: str | None
    format: str | None
    run_id: UUID | None
    step: int | None
    parents: list[UUID]
    status: str
    registered_at: datetime
    metadata: dict[str, Any]
    includes_optimizer: bool | None
    aliases: list[str] = field(default_factory=list)
    pins: dict[str, str] = field(default_factory=dict)  # why retention keeps it
    deletion: str | None = None  # outcome of deleting a retired artifact's bytes
    last_verified_ok: bool | None = None
    same_content: list[UUID] = field(default_factory=list)  # other artifacts with these bytes


def run_view(row: dict[str, Any]) -> RunView:
    """A run's read-model row (``ReadModels.run``) as a RunView."""
    recovery, best, lost = row["recovery"] or {}, row["best"] or {}, row["lost_steps"]
    return RunView(
        id=UUID(row["id"]), name=row["name"], status=row["status"], job=row["job"],
        tags=row["tags"], started_at=_time(row["started_at"]),
        finished_at=_maybe_time(row["finished_at"]), start_step=row["start_step"],
        steps=row["steps"], last_step=row["last_step"], last_metrics=row["last_metrics"],
        checkpoints=[(UUID(a), step) for a, step in row["checkpoint_list"]],
        evaluations=row["evaluations"], failures=row["failures"], corrupted=row["corrupted"],
        resumed_from=_maybe_id(row["parent_trace_id"]),
        superseded_by=_maybe_id(row["superseded_by"]),
        inputs=[UUID(a) for a in row["inputs"]], job_status=row["job_status"],
        status_reason=row["status_reason"], failure_retryable=row["failure_retryable"],
        recovering=bool(recovery.get("recovering")),
        recovery_attempts=int(recovery.get("attempts") or 0),
        best_checkpoint=_maybe_id(row["best_checkpoint_id"]), best_value=best.get("value"),
        resumed_checkpoint=_maybe_id(row["resumed_checkpoint_id"]),
        lost_steps=None if lost is None else LostSteps(lost["from_step"], lost["to_step"],
                                                       lost["count"]),
        last_activity_at=_maybe_time(row["last_activity_at"]),
    )


def artifact_view(row: dict[str, Any]) -> ArtifactView:
    """A registry row (``ReadModels.artifact(s)``) as an ArtifactView."""
    return ArtifactView(
        id=UUID(row["id"]), type=row["type"], uri=row["uri"], name=row["name"], size=row["size"],
        checksum_algorithm=row["checksum_algorithm"], checksum=row["checksum"],
        format=row["format"], run_id=_maybe_id(row["run_id"]), step=row["step"],
        parents=[UUID(p) for p in row["parents"]], status=row["status"],
        registered_at=_time(row["registered_at"]), metadata=row["metadata"],
        includes_optimizer=row["includes_optimizer"], aliases=row["aliases"],
        pins=dict(row["pins"]), deletion=row["deletion"], last_verified_ok=row["verified"],
        same_content=[UUID(other) for other in row.get("same_content", [])],
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _maybe_id(text: str | None) -> UUID | None:
    return None if text is None else UUID(text)
