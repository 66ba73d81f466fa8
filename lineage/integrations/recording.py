"""What the integrations record through, beyond a run handle: the registry and resumes.

``CheckpointRegistry`` is the narrow port an integration needs to look checkpoints up and
record a resume; ``lineage.Tracker`` is one. ``record_resume`` is the one way every integration
records "training goes on from this checkpoint", ``registered_checkpoint`` the one way a file
on disk is matched to its registration, ``GuardedHooks`` the one way a framework hook keeps a
telemetry failure out of training and ends its run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from lineage.application.artifacts import sha256_file
from lineage.application.views import ArtifactView
from lineage.domain.run import FINAL_STATUSES

log = logging.getLogger("lineage.integrations")


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


def registered_checkpoint(registry: CheckpointRegistry, path: Path, *, digest: str | None = None,
                          run: Any = None) -> ArtifactView | None:
    """The newest checkpoint registered at ``path`` (resolved) with the bytes it holds now
    (``digest``: their SHA-256 hex when already known, else the file is hashed), of ``run``
    when given; None when there is none."""
    path = path.resolve()
    if digest is None:
        _, digest = sha256_file(path)
    found = [view for view in registry.artifacts(type="checkpoint", run=run,
                                                 checksum=f"sha256:{digest}")
             if view.uri == path.as_uri()]
    return found[-1] if found else None


class GuardedHooks:
    """What a framework callback shares: telemetry never breaks training (STYLE 9) and one way
    to end its run. ``_guard`` runs a hook's work, logs the first failure and counts them all
    in ``errors`` (``strict`` re-raises, for tests); ``_end_run`` records the end."""

    strict: bool = False
    errors: int = 0

    def _guard(self, hook: str, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except Exception as error:  # telemetry never breaks training (STYLE 9)
            self._failed(hook, error)
            return None

    def _failed(self, hook: str, error: Exception) -> None:
        self.errors += 1
        if self.strict:
            raise error
        if self.errors == 1:
            log.warning("lineage: %s failed; training goes on (%s)", hook,
                        json.dumps(repr(error))[:500])

    @staticmethod
    def _end_run(tracker: Any, run: Any, status: str, error: BaseException | None = None,
                 reason: str | None = None) -> None:
        """Finish ``run`` with ``status``; ``failed`` records the failure first (``error``'s
        type and message, ``TrainingFailed`` without one); the reason defaults to the error.
        Then waits until the tracker committed it."""
        if error is not None and reason is None:
            reason = f"{type(error).__name__}: {error}"
        if status == "failed":
            kind = "TrainingFailed" if error is None else type(error).__name__
            run.record_failure(kind, "" if error is None else str(error)[:8192],
                               step=run.max_step)
            reason = reason or kind
        run.finish(status, reason=None if reason is None else reason[:8192])
        tracker.flush()


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
