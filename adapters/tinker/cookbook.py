"""tinker-cookbook log directories into the lineage: ``import_cookbook_log`` (and
``lineage import tinker-cookbook LOG_PATH [--follow]``).

A cookbook run writes ``config.json``, ``metrics.jsonl`` (``{"step": n, ...}``),
``checkpoints.jsonl`` (``CheckpointRecord``: ``name``, ``batch``, ``epoch``, ``final``,
``state_path``, ``sampler_path``, extra keys) and ``timing_spans.jsonl`` (``{"step", "spans"}``).
Re-running the same command on the same log path resumes it as a *new* Tinker training run
from the last record with a ``state_path``, appending to the same files. So:

- each process is a segment: a new one begins where a ``metrics.jsonl`` step does not follow
  the previous one; its Tinker run is the n-th distinct run named by the checkpoint paths;
- segment k is a run (id derived from the log path and k: importing again changes nothing;
  steps carry derived event ids); segment k > 0 resumes segment k-1 from the checkpoint the
  cookbook resumed from (the last with a ``state_path``), with the optimizer, at its batch;
  the earlier run is finished ``superseded``; a segment with a ``final`` record ``completed``;
- a checkpoint is recorded at its ``batch`` (the cookbook's step index), with the record kept
  in its metadata. The SL loop labels a checkpoint with the batch it has just applied and
  resumes *at* that batch (tinker-cookbook #935): the resumed run's job metadata says which of
  the old run's steps it redoes (``cookbook.resume.steps_redone``), and its first step repeats
  one of the old run's. The ``final`` record's
  ``batch``/``epoch`` are not a position (#367: ``batch=0``): it is recorded at the segment's
  last step, with ``label_mismatch`` saying so.

Idempotent: ids come from the source, so a second import (or each ``--follow`` pass) records
only what is new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from lineage.domain import ids
from lineage.errors import RunExistsError, ValidationError


@dataclass
class Segment:
    """One cookbook process on the log path: its steps, timings and checkpoint records."""

    index: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[int, dict[str, float]] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    tinker_run: str | None = None

    @property
    def last_step(self) -> int | None:
        return self.steps[-1]["step"] if self.steps else None


@dataclass(frozen=True)
class ImportResult:
    runs: list[UUID]
    steps: int  # step records read (a re-import reads them again and stores nothing)
    checkpoints: int


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of ``path`` (a torn last line, still being written, is left for
    the next pass); a missing file is empty."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def segments_of(log_path: Path) -> list[Segment]:
    """Split the log directory into segments (see the module docstring)."""
    segments = _split(read_jsonl(log_path / "metrics.jsonl"))
    for segment, timed in zip(segments, _split(read_jsonl(log_path / "timing_spans.jsonl")),
                              strict=False):
        for record in timed.steps:
            spans = record.get("spans") or []
            segment.timings[record["step"]] = {
                str(span["name"]): float(span.get("duration") or 0.0) for span in spans}
    runs: list[str] = []
    for record in read_jsonl(log_path / "checkpoints.jsonl"):
        path = record.get("state_path") or record.get("sampler_path") or ""
        run = path.removeprefix("tinker://").split("/")[0]
        if run not in runs:
            runs.append(run)
        while len(segments) < len(runs):
            segments.append(Segment(len(segments)))
        segment = segments[runs.index(run)]
        segment.tinker_run = run
        segment.checkpoints.append(record)
    return segments


def _split(records: list[dict[str, Any]]) -> list[Segment]:
    segments: list[Segment] = []
    previous: int | None = None
    for record in records:
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValidationError("step", "every metrics.jsonl record needs an integer step", step)
        if previous is None or step <= previous:
            segments.append(Segment(len(segments)))
        segments[-1].steps.append(record)
        previous = step
    return segments


class CookbookImporter:
    """Imports one log directory into ``tracker``; ``import_once`` may be called again and again
    (``--follow``): what is already recorded is skipped."""

    def __init__(self, tracker: Any, log_path: str | Path, *, name: str | None = None) -> None:
        self.tracker = tracker
        self.log_path = Path(log_path).resolve()
        if not self.log_path.is_dir():
            raise ValidationError("log_path", "must be a tinker-cookbook log directory",
                                  str(log_path))
        self.name = name or f"cookbook {self.log_path.name}"
        self.key = f"tinker-cookbook:{self.log_path}"

    def import_once(self) -> ImportResult:
        config = self._config()
        segments = segments_of(self.log_path)
        runs: list[UUID] = []
        self._previous_steps: list[dict[str, Any]] = []
        resumed_from: tuple[UUID, UUID, int] | None = None  # run, checkpoint, batch
        for segment in segments:
            handle = self._run(segment, config, resumed_from, runs[-1] if runs else None)
            runs.append(handle.id)
            if handle.finished_status is None:
                self._steps(handle, segment)
            self._previous_steps = segment.steps
            last_state = self._checkpoints(handle, segment)
            if last_state is not None:
                resumed_from = (handle.id, *last_state)
            self._finish(handle, segment, segment is not segments[-1])
        return ImportResult(runs, sum(len(s.steps) for s in segments),
                            sum(len(s.checkpoints) for s in segments))

    def _config(self) -> dict[str, Any]:
        path = self.log_path / "config.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def _run(self, segment: Segment, config: dict[str, Any],
             resumed_from: tuple[UUID, UUID, int] | None, previous: UUID | None) -> Any:
        key = f"{self.key}#{segment.index}"
        cookbook: dict[str, Any] = {"log_path": str(self.log_path), "segment": segment.index,
                                    "tinker_run": segment.tinker_run}
        job: dict[str, Any] = {"key": key, "metadata": {"cookbook": cookbook, "config": config}}
        if isinstance(config.get("model_name"), str):
            job["model"] = config["model_name"]
        if resumed_from is not None and previous is not None:
            redone = [s["step"] for s in self._previous_steps if s["step"] >= resumed_from[2]]
            cookbook["resume"] = {"checkpoint_batch": resumed_from[2],
                                  "steps_redone": [redone[0], redone[-1]] if redone else None}
        tags = {"source": "tinker-cookbook"}
        run_id = ids.run_id_for_key(self.tracker.tenant_id, key)
        try:
            if resumed_from is None or previous is None:
                return self.tracker.start_run(self.name, job=job, tags=tags)
            _, checkpoint, batch = resumed_from
            return self.tracker.resume_run(previous, checkpoint, name=self.name, job=job,
                                           tags=tags, optimizer_restored=True, step=batch)
        except RunExistsError:
            return self.tracker.run_handle(run_id)

    def _steps(self, handle: Any, segment: Segment) -> None:
        for line, record in enumerate(segment.steps):
            step = record["step"]
            metrics = {k: float(v) for k, v in record.items() if k != "step"
                       and isinstance(v, int | float) and not isinstance(v, bool)}
            tokens = record.get("num_tokens")
            handle.log_step(step, metrics, durations=segment.timings.get(step) or None,
                            tokens=tokens if isinstance(tokens, int) else None,
                            event_id=uuid5(handle.id, f"cookbook-step:{line}"))

    def _checkpoints(self, handle: Any, segment: Segment) -> tuple[UUID, int] | None:
        """Record the segment's checkpoints; returns the last one with a state path (the one
        a resume would load) and its batch."""
        last: tuple[UUID, int] | None = None
        for record in segment.checkpoints:
            step, note = self._position(record, segment)
            metadata = {"cookbook_record": record, **note}
            state = None
            if record.get("state_path"):
                state = self._save(handle, record["state_path"], step, metadata, True, None)
                last = (state, step)
            if record.get("sampler_path"):
                self._save(handle, record["sampler_path"], step, metadata, False, state)
        return last

    def _save(self, handle: Any, uri: str, step: int, metadata: dict[str, Any],
              optimizer: bool, parent: UUID | None) -> UUID:
        """Record one checkpoint; on a run an earlier import finished, only its id."""
        if handle.finished_status is not None:
            return ids.artifact_id(self.tracker.tenant_id, uri, None, handle.id, step)
        ref = handle.save_checkpoint(uri, step=step, includes_optimizer=optimizer,
                                     metadata=metadata,
                                     parents=[parent] if parent is not None else None)
        return UUID(str(ref.id))

    def _position(self, record: dict[str, Any], segment: Segment) -> tuple[int, dict[str, Any]]:
        batch = record.get("batch")
        if record.get("final") or record.get("name") == "final" or not isinstance(batch, int):
            step = segment.last_step if segment.last_step is not None else 0
            return step, {"label_mismatch": f"the final record says batch {batch}, epoch "
                                            f"{record.get('epoch')}; it follows step {step}"}
        return batch, {"position": "the record's batch: the SL loop labels a checkpoint with "
                                   "the batch it has just applied, and a resume redoes it"}

    def _finish(self, handle: Any, segment: Segment, superseded: bool) -> None:
        if handle.finished_status is not None:
            return
        if superseded:
            handle.finish("superseded", reason="the cookbook process stopped; the next run on "
                                               "this log path resumed it").wait()
        elif any(r.get("final") or r.get("name") == "final" for r in segment.checkpoints):
            handle.finish("completed").wait()


def import_cookbook_log(tracker: Any, log_path: str | Path,
                        name: str | None = None) -> ImportResult:
    """Import a cookbook log directory once (see the module docstring)."""
    result = CookbookImporter(tracker, log_path, name=name).import_once()
    tracker.flush()
    return result
