"""What the integrations record through, beyond a run handle: the registry and resumes.

``CheckpointRegistry`` is the narrow port an integration needs to look checkpoints up and
record a resume; ``lineage.Tracker`` is one. ``record_resume`` is the one way every integration
records "training goes on from this checkpoint".
"""

from __future__ import annotations

from typing import Any, Protocol

from lineage.application.views import ArtifactView
from lineage.domain.run import FINAL_STATUSES


class CheckpointRegistry(Protocol):
    """What the integrations read and record through: the tracker's registry and runs."""

    def artifact(self, artifact: Any) -> ArtifactView: ...

    def artifacts(self, *, type: str | None = ..., run: Any = ...,
                  checksum: str | None = ..., status: str | None = ..., limit: int = ...,
                  offset: int = ...) -> list[ArtifactView]: ...

    def run(self, run: Any) -> Any: ...

    def retire_artifact(self, artifact: Any, reason: str, *, policy: str | None = ...,
                        bytes_gone: bool = ...) -> Any: ...

    def run_handle(self, run: Any) -> Any: ...

    def start_run(self, name: str, *, job: dict[str, Any] | None = ..., tags: Any = ...) -> Any: ...

    def resume_run(self, previous: Any, checkpoint: Any, *, name: str | None = ...,
                   optimizer_restored: bool = ..., job: dict[str, Any] | None = ...,
                   tags: Any = ...) -> Any: ...


def record_resume(registry: CheckpointRegistry, checkpoint: ArtifactView, *,
                  optimizer_restored: bool, resume: bool = True, into: Any = None,
                  name: str | None = None, job: dict[str, Any] | None = None,
                  tags: Any = None) -> Any:
    """Record that training goes on from ``checkpoint``; returns the run that does.

    With ``into`` (a run handle): the checkpoint becomes its input and its next checkpoint
    derives from it. Else, when ``resume``: a new run resumes the checkpoint's run from it
    (``tracker.resume_run``: linked both ways, the checkpoint pinned), ``optimizer_restored``
    only when the checkpoint holds optimizer state; the old run, if still open (a crash left
    it so), is finished ``superseded`` by the new one. Returns None when nothing is recorded.
    """
    if into is not None:
        into.use_input(checkpoint.id, role="resume").wait()
        into.continue_from(checkpoint.id)
        return into
    if not resume or checkpoint.run_id is None:
        return None
    new_run = registry.resume_run(
        checkpoint.run_id, checkpoint.id, name=name, job=job, tags=tags,
        optimizer_restored=optimizer_restored and bool(checkpoint.includes_optimizer))
    if registry.run(checkpoint.run_id).status not in FINAL_STATUSES:
        registry.run_handle(checkpoint.run_id).finish(
            "superseded", reason=f"resumed as {new_run.id}", superseded_by=new_run.id).wait()
    return new_run


class Rotation:
    """The live checkpoints a framework may delete by its own rule (HF ``save_total_limit``,
    Lightning ``save_top_k``), by path: once a path is gone, its checkpoint is retired with
    the reason, its bytes recorded ``already_gone``: retention, not lost lineage."""

    def __init__(self, registry: CheckpointRegistry) -> None:
        self.registry = registry
        self.paths: dict[str, Any] = {}  # path -> artifact id

    def add(self, path: Any, artifact_id: Any) -> None:
        """Track ``artifact_id`` at ``path``. A checkpoint tracked there before (an earlier run's,
        when training resumed from an older checkpoint and saves the same step again) had its
        bytes replaced: it is retired, its deletion recorded ``already_gone``."""
        previous = self.paths.get(str(path))
        if previous is not None and previous != artifact_id:
            self.registry.retire_artifact(previous, f"{path} was written again by checkpoint "
                                                    f"{artifact_id}", bytes_gone=True)
        self.paths[str(path)] = artifact_id

    def retire_missing(self, reason: str) -> list[Any]:
        """Retire the checkpoints whose path is gone (``reason``: ``{path}`` is filled in);
        returns their ids. Does not wait for the commits."""
        import os

        gone = [(path, artifact_id) for path, artifact_id in self.paths.items()
                if not os.path.exists(path)]
        for path, artifact_id in gone:
            del self.paths[path]
            self.registry.retire_artifact(artifact_id, reason.format(path=path), bytes_gone=True)
        return [artifact_id for _, artifact_id in gone]
