"""Hugging Face Transformers: ``LineageCallback``, a ``TrainerCallback`` (``lineage[transformers]``).

    trainer = Trainer(model=model, args=args, ..., callbacks=[LineageCallback(tracker)])

What it records (rank 0 only):

- ``on_train_begin``: a run whose job spec comes from ``TrainingArguments`` and the model
  (``lineage.integrations.hf_spec``: model, PEFT adapter, learning, checkpoint policy from
  ``save_strategy``/``save_steps``, validation from ``eval_strategy``). A
  trainer resumed (``train(resume_from_checkpoint=...)``: it starts past step 0) records a new
  run resumed from the registered checkpoint folder it loaded, checked against its manifest.
- ``on_log``: a step with the logged numbers (loss, grad_norm, learning_rate, epoch) and, once
  per ``sample_every_s``, the process's resources.
- ``on_save``: the checkpoint folder as one artifact: a manifest written into it
  (``lineage-manifest.json``: each file's path, size and SHA-256), registered as the
  checkpoint (its SHA-256 is the folder's checksum; ``includes_optimizer`` when the folder holds
  optimizer state). The hashing, the manifest and the registration run on the background
  saves thread (``lineage.integrations.background_saves``), off the training thread; the
  callback waits for them before the Trainer can touch older folders again (before its next
  save, an evaluation, an epoch's end, the end of training) and ``run.finish()`` waits for them
  too, so every folder is registered with the checksum of the bytes the Trainer wrote.
  The Trainer alone deletes its folders (``save_total_limit``, recorded in
  the job's metadata, not as the policy's ``keep_last``: lineage's retention would delete files
  in folders the Trainer keeps): each folder it deleted is retired with that reason, its
  deletion recorded ``already_gone``. The files are read once to hash them, straight after
  the Trainer wrote them (page cache): its writers (``safetensors``, ``torch.save``) hand no
  bytes to a caller (``bench/hf_checkpoint_hash.py`` measures the read and what ``on_save``
  costs the training thread).
- ``on_evaluate``: an evaluation, recorded right after the checkpoint of the same step, so
  ``metric_for_best_model``/``greater_is_better`` (the policy's ``best_metric``/``best_mode``)
  move the ``best`` alias to the checkpoint the Trainer calls best.
- ``on_train_end``: the run finished ``completed``. An exception that escapes ``train()``
  reaches ``sys.excepthook``: the run records the failure and ends ``failed`` (``cancelled`` on
  Ctrl-C); code that catches it calls ``callback.record_exception(error)``.

Telemetry never breaks training: a hook that fails logs once and training goes on
(``strict=True`` re-raises, for tests).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from transformers import TrainerCallback

from lineage.integrations import hf_spec
from lineage.integrations.background_saves import SAVES, PendingSave, committed
from lineage.integrations.files import MANIFEST_NAME, manifest_differences, write_manifest
from lineage.integrations.recording import (
    CheckpointRegistry,
    GuardedHooks,
    Rotation,
    record_resume,
    registered_checkpoint,
)
from lineage.integrations.resources import ResourceSampler

log = logging.getLogger(__name__)
__all__ = ["LineageCallback"]
_OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin", "optimizer.safetensors")


class LineageCallback(GuardedHooks, TrainerCallback):
    """Records a ``Trainer``'s training as a lineage run (see the module docstring).

    ``tracker``: where to record (default: ``lineage.Tracker()``, closed at the end of
    training); ``name``: the run's name (default ``args.run_name`` or the output folder's);
    ``tags``: the run's tags; ``sample_every_s``: the resource sampler's interval.
    """

    def __init__(self, tracker: CheckpointRegistry | None = None, *, name: str | None = None,
                 tags: dict[str, Any] | None = None, sample_every_s: float = 30.0,
                 strict: bool = False) -> None:
        self.tracker: Any = tracker
        self._owns_tracker = tracker is None
        self.name, self.tags, self.strict = name, tags, strict
        self.sampler = ResourceSampler(sample_every_s)
        self.run: Any = None
        self.errors = 0
        self._evaluation: tuple[int, dict[str, float]] | None = None
        self._previous_hook: Any = None
        self._rotation: Rotation | None = None  # the folders save_total_limit may delete
        self._saving: PendingSave | None = None  # the folder being hashed and registered

    # -- TrainerCallback hooks ---------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._guard("on_train_begin", self._begin, args, state, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
               **kwargs: Any) -> None:
        if self.run is not None:
            self._guard("on_log", self._log, state, logs or {})

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None,
                    **kwargs: Any) -> None:
        if self.run is not None:
            self._flush_evaluation()  # waits for the save in flight: a save may follow
            self._evaluation = (state.global_step, hf_spec.numbers(metrics))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None:
            self._guard("on_save", self._save, args, state)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._evaluation is not None:
            self._flush_evaluation()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_save:  # the Trainer saves next, and may delete older folders
            self._settle()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._settle()  # an epoch's end may save

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None:
            self._flush_evaluation()
            if self._rotation is not None:  # with a limit of 1 the Trainer ends on its best
                self._guard("on_train_end", self._rotation.retire_missing,
                            "the Trainer deleted {path} at the end (save_total_limit=1)")
            self._end("completed", None)

    def record_exception(self, error: BaseException) -> None:
        """Record ``error`` as the run's failure and end it (``cancelled`` for Ctrl-C)."""
        if self.run is not None:
            self._settle()
            self._end("cancelled" if isinstance(error, KeyboardInterrupt) else "failed", error)

    # -- what the hooks do -------------------------------------------------------------------

    def _begin(self, args: Any, state: Any, model: Any) -> None:
        if self.tracker is None:
            import lineage
            self.tracker = lineage.Tracker()
        job = hf_spec.job_spec(args, model, state.max_steps or None)
        name = self.name or args.run_name or Path(args.output_dir).name
        resumed = self._resumed_from(args, state) if state.global_step > 0 else None
        if resumed is not None:
            view, differences = resumed
            tags = {**(self.tags or {}), "resume_verified": "; ".join(differences) or "ok"}
            self.run = record_resume(self.tracker, view, name=name, job=job, tags=tags,
                                     optimizer_restored=not args.save_only_model)
            self._rotation = Rotation(self.tracker)
            self._rotation.paths.update(self._live_folders(view.run_id))
        if self.run is None:
            self.run = self.tracker.start_run(name, job=job, tags=self.tags)
        if self._rotation is None:
            self._rotation = Rotation(self.tracker)
        self._previous_hook, sys.excepthook = sys.excepthook, self._excepthook

    def _resumed_from(self, args: Any, state: Any) -> tuple[Any, list[str]] | None:
        """The registered checkpoint the Trainer resumed from (the folder of its step), and
        how the folder differs from its manifest; None when it was never registered."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        manifest = folder / MANIFEST_NAME
        if not manifest.is_file():
            log.warning("lineage: resumed from %s, which no LineageCallback registered: "
                        "recorded as a new run", folder)
            return None
        view = registered_checkpoint(self.tracker, manifest)
        if view is None:
            return None
        differences = manifest_differences(folder)
        if differences:
            log.warning("lineage: %s differs from its manifest: %s", folder, differences)
        return view, differences

    def _live_folders(self, run_id: Any) -> dict[str, Any]:
        """The live checkpoint folders of ``run_id`` and of the runs it resumed from."""
        folders: dict[str, Any] = {}
        seen: set[Any] = set()
        while run_id is not None and run_id not in seen and len(seen) < 100:
            seen.add(run_id)
            for view in self.tracker.artifacts(type="checkpoint", run=run_id, status="live",
                                               limit=10_000):
                if "directory" in view.metadata:
                    folders[view.metadata["directory"]] = view.id
            run_id = self.tracker.run(run_id).resumed_from
        return folders

    def _log(self, state: Any, logs: dict[str, Any]) -> None:
        if "train_runtime" in logs:  # the end summary, no step: the Trainer may delete
            self._settle()           # folders next (save_total_limit=1)
            return
        if any(key.startswith("eval_") for key in logs):
            return  # evaluations come through on_evaluate
        metrics = hf_spec.numbers(logs)
        epoch = metrics.get("epoch")
        self.run.log_step(state.global_step, metrics,
                          epoch=None if epoch is None else int(epoch),
                          resources=self.sampler.poll())

    def _save(self, args: Any, state: Any) -> None:
        """On the training thread: the step the checkpoint follows, then the folder handed to
        the saves thread with the evaluation of its step (recorded after it, for ``best``)."""
        folder = (Path(args.output_dir) / f"checkpoint-{state.global_step}").resolve()
        if not folder.is_dir():
            log.warning("lineage: the Trainer saved no folder at %s; nothing registered", folder)
            return
        run, step = self.run, state.global_step
        if run.max_step is None or run.max_step < step:
            run.log_step(step, {})  # a checkpoint follows a step of its run
        evaluation, self._evaluation = self._evaluation, None
        limit = args.save_total_limit
        self._settle()
        self._saving = SAVES.submit(lambda: self._register(run, folder, step, limit, evaluation),
                                    owner=run, what=f"registering checkpoint folder {folder}")

    def _register(self, run: Any, folder: Path, step: int, limit: Any,
                  evaluation: tuple[int, dict[str, float]] | None) -> Any:
        """On the saves thread: hash the folder into its manifest, register it, retire the
        folders the Trainer deleted, record the evaluation of its step (also when the folder
        could not be registered); done once the writer commits the registration."""
        try:
            path, digest, files = write_manifest(folder)
            names = {Path(entry["path"]).name for entry in files}
            ref = run.save_checkpoint(
                path, step=step, checksum=f"sha256:{digest}",
                format="safetensors" if any(n.endswith(".safetensors") for n in names)
                else "pytorch",
                includes_optimizer=bool(names.intersection(_OPTIMIZER_FILES)),
                metadata={"framework": "transformers", "directory": str(folder),
                          "files": len(files), "bytes": sum(entry["size"] for entry in files)})
            if self._rotation is not None:
                self._rotation.add(folder, ref.id)
                self._rotation.retire_missing("the Trainer deleted {path} (save_total_limit="
                                              f"{limit})")
        finally:
            if evaluation is not None:
                run.log_eval(*evaluation)
        return committed(ref)

    def _settle(self) -> None:
        """Wait for the folder in flight on the saves thread (its failure is a hook's)."""
        saving, self._saving = self._saving, None
        if saving is not None:
            self._guard("on_save", saving.wait)

    def _flush_evaluation(self) -> None:
        self._settle()  # the checkpoint of that step first, so ``best`` can move to it
        if self._evaluation is not None and self.run is not None:
            step, metrics = self._evaluation
            self._evaluation = None
            self._guard("on_evaluate", self.run.log_eval, step, metrics)

    def _end(self, status: str, error: BaseException | None) -> None:
        run, self.run = self.run, None
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_hook
        try:
            self._end_run(self.tracker, run, status, error)
        except Exception as failure:  # telemetry never breaks training (STYLE 9)
            self._failed("on_train_end", failure)
        finally:
            if self._owns_tracker:
                self.tracker.close()
                self.tracker = None

    def _excepthook(self, kind: type[BaseException], error: BaseException,
                    trace: TracebackType | None) -> None:
        previous = self._previous_hook or sys.__excepthook__
        self.record_exception(error)
        previous(kind, error, trace)
