"""Lightning: ``LineageLogger``, a ``Logger`` that also registers ``ModelCheckpoint`` saves
(``lineage[lightning]``).

    trainer = lightning.Trainer(..., logger=LineageLogger(tracker))

What it records (global rank 0 only):

- the run, started at the first thing logged, its job spec holding the module's
  hyperparameters (``save_hyperparameters()``; a ``learning_rate``/``lr`` and ``batch_size``
  among them fill ``learning``) and ``job=`` if given;
- ``log_metrics``: the training metrics as a step (``epoch`` as the step's epoch; resources
  once per ``sample_every_s``), the validation ones (names starting with ``val``) as an
  evaluation at that step;
- each ``ModelCheckpoint`` save as it happens (``after_save_checkpoint``): the file registered
  as a ``pytorch`` checkpoint at the step it was saved (``includes_optimizer`` unless
  ``save_weights_only``; its monitor, mode and score in the metadata), then the best-k mapped to
  run-scoped aliases: ``best`` and ``top-1`` ... ``top-k`` in ``best_k_models`` order;
  a file ``ModelCheckpoint`` removed (``save_top_k``) is retired, bytes ``already_gone``;
- a resume: when ``fit(ckpt_path=...)`` restored a checkpoint (any path Lightning resolves,
  ``"last"`` included: the logger reads ``trainer.ckpt_path`` when Lightning hands it the
  module, in ``log_graph``, after the restore), the run is a new run resumed from that
  registered checkpoint (its SHA-256 must be the registered one; a file never registered, or
  changed since, is logged and recorded as a new run). ``resume_from=path`` names it
  explicitly (needed only with ``Trainer(enable_autolog_hparams=False)``, which skips
  ``log_graph``);
- ``finalize``: the run finished ``completed``, or ``failed`` with the exception Lightning
  was handling (its type and message recorded as the failure), or ``cancelled`` when a signal
  ended training.

Telemetry never breaks training: a failing call is logged once (``strict=True`` re-raises).
"""

from __future__ import annotations

import json
import logging
import sys
import weakref
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from lineage.integrations import recording
from lineage.integrations.hf_spec import numbers
from lineage.integrations.recording import CheckpointRegistry, GuardedHooks, Rotation
from lineage.integrations.resources import ResourceSampler

log = logging.getLogger(__name__)
__all__ = ["LineageLogger"]


