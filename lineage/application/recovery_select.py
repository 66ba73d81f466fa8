"""Choosing and checking the checkpoint a recovery resumes from (DESIGN §7).

``candidates`` lists checkpoints in the order a strategy tries them; ``check`` says whether one
can be used, and why not: it must be a checkpoint, still live (not retired or expired), its
file present with the recorded SHA-256 (local files, through the ArtifactStorage port; a remote
uri cannot be checked here and is taken as recorded), and it must hold optimizer state when an
exact resume (``restore_optimizer``) is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lineage.application.views import ArtifactView, LostSteps, RunView
from lineage.codec.step_read import BlockCodec, last_block
from lineage.codec.step_read import step_at as stored_step_at
from lineage.domain import ids
from lineage.errors import NotFoundError
from lineage.ports import ArtifactStorage

MAX_ANCESTRY = 20  # how many resumed-from links "latest" follows back


@dataclass(frozen=True)
class Check:
    """The verdict on one candidate. ``problem`` None means usable as asked; ``weights_only``
    means usable only without optimizer state; ``verified`` is (ok, observed digest, detail)
    when the bytes were hashed."""

    problem: str | None
    weights_only: bool = False
    verified: tuple[bool, str | None, str] | None = None


def lineage_checkpoints(queries: Any, view: RunView) -> list[tuple[UUID, int]]:
    """The checkpoints a run could resume from, newest first: its own, then the one it resumed
    from, then its predecessor's older ones, and so on up the resumed-from chain."""
    ordered: list[tuple[UUID, int]] = []
    seen: set[UUID] = set()
    current: RunView | None = view
    below: int | None = None
    for _ in range(MAX_ANCESTRY):
        if current is None:
            break
        own = [(artifact_id, step) for artifact_id, step in reversed(current.checkpoints)
               if below is None or step <= below]
        for artifact_id, step in sorted(own, key=lambda item: -item[1]):
            if artifact_id not in seen:
                seen.add(artifact_id)
                ordered.append((artifact_id, step))
        current, below = _predecessor(queries, current, ordered, seen)
    return ordered


def _predecessor(queries: Any, view: RunView, ordered: list[tuple[UUID, int]],
                 seen: set[UUID]) -> tuple[RunView | None, int | None]:
    if view.resumed_from is None or view.resumed_checkpoint is None:
        return None, None
    step = view.start_step
    if view.resumed_checkpoint not in seen:
        seen.add(view.resumed_checkpoint)
        ordered.append((view.resumed_checkpoint, step))
    try:
        return queries.run(view.resumed_from), step
    except NotFoundError:
        return None, None


def candidates(queries: Any, view: RunView, strategy: str,
               checkpoint_id: UUID | None) -> tuple[list[tuple[UUID, int | None]], str]:
    """(checkpoint ids with their steps, in the order to try; a note on how they were chosen).

    Retired and expired ones are listed too; the executor skips them after the first."""
    if checkpoint_id is not None:
        return [(checkpoint_id, None)], "the checkpoint asked for"
    chain: list[tuple[UUID, int | None]] = list(lineage_checkpoints(queries, view))
    if strategy == "best":
        if view.best_checkpoint is None:
            return chain, "no best checkpoint recorded: latest first"
        best_step = next((step for artifact_id, step in chain
                          if artifact_id == view.best_checkpoint), None)
        older = [(artifact_id, step) for artifact_id, step in chain
                 if artifact_id != view.best_checkpoint
                 and (best_step is None or (step is not None and step <= best_step))]
        return [(view.best_checkpoint, best_step), *older], "best checkpoint, then older ones"
    return chain, "latest checkpoint, then older ones"


def check(artifact: ArtifactView, storage: ArtifactStorage, restore_optimizer: bool) -> Check:
    """Whether ``artifact`` can be resumed from; reads the bytes of local files (hashing them),
    so it is slow for big checkpoints and never runs on a training thread."""
    if artifact.type != "checkpoint":
        return Check(f"is a {artifact.type}, not a checkpoint")
    if artifact.status != "live":
        return Check(f"is {artifact.status}" + (" (its bytes were deleted)" if artifact.deletion
                                                 == "deleted" else ""))
    verified = None
    if storage.manages(artifact.uri):
        verified = _verify(artifact, storage)
        if not verified[0]:
            return Check(verified[2], verified=verified)
    if restore_optimizer and not artifact.includes_optimizer:
        return Check("holds weights only (no optimizer state) and restore_optimizer=True",
                     weights_only=True, verified=verified)
    return Check(None, verified=verified)


def _verify(artifact: ArtifactView, storage: ArtifactStorage) -> tuple[bool, str | None, str]:
    algorithm = artifact.checksum_algorithm or "sha256"
    try:
        observed = storage.digest(artifact.uri, algorithm)
    except OSError as error:
        return False, None, f"file {artifact.uri} cannot be read: {error}"
    if observed is None:
        return False, None, f"file {artifact.uri} is missing"
    if artifact.checksum is not None and observed != artifact.checksum:
        return False, observed, (f"file {artifact.uri} is corrupted: {algorithm} "
                                 f"{observed[:12]}... differs from the recorded "
                                 f"{artifact.checksum[:12]}...")
    return True, observed, f"{algorithm} matches the recorded digest"


def lost_steps(tracker: Any, run_id: UUID, after_step: int) -> LostSteps | None:
    """The steps ``run_id`` logged after ``after_step``: found by binary search over the step
    stream's versions (a few reads for a million steps), taking steps as non-decreasing."""
    stream = ids.step_stream_id(run_id)
    codec = BlockCodec(tracker.mapper)

    def step_at(version: int) -> int:
        found = stored_step_at(tracker.store, codec, stream, version)
        if found is None:
            raise LookupError(f"step stream {stream} has no version {version}")
        return found.step

    last = last_block(tracker.store, codec, run_id)
    if last is None:
        return None
    total = last.seq_to
    last_step = last.steps[-1]
    if last_step <= after_step:
        return None
    low, high = 1, total
    while low < high:
        middle = (low + high) // 2
        if step_at(middle) > after_step:
            high = middle
        else:
            low = middle + 1
    return LostSteps(step_at(low), last_step, total - low + 1)

