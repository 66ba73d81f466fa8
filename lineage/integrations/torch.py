"""PyTorch: checkpoints that are recorded as they are written, and resumes that are recorded as
they are loaded (``pip install 'lineage[torch]'``).

    from lineage.integrations.torch import load_checkpoint, save_checkpoint

    save_checkpoint(run, f"ckpt/step-{step}.safetensors", model=model, optimizer=opt,
                    scheduler=sched, step=step)                   # instead of torch.save(...)
    loaded = load_checkpoint(tracker, path, model, optimizer=opt, scheduler=sched)
    run = loaded.run                                               # the new run, resumed from it

One safetensors file per checkpoint (see ``lineage.integrations.torch_file``): the weights, the
optimizer, scheduler and RNG state, written atomically and hashed while written, then registered
with that digest (the file is not read again) and ``includes_optimizer``. Loading reads it once,
checks its SHA-256 against the registry before anything is loaded into the model, restores
everything, and records the resume: a new run linked to the old run and the checkpoint
(``tracker.resume_run``), or, with ``into=run``, the checkpoint as an input of a run you started.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import torch

from lineage.application.handles import ArtifactRef
from lineage.application.views import ArtifactView
from lineage.errors import ChecksumMismatchError, NotFoundError, RunFinishedError, ValidationError
from lineage.integrations import torch_file
from lineage.integrations.background_saves import SAVES, Handed, PendingSave, committed
from lineage.integrations.recording import (
    CheckpointRegistry,
    record_resume,
    registered_checkpoint,
)

__all__ = ["Loaded", "PendingSave", "Written", "load_checkpoint", "save_checkpoint", "wait_for_saves",
           "write_checkpoint"]


class CheckpointRecorder(Protocol):
    """What ``save_checkpoint`` records through: a run handle."""

    id: UUID
    finished_status: str | None

    def finish_after(self, wait: Any) -> None: ...

    def save_checkpoint(self, path: str | os.PathLike[str], *, step: int, format: str | None = ...,
                        includes_optimizer: bool = ..., metadata: dict[str, Any] | None = ...,
                        checksum: str | None = ...) -> ArtifactRef: ...


@dataclass(frozen=True)
class Written:
    """A checkpoint file as written: where, how many bytes, and their SHA-256 (hex)."""

    path: Path
    size: int
    sha256: str


@dataclass
class Loaded:
    """What ``load_checkpoint`` restored: the step and epoch saved, the extra state, the
    registered checkpoint (None when loaded without a registry), and the run that records the
    resume (the new run, or ``into``)."""

    step: int | None
    epoch: int | None
    sha256: str
    optimizer_restored: bool
    extra: Any = None
    checkpoint: ArtifactView | None = None
    run: Any = None
    metadata: dict[str, str] = field(default_factory=dict)


def write_checkpoint(path: str | os.PathLike[str], *, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                     step: int | None = None, epoch: int | None = None, extra: Any = None,
                     rng: bool = True, run_id: UUID | None = None) -> Written:
    """Write a checkpoint file atomically (no lineage recorded); see ``save_checkpoint``.
    Raises ValidationError (naming the place) for state that cannot be stored, before the
    target is touched; any error leaves the target as it was."""
    target = _target(path)
    tensors, meta = _capture(model, optimizer, scheduler, step, epoch, extra, rng, run_id)
    return Written(target, *torch_file.write(target, tensors, meta))


def save_checkpoint(run: CheckpointRecorder, path: str | os.PathLike[str], *,
                    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, step: int, epoch: int | None = None,
                    extra: Any = None, rng: bool = True, metadata: dict[str, Any] | None = None,
                    background: bool = False) -> Any:
    """Write the checkpoint (``write_checkpoint``) and register it on ``run`` as a
    ``safetensors`` checkpoint at ``step`` with the digest computed while writing,
    ``includes_optimizer`` when an optimizer was saved; the run's ``latest`` moves to it and its
    retention policy applies. Returns the ``ArtifactRef`` once the file is durable (its
    registration is queued: ``.wait()`` to block until committed).

    ``background=True``: the state is copied to the CPU now (a memory copy) and the file is
    written, fsynced, renamed and registered on a background thread, in order; returns a
    ``PendingSave`` at once (``.wait()`` gives the committed ArtifactRef; the registration is
    committed with the writer's next batch, or at once when waited for). ``run.finish()``
    waits for the run's pending saves first, so none is lost to the finish. A save whose run
    was finished anyway (through another handle) is refused with RunFinishedError from its
    ``wait()`` and leaves no file behind: none is written, or the one written is removed.
    """
    target = _target(path)
    tensors, meta = _capture(model, optimizer, scheduler, step, epoch, extra, rng, run.id)
    details = {"writer": "lineage.integrations.torch", "scheduler": scheduler is not None,
               "rng": rng, **(metadata or {})}

    def finish(snapshot: dict[str, torch.Tensor]) -> ArtifactRef:
        _, digest = torch_file.write(target, snapshot, meta)  # vouched for: not read again
        return run.save_checkpoint(target, step=step, format="safetensors",
                                   includes_optimizer=optimizer is not None, metadata=details,
                                   checksum=f"sha256:{digest}")

    if not background:
        return finish(tensors)
    snapshot = {name: tensor.detach().to("cpu", copy=True) for name, tensor in tensors.items()}
    return SAVES.submit(lambda: _unless_finished(run, target, lambda: finish(snapshot)),
                        owner=run, what=f"the checkpoint save to {target} (step {step})")


def _unless_finished(run: CheckpointRecorder, target: Path, save: Any) -> Handed:
    """Run ``save`` (write, then queue the registration) on the saves' thread unless ``run``
    finished meanwhile. The registration is not waited for here: the writer commits it with its
    next batch (no commit of its own) while this thread moves on; the save is done then. A file
    written but refused by a finished run is removed (no unregistered bytes are left behind)."""
    if run.finished_status is not None:
        raise RunFinishedError(run.id, run.finished_status, "checkpoints")
    try:
        ref = save()
    except RunFinishedError:
        target.unlink(missing_ok=True)
        raise
    written = _identity(target)  # the file this save wrote (a later save may replace it)

    def remove(error: BaseException) -> None:  # on the writer thread, when the run refused it
        if isinstance(error, RunFinishedError) and written is not None \
                and _identity(target) == written:
            target.unlink(missing_ok=True)

    return committed(ref, remove)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file is at ``path`` (device, inode, modification time), None when none is."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino, found.st_mtime_ns


def wait_for_saves(timeout: float | None = None) -> None:
    """Block until every ``save_checkpoint(background=True)`` handed over so far finished."""
    SAVES.wait(timeout)


def _target(path: str | os.PathLike[str]) -> Path:
    target = Path(path).expanduser().resolve()
    if not target.parent.is_dir():
        raise ValidationError("path", f"folder {target.parent} does not exist", str(path))
    return target


def _capture(model: torch.nn.Module, optimizer: Any, scheduler: Any, step: int | None,
             epoch: int | None, extra: Any, rng: bool,
             run_id: UUID | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors to write (the model's, then the rest under ``__lineage__/``) and the header
    metadata (every other value, as JSON now: later changes to the state do not reach it)."""
    tensors: dict[str, torch.Tensor] = dict(model.state_dict())
    clash = next((name for name in tensors if name.startswith(torch_file.PREFIX)), None)
    if clash is not None:
        raise ValidationError("model", f"has a tensor named {clash!r}; names starting with "
                                       f"{torch_file.PREFIX!r} are reserved")
    state = {"step": step, "epoch": epoch,
             "optimizer": None if optimizer is None else optimizer.state_dict(),
             "scheduler": None if scheduler is None else scheduler.state_dict(),
             "rng": _rng_state() if rng else None, "extra": extra}
    flat = torch_file.flatten(state, "state", tensors)
    meta = {"format": torch_file.FORMAT, "lineage.state": json.dumps(flat, allow_nan=True)}
    if run_id is not None:
        meta["lineage.run_id"] = str(run_id)
    return tensors, meta


def load_checkpoint(registry: CheckpointRegistry | None, source: Any, model: torch.nn.Module, *,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    map_location: str | torch.device = "cpu", strict: bool = True,
                    restore_rng: bool = True, resume: bool = True, into: Any = None,
                    name: str | None = None) -> Loaded:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``,
    ``scheduler``, the RNGs) and record the resume.

    ``source``: a path, or a registered checkpoint (id, ``ArtifactRef``, ``ArtifactView``).
    With a ``registry`` (the tracker), the file's SHA-256 (computed in the one read, which
    fills the tensors directly: peak memory is the tensors, not the file's bytes as well) must
    equal the registered one, else ChecksumMismatchError before the model is touched; a file
    that is not a safetensors file is a ValidationError saying what is wrong; a path must be
    a registered checkpoint of the run that wrote it (NotFoundError otherwise). Then, with
    ``into`` (a run handle), the checkpoint becomes that run's input and its next checkpoint
    derives from it; else, when ``resume``, a new run (``name``, default the old run's) is
    started that resumes the old run from the checkpoint (``optimizer_restored`` when an
    optimizer was given and saved), and the old run, if still open, is finished
    ``superseded``. ``registry=None`` loads without checking or recording anything.
    """
    if registry is None and not _is_path(source):
        raise ValidationError("source", "a checkpoint named by id needs the tracker (registry=)",
                              str(source))
    view = _registered(registry, source) if registry is not None and not _is_path(source) else None
    path = _local_path(view.uri) if view is not None else Path(os.fspath(source)).expanduser().resolve()
    contents = torch_file.read(path)
    digest, meta, tensors = contents.digest, contents.metadata, contents.tensors
    if registry is not None and view is None and (contents.problem is None or meta):
        # a file cut short after its header still names its run: reported as changed below
        view = _registered_file(registry, path, meta, digest)
    if view is not None and view.checksum != digest:
        raise ChecksumMismatchError("checkpoint", f"{view.checksum_algorithm}:{view.checksum}",
                                    f"sha256:{digest}", path.as_uri())
    if contents.problem is not None:
        raise ValidationError("source", f"{path} is not a safetensors file: {contents.problem}",
                              str(path))
    state = torch_file.unflatten(json.loads(meta.get("lineage.state", "{}")), tensors)
    device_tensors = {k: v.to(map_location) for k, v in torch_file.weights_of(tensors).items()}
    model.load_state_dict(device_tensors, strict=strict)
    restored = optimizer is not None and state.get("optimizer") is not None
    if restored:
        optimizer.load_state_dict(state["optimizer"])  # type: ignore[union-attr]
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state.get("rng"):
        _set_rng_state(state["rng"])
    loaded = Loaded(state.get("step"), state.get("epoch"), digest, restored, state.get("extra"),
                    view, None, meta)
    if registry is not None and view is not None:
        loaded.run = record_resume(registry, view, optimizer_restored=restored, resume=resume,
                                   into=into, name=name)
    return loaded


# -- helpers ----------------------------------------------------------------------------------

def _is_path(source: Any) -> bool:
    return isinstance(source, str | os.PathLike) and not _looks_like_id(source)


def _looks_like_id(source: Any) -> bool:
    try:
        UUID(str(source))
    except ValueError:
        return False
    return True


def _registered(registry: CheckpointRegistry, source: Any) -> ArtifactView:
    view = source if isinstance(source, ArtifactView) else registry.artifact(
        getattr(source, "id", source))
    if view.type != "checkpoint":
        raise ValidationError("source", f"artifact {view.id} is a {view.type}, not a checkpoint")
    return view


def _registered_file(registry: CheckpointRegistry, path: Path, meta: Mapping[str, str],
                     digest: str) -> ArtifactView:
    """The checkpoint registered at this file by the run that wrote it: the one with these
    bytes, else (the file changed since) the newest one, whose checksum will not match."""
    run_id = meta.get("lineage.run_id")
    if run_id is None:
        raise NotFoundError(f"{path} was not written by save_checkpoint on a run (no run id in "
                            "it): pass registry=None to load it unchecked")
    same = registered_checkpoint(registry, path, digest=digest, run=run_id)
    if same is not None:
        return same
    uri, offset, found = path.as_uri(), 0, None
    while page := registry.artifacts(type="checkpoint", run=run_id, limit=1000, offset=offset):
        found = next((view for view in reversed(page) if view.uri == uri), found)
        offset += len(page)
    if found is None:
        raise NotFoundError(f"no checkpoint of run {run_id} is registered at {uri}")
    return found


def _local_path(uri: str) -> Path:
    if not uri.startswith("file://"):
        raise ValidationError("source", f"checkpoint {uri} is not a local file", uri)
    from urllib.parse import unquote, urlparse
    return Path(unquote(urlparse(uri).path))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = sys.modules.get("numpy")
    if "numpy" in state and numpy is not None:
        numpy.random.set_state(state["numpy"])