class LineageLogger(GuardedHooks, Logger):
    """Records a Lightning ``Trainer``'s training as a lineage run (see the module docstring).

    ``tracker`` (default ``lineage.Tracker()``, closed in ``finalize``), ``name`` (the run's
    name, default ``"lightning"``), ``tags``, ``job`` (more job spec fields, e.g. a
    ``checkpoint_policy``), ``sample_every_s`` (resource sampler interval), ``resume_from``
    (the checkpoint ``fit`` resumes from; by default the one Lightning restored,
    ``trainer.ckpt_path``: the run is recorded as resumed from that registered checkpoint,
    whose bytes are checked).
    """

    def __init__(self, tracker: CheckpointRegistry | None = None, *, name: str = "lightning",
                 tags: dict[str, Any] | None = None, job: dict[str, Any] | None = None,
                 sample_every_s: float = 30.0, strict: bool = False,
                 resume_from: str | Path | None = None) -> None:
        super().__init__()
        self._resume_from = None if resume_from is None else Path(resume_from).resolve()
        self.tracker: Any = tracker
        self._owns_tracker = tracker is None
        self._name, self._tags, self._job = name, tags, dict(job or {})
        self._hparams: dict[str, Any] = {}
        self.sampler = ResourceSampler(sample_every_s)
        self.strict = strict
        self.run: Any = None
        self.errors = 0
        self.rotation: Rotation | None = None
        self._trainer: Any = None  # a weak reference, from log_graph

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return "" if self.run is None else str(self.run.id)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        values = dict(vars(params) if hasattr(params, "__dict__") and not isinstance(params, dict)
                      else params or {})
        self._hparams.update(json.loads(json.dumps(values, default=str)))

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning hands the module over here once per ``fit``, after it restored the
        checkpoint it resumes from: keep its trainer, to read ``trainer.ckpt_path``."""
        trainer = getattr(model, "_trainer", None)
        self._trainer = None if trainer is None else weakref.ref(trainer)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._guard("log_metrics", self._log_metrics, metrics, step)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._guard("after_save_checkpoint", self._register, checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self.run is not None:
            self._guard("finalize", self._finish, status, sys.exc_info()[1])
        if self._owns_tracker and self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    # -- what the hooks do -------------------------------------------------------------------

    def _start(self) -> Any:
        if self.run is None:
            if self.tracker is None:
                import lineage
                self.tracker = lineage.Tracker()
            resumed = self._resumed_checkpoint()
            if resumed is not None:
                self.run = recording.record_resume(self.tracker, resumed, name=self._name,
                                         job=self._job_spec(), tags=self._tags,
                                         optimizer_restored=bool(resumed.includes_optimizer))
            if self.run is None:
                self.run = self.tracker.start_run(self._name, job=self._job_spec(),
                                                  tags=self._tags)
            self.rotation = Rotation(self.tracker)
        return self.run

    def _resumed_checkpoint(self) -> Any:
        """The registered checkpoint at ``resume_from`` with the bytes it has now, or None
        (logged: a file never registered, or changed since, is no resume lineage can vouch
        for)."""
        path = self._resume_from or self._restored_path()
        if path is None:
            return None
        found = recording.registered_checkpoint(self.tracker, path)
        if found is None:
            log.warning("lineage: %s is not a registered checkpoint with these bytes: "
                        "recorded as a new run", path)
        return found

    def _restored_path(self) -> Path | None:
        """The checkpoint file the trainer restored (``trainer.ckpt_path``), if any."""
        trainer = None if self._trainer is None else self._trainer()
        restored = getattr(trainer, "ckpt_path", None)
        if restored is None or not Path(restored).is_file():  # a remote or hpc path: not ours
            return None
        return Path(restored).resolve()

    def _job_spec(self) -> dict[str, Any]:
        learning = {key: self._hparams[name] for key, names in (
            ("learning_rate", ("learning_rate", "lr")), ("batch_size", ("batch_size",)))
            for name in names if name in self._hparams}
        spec: dict[str, Any] = {"metadata": {"framework": "lightning",
                                             "hyperparameters": self._hparams}}
        if learning:
            spec["learning"] = learning
        spec.update(self._job)
        return spec

    def _log_metrics(self, metrics: dict[str, Any], step: int | None) -> None:
        run = self._start()
        values = numbers(metrics)
        step = int(step or 0)
        evaluation = {k: v for k, v in values.items() if k.startswith("val")}
        epoch = values.pop("epoch", None)
        training = {k: v for k, v in values.items() if k not in evaluation}
        if training or run.max_step is None or run.max_step < step:
            run.log_step(step, training, epoch=None if epoch is None else int(epoch),
                         resources=self.sampler.poll())
        if evaluation:
            run.log_eval(step, evaluation)

    def _register(self, callback: Any) -> None:
        run = self._start()
        path = getattr(callback, "_last_checkpoint_saved", None) or callback.best_model_path
        step = int(getattr(callback, "_last_global_step_saved", run.max_step or 0))
        if run.max_step is None or run.max_step < step:
            run.log_step(step, {})  # a checkpoint follows a step of its run
        score = callback.best_k_models.get(path)
        ref = run.save_checkpoint(
            path, step=step, format="pytorch",
            includes_optimizer=not getattr(callback, "save_weights_only", False),
            metadata={"framework": "lightning", "monitor": callback.monitor,
                      "mode": callback.mode, "save_top_k": callback.save_top_k,
                      "score": None if score is None else float(score)})
        if self.rotation is not None:
            self.rotation.add(Path(path).resolve(), ref.id)
        self._move_aliases(callback)

    def _move_aliases(self, callback: Any) -> None:
        """``best`` and ``top-N`` (run-scoped) to the checkpoints ``best_k_models`` ranks."""
        if self.rotation is None:
            return
        self.rotation.retire_missing("ModelCheckpoint removed {path} (save_top_k="
                                     f"{callback.save_top_k})")
        known = self.rotation.paths
        ranked = sorted(callback.best_k_models.items(), key=lambda item: float(item[1]),
                        reverse=callback.mode == "max")
        scope = str(self.run.id)
        for rank, (path, _) in enumerate(ranked, start=1):
            artifact_id = known.get(str(Path(path).resolve()))
            if artifact_id is not None:
                self.tracker.move_alias(artifact_id, f"top-{rank}", scope=scope)
                if rank == 1:
                    self.tracker.move_alias(artifact_id, "best", scope=scope)

    def _finish(self, status: str, error: BaseException | None) -> None:
        run, self.run = self.run, None
        if self.rotation is not None:
            self.rotation.retire_missing("ModelCheckpoint removed {path}")
        if status == "failed":
            self._end_run(self.tracker, run, "failed", error)
        else:
            self._end_run(self.tracker, run, "completed" if status == "success" else "cancelled",
                          reason=None if status == "success" else f"lightning: {status}")
